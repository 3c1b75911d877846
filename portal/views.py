"""The customer portal's pages. Every read goes through the tenant-scoped selectors, every write
through the services; another customer's ids answer 404 (the selectors' NotFound)."""

import functools
import logging
import time
from dataclasses import dataclass

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.core.cache import cache
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.paginator import Paginator
from django.db import connection
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods
from django.views.defaults import server_error as django_server_error

from accounts import selectors as account_selectors
from accounts import services as account_services
from accounts.choices import DEFAULT_CODECS, Codec, MemberRole
from accounts.models import Membership
from billing import selectors as billing_selectors
from portal.errors import ApplicationError, NotFound
from portal.errors import PermissionDenied as DomainPermissionDenied
from portal.explanations import call_outcome, explain_event
from portal.forms import (
    CallerIdRequestForm,
    CodecForm,
    SearchForm,
    SetPasswordForm,
    SipAccountCreateForm,
    SipAccountEditForm,
    VoicemailForm,
)
from portal.tenancy import tenant_of
from sipsync import live
from sipsync import selectors as sync_selectors
from sipsync.models import ProvisioningState
from sipsync.outbox import node_urls

logger = logging.getLogger(__name__)

ONE_TIME_SESSION_KEY = "portal_one_time_password"
RECENT_EVENTS = 10
RECENT_CALLS = 5
PAGE_SIZE = 25


# --- sign in with throttling -----------------------------------------------------------------

LOGIN_MAX_FAILURES = 5
LOGIN_WINDOW_SECONDS = 15 * 60


def _client_ip(request: HttpRequest) -> str:
    return request.META.get("REMOTE_ADDR", "") or "unknown"


def _login_key(request: HttpRequest) -> str:
    username = (request.POST.get("username") or "").strip().lower()[:150]
    return f"portal:login-failures:{_client_ip(request)}:{username}"


class ThrottledLoginView(auth_views.LoginView):
    """Django's login, refusing an IP+username pair after repeated failures for a while."""

    def post(self, request, *args, **kwargs):
        if cache.get(_login_key(request), 0) >= LOGIN_MAX_FAILURES:
            form = self.get_form()
            form.errors.clear()
            form.add_error(
                None,
                "Too many failed sign-in attempts. Wait 15 minutes and try again, or reset your password.",
            )
            return self.render_to_response(self.get_context_data(form=form), status=429)
        return super().post(request, *args, **kwargs)

    def form_invalid(self, form):
        key = _login_key(self.request)
        try:
            cache.incr(key)
        except ValueError:
            cache.set(key, 1, LOGIN_WINDOW_SECONDS)
        return super().form_invalid(form)

    def form_valid(self, form):
        cache.delete(_login_key(self.request))
        return super().form_valid(form)


# --- helpers ---------------------------------------------------------------------------------


def customer_page(view):
    """Signed-in customer users only: staff go to the console; the tenant is resolved once."""

    @login_required
    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs):
        if request.user.is_staff:
            return redirect("admin:index")
        try:
            # One query for the membership and its customer (tenant_of reads the cached membership).
            membership = Membership.objects.select_related("customer").filter(user=request.user).first()
            if membership is not None:
                request.user.membership = membership
            request.tenant = tenant_of(request.user)
            request.customer = membership.customer
            request.can_change = membership.role != MemberRole.VIEWER
            if request.method == "POST" and not request.can_change:
                raise DjangoPermissionDenied("Viewers can look but not change anything.")
            return view(request, *args, **kwargs)
        except NotFound as exc:
            raise Http404(exc.message) from exc
        except DomainPermissionDenied as exc:
            raise DjangoPermissionDenied(exc.message) from exc

    return wrapper


def changes_only(view):
    """Pages that only change things (forms): not for users with the viewer role."""

    @functools.wraps(view)
    def wrapper(request: HttpRequest, *args, **kwargs):
        if not request.can_change:
            raise DjangoPermissionDenied("Viewers can look but not change anything.")
        return view(request, *args, **kwargs)

    return wrapper


def _copy_errors(form, error: ApplicationError) -> None:
    """Put a service's errors on the form (field errors where the form has the field)."""
    placed = False
    for field, problems in error.field_errors.items():
        for problem in problems:
            if field in form.fields:
                form.add_error(field, problem)
                placed = True
    if not placed or error.message not in sum(error.field_errors.values(), []):
        form.add_error(None, error.message)


@dataclass(frozen=True, slots=True)
class ProvisioningSummary:
    state: str
    applied: int
    nodes: int

    @property
    def label(self) -> str:
        if self.state == ProvisioningState.APPLIED:
            return "Applied on every node"
        if self.state == ProvisioningState.FAILING:
            return f"Failing (applied on {self.applied} of {self.nodes} nodes)"
        return f"Pending (applied on {self.applied} of {self.nodes} nodes)"


