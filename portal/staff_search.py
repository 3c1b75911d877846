"""The staff console's search across customers: one box that finds a customer by name or account
number, a SIP account by username, extension or label, a caller ID or a dialled number, a portal
user by name or email, and a call record by its id. Reads go through the selectors with the staff
tenant; each kind shows its first matches and links to its full list in the console."""

from dataclasses import dataclass
from urllib.parse import quote

from django.contrib import admin
from django.db.models import Q
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.urls import reverse

from accounts import selectors as account_selectors
from accounts.models import Membership
from billing import selectors as billing_selectors
from portal.tenancy import Tenant

LIMIT = 10
MIN_LENGTH = 2


@dataclass(frozen=True, slots=True)
class Found:
    title: str
    rows: list  # (text, detail, url) triples
    more_url: str


def search(query: str) -> list[Found]:
    """Matches of `query` of every kind (empty kinds left out); at most LIMIT of each."""
    staff = Tenant.staff()
    # A number as typed ("011 555 0199") matches stored E.164 ("+27115550199") without its
    # national trunk prefix.
    digits = "".join(ch for ch in query if ch.isdigit()).lstrip("0")
    results = []

    customers = account_selectors.customer_list(tenant=staff).filter(
        Q(name__icontains=query) | Q(account_number__iexact=query)
    )[:LIMIT]
    results.append(
        Found(
            "Customers",
            [
                (str(c), c.get_status_display(), reverse("admin:accounts_customer_change", args=[c.pk]))
                for c in customers
            ],
            reverse("admin:accounts_customer_changelist") + f"?q={_q(query)}",
        )
    )

    accounts = account_selectors.sip_account_list(tenant=staff, search=query)[:LIMIT]
    results.append(
        Found(
            "SIP accounts",
            [
                (
                    f"{a.extension} · {a.username}",
                    str(a.customer),
                    reverse("admin:accounts_sipaccount_change", args=[a.pk]),
                )
                for a in accounts
            ],
            reverse("admin:accounts_sipaccount_changelist") + f"?q={_q(query)}",
        )
    )

    caller_ids = (
        account_selectors.caller_id_list(tenant=staff).filter(number__contains=digits)[:LIMIT]
        if len(digits) >= MIN_LENGTH
        else []
    )
    results.append(
        Found(
            "Caller IDs",
            [
                (
                    c.number,
                    f"{c.get_status_display()} · {c.customer}",
                    reverse("admin:accounts_callerid_change", args=[c.pk]),
                )
                for c in caller_ids
            ],
            reverse("admin:accounts_callerid_changelist") + f"?q={_q(digits)}",
        )
    )

    users = Membership.objects.select_related("user", "customer").filter(
        Q(user__username__icontains=query) | Q(user__email__icontains=query)
    )[:LIMIT]
    results.append(
        Found(
            "Portal users",
            [
                (
                    m.user.get_username(),
                    f"{m.get_role_display()} · {m.customer}",
                    reverse("admin:accounts_membership_change", args=[m.pk]),
                )
                for m in users
            ],
            reverse("admin:accounts_membership_changelist") + f"?q={_q(query)}",
        )
    )

    calls = (
        billing_selectors.call_record_list(tenant=staff)
        .select_related("customer")
        .filter(
            Q(record_id=query) | (Q(dialled_number__contains=digits) if len(digits) >= 4 else Q(pk__in=[]))
        )[:LIMIT]
    )
    results.append(
        Found(
            "Call records",
            [
                (
                    f"{c.record_id} → {c.dialled_number}",
                    f"{c.invited_at:%Y-%m-%d %H:%M} · {c.final_code} · {c.customer}",
                    reverse("admin:billing_callrecord_change", args=[c.pk]),
                )
                for c in calls
            ],
            reverse("admin:billing_callrecord_changelist") + f"?q={_q(query)}",
        )
    )
    return [found for found in results if found.rows]


def _q(text: str) -> str:
    return quote(text)


def search_view(request: HttpRequest) -> HttpResponse:
    query = (request.GET.get("q") or "").strip()[:100]
    too_short = 0 < len(query) < MIN_LENGTH
    context = {
        **admin.site.each_context(request),
        "title": "Search across customers",
        "query": query,
        "too_short": too_short,
        "results": search(query) if query and not too_short else [],
        "searched": bool(query) and not too_short,
    }
    return TemplateResponse(request, "admin/search.html", context)
