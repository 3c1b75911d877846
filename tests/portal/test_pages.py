import re
import time

import pytest
from django.core import mail
from django.test import Client
from django.urls import reverse

from accounts import services as account_services
from accounts.credentials import ha1_pair
from accounts.models import CallerId, SipAccount
from portal import audit
from portal.models import AuditAction, AuditLogEntry
from sipsync.client import NodeClient
from sipsync.models import ProvisioningState, ProvisioningStatus, SipEvent
from tests.factories import CustomerFactory, StaffFactory, UserFactory, customer_user, sip_account

pytestmark = pytest.mark.django_db



def _event(account, cause, code, n=[0], **detail):  # noqa: B006
    n[0] += 1
    return SipEvent.objects.create(
        node="http://127.0.0.1:5080",
        event_id=n[0],
        kind="rejection",
        code=code,
        cause=cause,
        aor=f"{account.username}@{account.realm}",
        account=account,
        customer=account.customer,
        method="INVITE",
        detail=detail,
    )


def _status(account, node, state, **fields):
    ProvisioningStatus.objects.update_or_create(
        account=account, node=node, defaults={"state": state, **fields}
    )


# --- sign in ---------------------------------------------------------------------------------


def test_login_is_throttled_per_ip_and_username(client, customer):
    customer_user(customer, username="alice")
    for _ in range(5):
        response = client.post(reverse("login"), {"username": "alice", "password": "wrong"})
        assert response.status_code == 200
    response = client.post(reverse("login"), {"username": "alice", "password": "correct horse battery"})
    assert response.status_code == 429
    assert b"Too many failed sign-in attempts" in response.content
    assert b'value="alice"' in response.content
    # Another user name from the same address is not blocked.
    customer_user(CustomerFactory(), username="bob")
    response = client.post(reverse("login"), {"username": "bob", "password": "correct horse battery"})
    assert response.status_code == 302


def test_successful_login_resets_the_counter(client, customer):
    customer_user(customer, username="carol")
    for _ in range(4):
        client.post(reverse("login"), {"username": "carol", "password": "wrong"})
    assert (
        client.post(reverse("login"), {"username": "carol", "password": "correct horse battery"}).status_code
        == 302
    )
    client.logout()
    for _ in range(4):
        client.post(reverse("login"), {"username": "carol", "password": "wrong"})
    assert (
        client.post(reverse("login"), {"username": "carol", "password": "correct horse battery"}).status_code
        == 302
    )


def test_password_reset_by_email(client, customer):
    user = customer_user(customer, username="dave")
    response = client.post(reverse("password_reset"), {"email": "member@example.com"})
    assert response.status_code == 302 and response["Location"] == reverse("password_reset_done")
    assert len(mail.outbox) == 1
    link = re.search(r"http://testserver(/password-reset/\S+/)", mail.outbox[0].body).group(1)
    response = client.get(link, follow=True)
    assert b"Choose a new password" in response.content
    form_url = response.redirect_chain[-1][0]
    response = client.post(
        form_url, {"new_password1": "Quiet-River-2026", "new_password2": "Quiet-River-2026"}
    )
    assert response.status_code == 302
    user.refresh_from_db()
    assert user.check_password("Quiet-River-2026")


def test_logout_needs_post_with_csrf(customer):
    csrf_client = Client(enforce_csrf_checks=True)
    csrf_client.force_login(customer_user(customer))
    assert csrf_client.post(reverse("logout")).status_code == 403


# --- dashboard -------------------------------------------------------------------------------


def test_dashboard_shows_balance_accounts_provisioning_and_failures(client, customer, member):
    issued = sip_account(customer, "1001", label="Front desk")
    _status(issued.account, "http://127.0.0.1:5080", ProvisioningState.APPLIED)
    _event(issued.account, "insufficient_funds", 503)
    response = client.get(reverse("dashboard"))
    content = response.content.decode()
    assert "Balance" in content and "Available credit" in content
    assert "Applied on every node" in content
    assert "Not enough credit" in content and "Load credit" in content


def test_dashboard_shows_password_change_required_prominently(client, customer, member):
    account = sip_account(customer, "1001").account
    account_services.sip_account_require_password_change(account=account)
    response = client.get(reverse("dashboard"))
    assert b"Password change required for extension 1001" in response.content
    assert reverse("account-password", args=[account.pk]).encode() in response.content


