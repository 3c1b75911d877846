"""Reads for money. A balance is always the sum of the ledger, never a stored figure."""

from datetime import datetime, time, timedelta
from decimal import Decimal

from django.db.models import QuerySet, Sum
from django.utils import timezone

from billing.choices import EntryKind
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