def _provisioning_summaries(tenant, account_ids) -> dict[int, ProvisioningSummary]:
    nodes = node_urls()
    by_account: dict[int, list[str]] = {}
    statuses = sync_selectors.provisioning_status_list(tenant=tenant).filter(account_id__in=list(account_ids))
    for account_id, state in statuses.values_list("account_id", "state"):
        by_account.setdefault(account_id, []).append(state)
    result = {}
    for account_id in account_ids:
        states = by_account.get(account_id, [])
        applied = states.count(ProvisioningState.APPLIED)
        if ProvisioningState.FAILING in states:
            state = ProvisioningState.FAILING
        elif nodes and applied >= len(nodes):
            state = ProvisioningState.APPLIED
        else:
            state = ProvisioningState.PENDING
        result[account_id] = ProvisioningSummary(state, applied, len(nodes))
    return result


def _explained(events):
    return [(event, explain_event(event)) for event in events]


def _posted(request):
    """The submitted data on POST (even when empty), None on GET: an empty POST is still validated."""
    return request.POST if request.method == "POST" else None


def _get_account(request, account_id):
    return account_selectors.sip_account_get(tenant=request.tenant, account_id=account_id)


def _remember_password(request, issued) -> None:
    request.session[ONE_TIME_SESSION_KEY] = {"account_id": issued.account.pk, "password": issued.password}


# --- pages -----------------------------------------------------------------------------------


@customer_page
def dashboard(request: HttpRequest) -> HttpResponse:
    customer = request.customer
    accounts = list(account_selectors.sip_account_list(tenant=request.tenant)[:50])
    summaries = _provisioning_summaries(request.tenant, [a.pk for a in accounts])
    events = sync_selectors.sip_event_list(tenant=request.tenant)[:5]
    calls = billing_selectors.call_record_list(tenant=request.tenant)[:RECENT_CALLS]
    credit_in_use = sync_selectors.credit_in_use(customer=customer)
    balance = billing_selectors.customer_balance(customer=customer)
    context = {
        "customer": customer,
        "balance": balance,
        "available": billing_selectors.available_credit(
            customer=customer, reserved=credit_in_use.reserved, balance=balance
        ),
        "credit_in_use": credit_in_use,
        "low_balance": billing_selectors.low_balance_warning(customer=customer),
        "sip_accounts": [(a, summaries[a.pk]) for a in accounts],
        "needs_password": [a for a in accounts if a.password_change_required],
        "events": _explained(events),
        "calls": [(call, call_outcome(call)) for call in calls],
        "currency": customer.currency,
    }
    return render(request, "portal/dashboard.html", context)


MAX_LIVE_ACCOUNTS = 50


@customer_page
def account_registration_states(request: HttpRequest) -> JsonResponse:
    """Live registration state of the customer's accounts (`?ids=1,2,...`, at most 50), asked of
    every node in one request each; the dashboard fills its "Phones" column from it."""
    ids = [int(part) for part in request.GET.get("ids", "").split(",") if part.strip().isdigit()]
    accounts = account_selectors.sip_account_list(tenant=request.tenant).filter(
        pk__in=ids[:MAX_LIVE_ACCOUNTS]
    )
    rows = accounts.values_list("pk", "username", "realm")
    aors = {pk: f"{username}@{realm}" for pk, username, realm in rows}
    states = live.registration_states(list(aors.values()))
    body = {
        str(pk): {"state": states[aor].state, "contacts": states[aor].contacts, "label": states[aor].label}
        for pk, aor in aors.items()
    }
    response = JsonResponse({"accounts": body})
    response["Cache-Control"] = "no-store"
    return response


@customer_page
def account_list(request: HttpRequest) -> HttpResponse:
    form = SearchForm(request.GET or None)
    search = form.cleaned_data["q"] if form.is_valid() else ""
    accounts = account_selectors.sip_account_list(tenant=request.tenant, search=search)
    page = Paginator(accounts, PAGE_SIZE).get_page(request.GET.get("page"))
    summaries = _provisioning_summaries(request.tenant, [a.pk for a in page.object_list])
    context = {
        "form": form,
        "search": search,
        "page": page,
        "rows": [(a, summaries[a.pk]) for a in page.object_list],
    }
    return render(request, "portal/account_list.html", context)


@customer_page
@changes_only
@require_http_methods(["GET", "POST"])
def account_create(request: HttpRequest) -> HttpResponse:
    form = SipAccountCreateForm(_posted(request))
    if request.method == "POST" and form.is_valid():
        try:
            issued = account_services.sip_account_create(
                customer=request.customer,
                extension=form.cleaned_data["extension"],
                label=form.cleaned_data["label"],
                password=form.chosen_password(),
            )
        except ApplicationError as exc:
            _copy_errors(form, exc)
        else:
            _remember_password(request, issued)
            return redirect("account-password-once", account_id=issued.account.pk)
    return render(request, "portal/account_form.html", {"form": form, "title": "New SIP account"})


