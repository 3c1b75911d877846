"""Reads for money. A balance is always the sum of the ledger, never a stored figure."""

from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from decimal import Decimal

from django.db.models import Q, QuerySet, Sum
from django.db.models.functions import TruncDate
from django.utils import timezone

from billing.choices import CallDisposition, EntryKind
from billing.models import BillingProfile, CallRecord, LedgerEntry
from portal.tenancy import Tenant, scope

CENT4 = Decimal("0.0001")


def customer_balance(*, customer) -> Decimal:
    total = LedgerEntry.objects.filter(customer=customer).aggregate(total=Sum("amount"))["total"]
    return (total or Decimal("0")).quantize(Decimal("0.0001"))


def ledger_list(*, tenant: Tenant) -> QuerySet[LedgerEntry]:
    return scope(LedgerEntry.objects.all(), tenant).select_related("customer", "created_by")


def available_credit(*, customer, reserved: Decimal = Decimal(0), balance: Decimal | None = None) -> Decimal:
    """What the customer may still spend: the balance less the credit that calls in progress hold
    (`reserved`, as the SIP service reports it: `sipsync.selectors.credit_in_use`). `balance` may
    be given when the caller has just read it."""
    if balance is None:
        balance = customer_balance(customer=customer)
    return (balance - Decimal(reserved)).quantize(CENT4)


def spent_on_calls(*, customer, since: datetime, until: datetime | None = None) -> Decimal:
    """Call charges (a positive figure) written in [since, until), net of their reversals."""
    entries = LedgerEntry.objects.filter(customer=customer, created_at__gte=since)
    if until is not None:
        entries = entries.filter(created_at__lt=until)
    charges = entries.filter(kind=EntryKind.CALL_CHARGE).aggregate(t=Sum("amount"))["t"] or Decimal(0)
    undone = entries.filter(kind=EntryKind.REVERSAL, reverses__kind=EntryKind.CALL_CHARGE).aggregate(
        t=Sum("amount")
    )["t"] or Decimal(0)
    return (-(charges + undone)).quantize(CENT4)


def day_start(at: datetime | None = None) -> datetime:
    """The start of the (portal's TIME_ZONE) day of `at`: the daily spend cap's window."""
    local = timezone.localtime(at or timezone.now())
    return timezone.make_aware(datetime.combine(local.date(), time.min), local.tzinfo)


def billing_profile(*, customer) -> BillingProfile | None:
    return BillingProfile.objects.filter(customer=customer).first()


def low_balance_warning(*, customer) -> bool:
    """Whether the portal shows the low-balance banner (set once per crossing, see services)."""
    return BillingProfile.objects.filter(customer=customer, low_balance_notified=True).exists()


def customer_document_billing(*, customer, at: datetime | None = None) -> dict:
    """Billing fields for the customer's provisioning document (for `sipsync.documents`):
    the daily spend cap, what was spent today and when "today" ends, as strings/ISO times.

    The SIP service refuses new chargeable calls (503) while spent_today + its own unsettled
    spend reaches the cap; no cap: `daily_spend_cap` is None.
    """
    start = day_start(at)
    profile = billing_profile(customer=customer)
    cap = profile.daily_spend_cap if profile is not None else None
    return {
        "daily_spend_cap": f"{cap.quantize(CENT4)}" if cap is not None else None,
        "spent_today": f"{spent_on_calls(customer=customer, since=start)}",
        "spend_day_ends": (start + timedelta(days=1)).isoformat(),
    }


def call_records_unrateable(*, tenant: Tenant) -> QuerySet[CallRecord]:
    """Records kept unrated with a `rating_error`, for staff to fix the rates and retry."""
    return (
        scope(CallRecord.objects.filter(rated=False).exclude(rating_error=""), tenant)
        .select_related("customer")
        .order_by("invited_at")
    )


# --- the customer's money pages ------------------------------------------------------------

ANSWERED = "answered"
NOT_ANSWERED = "not_answered"


