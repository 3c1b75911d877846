"""Writes for money. Ledger entries are only ever added: loads, reversals, adjustments, call
charges (written by `billing.rating`). Also: rating call records, importing rate tables, the
per-customer billing profile and its low-balance warning.

Each entry carries an idempotency key. Repeating a call with the same key and the same content
returns the first entry instead of adding another (a double submit or a retried API call loads
once); the same key with different content is refused.
"""

import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from functools import partial

from django.conf import settings
from django.core.mail import send_mail
from django.db import IntegrityError, OperationalError, connection, transaction
from django.db.models import Q
from django.utils import timezone

from billing import rates_csv, rating
from billing.choices import EntryKind
from billing.models import BillingProfile, CallRecord, LedgerEntry, Rate, RatePlan
from billing.selectors import customer_balance
from portal.errors import ApplicationError, Conflict, PermissionDenied
from sipsync import outbox
from sipsync.models import DocumentKind

logger = logging.getLogger(__name__)

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
        idempotency_key=_caller_key(idempotency_key),
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
        idempotency_key=_caller_key(idempotency_key),
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
            low_balance_check(customer=customer)
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


# Keys the system writes itself: call charges (`billing.rating`) and reversals.
RESERVED_KEY_PREFIXES = ("call:", "reversal:")


def _caller_key(key: str) -> str:
    """A key given by a person or an API client: it may not take a system key's form."""
    key = _validated_key(key)
    if key.lower().startswith(RESERVED_KEY_PREFIXES):
        raise ApplicationError(
            "Idempotency keys starting with 'call:' or 'reversal:' are reserved.",
            field_errors={"idempotency_key": ["Reserved prefix; use another key."]},
        )
    return key


def _require_staff(user) -> None:
    if not getattr(user, "is_staff", False):
        raise PermissionDenied("Only the provider's staff can change a customer's credit.")


# --- money moved: the node's copy and the low-balance warning --------------------------------


def money_moved(*, customer) -> None:
    """After any ledger entry, inside its transaction: push the balance, check the warning."""
    outbox.enqueue_customer(customer)
    low_balance_check(customer=customer)


def billing_profile_for(customer, *, lock: bool = False) -> BillingProfile:
    """The customer's billing profile, created (race-free) when missing; `lock` locks its row."""
    BillingProfile.objects.bulk_create([BillingProfile(customer=customer)], ignore_conflicts=True)
    profiles = BillingProfile.objects.filter(customer=customer)
    if lock:
        profiles = profiles.select_for_update()
    return profiles.get()


def billing_profile_update(
    *, customer, by, low_balance_threshold=None, daily_spend_cap=None
) -> BillingProfile:
    """Staff set the low-balance threshold and the daily spend cap (None: none)."""
    _require_staff(by)
    threshold = None if low_balance_threshold in (None, "") else parse_amount(low_balance_threshold)
    cap = None if daily_spend_cap in (None, "") else parse_amount(daily_spend_cap)
    if cap is not None and cap <= 0:
        raise ApplicationError(
            "A daily spend cap must be more than 0 (leave it empty for none).",
            field_errors={"daily_spend_cap": ["Must be more than 0."]},
        )
    with transaction.atomic():
        profile = billing_profile_for(customer, lock=True)
        profile.low_balance_threshold = threshold
        profile.daily_spend_cap = cap
        profile.save(update_fields=["low_balance_threshold", "daily_spend_cap", "updated_at"])
        outbox.enqueue_customer(customer)  # the cap is enforced by the SIP nodes
        low_balance_check(customer=customer)
    profile.refresh_from_db()
    return profile


def low_balance_check(*, customer) -> bool:
    """Warn once per crossing below the customer's threshold; re-arm when back at or above it.

    Runs in the caller's transaction with the profile row locked, so two concurrent charges
    that cross together send one email (sent on commit). Returns True when a warning was sent.
    """
    if not BillingProfile.objects.filter(customer=customer, low_balance_threshold__isnull=False).exists():
        if BillingProfile.objects.filter(customer=customer, low_balance_notified=True).exists():
            BillingProfile.objects.filter(customer=customer).update(low_balance_notified=False)
        return False
    with transaction.atomic():
        profile = billing_profile_for(customer, lock=True)
        threshold = profile.low_balance_threshold
        if threshold is None:
            return False
        balance = customer_balance(customer=customer)
        if balance >= threshold:
            if profile.low_balance_notified:
                BillingProfile.objects.filter(pk=profile.pk).update(low_balance_notified=False)
            return False
        if profile.low_balance_notified:
            return False
        BillingProfile.objects.filter(pk=profile.pk).update(
            low_balance_notified=True, low_balance_notified_at=timezone.now()
        )
        transaction.on_commit(partial(_send_low_balance_email, customer.pk, balance, threshold), robust=True)
        return True


def _send_low_balance_email(customer_id: int, balance: Decimal, threshold: Decimal) -> None:
    from accounts.models import Customer

    customer = Customer.objects.get(pk=customer_id)
    recipients = sorted(
        {
            m.user.email
            for m in customer.memberships.select_related("user")
            if m.user.email and m.user.is_active
        }
    )
    if not recipients:
        logger.info("billing: low balance of %s, nobody to email", customer.account_number)
        return
    send_mail(
        subject=f"Low balance on account {customer.account_number}",
        message=(
            f"Hello {customer.name},\n\n"
            f"The prepaid balance of account {customer.account_number} is {balance:.2f} "
            f"{customer.currency}, below your warning level of {threshold:.2f} {customer.currency}.\n"
            "Calls are refused once the credit runs out. Please load more credit.\n"
        ),
        from_email=settings.DEFAULT_FROM_EMAIL,
        recipient_list=recipients,
    )


# --- rating ---------------------------------------------------------------------------------


