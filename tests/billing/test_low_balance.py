from decimal import Decimal

import pytest

from billing import selectors, services
from billing.models import BillingProfile
from portal.errors import ApplicationError, PermissionDenied
from sipsync.models import DocumentKind, OutboxEntry
from tests.billing.conftest import make_record
from tests.factories import CustomerFactory, StaffFactory, UserFactory, customer_user

pytestmark = pytest.mark.django_db


@pytest.fixture
def setup():
    customer, staff = CustomerFactory(), StaffFactory()
    user = customer_user(customer)
    user.email = "owner@example.com"
    user.save()
    services.billing_profile_update(customer=customer, by=staff, low_balance_threshold="10")
    return customer, staff


def test_the_warning_is_sent_once_per_crossing(setup, plan, mailoutbox, django_capture_on_commit_callbacks):
    customer, staff = setup
    mailoutbox.clear()  # a new customer starts below any threshold: that first warning is not this test's
    services.billing_profile_update(customer=customer, by=staff, low_balance_threshold=None)
    with django_capture_on_commit_callbacks(execute=True):
        services.billing_profile_update(customer=customer, by=staff, low_balance_threshold="10")
        mailoutbox.clear()
        services.credit_load(customer=customer, amount="12", by=staff, idempotency_key="l1")
    mailoutbox.clear()
    assert not selectors.low_balance_warning(customer=customer)

    # A charge takes it below 10: one email, the banner flag set.
    with django_capture_on_commit_callbacks(execute=True):
        services.call_records_rate([make_record(customer, "+27215550100", duration=300).pk])  # -3.00
    assert len(mailoutbox) == 1
    assert mailoutbox[0].to == ["owner@example.com"]
    assert "9.00 ZAR" in mailoutbox[0].body and customer.account_number in mailoutbox[0].subject
    assert selectors.low_balance_warning(customer=customer)

    # Still below: more charges and an adjustment send nothing more.
    with django_capture_on_commit_callbacks(execute=True):
        services.call_records_rate([make_record(customer, "+27215550100", duration=60).pk])
        services.ledger_adjust(customer=customer, amount="-1", by=staff, idempotency_key="a", note="fee")
    assert len(mailoutbox) == 1

    # Back above re-arms; the next crossing warns again.
    with django_capture_on_commit_callbacks(execute=True):
        services.credit_load(customer=customer, amount="20", by=staff, idempotency_key="l2")
    assert not selectors.low_balance_warning(customer=customer) and len(mailoutbox) == 1
    with django_capture_on_commit_callbacks(execute=True):
        services.ledger_adjust(customer=customer, amount="-20", by=staff, idempotency_key="a2", note="x")
    assert len(mailoutbox) == 2 and selectors.low_balance_warning(customer=customer)


def test_no_threshold_no_warning(plan, mailoutbox, django_capture_on_commit_callbacks):
    customer, staff = CustomerFactory(), StaffFactory()
    with django_capture_on_commit_callbacks(execute=True):
        services.credit_load(customer=customer, amount="1", by=staff, idempotency_key="l")
        services.call_records_rate([make_record(customer, "+27215550100", duration=600).pk])
    assert mailoutbox == [] and not selectors.low_balance_warning(customer=customer)


def test_profile_settings_are_staff_only_validated_and_pushed(setup):
    customer, staff = setup
    with pytest.raises(PermissionDenied):
        services.billing_profile_update(customer=customer, by=UserFactory(), daily_spend_cap="5")
    with pytest.raises(ApplicationError):
        services.billing_profile_update(customer=customer, by=staff, daily_spend_cap="0")
    OutboxEntry.objects.all().delete()
    profile = services.billing_profile_update(customer=customer, by=staff, daily_spend_cap="25.5")
    assert profile.daily_spend_cap == Decimal("25.5") and profile.low_balance_threshold is None
    assert OutboxEntry.objects.filter(kind=DocumentKind.CUSTOMER, object_id=customer.pk).exists()
    assert BillingProfile.objects.count() == 1


def test_available_credit_and_the_document_fields(setup, plan):
    customer, staff = setup
    services.credit_load(customer=customer, amount="50", by=staff, idempotency_key="l")
    services.call_records_rate([make_record(customer, "+27215550100", duration=120).pk])  # -1.20
    assert selectors.available_credit(customer=customer) == Decimal("48.8")
    assert selectors.available_credit(customer=customer, reserved=Decimal("3.5")) == Decimal("45.3")
    fields = selectors.customer_document_billing(customer=customer)
    assert fields["daily_spend_cap"] is None and fields["spent_today"] == "1.2000"
    services.billing_profile_update(customer=customer, by=staff, daily_spend_cap="30")
    assert selectors.customer_document_billing(customer=customer)["daily_spend_cap"] == "30.0000"
    charge = customer.ledger_entries.get(kind="call_charge")
    services.ledger_reverse(entry=charge, by=staff)
    assert selectors.customer_document_billing(customer=customer)["spent_today"] == "0.0000"


def test_a_retried_load_moves_money_and_pushes_once(django_capture_on_commit_callbacks):
    customer, staff = CustomerFactory(), StaffFactory()
    first = services.credit_load(customer=customer, amount="5", by=staff, idempotency_key="once")
    assert OutboxEntry.objects.filter(kind=DocumentKind.CUSTOMER, object_id=customer.pk).exists()
    OutboxEntry.objects.all().delete()
    again = services.credit_load(customer=customer, amount="5", by=staff, idempotency_key="once")
    assert again.pk == first.pk and selectors.customer_balance(customer=customer) == Decimal("5")
    assert not OutboxEntry.objects.exists()  # nothing moved, nothing to push


def test_the_admin_lists_unrateable_records_and_retries_them(client, plan):
    from billing.models import CallRecord
    from tests.billing.conftest import make_rate

    client.force_login(StaffFactory(is_superuser=True))
    customer = CustomerFactory()
    record = make_record(customer, "+33123456789")
    services.call_records_rate([record.pk])
    page = client.get("/admin/billing/callrecord/?rating=error")
    assert page.status_code == 200 and record.record_id.encode() in page.content
    make_rate(plan, "33", "1")
    response = client.post(
        "/admin/billing/callrecord/", {"action": "retry_rating", "_selected_action": [record.pk]}
    )
    assert response.status_code == 302
    assert CallRecord.objects.get(pk=record.pk).rated
    assert client.get(f"/admin/billing/callrecord/{record.pk}/change/").status_code == 200
    assert client.get("/admin/billing/billingprofile/add/").status_code == 200


def test_system_key_prefixes_are_reserved_and_a_taken_key_never_drops_a_record(plan):
    customer, staff = CustomerFactory(), StaffFactory()
    record = make_record(customer, "+27215550100", record_id="node1-taken")
    for key in ("call:node1-taken", "reversal:1"):
        with pytest.raises(ApplicationError, match="reserved"):
            services.credit_load(customer=customer, amount="5", by=staff, idempotency_key=key)
    # Written around the services: rating refuses to pretend the call was charged.
    from billing.models import LedgerEntry

    LedgerEntry.objects.create(
        customer=customer, kind="adjustment", amount=1, currency="ZAR", idempotency_key="call:node1-taken"
    )
    assert services.call_records_rate([record.pk]).failed == 1
    record.refresh_from_db()
    assert not record.rated
