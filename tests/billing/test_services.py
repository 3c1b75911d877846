import threading
from decimal import Decimal

import pytest
from django.db import DatabaseError, IntegrityError, connection, transaction
from django.db.models import ProtectedError

from billing import selectors, services
from billing.choices import EntryKind
from billing.models import LedgerEntry
from portal.errors import ApplicationError, Conflict, PermissionDenied
from tests.factories import CustomerFactory, StaffFactory, UserFactory

pytestmark = pytest.mark.django_db


def test_credit_load_adds_to_the_balance():
    customer, staff = CustomerFactory(), StaffFactory()
    entry = services.credit_load(
        customer=customer, amount="150.25", by=staff, idempotency_key="k1", reference="INV-1", note="EFT"
    )
    assert entry.kind == EntryKind.CREDIT_LOAD and entry.amount == Decimal("150.25")
    assert entry.currency == customer.currency and entry.created_by == staff
    assert selectors.customer_balance(customer=customer) == Decimal("150.25")


def test_the_same_key_loads_once():
    customer, staff = CustomerFactory(), StaffFactory()
    first = services.credit_load(customer=customer, amount="50", by=staff, idempotency_key="retry-me")
    again = services.credit_load(customer=customer, amount="50.00", by=staff, idempotency_key="retry-me")
    assert again.pk == first.pk
    assert LedgerEntry.objects.count() == 1
    assert selectors.customer_balance(customer=customer) == Decimal("50")


def test_the_same_key_with_different_details_is_refused():
    customer, staff = CustomerFactory(), StaffFactory()
    services.credit_load(customer=customer, amount="50", by=staff, idempotency_key="k")
    with pytest.raises(Conflict) as caught:
        services.credit_load(customer=customer, amount="60", by=staff, idempotency_key="k")
    assert caught.value.code == "idempotency_conflict"
    with pytest.raises(Conflict):
        services.credit_load(customer=CustomerFactory(), amount="50", by=staff, idempotency_key="k")
    assert LedgerEntry.objects.count() == 1


def test_a_duplicate_idempotency_key_is_refused_by_the_database():
    customer, staff = CustomerFactory(), StaffFactory()
    entry = services.credit_load(customer=customer, amount="5", by=staff, idempotency_key="dup")
    with pytest.raises(IntegrityError), transaction.atomic():
        LedgerEntry.objects.create(
            customer=customer,
            kind=EntryKind.CREDIT_LOAD,
            amount=5,
            currency="ZAR",
            idempotency_key="dup",
            created_by=staff,
        )
    assert LedgerEntry.objects.get().pk == entry.pk


@pytest.mark.parametrize("amount", ["0", "-5", "abc", "1.23456", "NaN", "Infinity", "1e9", ""])
def test_bad_amounts_are_refused(amount):
    with pytest.raises(ApplicationError) as caught:
        services.credit_load(
            customer=CustomerFactory(), amount=amount, by=StaffFactory(), idempotency_key="x"
        )
    assert "amount" in caught.value.field_errors
    assert not LedgerEntry.objects.exists()


def test_only_staff_load_credit():
    with pytest.raises(PermissionDenied):
        services.credit_load(customer=CustomerFactory(), amount="5", by=UserFactory(), idempotency_key="x")


@pytest.mark.parametrize("key", ["", " ", "has space", "x" * 101])
def test_an_idempotency_key_is_required(key):
    with pytest.raises(ApplicationError):
        services.credit_load(customer=CustomerFactory(), amount="5", by=StaffFactory(), idempotency_key=key)


def test_ledger_entries_cannot_be_updated():
    entry = services.credit_load(
        customer=CustomerFactory(), amount="5", by=StaffFactory(), idempotency_key="k"
    )
    entry.amount = Decimal("500")
    with pytest.raises((IntegrityError, DatabaseError)), transaction.atomic():
        entry.save()
    with pytest.raises((IntegrityError, DatabaseError)), transaction.atomic():
        LedgerEntry.objects.filter(pk=entry.pk).update(amount=Decimal("500"))
    entry.refresh_from_db()
    assert entry.amount == Decimal("5")


def test_ledger_entries_cannot_be_deleted():
    customer = CustomerFactory()
    entry = services.credit_load(customer=customer, amount="5", by=StaffFactory(), idempotency_key="k")
    if connection.vendor == "postgresql":
        # A trigger refuses DELETE on the ledger table itself.
        with pytest.raises(DatabaseError), transaction.atomic():
            LedgerEntry.objects.filter(pk=entry.pk).delete()
    # Everywhere, the customer (and so the entry's history) cannot be deleted from under it.
    with pytest.raises(ProtectedError), transaction.atomic():
        customer.delete()
    assert LedgerEntry.objects.filter(pk=entry.pk).exists()


def test_reversal_is_a_new_entry_and_happens_once():
    customer, staff = CustomerFactory(), StaffFactory()
    load = services.credit_load(customer=customer, amount="40", by=staff, idempotency_key="k")
    reversal = services.ledger_reverse(entry=load, by=staff, note="paid twice")
    assert reversal.amount == Decimal("-40") and reversal.reverses == load
    assert services.ledger_reverse(entry=load, by=staff).pk == reversal.pk
    with pytest.raises(ApplicationError):
        services.ledger_reverse(entry=reversal, by=staff)
    assert selectors.customer_balance(customer=customer) == Decimal("0")
    assert LedgerEntry.objects.count() == 2


def test_adjustment_needs_a_note():
    customer, staff = CustomerFactory(), StaffFactory()
    with pytest.raises(ApplicationError, match="why"):
        services.ledger_adjust(customer=customer, amount="-3", by=staff, idempotency_key="a", note=" ")
    services.ledger_adjust(
        customer=customer, amount="-3", by=staff, idempotency_key="a", note="goodwill reversal"
    )
    assert selectors.customer_balance(customer=customer) == Decimal("-3")


@pytest.mark.django_db(transaction=True)
def test_concurrent_retries_of_one_load_write_one_entry():
    """Two requests with one key race; the unique key lets one write and the other read it back."""
    customer, staff = CustomerFactory(), StaffFactory()
    results, errors = [], []
    barrier = threading.Barrier(4)

    def load():
        try:
            barrier.wait()
            results.append(
                services.credit_load(customer=customer, amount="25", by=staff, idempotency_key="race").pk
            )
        except Exception as exc:  # noqa: BLE001 - collected for the assertion below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=load) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if connection.vendor == "sqlite":
        # SQLite serialises writers; a loser may see "database is locked" rather than the row.
        errors = [e for e in errors if "locked" not in str(e)]
    assert not errors
    assert len(set(results)) == 1
    assert LedgerEntry.objects.count() == 1
    assert selectors.customer_balance(customer=customer) == Decimal("25")