def call_record_list(
    *,
    tenant: Tenant,
    account_id: int | None = None,
    since: date | None = None,
    until: date | None = None,
    outcome: str = "",
    number: str = "",
) -> QuerySet[CallRecord]:
    """Call records the tenant may see, newest first, narrowed by the optional filters.

    `since`/`until` are days in the portal's time zone, both included; `outcome` is "answered",
    "not_answered" or one disposition; `number` matches part of the dialled number.
    """
    calls = scope(CallRecord.objects.all(), tenant).select_related("sip_account", "rate")
    if account_id is not None:
        calls = calls.filter(sip_account_id=account_id)
    if since is not None:
        calls = calls.filter(invited_at__gte=_midnight(since))
    if until is not None:
        calls = calls.filter(invited_at__lt=_midnight(until + timedelta(days=1)))
    if outcome == ANSWERED:
        calls = calls.filter(disposition=CallDisposition.ANSWERED)
    elif outcome == NOT_ANSWERED:
        calls = calls.exclude(disposition=CallDisposition.ANSWERED)
    elif outcome:
        calls = calls.filter(disposition=outcome)
    number = "".join(ch for ch in number if ch.isdigit() or ch in "+*#")
    if number:
        digits = number.lstrip("+")
        calls = calls.filter(Q(dialled_number__contains=number) | Q(normalised_number__contains=digits))
    return calls.order_by("-invited_at", "-id")


def ledger_page_balances(*, customer, entries: list[LedgerEntry]) -> list[tuple[LedgerEntry, Decimal]]:
    """Each entry of a page (newest first, as `ledger_list` orders them) with the balance just
    after it: one aggregate for the top entry, the rest by walking down the page."""
    if not entries:
        return []
    top = entries[0]
    after_top = LedgerEntry.objects.filter(customer=customer).filter(
        Q(created_at__lt=top.created_at) | Q(created_at=top.created_at, id__lte=top.id)
    ).aggregate(total=Sum("amount"))["total"] or Decimal(0)
    rows, balance = [], after_top
    for entry in entries:
        rows.append((entry, balance.quantize(CENT4)))
        balance -= entry.amount
    return rows


@dataclass(frozen=True, slots=True)
class DaySpend:
    day: date
    amount: Decimal  # spent on calls that day, net of reversed charges (positive)


def spend_per_day(*, customer, first: date, last: date) -> list[DaySpend]:
    """Call spend per day of [first, last] (the portal's time zone), days without calls as 0.

    A day is the day the charge was written (as on statements), in one grouped query.
    """
    tz = timezone.get_current_timezone()
    moved = (
        LedgerEntry.objects.filter(
            customer=customer,
            created_at__gte=_midnight(first),
            created_at__lt=_midnight(last + timedelta(days=1)),
        )
        .filter(
            Q(kind=EntryKind.CALL_CHARGE) | Q(kind=EntryKind.REVERSAL, reverses__kind=EntryKind.CALL_CHARGE)
        )
        .annotate(day=TruncDate("created_at", tzinfo=tz))
        .values("day")
        .annotate(total=Sum("amount"))
    )
    totals = {row["day"]: row["total"] for row in moved}
    days = (last - first).days + 1
    return [
        DaySpend(day, _spent(totals.get(day))) for day in (first + timedelta(days=n) for n in range(days))
    ]


def _spent(ledger_total: Decimal | None) -> Decimal:
    """Charges are negative entries; spend is shown positive (and never as "-0.0000")."""
    spent = (-(ledger_total or Decimal(0))).quantize(CENT4)
    return spent if spent else Decimal("0.0000")


def ledger_months(*, customer, limit: int = 24) -> list[date]:
    """First days of the months with a statement to show: from the month of the customer's first
    ledger entry (or this month) to this month, newest first, at most `limit`."""
    this_month = timezone.localdate().replace(day=1)
    first_entry = LedgerEntry.objects.filter(customer=customer).order_by("created_at").first()
    start = timezone.localtime(first_entry.created_at).date().replace(day=1) if first_entry else this_month
    months, month = [], this_month
    while month >= start and len(months) < limit:
        months.append(month)
        month = (month - timedelta(days=1)).replace(day=1)
    return months


def _midnight(day: date) -> datetime:
    return timezone.make_aware(datetime.combine(day, time.min), timezone.get_current_timezone())