def test_staff_and_anonymous_users_do_not_reach_customer_pages(client):
    account = sip_account(CustomerFactory(), "1001").account
    assert client.get(reverse("account-detail", args=[account.pk])).status_code == 302
    client.force_login(StaffFactory())
    assert client.get(reverse("account-detail", args=[account.pk]))["Location"] == reverse("admin:index")


def test_user_without_a_customer_is_refused(client):
    client.force_login(UserFactory())
    assert client.get(reverse("account-list")).status_code == 403


# --- SIP accounts ----------------------------------------------------------------------------


def test_create_with_generated_password_shows_it_exactly_once(client, customer, member):
    response = client.post(
        reverse("account-create"), {"extension": "2001", "label": "Sales", "password_mode": "generate"}
    )
    account = SipAccount.objects.get(customer=customer, extension="2001")
    assert response["Location"] == reverse("account-password-once", args=[account.pk])
    page = client.get(response["Location"]).content.decode()
    password = re.search(r'data-testid="one-time-password">([^<]+)<', page).group(1)
    assert ha1_pair(account.username, account.realm, password).md5 == account.ha1_md5
    assert "Copy password" in page and "sip.test" in page and account.username in page
    again = client.get(response["Location"]).content.decode()
    assert password not in again and "no longer available" in again
    assert password not in client.get(reverse("account-detail", args=[account.pk])).content.decode()


def test_customer_password_with_a_space_is_refused_and_the_form_keeps_what_was_typed(
    client, customer, member
):
    response = client.post(
        reverse("account-create"),
        {"extension": "2002", "label": "Warehouse", "password_mode": "custom", "password": "Has Space 12345"},
    )
    assert response.status_code == 200
    content = response.content.decode()
    assert "contains a space" in content
    assert 'value="2002"' in content and 'value="Warehouse"' in content and 'value="custom"' in content
    assert not SipAccount.objects.filter(extension="2002").exists()


def test_customer_set_password_is_accepted(client, customer, member):
    client.post(
        reverse("account-create"),
        {"extension": "2003", "password_mode": "custom", "password": "StrongPass2026x"},
    )
    account = SipAccount.objects.get(extension="2003")
    assert ha1_pair(account.username, account.realm, "StrongPass2026x").md5 == account.ha1_md5


def test_duplicate_extension_error_is_shown_on_the_field(client, customer, member):
    sip_account(customer, "2004")
    response = client.post(reverse("account-create"), {"extension": "2004", "password_mode": "generate"})
    assert b"That extension exists already." in response.content


def test_list_search_and_pagination(client, customer, member):
    for ext in range(3000, 3030):
        sip_account(customer, str(ext), label="Desk" if ext % 2 else "Phone")
    page1 = client.get(reverse("account-list")).content.decode()
    assert "Page 1 of 2" in page1
    found = client.get(reverse("account-list"), {"q": "3011"}).content.decode()
    assert ">3011<" in found and ">3012<" not in found


def test_edit_account(client, customer, member):
    account = sip_account(customer, "1001").account
    approved = account_services.caller_id_request(customer=customer, number="0115550100")
    account_services.caller_id_approve(caller_id=approved, by=StaffFactory())
    response = client.post(
        reverse("account-edit", args=[account.pk]),
        {
            "label": "Boardroom",
            "enabled": "on",
            "call_classes": ["internal", "international"],
            "max_concurrent_calls": "4",
            "forward_all_to": "",
            "do_not_disturb": "on",
            "default_caller_id": str(approved.pk),
        },
    )
    assert response.status_code == 302
    account.refresh_from_db()
    assert account.label == "Boardroom" and account.do_not_disturb and account.max_concurrent_calls == 4
    assert account.call_classes == ["internal", "international"]
    assert account.default_caller_id == approved


def test_edit_errors_keep_the_input(client, customer, member):
    account = sip_account(customer, "1001").account
    response = client.post(
        reverse("account-edit", args=[account.pk]),
        {
            "label": "Kept label",
            "enabled": "on",
            "max_concurrent_calls": "2",
            "forward_all_to": "not a number",
        },
    )
    content = response.content.decode()
    assert response.status_code == 200
    assert "Enter an extension or a telephone number." in content
    assert 'value="Kept label"' in content and 'value="not a number"' in content


def test_setting_a_new_password_clears_password_change_required(client, customer, member):
    account = sip_account(customer, "1001").account
    account_services.sip_account_require_password_change(account=account)
    detail = client.get(reverse("account-detail", args=[account.pk])).content.decode()
    assert "Password change required." in detail
    response = client.post(reverse("account-password", args=[account.pk]), {"password_mode": "generate"})
    assert response["Location"] == reverse("account-password-once", args=[account.pk])
    account.refresh_from_db()
    assert not account.password_change_required