@dataclass
class RatingReport:
    charged: int = 0
    free: int = 0
    errors: int = 0
    already: int = 0
    failed: int = 0  # could not be attempted (database trouble); the periodic sweep retries


def call_records_rate(ids) -> RatingReport:
    """Rate the call records with these primary keys, each exactly once (see `billing.rating`).

    Each record is rated in its own transaction; a record that fails for a database reason is
    left unrated for `call_records_rate_pending` (the periodic sweep) and never stops the rest.
    """
    report = RatingReport()
    for pk in sorted({int(pk) for pk in ids}):
        try:
            result = _with_sqlite_retry(partial(rating.rate_record, pk))
        except Exception:
            logger.exception("billing: rating call record %s failed; the sweep retries it", pk)
            report.failed += 1
            continue
        if result.outcome == rating.Outcome.CHARGED:
            report.charged += 1
        elif result.outcome == rating.Outcome.FREE:
            report.free += 1
        elif result.outcome == rating.Outcome.ERROR:
            report.errors += 1
        else:
            report.already += 1
    return report


def call_records_rate_pending(*, limit: int = 1000, retry_errors: bool = False) -> RatingReport:
    """Rate unrated records (oldest first); flagged ones only with `retry_errors` (after a fix)."""
    pending = CallRecord.objects.filter(rated=False)
    if not retry_errors:
        pending = pending.filter(rating_error="")
    ids = list(pending.order_by("received_at", "pk").values_list("pk", flat=True)[:limit])
    return call_records_rate(ids)


def _with_sqlite_retry(func, attempts: int = 5):
    """SQLite refuses a second writer ("database is locked") instead of waiting on a row lock;
    the work is idempotent, so try again (PostgreSQL waits on the lock and needs no retry)."""
    for attempt in range(attempts):
        try:
            return func()
        except OperationalError as exc:
            if connection.vendor != "sqlite" or "locked" not in str(exc) or attempt == attempts - 1:
                raise
            time.sleep(0.05 * (attempt + 1))
    raise AssertionError("unreachable")


# --- rate plans and rate tables ---------------------------------------------------------------


@dataclass(frozen=True)
class RatesImportResult:
    plan: str
    effective_from: datetime
    created: int
    closed: int  # rows in effect before, now ending at `effective_from`
    superseded: int  # scheduled rows (starting at or after it) that never took effect: removed


def rate_plan_save(*, plan: RatePlan) -> RatePlan:
    """Create or change a plan (name, currency, default flag) and push what depends on it."""
    with transaction.atomic():
        if plan.is_default:
            RatePlan.objects.filter(is_default=True).exclude(pk=plan.pk).update(is_default=False)
        plan.save()
        outbox.enqueue_rate_plan(plan)
        # Customers' documents name their plan; those without one follow the default.
        from accounts.models import Customer

        customers = Customer.objects.filter(Q(rate_plan=plan) | Q(rate_plan__isnull=True))
        outbox.enqueue(DocumentKind.CUSTOMER, customers.values_list("pk", flat=True))
    return plan


def rates_import(*, plan: RatePlan, file, by, effective_from: datetime | None = None) -> RatesImportResult:
    """Replace the plan's rate table from `effective_from` (default: now) with the file's rows.

    All or nothing: a file with any bad row raises `rates_csv.RatesImportError` listing every bad
    row number and reason, and changes nothing. Effective dates - history is never rewritten:

    - every imported row is effective from `effective_from`, open-ended;
    - rows in effect at that moment get `effective_to = effective_from` (kept, so calls made
      before are rated and explained by the rates of their time);
    - rows scheduled to start at or after `effective_from` never took effect and are replaced
      (removed) by the new table;
    - `effective_from` may not lie in the past: rated calls keep the rates they were rated with.
    """
    _require_staff(by)
    now = timezone.now()
    if effective_from is not None and effective_from < now - timedelta(minutes=1):
        raise ApplicationError(
            "A rate table cannot start in the past.",
            field_errors={"effective_from": ["Use now or a future time."]},
        )
    start = max(effective_from or now, now)  # a form's "now" a few seconds old becomes now
    rows = rates_csv.parse(rates_csv.read_text(file))
    with transaction.atomic():
        plan = RatePlan.objects.select_for_update().get(pk=plan.pk)  # one import per plan at a time
        scheduled = Rate.objects.filter(plan=plan, effective_from__gte=start)
        superseded = scheduled.count()
        scheduled.delete()
        closed = (
            Rate.objects.filter(plan=plan, effective_from__lt=start)
            .filter(Q(effective_to__isnull=True) | Q(effective_to__gt=start))
            .update(effective_to=start)
        )
        Rate.objects.bulk_create(
            [
                Rate(
                    plan=plan,
                    prefix=row.prefix,
                    description=row.description,
                    price_per_minute=row.price_per_minute,
                    connect_fee=row.connect_fee,
                    first_increment=row.first_increment,
                    next_increment=row.next_increment,
                    effective_from=start,
                )
                for row in rows
            ]
        )
        outbox.enqueue_rate_plan(plan)
    logger.info("billing: %s imported %d rates into %s from %s", by, len(rows), plan.name, start.isoformat())
    return RatesImportResult(
        plan=plan.name, effective_from=start, created=len(rows), closed=closed, superseded=superseded
    )


def rates_export(*, plan: RatePlan, at: datetime | None = None) -> str:
    """The plan's rates in effect at `at` (default now) as CSV, in the format `rates_import` reads."""
    at = at or timezone.now()
    rates = (
        Rate.objects.filter(plan=plan, effective_from__lte=at)
        .filter(Q(effective_to__isnull=True) | Q(effective_to__gt=at))
        .order_by("prefix")
    )
    return rates_csv.write(rates)
