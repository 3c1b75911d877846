"""Writes to the ledger. Entries are only ever added: loads, reversals, adjustments.

Each entry carries an idempotency key. Repeating a call with the same key and the same content
returns the first entry instead of adding another (a double submit or a retried API call loads
once); the same key with different content is refused.
"""

from decimal import Decimal, InvalidOperation

from django.db import IntegrityError, transaction

from billing.choices import EntryKind
from billing.models import LedgerEntry
from portal.errors import ApplicationError, Conflict, PermissionDenied
from sipsync import outbox

MAX_AMOUNT = Decimal("1000000")


def credit_load(
    *, customer, amount, by, idempotency_key: str, reference: str = "", note: str = ""
) -> LedgerEntry:
    """Staff load prepaid credit onto a customer's account."""
    _require_staff(by)
    value = parse_amount(amount)
    if value <= 0:
        raise ApplicationError(
            "A credit load must be a positive amount.", field_errors={"amount": ["Must be more than 0."]}
        )
    return _append(
        customer=customer,
        kind=EntryKind.CREDIT_LOAD,
        amount=value,
        by=by,
        idempotency_key=idempotency_key,
        reference=reference,
        note=note,
    )


def ledger_adjust(*, customer, amount, by, idempotency_key: str, note: str) -> LedgerEntry:
    """A staff correction in either direction; the note explaining it is required."""
    _require_staff(by)
    value = parse_amount(amount)
    if value == 0:
        raise ApplicationError("An adjustment cannot be zero.", field_errors={"amount": ["Must not be 0."]})
    if not note.strip():
        raise ApplicationError(
            "Say why the adjustment is made.", field_errors={"note": ["This field is required."]}
        )
    return _append(
        customer=customer,
        kind=EntryKind.ADJUSTMENT,
        amount=value,
        by=by,
        idempotency_key=idempotency_key,
        note=note,
    )


def ledger_reverse(*, entry: LedgerEntry, by, note: str = "") -> LedgerEntry:
    """Undo `entry` with an opposite entry; reversing the same entry twice returns the first reversal."""
    _require_staff(by)
    if entry.kind == EntryKind.REVERSAL:
        raise ApplicationError("A reversal cannot itself be reversed; add an adjustment instead.")
    return _append(
        customer=entry.customer,
        kind=EntryKind.REVERSAL,
        amount=-entry.amount,
        by=by,
        idempotency_key=f"reversal:{entry.pk}",
        reference=entry.reference,
        note=note or f"Reversal of entry {entry.pk}",
        reverses=entry,
    )


def parse_amount(raw) -> Decimal:
    """A money amount from user input: a Decimal with at most 4 decimal places."""
    if isinstance(raw, float):
        raw = repr(raw)
    try:
        value = Decimal(str(raw).strip())
    except (InvalidOperation, ValueError):
        raise ApplicationError(
            f"{raw!r} is not an amount.", field_errors={"amount": ["Enter a number, e.g. 150.00."]}
        ) from None
    if not value.is_finite():
        raise ApplicationError(
            "The amount must be a finite number.", field_errors={"amount": ["Enter a number."]}
        )
    if value.as_tuple().exponent < -4:
        raise ApplicationError(
            "Amounts have at most 4 decimal places.",
            field_errors={"amount": ["Use at most 4 decimal places."]},
        )
    if abs(value) >= MAX_AMOUNT:
        raise ApplicationError(
            f"The amount must be smaller than {MAX_AMOUNT}.", field_errors={"amount": ["Amount too large."]}
        )
    return value


def _append(
    *, customer, kind, amount: Decimal, by, idempotency_key: str, reference="", note="", reverses=None
):
    key = _validated_key(idempotency_key)
    fields = {
        "customer": customer,
        "kind": kind,
        "amount": amount,
        "currency": customer.currency,
        "reference": reference.strip()[:100],
        "note": note.strip()[:300],
        "created_by": by,
        "reverses": reverses,
    }
    existing = LedgerEntry.objects.filter(idempotency_key=key).first()
    if existing is not None:
        return _replayed(existing, fields)
    try:
        with transaction.atomic():
            entry = LedgerEntry.objects.create(idempotency_key=key, **fields)
            outbox.enqueue_customer(customer)  # the node's copy of the balance
            return entry
    except IntegrityError:
        existing = LedgerEntry.objects.filter(idempotency_key=key).first()
        if existing is None:
            raise
        return _replayed(existing, fields)


def _replayed(existing: LedgerEntry, fields: dict) -> LedgerEntry:
    same = (
        existing.customer_id == fields["customer"].pk
        and existing.kind == fields["kind"]
        and existing.amount == fields["amount"]
        and existing.reference == fields["reference"]
    )
    if not same:
        raise Conflict(
            "This idempotency key was already used for a different entry.",
            field_errors={"idempotency_key": ["Already used with different details."]},
            code="idempotency_conflict",
        )
    return existing


def _validated_key(key: str) -> str:
    key = (key or "").strip()
    if not 1 <= len(key) <= 100 or any(c.isspace() for c in key):
        raise ApplicationError(
            "An idempotency key of 1 to 100 characters without spaces is required.",
            field_errors={"idempotency_key": ["Required, 1 to 100 characters, no spaces."]},
        )
    return key


def _require_staff(user) -> None:
    if not getattr(user, "is_staff", False):
        raise PermissionDenied("Only the provider's staff can change a customer's credit.")
