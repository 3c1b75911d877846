"""Races: the same record rated or stored by several workers at once, loads and charges together.

On PostgreSQL row locks are real and every worker waits its turn; on SQLite writers are
serialised by the database lock (a loser may see "database is locked", which rating retries).
"""

import threading
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.db.models import Sum

from billing import selectors, services
from billing.models import CallRecord, LedgerEntry
from tests.billing.conftest import T0, make_record
from tests.factories import CustomerFactory, StaffFactory

pytestmark = pytest.mark.django_db(transaction=True)


def _race(workers, target_for):
    barrier = threading.Barrier(workers)
    results, errors = [], []

    def run(i):
        try:
            barrier.wait()
            results.append(target_for(i)())
        except Exception as exc:  # noqa: BLE001 - collected for the assertions
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(workers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results, errors


def _not_locked(errors):
    if connection.vendor == "sqlite":
        return [e for e in errors if "locked" not in str(e)]
    return errors


def test_one_record_rated_by_many_workers_is_charged_once(plan):
    customer = CustomerFactory()
    record = make_record(customer, "+27115550100", duration=61)
    results, errors = _race(6, lambda i: lambda: services.call_records_rate([record.pk]))
    assert not errors
    assert sum(r.charged for r in results) == 1
    assert sum(r.charged + r.already for r in results) == 6
    assert LedgerEntry.objects.filter(call_record=record).count() == 1
    assert selectors.customer_balance(customer=customer) == Decimal("-0.6000")


def test_one_record_delivered_twice_at_once_is_stored_and_charged_once(plan):
    from sipsync.services import store_call_records

    customer = CustomerFactory()
    at = T0 + timedelta(days=2)
    record = {
        "record_id": "node1-dup",
        "customer": customer.account_number,
        "account": "x@sip.test",
        "invited_at": at.isoformat(),
        "answered_at": (at + timedelta(seconds=1)).isoformat(),
        "ended_at": (at + timedelta(seconds=121)).isoformat(),
        "final_code": 200,
        "number": "+27215550100",
        "duration": 120,
    }
    _, errors = _race(4, lambda i: lambda: store_call_records([dict(record)]))
    assert not _not_locked(errors)
    services.call_records_rate_pending()  # what the sweep does for a store that lost a race
    assert CallRecord.objects.count() == 1
    assert LedgerEntry.objects.count() == 1
    assert selectors.customer_balance(customer=customer) == Decimal("-1.2000")  # 27: 0.60/min, 120 s


def test_concurrent_loads_and_charges_leave_the_balance_the_sum_of_entries(plan):
    customer, staff = CustomerFactory(), StaffFactory()
    services.billing_profile_update(customer=customer, by=staff, low_balance_threshold="5")
    records = [make_record(customer, "+27115550100", duration=60) for _ in range(6)]  # 0.30 each

    def work(i):
        if i % 2:
            return lambda: services.credit_load(
                customer=customer, amount="10", by=staff, idempotency_key=f"load-{i}"
            )
        return lambda: services.call_records_rate([r.pk for r in records])

    _, errors = _race(8, work)
    assert not _not_locked(errors)
    services.call_records_rate_pending()
    entries = LedgerEntry.objects.filter(customer=customer)
    total = entries.aggregate(t=Sum("amount"))["t"]
    assert selectors.customer_balance(customer=customer) == total
    loads = entries.filter(kind="credit_load").count()
    assert entries.filter(kind="call_charge").count() == 6
    assert total == Decimal("10") * loads - Decimal("1.8")
    if connection.vendor == "postgresql":
        assert loads == 4  # row locks: nobody was turned away
