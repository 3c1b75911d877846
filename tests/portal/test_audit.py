import pytest
from django.urls import reverse

from accounts import services as account_services
from accounts.models import CallerId
from portal.models import AuditAction, AuditLogEntry
from tests.factories import CustomerFactory, StaffFactory, sip_account

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff(client):
    user = StaffFactory(username="operator", is_superuser=True)
    client.force_login(user)
    return user


def _action(client, model, action, pks):
    url = reverse(f"admin:accounts_{model}_changelist")
    return client.post(url, {"action": action, "_selected_action": [str(pk) for pk in pks]})


def test_caller_id_approval_in_the_admin_is_audited(client, staff):
    customer = CustomerFactory()
    caller_id = account_services.caller_id_request(customer=customer, number="0115550100")
    _action(client, "callerid", "approve", [caller_id.pk])
    assert CallerId.objects.get(pk=caller_id.pk).status == "approved"
    entry = AuditLogEntry.objects.get()
    assert (entry.actor, entry.action, entry.object_id) == (
        staff,
        AuditAction.CALLER_ID_APPROVED,
        str(caller_id.pk),
    )
    assert entry.customer == customer and entry.details == {"number": "+27115550100"}


def test_caller_id_rejection_in_the_admin_is_audited(client, staff):
    caller_id = account_services.caller_id_request(customer=CustomerFactory(), number="0115550101")
    _action(client, "callerid", "reject", [caller_id.pk])
    assert AuditLogEntry.objects.get().action == AuditAction.CALLER_ID_REJECTED


@pytest.mark.parametrize(
    "action, expected",
    [
        ("require_password_change", AuditAction.PASSWORD_CHANGE_REQUIRED),
        ("reset_password", AuditAction.PASSWORD_RESET),
        ("disable", AuditAction.ACCOUNT_DISABLED),
        ("enable", AuditAction.ACCOUNT_ENABLED),
    ],
)
def test_sip_account_actions_in_the_admin_are_audited(client, staff, action, expected):
    account = sip_account(CustomerFactory(), "1001").account
    _action(client, "sipaccount", action, [account.pk])
    entry = AuditLogEntry.objects.get()
    assert entry.action == expected and entry.object_type == "accounts.sipaccount"
    assert entry.object_id == str(account.pk) and entry.actor_name == "operator"
