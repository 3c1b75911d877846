"""Rating: price a call record once and write its charge to the ledger.

Rules (all arithmetic in `Decimal`, never float):

- The rate is the plan's row effective at the call's `invited_at`
  (`effective_from <= invited_at < effective_to`, an open `effective_to` never ends) whose
  prefix is the longest prefix of the normalised number (E.164 digits without '+').
  The plan is the customer's, or the default plan when the customer has none.
- Billed seconds: a call of 0 s bills 0 s; otherwise the first block (`first_increment`)
  is billed whole, and each started `next_increment` after it is billed whole (rounded up).
  60/60: 1 s -> 60, 60 s -> 60, 61 s -> 120.  30/6: 1 s -> 30, 30 s -> 30, 31 s -> 36.
  1/1: n s -> n.
- Cost = connect_fee + price_per_minute * billed_seconds / 60, quantised to 4 decimal places
  with ROUND_HALF_UP (the ledger's precision). The connect fee is due for every answered call,
  even one of 0 s.
- Free (rated at 0, no ledger entry): internal calls (the service's class "internal", no
  normalised number, or a number that is not E.164, i.e. an extension) and calls that were not
  answered (rejected, failed, cancelled) - `BILLABLE_DISPOSITIONS` is the rule.
- A record that cannot be rated (no plan, no matching rate, the plan's currency differs from
  the customer's) is kept unrated with `rating_error` set for staff; fixing the rates and
  retrying (`billing.services.call_records_rate`) rates it then.

Exactly once: the record's row is locked (`select_for_update`) and only rated while
`rated` is false; the charge's one-to-one `call_record` and its idempotency key
`call:<record_id>` are unique, so even a second writer that slipped past the lock (SQLite has no
row locks) cannot charge twice - its insert fails and its transaction rolls back.
"""

import logging
import re
from dataclasses import dataclass
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal

from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from billing.choices import CallDisposition, EntryKind
from billing.models import CallRecord, LedgerEntry, Rate, RatePlan

logger = logging.getLogger(__name__)

CENT4 = Decimal("0.0001")
SIXTY = Decimal(60)
E164_DIGITS = re.compile(r"^\+?[1-9][0-9]{6,14}$")
INTERNAL_CLASS = "internal"
BILLABLE_DISPOSITIONS = frozenset({CallDisposition.ANSWERED})


class Outcome:
    CHARGED = "charged"
    FREE = "free"
    ERROR = "error"
    ALREADY = "already_rated"
    MISSING = "missing"


@dataclass(frozen=True)
class RatingResult:
    record_id: int
    outcome: str
    cost: Decimal | None = None
    error: str = ""