@customer_page
def account_password_once(request: HttpRequest, account_id: int) -> HttpResponse:
    """Shows a just-set password exactly once: it is taken out of the session as it is shown."""
    account = _get_account(request, account_id)
    held = request.session.get(ONE_TIME_SESSION_KEY)
    password = None
    if held and held.get("account_id") == account.pk:
        password = held["password"]
        del request.session[ONE_TIME_SESSION_KEY]
    response = render(
        request, "portal/password_once.html", {"account": account, "password": password, **_device(account)}
    )
    response["Cache-Control"] = "no-store"
    return response


def _device(account) -> dict:
    return {
        "sip_host": settings.SIP_PUBLIC_HOST,
        "sip_port": settings.SIP_PUBLIC_PORT,
        "codecs": account_selectors.sip_account_codecs(account=account),
    }


@customer_page
def account_detail(request: HttpRequest, account_id: int) -> HttpResponse:
    account = _get_account(request, account_id)
    provisioning = sync_selectors.account_provisioning(tenant=request.tenant, account_id=account.pk)
    events = sync_selectors.sip_event_list(tenant=request.tenant, account_id=account.pk)[:RECENT_EVENTS]
    context = {
        "account": account,
        "provisioning": provisioning,
        "events": _explained(events),
        **_device(account),
    }
    return render(request, "portal/account_detail.html", context)


@customer_page
def account_registrations(request: HttpRequest, account_id: int) -> HttpResponse:
    """Live status from every node: registered phones and event subscriptions (slow or down
    nodes are reported, not fatal)."""
    account = _get_account(request, account_id)
    aor = f"{account.username}@{account.realm}"
    subscriptions = {answer.node: answer for answer in live.subscriptions(aor)}
    nodes = [
        {
            "node": answer.node,
            "registrations": answer,
            "subscriptions": _subscriptions_seen_from(aor, subscriptions.get(answer.node)),
        }
        for answer in live.registrations(aor)
    ]
    last_failure = (
        sync_selectors.sip_event_list(tenant=request.tenant, account_id=account.pk)
        .filter(method="REGISTER")
        .first()
    )
    context = {
        "account": account,
        "nodes": nodes,
        "last_failure": _explained([last_failure]) if last_failure is not None else [],
    }
    return render(request, "portal/registrations.html", context)


def _subscriptions_seen_from(aor: str, answer: "live.NodeAnswer | None") -> dict | None:
    """A node's subscriptions split into those the account's phones hold and those on it."""
    if answer is None or not answer.ok:
        return None
    now = time.time()
    held, watching = [], []
    for item in answer.items:
        expires_at = item.get("expires_at")
        row = {
            **item,
            "package": EVENT_PACKAGES.get(item.get("event", ""), item.get("event", "")),
            "expires_in": max(0, round(expires_at - now)) if isinstance(expires_at, int | float) else None,
        }
        if item.get("subscriber") == aor:
            held.append(row)
        if item.get("target") == aor and item.get("subscriber") != aor:
            watching.append(row)
    return {"held": held, "watching": watching}


EVENT_PACKAGES = {"message-summary": "Message waiting (voicemail lamp)", "dialog": "Busy lamp (BLF)"}


@customer_page
@changes_only
@require_http_methods(["GET", "POST"])
def account_voicemail(request: HttpRequest, account_id: int) -> HttpResponse:
    """Mailbox counts by hand, for a voicemail system that cannot use the API (or to test a lamp)."""
    account = _get_account(request, account_id)
    form = VoicemailForm(
        _posted(request), initial={"new": account.voicemail_new, "old": account.voicemail_old}
    )
    if request.method == "POST" and form.is_valid():
        try:
            account_services.sip_account_set_voicemail(
                account=account, new=form.cleaned_data["new"], old=form.cleaned_data["old"]
            )
        except ApplicationError as exc:
            _copy_errors(form, exc)
        else:
            messages.success(request, "Mailbox counts saved; subscribed phones are told now.")
            return redirect("account-detail", account_id=account.pk)
    return render(request, "portal/account_voicemail.html", {"form": form, "account": account})


