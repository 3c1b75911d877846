from datetime import timedelta
from decimal import Decimal

import pytest

from billing import rating, selectors, services
from billing.choices import CallDisposition, EntryKind
from billing.models import CallRecord, LedgerEntry, RatePlan
from sipsync.models import DocumentKind, OutboxEntry
from tests.billing.conftest import T0, make_rate, make_record
from tests.factories import CustomerFactory

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("first", "nxt", "duration", "billed"),
    [
        (60, 60, 0, 0),
        (60, 60, 1, 60),
        (60, 60, 60, 60),
        (60, 60, 61, 120),
        (60, 60, 120, 120),
        (30, 6, 0, 0),
        (30, 6, 1, 30),
        (30, 6, 30, 30),
        (30, 6, 31, 36),
        (30, 6, 36, 36),
        (30, 6, 37, 42),
        (1, 1, 0, 0),
        (1, 1, 1, 1),
        (1, 1, 2, 2),
        (1, 1, 61, 61),
    ],
)
def test_billed_seconds_round_up_to_increments(first, nxt, duration, billed):
    assert rating.billed_seconds(duration, first, nxt) == billed


@pytest.mark.parametrize(
    ("first", "nxt", "duration", "cost"),
    [
        (60, 60, 0, "0.1000"),  # answered, 0 s: the connect fee only
        (60, 60, 1, "1.1000"),
        (60, 60, 60, "1.1000"),
        (60, 60, 61, "2.1000"),
        (30, 6, 1, "0.6000"),
        (30, 6, 30, "0.6000"),
        (30, 6, 31, "0.7000"),
        (1, 1, 1, "0.1167"),  # 0.1 + 1/60 = 0.116666.. -> half up at 4 dp
        (1, 1, 7, "0.2167"),
    ],
)
def test_cost_is_connect_fee_plus_price_per_billed_second(first, nxt, duration, cost):
    plan = RatePlan.objects.create(name="P", currency="ZAR")
    rate = make_rate(plan, "1", "1.00", fee="0.10", first=first, nxt=nxt)
    assert rating.call_cost(rate, duration)[1] == Decimal(cost)


def test_cost_rounds_half_up_at_four_places():
    plan = RatePlan.objects.create(name="P", currency="ZAR")
    rate = make_rate(plan, "1", "0.00003", first=1, nxt=1)  # 0.00003 * 10 / 60 = 0.000005
    assert rating.call_cost(rate, 10) == (10, Decimal("0.0000"))
    rate = make_rate(plan, "2", "0.0003", first=1, nxt=1)  # 0.0003 * 10 / 60 = 0.00005 -> 0.0001
    assert rating.call_cost(rate, 10) == (10, Decimal("0.0001"))


def test_longest_prefix_wins(plan):
    at = T0 + timedelta(days=1)
    assert rating.find_rate(plan=plan, number="+27115550100", at=at).prefix == "2711"
    assert rating.find_rate(plan=plan, number="+27215550100", at=at).prefix == "27"
    assert rating.find_rate(plan=plan, number="27821234567", at=at).prefix == "278"
    assert rating.find_rate(plan=plan, number="+33123456789", at=at) is None


def test_the_rate_effective_at_the_call_applies(plan):
    change = T0 + timedelta(days=10)
    old = plan.rates.get(prefix="2711")
    old.effective_to = change
    old.save()
    new = make_rate(plan, "2711", "0.50", start=change, description="Johannesburg (new)")
    assert rating.find_rate(plan=plan, number="+27115550100", at=change - timedelta(seconds=1)) == old
    assert rating.find_rate(plan=plan, number="+27115550100", at=change) == new
    assert rating.find_rate(plan=plan, number="+27115550100", at=T0 - timedelta(seconds=1)) is None
    # A longer prefix that has expired gives way to a shorter one still in effect.
    expired = make_rate(plan, "27115", "9.99", start=T0, end=T0 + timedelta(days=5))
    assert rating.find_rate(plan=plan, number="+27115550100", at=T0 + timedelta(days=4)) == expired
    assert rating.find_rate(plan=plan, number="+27115550100", at=T0 + timedelta(days=6)) == old


def test_a_call_is_charged_once_as_a_ledger_entry(plan, django_capture_on_commit_callbacks):
    customer = CustomerFactory()
    record = make_record(customer, "+27115550100", duration=61)  # 2711: 0.30/min, 60/60 -> 120 s
    report = services.call_records_rate([record.pk])
    assert (report.charged, report.errors) == (1, 0)
    record.refresh_from_db()
    assert (record.rated, record.cost, record.billed_seconds, record.rate.prefix) == (
        True,
        Decimal("0.6000"),
        120,
        "2711",
    )
    entry = LedgerEntry.objects.get()
    assert (entry.kind, entry.amount, entry.call_record, entry.idempotency_key) == (
        EntryKind.CALL_CHARGE,
        Decimal("-0.6000"),
        record,
        f"call:{record.record_id}",
    )
    assert OutboxEntry.objects.filter(kind=DocumentKind.CUSTOMER, object_id=customer.pk).exists()

    again = services.call_records_rate([record.pk, record.pk])
    assert (again.charged, again.already) == (0, 1)
    assert LedgerEntry.objects.count() == 1
    assert selectors.customer_balance(customer=customer) == Decimal("-0.6000")