def billed_seconds(duration: int, first_increment: int, next_increment: int) -> int:
    """Seconds billed for a call of `duration` seconds (see the module's rules)."""
    if duration <= 0:
        return 0
    if duration <= first_increment:
        return first_increment
    over = duration - first_increment
    steps = -(-over // next_increment)  # ceiling division on integers
    return first_increment + steps * next_increment


def call_cost(rate: Rate, duration: int) -> tuple[int, Decimal]:
    """(billed seconds, cost) of an answered call of `duration` seconds at `rate`."""
    billed = billed_seconds(duration, rate.first_increment, rate.next_increment)
    cost = Decimal(rate.connect_fee) + Decimal(rate.price_per_minute) * Decimal(billed) / SIXTY
    return billed, cost.quantize(CENT4, rounding=ROUND_HALF_UP)


def plan_for(customer) -> RatePlan | None:
    """The customer's rate plan, or the default plan."""
    if customer.rate_plan_id is not None:
        return customer.rate_plan
    return RatePlan.objects.filter(is_default=True).first()


def find_rate(*, plan: RatePlan, number: str, at: datetime) -> Rate | None:
    """The plan's rate for `number` (digits, a leading '+' is ignored) effective at `at`."""
    digits = number.lstrip("+")
    if not digits.isdigit():
        return None
    prefixes = [digits[:n] for n in range(1, min(len(digits), 15) + 1)]
    candidates = Rate.objects.filter(plan=plan, prefix__in=prefixes, effective_from__lte=at).filter(
        Q(effective_to__isnull=True) | Q(effective_to__gt=at)
    )
    return max(candidates, key=lambda r: (len(r.prefix), r.effective_from), default=None)


def is_internal(record: CallRecord) -> bool:
    if record.call_class == INTERNAL_CLASS:
        return True
    number = record.normalised_number.strip()
    return not number or not number.startswith("+") or not E164_DIGITS.match(number)


def rate_record(record_pk: int) -> RatingResult:
    """Rate one call record (by primary key) exactly once; see the module's rules."""
    from billing import services  # services import this module

    with transaction.atomic():
        record = (
            CallRecord.objects.select_for_update(of=("self",))
            .select_related("customer", "customer__rate_plan")
            .filter(pk=record_pk)
            .first()
        )
        if record is None:
            return RatingResult(record_pk, Outcome.MISSING)
        if record.rated:
            return RatingResult(record_pk, Outcome.ALREADY, cost=record.cost)
        customer = record.customer
        now = timezone.now()

        if is_internal(record) or record.disposition not in BILLABLE_DISPOSITIONS:
            _mark_rated(record, rate=None, billed=0, cost=Decimal(0), now=now)
            return RatingResult(record_pk, Outcome.FREE, cost=Decimal(0))

        rate, error = _rate_or_error(record)
        if error:
            CallRecord.objects.filter(pk=record.pk, rated=False).update(rating_error=error[:300])
            logger.warning("billing: call record %s not rated: %s", record.record_id, error)
            return RatingResult(record_pk, Outcome.ERROR, error=error)

        billed, cost = call_cost(rate, record.duration_seconds)
        if not _mark_rated(record, rate=rate, billed=billed, cost=cost, now=now):
            return RatingResult(record_pk, Outcome.ALREADY, cost=cost)
        if cost == 0:
            return RatingResult(record_pk, Outcome.FREE, cost=cost)
        try:
            with transaction.atomic():
                LedgerEntry.objects.create(
                    customer=customer,
                    kind=EntryKind.CALL_CHARGE,
                    amount=-cost,
                    currency=customer.currency,
                    idempotency_key=f"call:{record.record_id}",
                    reference=record.record_id[:100],
                    note=f"{rate.description} ({record.normalised_number}, {billed} s)"[:300],
                    call_record=record,
                )
        except IntegrityError:
            # Charged by a writer the lock did not hold back: undo this attempt entirely.
            charged = LedgerEntry.objects.filter(call_record_id=record.pk).exists()
            transaction.set_rollback(True)
        else:
            charged = None
        if charged is False:  # the key was taken by something else: never drop the record
            raise IntegrityError(f"idempotency key call:{record.record_id} is already used")
        if charged:
            return RatingResult(record_pk, Outcome.ALREADY, cost=cost)
        services.money_moved(customer=customer)
        return RatingResult(record_pk, Outcome.CHARGED, cost=cost)


def _rate_or_error(record: CallRecord) -> tuple[Rate | None, str]:
    customer = record.customer
    plan = plan_for(customer)
    if plan is None:
        return None, "No rate plan: the customer has none and there is no default plan."
    if plan.currency != customer.currency:
        return None, (
            f"Rate plan {plan.name!r} is in {plan.currency} but the customer pays in {customer.currency}."
        )
    rate = find_rate(plan=plan, number=record.normalised_number, at=record.invited_at)
    if rate is None:
        when = record.invited_at.isoformat()
        return None, f"No rate in plan {plan.name!r} for {record.normalised_number} at {when}."
    return rate, ""


def _mark_rated(record: CallRecord, *, rate, billed: int, cost: Decimal, now) -> bool:
    """Flip `rated` (only from false, so a concurrent rating cannot flip it again)."""
    changed = CallRecord.objects.filter(pk=record.pk, rated=False).update(
        rated=True, rate=rate, billed_seconds=billed, cost=cost, rated_at=now, rating_error=""
    )
    return changed == 1
