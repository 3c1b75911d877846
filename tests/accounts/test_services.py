import pytest
from django.db import connection

from accounts import services
from accounts.choices import CallerIdStatus
from accounts.models import SipAccount
from portal.errors import ApplicationError, Conflict, PermissionDenied
from sipsync.sip.digest import compute_ha1
from tests.factories import CustomerFactory, StaffFactory, UserFactory, sip_account

pytestmark = pytest.mark.django_db


def test_create_stores_only_ha1_digests_and_returns_the_password_once():
    customer = CustomerFactory()
    issued = sip_account(customer, "1001", label="Reception")
    account = SipAccount.objects.get(pk=issued.account.pk)
    assert account.ha1_md5 == compute_ha1(account.username, "sip.test", issued.password, "MD5")
    assert account.ha1_sha256 == compute_ha1(account.username, "sip.test", issued.password, "SHA-256")
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM accounts_sipaccount WHERE id = %s", [account.pk])
        row = cursor.fetchone()
    assert all(issued.password not in str(value) for value in row)
    assert account.realm == "sip.test"
    assert [c.codec for c in account.codec_assignments.order_by("position")] == ["PCMU", "G729"]


def test_generated_passwords_are_strong_and_differ():
    customer = CustomerFactory()
    first = sip_account(customer, "1001").password
    second = sip_account(customer, "1002").password
    assert first != second
    assert len(first) >= 20 and not any(c.isspace() for c in first)


@pytest.mark.parametrize("password", ["with a space 1A", " Leading1Abcdefg", "Trailing1Abcdef\t"])
def test_password_with_whitespace_is_refused_with_the_guides_reason(password):
    with pytest.raises(ApplicationError) as caught:
        sip_account(CustomerFactory(), "1001", password=password)
    assert "space" in caught.value.message
    assert "403" in caught.value.message
    assert "password" in caught.value.field_errors
    assert not SipAccount.objects.exists()


@pytest.mark.parametrize(
    "password, fragment",
    [("Short1a", "at least 12"), ("alllowercase123", "capital"), ("Abcdefghijk1é", "may only use")],
)
def test_weak_passwords_are_refused(password, fragment):
    with pytest.raises(ApplicationError) as caught:
        sip_account(CustomerFactory(), "1001", password=password)
    assert any(fragment in problem for problem in caught.value.field_errors["password"])


def test_username_with_space_is_refused():
    with pytest.raises(ApplicationError, match="space"):
        sip_account(CustomerFactory(), "1001", username="front desk")


def test_duplicate_extension_and_username_are_conflicts():
    customer = CustomerFactory()
    sip_account(customer, "1001", username="frontdesk")
    with pytest.raises(Conflict) as caught:
        sip_account(customer, "1001", username="other")
    assert "extension" in caught.value.field_errors
    with pytest.raises(Conflict) as caught:
        sip_account(CustomerFactory(), "1001", username="frontdesk")
    assert "username" in caught.value.field_errors


def test_suspended_customer_cannot_add_accounts():
    customer = CustomerFactory(status="suspended")
    with pytest.raises(PermissionDenied):
        sip_account(customer, "1001")


def test_new_password_replaces_digests_and_clears_the_change_flag():
    issued = sip_account(CustomerFactory(), "1001")
    account = services.sip_account_require_password_change(account=issued.account)
    assert account.password_change_required
    renewed = services.sip_account_set_password(account=account, password="NewPassw0rd-2026")
    account.refresh_from_db()
    assert not account.password_change_required
    assert account.ha1_md5 == compute_ha1(account.username, account.realm, "NewPassw0rd-2026")
    assert renewed.password == "NewPassw0rd-2026"


def test_codecs_are_an_ordered_list_from_the_catalogue():
    account = sip_account(CustomerFactory(), "1001").account
    assert services.sip_account_set_codecs(account=account, codecs=["g722", "PCMU"]) == ["G722", "PCMU"]
    assert list(account.codec_assignments.values_list("codec", flat=True)) == ["G722", "PCMU"]
    for bad in (["PCMU", "PCMU"], ["SPEEX"], []):
        with pytest.raises(ApplicationError):
            services.sip_account_set_codecs(account=account, codecs=bad)
    assert list(account.codec_assignments.values_list("codec", flat=True)) == ["G722", "PCMU"]