@pytest.mark.parametrize(
    ("number", "call_class", "answered", "disposition"),
    [
        ("1002", "internal", True, None),  # an extension
        ("", "", True, None),  # no normalised number
        ("+27115550100", "internal", True, None),  # the service says internal
        ("+27115550100", "", False, CallDisposition.FAILED),
        ("+27115550100", "", False, CallDisposition.REJECTED),
        ("+27115550100", "", False, CallDisposition.CANCELLED),
    ],
)
def test_internal_and_unanswered_calls_are_free(plan, number, call_class, answered, disposition):
    customer = CustomerFactory()
    record = make_record(customer, number, call_class=call_class, answered=answered, disposition=disposition)
    report = services.call_records_rate([record.pk])
    assert report.free == 1
    record.refresh_from_db()
    assert (record.rated, record.cost, record.rating_error) == (True, Decimal("0"), "")
    assert not LedgerEntry.objects.exists()


def test_a_record_without_a_rate_is_kept_and_flagged_then_rated_after_a_fix(plan):
    customer = CustomerFactory()
    record = make_record(customer, "+33123456789")
    assert services.call_records_rate([record.pk]).errors == 1
    record.refresh_from_db()
    assert not record.rated and "No rate" in record.rating_error
    assert list(selectors.call_records_unrateable(tenant=_staff())) == [record]
    assert services.call_records_rate_pending().errors == 0  # flagged ones wait for staff
    make_rate(plan, "33", "2.00")
    assert services.call_records_rate_pending(retry_errors=True).charged == 1
    record.refresh_from_db()
    assert record.rated and record.rating_error == "" and record.cost == Decimal("4.0000")


def test_a_currency_mismatch_or_no_plan_is_flagged(plan):
    customer = CustomerFactory(currency="USD")
    record = make_record(customer)
    services.call_records_rate([record.pk])
    record.refresh_from_db()
    assert not record.rated and "USD" in record.rating_error
    plan.is_default = False
    plan.save()
    other = make_record(CustomerFactory())
    services.call_records_rate([other.pk])
    other.refresh_from_db()
    assert not other.rated and "No rate plan" in other.rating_error
    assert CallRecord.objects.filter(rated=False).count() == 2  # kept, never dropped


def test_the_customers_own_plan_comes_before_the_default(plan):
    own = RatePlan.objects.create(name="Gold", currency="ZAR")
    make_rate(own, "27", "0.10")
    customer = CustomerFactory(rate_plan=own)
    record = make_record(customer, "+27115550100", duration=60)
    services.call_records_rate([record.pk])
    record.refresh_from_db()
    assert record.rate.plan == own and record.cost == Decimal("0.1000")


def test_a_free_answered_call_writes_no_entry(plan):
    make_rate(plan, "800", "0", description="Toll free")
    record = make_record(CustomerFactory(), "+800123456789", duration=300)
    assert services.call_records_rate([record.pk]).free == 1
    record.refresh_from_db()
    assert record.rated and record.cost == 0 and not LedgerEntry.objects.exists()


def test_stored_records_from_the_sip_service_are_rated(plan):
    from sipsync.services import store_call_records

    customer = CustomerFactory()
    base = {
        "customer": customer.account_number,
        "account": "nobody@sip.test",
        "invited_at": (T0 + timedelta(days=3)).isoformat(),
        "answered_at": (T0 + timedelta(days=3, seconds=1)).isoformat(),
        "ended_at": (T0 + timedelta(days=3, seconds=62)).isoformat(),
        "final_code": 200,
        "number": "+27821234567",
        "dialled": "0821234567",
        "duration": 31,
    }
    assert store_call_records([{**base, "record_id": "n1-a"}, {**base, "record_id": "n1-a"}]) == 1
    assert store_call_records([{**base, "record_id": "n1-a"}]) == 0  # delivered again
    record = CallRecord.objects.get()
    assert record.rated and record.cost == Decimal("0.7200")  # 278: 30/6, 31 s -> 36 s at 1.20
    assert LedgerEntry.objects.get().amount == Decimal("-0.7200")


def _staff():
    from portal.tenancy import Tenant

    return Tenant.staff()


def test_the_periodic_task_rates_what_is_pending(plan):
    from django.conf import settings

    from billing import tasks

    record = make_record(CustomerFactory(), "+27115550100", duration=60)
    assert tasks.rate_pending.apply().result == {
        "charged": 1,
        "free": 0,
        "errors": 0,
        "already": 0,
        "failed": 0,
    }
    assert CallRecord.objects.get(pk=record.pk).rated
    assert settings.CELERY_BEAT_SCHEDULE["billing-rate-pending"]["task"] == tasks.rate_pending.name


def test_a_charge_the_lock_missed_is_not_written_twice(plan, monkeypatch):
    """SQLite has no row locks: a second writer may get past the `rated` check. Simulated here by
    a charge already in the ledger for an unrated record; the unique charge stops the second."""
    customer = CustomerFactory()
    record = make_record(customer, "+27115550100", duration=60)
    LedgerEntry.objects.create(
        customer=customer,
        kind=EntryKind.CALL_CHARGE,
        amount=Decimal("-0.3"),
        currency="ZAR",
        idempotency_key=f"call:{record.record_id}",
        call_record=record,
    )
    assert services.call_records_rate([record.pk]).already == 1
    assert LedgerEntry.objects.count() == 1
    record.refresh_from_db()
    assert not record.rated  # rolled back with the attempt; the row stays as the winner left it