def test_device_settings_panel(client, customer, member, settings):
    settings.SIP_PUBLIC_HOST, settings.SIP_PUBLIC_PORT = "sip.example.net", 5070
    account = sip_account(customer, "1001").account
    content = client.get(reverse("account-detail", args=[account.pk])).content.decode()
    assert "sip.example.net:5070" in content and "UDP or TCP" in content
    assert account.username in content and account.realm in content and "PCMU, G729" in content


def test_codecs_choose_and_order(client, customer, member):
    account = sip_account(customer, "1001").account
    page = client.get(reverse("account-codecs", args=[account.pk])).content.decode()
    assert "G.711 u-law (PCMU) and G.729A" in page and "488" in page
    response = client.post(
        reverse("account-codecs", args=[account.pk]), {"pos_G722": "1", "pos_PCMU": "2", "pos_G729": ""}
    )
    assert response.status_code == 302
    assert [c.codec for c in account.codec_assignments.order_by("position")] == ["G722", "PCMU"]


def test_codecs_form_refuses_nothing_and_duplicates(client, customer, member):
    account = sip_account(customer, "1001").account
    none = client.post(reverse("account-codecs", args=[account.pk]), {})
    assert b"Enable at least one codec" in none.content
    dup = client.post(reverse("account-codecs", args=[account.pk]), {"pos_G722": "1", "pos_PCMU": "1"})
    assert b"different position" in dup.content
    assert b'<option value="1" selected>1</option>' in dup.content


# --- caller IDs ------------------------------------------------------------------------------


def test_caller_id_request_is_pending_until_approved(client, customer, member):
    response = client.post(reverse("caller-ids"), {"number": "0115550100"})
    assert response.status_code == 302
    page = client.get(reverse("caller-ids")).content.decode()
    assert "+27115550100" in page and "Pending approval" in page and "503" in page
    caller_id = CallerId.objects.get(customer=customer)
    assert caller_id.requested_by == member
    account_services.caller_id_approve(caller_id=caller_id, by=StaffFactory())
    assert "Approved" in client.get(reverse("caller-ids")).content.decode()


def test_caller_id_invalid_number_keeps_the_input(client, customer, member):
    response = client.post(reverse("caller-ids"), {"number": "12ab"})
    assert b"Not a valid telephone number." in response.content and b'value="12ab"' in response.content


# --- diagnostics and live status -------------------------------------------------------------


def test_diagnostics_explains_each_failure(client, customer, member):
    account = sip_account(customer, "1001").account
    _event(account, "codec_mismatch", 488, offered=["G722"], assigned=["PCMU", "G729"])
    _event(account, "password_change_required", 403)
    content = client.get(reverse("diagnostics")).content.decode()
    assert (
        "No common audio codec" in content and "offered: G722" in content and "enabled: PCMU, G729" in content
    )
    assert "A password change is required" in content and "Set a new password" in content
    filtered = client.get(reverse("diagnostics"), {"account": account.pk})
    assert filtered.status_code == 200


def test_diagnostics_never_shows_another_customers_events(client, customer, member):
    other = sip_account(CustomerFactory(), "1001").account
    _event(other, "callee_busy", 486)
    assert b"The other side is busy" not in client.get(reverse("diagnostics")).content


def test_registrations_tolerate_a_node_that_is_down(client, customer, member, settings):
    settings.SIP_NODES = ["http://127.0.0.1:9"]
    account = sip_account(customer, "1001").account
    response = client.get(reverse("account-registrations", args=[account.pk]))
    assert response.status_code == 200
    assert b"could not be reached" in response.content


def test_live_status_shows_the_last_failed_registration_with_its_reason(client, customer, member, settings):
    settings.SIP_NODES = []
    account = sip_account(customer, "1001").account
    url = reverse("account-registrations", args=[account.pk])
    assert b"No refused registration recorded" in client.get(url).content
    for cause, code in (("unknown_user", 404), ("bad_password", 403)):  # oldest first
        SipEvent.objects.filter(pk=_event(account, cause, code).pk).update(method="REGISTER")
    _event(account, "callee_busy", 486)  # a call, not a registration
    page = client.get(url).content.decode()
    failure = page.split("Last failed registration")[1]
    assert "Wrong password" in failure and "How to fix it:" in failure
    assert "Unknown SIP username" not in failure and "busy" not in failure


