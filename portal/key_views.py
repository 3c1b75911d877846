"""The customer's API keys: create a named key (its plaintext shown exactly once), see when each
was last used, revoke. Keys act for the customer; creating and revoking are written to the audit
log in the same transaction."""

from django.contrib import messages
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from accounts import api_keys
from portal import audit
from portal.errors import ApplicationError
from portal.forms import ApiKeyForm
from portal.models import AuditAction
from portal.views import _copy_errors, _posted, changes_only, customer_page

ONE_TIME_KEY_SESSION_KEY = "portal_one_time_api_key"


@customer_page
def api_key_list(request: HttpRequest) -> HttpResponse:
    form = ApiKeyForm(_posted(request))
    if request.method == "POST" and form.is_valid():
        try:
            with transaction.atomic():
                issued = api_keys.api_key_create(
                    name=form.cleaned_data["name"], customer=request.customer, user=request.user
                )
                audit.record(
                    actor=request.user,
                    action=AuditAction.API_KEY_CREATED,
                    obj=issued.key,
                    details={"name": issued.key.name, "prefix": issued.key.prefix},
                )
        except ApplicationError as exc:
            _copy_errors(form, exc)
        else:
            request.session[ONE_TIME_KEY_SESSION_KEY] = {
                "key_id": issued.key.pk,
                "plaintext": issued.plaintext,
            }
            return redirect("api-key-once", key_id=issued.key.pk)
    keys = api_keys.api_key_list(tenant=request.tenant)
    return render(request, "portal/api_keys.html", {"form": form, "keys": keys})


@customer_page
def api_key_once(request: HttpRequest, key_id: int) -> HttpResponse:
    """The new key's plaintext, taken out of the session as it is shown."""
    key = api_keys.api_key_get(tenant=request.tenant, key_id=key_id)
    held = request.session.get(ONE_TIME_KEY_SESSION_KEY)
    plaintext = None
    if held and held.get("key_id") == key.pk:
        plaintext = held["plaintext"]
        del request.session[ONE_TIME_KEY_SESSION_KEY]
    response = render(request, "portal/api_key_once.html", {"key": key, "plaintext": plaintext})
    response["Cache-Control"] = "no-store"
    return response


@customer_page
@changes_only
@require_POST
def api_key_revoke(request: HttpRequest, key_id: int) -> HttpResponse:
    key = api_keys.api_key_get(tenant=request.tenant, key_id=key_id)
    with transaction.atomic():
        was_active = key.revoked_at is None
        api_keys.api_key_revoke(key=key)
        if was_active:
            audit.record(
                actor=request.user,
                action=AuditAction.API_KEY_REVOKED,
                obj=key,
                details={"name": key.name, "prefix": key.prefix},
            )
    messages.success(request, f"Revoked “{key.name}”: requests with it are refused from now on.")
    return redirect("api-keys")
