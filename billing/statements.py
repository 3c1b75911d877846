"""Statements: a customer's money over a period, from the ledger alone.

A period is [start, end) in ledger time (`LedgerEntry.created_at`): a call is on the statement of
the period in which it was rated and charged, which is the moment it moved money (a call at
23:59:59 charged after midnight is on the next day's statement). Because entries are never
changed and never back-dated, a statement of a closed period never changes.

    opening  = sum of entries before start
    closing  = sum of entries before end
    closing  = opening + loads + charges + adjustments + reversals   (each a signed total)

Charges are grouped by destination: the rate's description and prefix.
"""

import csv
import io
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import Decimal

from django.db.models import Count, Sum
from django.utils import timezone

from billing.choices import EntryKind
from billing.models import LedgerEntry

ZERO = Decimal("0.0000")
CENT4 = Decimal("0.0001")


@dataclass(frozen=True)
class DestinationCharges:
    description: str
    prefix: str
    calls: int
    billed_seconds: int
    amount: Decimal  # negative: money spent


@dataclass
class Statement:
    customer: object
    start: datetime
    end: datetime
    currency: str
    opening: Decimal = ZERO
    loads: list[LedgerEntry] = field(default_factory=list)
    charges: list[DestinationCharges] = field(default_factory=list)
    adjustments: list[LedgerEntry] = field(default_factory=list)  # adjustments and reversals
    closing: Decimal = ZERO

    @property
    def loads_total(self) -> Decimal:
        return sum((e.amount for e in self.loads), ZERO)

    @property
    def charges_total(self) -> Decimal:
        return sum((c.amount for c in self.charges), ZERO)

    @property
    def adjustments_total(self) -> Decimal:
        return sum((e.amount for e in self.adjustments), ZERO)

    @property
    def movements_total(self) -> Decimal:
        return self.loads_total + self.charges_total + self.adjustments_total

    @property
    def adds_up(self) -> bool:
        return self.opening + self.movements_total == self.closing


def month_period(month: date) -> tuple[datetime, datetime]:
    """[first midnight of the month, first midnight of the next) in the portal's time zone."""
    tz = timezone.get_current_timezone()
    first = month.replace(day=1)
    following = (first.replace(day=28) + timedelta(days=4)).replace(day=1)
    return (
        timezone.make_aware(datetime.combine(first, time.min), tz),
        timezone.make_aware(datetime.combine(following, time.min), tz),
    )


def statement_build(*, customer, start: datetime, end: datetime) -> Statement:
    """The customer's statement for [start, end)."""
    if end <= start:
        raise ValueError("a statement period must end after it starts")
    entries = LedgerEntry.objects.filter(customer=customer)
    statement = Statement(customer=customer, start=start, end=end, currency=customer.currency)
    statement.opening = _sum(entries.filter(created_at__lt=start))
    statement.closing = _sum(entries.filter(created_at__lt=end))
    period = entries.filter(created_at__gte=start, created_at__lt=end)
    statement.loads = list(
        period.filter(kind=EntryKind.CREDIT_LOAD).select_related("created_by").order_by("created_at", "id")
    )
    statement.adjustments = list(
        period.filter(kind__in=[EntryKind.ADJUSTMENT, EntryKind.REVERSAL])
        .select_related("reverses")
        .order_by("created_at", "id")
    )
    grouped = (
        period.filter(kind=EntryKind.CALL_CHARGE)
        .values("call_record__rate__description", "call_record__rate__prefix")
        .annotate(calls=Count("id"), seconds=Sum("call_record__billed_seconds"), amount=Sum("amount"))
        .order_by("call_record__rate__prefix", "call_record__rate__description")
    )
    statement.charges = [
        DestinationCharges(
            description=row["call_record__rate__description"] or "(unknown destination)",
            prefix=row["call_record__rate__prefix"] or "",
            calls=row["calls"],
            billed_seconds=row["seconds"] or 0,
            amount=Decimal(row["amount"]).quantize(CENT4),
        )
        for row in grouped
    ]
    return statement


def statement_csv(statement: Statement) -> str:
    """The statement as CSV: one line per movement group, with opening and closing lines."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    cur = statement.currency
    writer.writerow(
        ["section", "date", "description", "reference", "calls", "billed_seconds", "amount", "currency"]
    )
    writer.writerow(
        ["opening", statement.start.isoformat(), "Opening balance", "", "", "", statement.opening, cur]
    )
    for e in statement.loads:
        writer.writerow(
            [
                "load",
                e.created_at.isoformat(),
                csv_text(e.note) or "Credit load",
                csv_text(e.reference),
                "",
                "",
                e.amount,
                cur,
            ]
        )
    for c in statement.charges:
        label = f"{c.description} ({c.prefix})" if c.prefix else c.description
        writer.writerow(["calls", "", csv_text(label), "", c.calls, c.billed_seconds, c.amount, cur])
    for e in statement.adjustments:
        writer.writerow(
            [e.kind, e.created_at.isoformat(), csv_text(e.note), csv_text(e.reference), "", "", e.amount, cur]
        )
    writer.writerow(
        ["closing", statement.end.isoformat(), "Closing balance", "", "", "", statement.closing, cur]
    )
    return out.getvalue()


def csv_text(value: str) -> str:
    """A free-text cell that a spreadsheet will not run as a formula."""
    return f"'{value}" if value[:1] in ("=", "+", "-", "@", "\t", "\r") else value


def _sum(entries) -> Decimal:
    return (entries.aggregate(total=Sum("amount"))["total"] or ZERO).quantize(CENT4)