def test_voicemail_counts_are_validated_and_an_unchanged_write_pushes_nothing():
    from sipsync.models import DocumentVersion

    account = sip_account(CustomerFactory(), "1001").account
    version = DocumentVersion.objects.filter(object_id=account.pk, kind="account").values_list("version")
    created = version.get()
    services.sip_account_set_voicemail(account=account, new=2, old=5)
    account.refresh_from_db()
    assert (account.voicemail_new, account.voicemail_old) == (2, 5)
    changed = version.get()
    assert changed > created

    services.sip_account_set_voicemail(account=account, new=2, old=5)
    assert version.get() == changed
    for new, old in ((-1, 0), (0, 10_000), ("3", 0), (True, 0), (None, 1), (1.5, 0)):
        with pytest.raises(ApplicationError):
            services.sip_account_set_voicemail(account=account, new=new, old=old)
    account.refresh_from_db()
    assert (account.voicemail_new, account.voicemail_old) == (2, 5)


def test_update_validates_every_field_and_changes_nothing_on_error():
    customer = CustomerFactory()
    account = sip_account(customer, "1001").account
    sip_account(customer, "1002")
    services.sip_account_update(
        account=account,
        data={
            "max_concurrent_calls": 4,
            "call_classes": ["internal", "international"],
            "forward_all_to": "1002",
        },
    )
    account.refresh_from_db()
    assert account.max_concurrent_calls == 4
    assert account.call_classes == ["internal", "international"]
    assert account.forward_all_to == "1002"
    services.sip_account_update(account=account, data={"forward_all_to": "082 555 0100"})
    account.refresh_from_db()
    assert account.forward_all_to == "+27825550100"
    for bad in (
        {"max_concurrent_calls": 0},
        {"max_concurrent_calls": "3"},
        {"call_classes": ["satellite"]},
        {"forward_all_to": "not a number"},
        {"forward_all_to": "1001"},
        {"enabled": "yes"},
        {"ha1_md5": "0" * 32},
    ):
        with pytest.raises(ApplicationError):
            services.sip_account_update(account=account, data=bad)
    account.refresh_from_db()
    assert account.max_concurrent_calls == 4 and account.enabled


def test_caller_id_is_normalised_and_pending_until_staff_approve():
    customer = CustomerFactory()
    caller_id = services.caller_id_request(customer=customer, number="011 555 0100")
    assert caller_id.number == "+27115550100"
    assert caller_id.status == CallerIdStatus.PENDING
    with pytest.raises(Conflict):
        services.caller_id_request(customer=customer, number="+27115550100")
    with pytest.raises(ApplicationError):
        services.caller_id_request(customer=customer, number="12")
    with pytest.raises(PermissionDenied):
        services.caller_id_approve(caller_id=caller_id, by=UserFactory())
    staff = StaffFactory()
    services.caller_id_approve(caller_id=caller_id, by=staff)
    caller_id.refresh_from_db()
    assert caller_id.status == CallerIdStatus.APPROVED
    assert caller_id.decided_by == staff and caller_id.decided_at is not None


def test_default_caller_id_must_be_approved_and_own():
    customer = CustomerFactory()
    account = sip_account(customer, "1001").account
    pending = services.caller_id_request(customer=customer, number="0115550100")
    with pytest.raises(ApplicationError, match="503"):
        services.sip_account_update(account=account, data={"default_caller_id": pending.pk})
    foreign = services.caller_id_request(customer=CustomerFactory(), number="0115550199")
    services.caller_id_approve(caller_id=foreign, by=StaffFactory())
    with pytest.raises(ApplicationError, match="No such"):
        services.sip_account_update(account=account, data={"default_caller_id": foreign.pk})
    staff = StaffFactory()
    services.caller_id_approve(caller_id=pending, by=staff)
    services.sip_account_update(account=account, data={"default_caller_id": pending.pk})
    services.caller_id_reject(caller_id=pending, by=staff, note="number ported away")
    account.refresh_from_db()
    assert account.default_caller_id is None


def test_customer_create_validates_and_allocates_an_account_number():
    customer = services.customer_create(name="  Acme ")
    assert customer.name == "Acme" and customer.account_number.startswith("C")
    with pytest.raises(ApplicationError, match="Country code"):
        services.customer_create(name="X", country_code="0")
    with pytest.raises(ApplicationError, match="Currency"):
        services.customer_create(name="X", currency="rands")
    with pytest.raises(Conflict):
        services.customer_create(name="Y", account_number=customer.account_number)