@customer_page
@changes_only
@require_http_methods(["GET", "POST"])
def account_edit(request: HttpRequest, account_id: int) -> HttpResponse:
    account = _get_account(request, account_id)
    caller_ids = list(account_selectors.approved_caller_ids(tenant=request.tenant))
    initial = {
        "label": account.label,
        "enabled": account.enabled,
        "call_classes": account.call_classes,
        "max_concurrent_calls": account.max_concurrent_calls,
        "forward_all_to": account.forward_all_to,
        "do_not_disturb": account.do_not_disturb,
        "default_caller_id": str(account.default_caller_id_id or ""),
    }
    form = SipAccountEditForm(_posted(request), initial=initial, caller_ids=caller_ids)
    if request.method == "POST" and form.is_valid():
        try:
            account_services.sip_account_update(account=account, data=form.service_data())
        except ApplicationError as exc:
            _copy_errors(form, exc)
        else:
            messages.success(request, f"Saved the changes to extension {account.extension}.")
            return redirect("account-detail", account_id=account.pk)
    return render(request, "portal/account_edit.html", {"form": form, "account": account})


@customer_page
@changes_only
@require_http_methods(["GET", "POST"])
def account_set_password(request: HttpRequest, account_id: int) -> HttpResponse:
    account = _get_account(request, account_id)
    form = SetPasswordForm(_posted(request))
    if request.method == "POST" and form.is_valid():
        try:
            issued = account_services.sip_account_set_password(
                account=account, password=form.chosen_password()
            )
        except ApplicationError as exc:
            _copy_errors(form, exc)
        else:
            _remember_password(request, issued)
            return redirect("account-password-once", account_id=account.pk)
    return render(request, "portal/account_password.html", {"form": form, "account": account})


@customer_page
@changes_only
@require_http_methods(["GET", "POST"])
def account_codecs(request: HttpRequest, account_id: int) -> HttpResponse:
    account = _get_account(request, account_id)
    current = account_selectors.sip_account_codecs(account=account)
    form = CodecForm(_posted(request), current=current)
    if request.method == "POST" and form.is_valid():
        try:
            account_services.sip_account_set_codecs(account=account, codecs=form.cleaned_data["codecs"])
        except ApplicationError as exc:
            _copy_errors(form, exc)
        else:
            messages.success(request, "Codecs saved: " + ", ".join(form.cleaned_data["codecs"]) + ".")
            return redirect("account-detail", account_id=account.pk)
    context = {
        "form": form,
        "account": account,
        "current": current,
        "defaults": [Codec(c).label for c in DEFAULT_CODECS],
    }
    return render(request, "portal/account_codecs.html", context)


@customer_page
@require_http_methods(["GET", "POST"])
def caller_ids(request: HttpRequest) -> HttpResponse:
    form = CallerIdRequestForm(_posted(request))
    if request.method == "POST" and form.is_valid():
        try:
            caller_id = account_services.caller_id_request(
                customer=request.customer, number=form.cleaned_data["number"], requested_by=request.user
            )
        except ApplicationError as exc:
            _copy_errors(form, exc)
        else:
            messages.success(request, f"{caller_id.number} is requested; it can be used once approved.")
            return redirect("caller-ids")
    numbers = account_selectors.caller_id_list(tenant=request.tenant).order_by("-requested_at", "-id")
    return render(request, "portal/caller_ids.html", {"form": form, "caller_ids": numbers})


@customer_page
def diagnostics(request: HttpRequest) -> HttpResponse:
    events = sync_selectors.sip_event_list(tenant=request.tenant)
    account_id = request.GET.get("account")
    accounts = account_selectors.sip_account_list(tenant=request.tenant)
    if account_id and account_id.isdigit():
        events = events.filter(account_id=int(account_id))
    page = Paginator(events, PAGE_SIZE).get_page(request.GET.get("page"))
    context = {
        "page": page,
        "rows": _explained(page.object_list),
        "accounts": accounts,
        "account_filter": account_id or "",
    }
    return render(request, "portal/diagnostics.html", context)


def healthz(request: HttpRequest) -> JsonResponse:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return JsonResponse({"status": "ok"})


def password_reset_urls():
    """Django's password reset by email, with this portal's templates."""
    return {
        "password_reset": auth_views.PasswordResetView.as_view(
            email_template_name="registration/password_reset_email.txt",
            subject_template_name="registration/password_reset_subject.txt",
        ),
        "password_reset_done": auth_views.PasswordResetDoneView.as_view(),
        "password_reset_confirm": auth_views.PasswordResetConfirmView.as_view(),
        "password_reset_complete": auth_views.PasswordResetCompleteView.as_view(),
    }


def server_error(request: HttpRequest) -> HttpResponse:
    """An unexpected failure: the API answers in its one error shape, pages with Django's page."""
    if request.path.startswith("/api/"):
        return JsonResponse(
            {
                "error": {
                    "code": "server_error",
                    "message": "The server failed to handle this request; the failure has been logged.",
                    "fields": {},
                }
            },
            status=500,
        )
    return django_server_error(request)