def test_registrations_listed_from_a_live_node(client, customer, member, settings, monkeypatch):
    settings.SIP_NODES = ["http://node-a:5080", "http://node-b:5080"]
    account = sip_account(customer, "1001").account

    def fake(self, aor):
        if "node-b" in self.base_url:
            from sipsync.client import NodeUnavailable

            raise NodeUnavailable(self.base_url, "down")
        assert aor == f"{account.username}@{account.realm}"
        return [
            {
                "contact": "sip:1001@192.0.2.7:5062",
                "expires_in": 120,
                "user_agent": "Yealink T46",
                "source_ip": "192.0.2.7",
                "source_port": 5062,
                "transport": "udp",
            }
        ]

    monkeypatch.setattr(NodeClient, "registrations", fake)
    monkeypatch.setattr(NodeClient, "subscriptions", lambda self, aor: [])
    content = client.get(reverse("account-registrations", args=[account.pk])).content.decode()
    assert "sip:1001@192.0.2.7:5062" in content and "Yealink T46" in content
    assert "could not be reached" in content


def test_live_status_splits_subscriptions_held_from_those_watching(
    client, customer, member, settings, monkeypatch
):
    settings.SIP_NODES = ["http://node-a:5080"]
    account = sip_account(customer, "1001").account
    aor = f"{account.username}@{account.realm}"
    desk = f"{customer.account_number.lower()}1002@{account.realm}"
    monkeypatch.setattr(NodeClient, "registrations", lambda self, aor: [])

    def subscriptions(self, asked):
        assert asked == aor
        soon = time.time() + 600
        return [
            {"event": "message-summary", "subscriber": aor, "target": aor, "contact": "sip:a@192.0.2.7",
             "expires_at": soon},
            {"event": "dialog", "subscriber": aor, "target": "boss@sip.test", "contact": "sip:a@192.0.2.7",
             "expires_at": soon},
            {"event": "dialog", "subscriber": desk, "target": aor, "contact": "sip:d@192.0.2.9",
             "expires_at": soon},
        ]  # fmt: skip

    monkeypatch.setattr(NodeClient, "subscriptions", subscriptions)
    page = client.get(reverse("account-registrations", args=[account.pk])).content.decode()
    held, watched_by = page.split("Watched by")
    assert "Message waiting (voicemail lamp)" in held and "boss@sip.test" in held and desk not in held
    assert desk in watched_by and "Busy lamp (BLF)" in watched_by
    assert "599 s" in held or "600 s" in held


def test_voicemail_counts_set_by_hand_reach_the_node_document(client, customer, member):
    from sipsync import documents
    from sipsync.models import DocumentKind

    account = sip_account(customer, "1001").account
    url = reverse("account-voicemail", args=[account.pk])
    refused = client.post(url, {"new": "-2", "old": "x"})
    assert refused.status_code == 200 and b"errorlist" in refused.content
    response = client.post(url, {"new": "3", "old": "7"})
    assert response.status_code == 302
    assert documents.build_document(DocumentKind.ACCOUNT, account.pk)["mailbox"] == {"new": 3, "old": 7}
    detail = client.get(reverse("account-detail", args=[account.pk])).content.decode()
    assert "3 new, 7 saved" in detail


def test_provisioning_per_node(client, customer, member, settings):
    settings.SIP_NODES = ["http://node-a:5080", "http://node-b:5080"]
    account = sip_account(customer, "1001").account
    _status(account, "http://node-a:5080", ProvisioningState.APPLIED, applied_version=1)
    _status(account, "http://node-b:5080", ProvisioningState.FAILING, error="timeout")
    content = client.get(reverse("account-detail", args=[account.pk])).content.decode()
    assert "node-a" in content and "Applied" in content and "Failing" in content and "timeout" in content
    assert "Failing (applied on 1 of 2 nodes)" in client.get(reverse("account-list")).content.decode()


# --- tenancy ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "account-detail",
        "account-edit",
        "account-password",
        "account-password-once",
        "account-codecs",
        "account-registrations",
        "account-voicemail",
    ],
)
def test_another_customers_account_is_404(client, customer, member, name, settings):
    settings.SIP_NODES = []
    other = sip_account(CustomerFactory(), "1001").account
    assert client.get(reverse(name, args=[other.pk])).status_code == 404
    assert client.post(
        reverse(name, args=[other.pk]), {"password_mode": "generate", "pos_PCMU": "1"}
    ).status_code in (404, 405)
    other.refresh_from_db()
    assert other.codec_assignments.count() == 2


def test_every_form_post_needs_csrf(customer):
    csrf_client = Client(enforce_csrf_checks=True)
    csrf_client.force_login(customer_user(customer))
    account = sip_account(customer, "1001").account
    for url in [
        reverse("account-create"),
        reverse("caller-ids"),
        reverse("account-codecs", args=[account.pk]),
        reverse("account-edit", args=[account.pk]),
        reverse("account-password", args=[account.pk]),
    ]:
        assert csrf_client.post(url, {}).status_code == 403, url
        assert b"csrfmiddlewaretoken" in csrf_client.get(url).content, url


# --- constant queries ------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["dashboard", "account-list", "diagnostics", "caller-ids"])
def test_pages_keep_a_constant_number_of_queries(
    client, customer, member, name, django_assert_max_num_queries
):
    def grow(start):
        for ext in range(start, start + 10):
            account = sip_account(customer, str(ext)).account
            _status(account, "http://127.0.0.1:5080", "applied")
            _event(account, "callee_busy", 486)
            account_services.caller_id_request(customer=customer, number=f"011555{ext:04d}")

    grow(1000)
    with django_assert_max_num_queries(14) as baseline:
        assert client.get(reverse(name)).status_code == 200
    grow(2000)
    with django_assert_max_num_queries(len(baseline.captured_queries)):
        client.get(reverse(name))


@pytest.mark.parametrize("name", ["account-detail", "account-edit", "account-codecs"])
def test_account_pages_keep_a_constant_number_of_queries(
    client, customer, member, name, django_assert_max_num_queries
):
    account = sip_account(customer, "1001").account
    _event(account, "callee_busy", 486)
    with django_assert_max_num_queries(14) as baseline:
        assert client.get(reverse(name, args=[account.pk])).status_code == 200
    for n in range(10):
        _event(account, "codec_mismatch", 488, offered=["G722"], assigned=["PCMU"])
        account_services.caller_id_approve(
            caller_id=account_services.caller_id_request(customer=customer, number=f"01155501{n:02d}"),
            by=StaffFactory(),
        )
    with django_assert_max_num_queries(len(baseline.captured_queries)):
        client.get(reverse(name, args=[account.pk]))


# --- audit log -------------------------------------------------------------------------------


def test_audit_record_service(customer):
    staff = StaffFactory(username="operator")
    caller_id = account_services.caller_id_request(customer=customer, number="0115550100")
    entry = audit.record(
        actor=staff, action=AuditAction.CALLER_ID_APPROVED, obj=caller_id, details={"note": "ok"}
    )
    assert entry.actor == staff and entry.actor_name == "operator"
    assert entry.object_type == "accounts.callerid" and entry.object_id == str(caller_id.pk)
    assert entry.customer == customer and entry.details == {"note": "ok"}
    with pytest.raises(ValueError):
        audit.record(actor=staff, action="made_up")
    assert AuditLogEntry.objects.count() == 1


def test_audit_log_admin_is_read_only(client):
    staff = StaffFactory(is_superuser=True)
    audit.record(actor=staff, action=AuditAction.CREDIT_LOADED, details={"amount": "100.00"})
    client.force_login(staff)
    assert client.get(reverse("admin:portal_auditlogentry_changelist")).status_code == 200
    assert client.get(reverse("admin:portal_auditlogentry_add")).status_code == 403


# --- roles and billing banner ----------------------------------------------------------------


def test_viewers_can_look_but_not_change(client, customer):
    from accounts.choices import MemberRole

    viewer = account_services.customer_user_create(
        customer=customer, username="viewer", email="v@example.com", password="x", role=MemberRole.VIEWER
    )
    client.force_login(viewer)
    account = sip_account(customer, "1001").account
    detail = client.get(reverse("account-detail", args=[account.pk]))
    assert (
        detail.status_code == 200
        and reverse("account-edit", args=[account.pk]).encode() not in detail.content
    )
    assert client.get(reverse("account-create")).status_code == 403
    assert client.post(reverse("account-codecs", args=[account.pk]), {"pos_OPUS": "1"}).status_code == 403
    assert client.post(reverse("caller-ids"), {"number": "0115550100"}).status_code == 403
    voicemail = reverse("account-voicemail", args=[account.pk])
    assert client.post(voicemail, {"new": 1, "old": 0}).status_code == 403
    assert not CallerId.objects.exists()


def test_low_balance_banner(client, customer, member):
    from billing.models import BillingProfile

    assert b"Your balance is low" not in client.get(reverse("dashboard")).content
    BillingProfile.objects.create(customer=customer, low_balance_notified=True)
    assert b"Your balance is low" in client.get(reverse("dashboard")).content
