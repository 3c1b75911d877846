"""Money: an append-only ledger per customer, rates by destination prefix, call records.

A customer's balance is the sum of its ledger entries; nothing stores a running balance that
could drift from them. Entries are never updated or deleted (database triggers refuse it), and
corrections are new entries (reversals, adjustments).
"""

from django.conf import settings
from django.db import models
from django.db.models import F, Q

from billing.choices import CallDisposition, EntryKind

MONEY = {"max_digits": 14, "decimal_places": 4}
PRICE = {"max_digits": 12, "decimal_places": 5}


class RatePlan(models.Model):
    name = models.CharField(max_length=100, unique=True)
    currency = models.CharField(max_length=3, default="ZAR")
    is_default = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(
                fields=["is_default"], condition=Q(is_default=True), name="one_default_rate_plan"
            ),
            models.CheckConstraint(
                condition=Q(currency__regex=r"^[A-Z]{3}$"), name="rate_plan_currency_iso4217"
            ),
        ]

    def __str__(self) -> str:
        return self.name


class Rate(models.Model):
    """The price of calls to numbers starting with `prefix` (E.164 digits, no '+'); longest prefix wins."""

    plan = models.ForeignKey(RatePlan, on_delete=models.PROTECT, related_name="rates")
    prefix = models.CharField(max_length=15)
    description = models.CharField(max_length=100)
    price_per_minute = models.DecimalField(**PRICE)
    connect_fee = models.DecimalField(default=0, **PRICE)
    first_increment = models.PositiveIntegerField(default=60, help_text="seconds billed for the first block")
    next_increment = models.PositiveIntegerField(default=60, help_text="seconds per following block")
    effective_from = models.DateTimeField()
    effective_to = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["plan_id", "prefix", "-effective_from"]
        constraints = [
            models.UniqueConstraint(fields=["plan", "prefix", "effective_from"], name="rate_unique_start"),
            models.CheckConstraint(condition=Q(prefix__regex=r"^[0-9]{1,15}$"), name="rate_prefix_digits"),
            models.CheckConstraint(
                condition=Q(price_per_minute__gte=0, connect_fee__gte=0), name="rate_not_negative"
            ),
            models.CheckConstraint(
                condition=Q(first_increment__gte=1, next_increment__gte=1), name="rate_increments_positive"
            ),
            models.CheckConstraint(
                condition=Q(effective_to__isnull=True) | Q(effective_to__gt=F("effective_from")),
                name="rate_period_ordered",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.prefix} {self.description}"


class CallRecord(models.Model):
    """One call attempt as the SIP service reported it; rated at most once."""

    record_id = models.CharField(
        max_length=64, unique=True, help_text="unique id assigned by the SIP service"
    )
    customer = models.ForeignKey("accounts.Customer", on_delete=models.PROTECT, related_name="call_records")
    sip_account = models.ForeignKey(
        "accounts.SipAccount", null=True, blank=True, on_delete=models.PROTECT, related_name="call_records"
    )
    caller = models.CharField(max_length=64, help_text="SIP username of the calling account")
    dialled_number = models.CharField(max_length=64)
    normalised_number = models.CharField(max_length=16, blank=True)
    invited_at = models.DateTimeField()
    answered_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField()
    duration_seconds = models.PositiveIntegerField(default=0)
    disposition = models.CharField(max_length=16, choices=CallDisposition.choices)
    final_code = models.PositiveSmallIntegerField()
    cause = models.CharField(max_length=64, blank=True)
    call_class = models.CharField(
        max_length=16, blank=True, help_text="the SIP service's class of the destination (internal, ...)"
    )
    billed_seconds = models.PositiveIntegerField(null=True, blank=True)
    rated_at = models.DateTimeField(null=True, blank=True)
    rate = models.ForeignKey(Rate, null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    cost = models.DecimalField(null=True, blank=True, **MONEY)
    rated = models.BooleanField(default=False)
    rating_error = models.CharField(max_length=300, blank=True)
    received_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-invited_at"]
        indexes = [
            models.Index(fields=["customer", "-invited_at"], name="call_customer_recent"),
            models.Index(fields=["rated", "received_at"], name="call_rated_received"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(final_code__gte=100, final_code__lte=699), name="call_code_range"
            ),
            models.CheckConstraint(condition=Q(ended_at__gte=F("invited_at")), name="call_ends_after_start"),
            models.CheckConstraint(
                condition=Q(disposition__in=CallDisposition.values), name="call_disposition_valid"
            ),
            models.CheckConstraint(
                condition=Q(rated=False) | Q(cost__isnull=False), name="call_rated_has_cost"
            ),
            models.CheckConstraint(
                condition=Q(cost__isnull=True) | Q(cost__gte=0), name="call_cost_not_negative"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.record_id} {self.caller} -> {self.dialled_number}"


class LedgerEntry(models.Model):
    """An immutable movement of a customer's money. Positive adds credit, negative spends it."""

    customer = models.ForeignKey("accounts.Customer", on_delete=models.PROTECT, related_name="ledger_entries")
    kind = models.CharField(max_length=16, choices=EntryKind.choices)
    amount = models.DecimalField(**MONEY)
    currency = models.CharField(max_length=3)
    idempotency_key = models.CharField(max_length=100, unique=True)
    reference = models.CharField(max_length=100, blank=True, help_text="payment or invoice number")
    note = models.CharField(max_length=300, blank=True)
    call_record = models.OneToOneField(
        CallRecord, null=True, blank=True, on_delete=models.PROTECT, related_name="charge"
    )
    reverses = models.OneToOneField(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="reversed_by"
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "ledger entries"
        indexes = [models.Index(fields=["customer", "created_at"], name="ledger_customer_time")]
        constraints = [
            models.CheckConstraint(condition=Q(kind__in=EntryKind.values), name="ledger_kind_valid"),
            models.CheckConstraint(condition=~Q(amount=0), name="ledger_amount_not_zero"),
            models.CheckConstraint(
                condition=Q(currency__regex=r"^[A-Z]{3}$"), name="ledger_currency_iso4217"
            ),
            models.CheckConstraint(
                condition=~Q(kind=EntryKind.CREDIT_LOAD) | Q(amount__gt=0, created_by__isnull=False),
                name="ledger_load_positive_by_staff",
            ),
            models.CheckConstraint(
                condition=~Q(kind=EntryKind.CALL_CHARGE) | Q(amount__lt=0, call_record__isnull=False),
                name="ledger_charge_negative_for_a_call",
            ),
            models.CheckConstraint(
                condition=~Q(kind=EntryKind.REVERSAL) | Q(reverses__isnull=False),
                name="ledger_reversal_names_entry",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.amount} {self.currency}"


class CreditLoad(LedgerEntry):
    """Credit loads as their own admin screen: the same rows, added through `credit_load()`."""

    class Meta:
        proxy = True


class BillingProfile(models.Model):
    """A customer's billing settings: the low-balance warning and an optional daily spend cap.

    Kept here rather than on `accounts.Customer` so that billing owns its own columns. A customer
    without a row has no threshold and no cap (`billing.services.billing_profile_for` creates it).
    """

    customer = models.OneToOneField(
        "accounts.Customer", on_delete=models.CASCADE, related_name="billing_profile"
    )
    low_balance_threshold = models.DecimalField(
        null=True, blank=True, help_text="warn when the balance falls below this (empty: never)", **MONEY
    )
    low_balance_notified = models.BooleanField(
        default=False, help_text="the warning was sent and the balance is still below the threshold"
    )
    low_balance_notified_at = models.DateTimeField(null=True, blank=True)
    daily_spend_cap = models.DecimalField(
        null=True,
        blank=True,
        help_text="most the customer may spend on calls per day (empty: no cap)",
        **MONEY,
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(daily_spend_cap__isnull=True) | Q(daily_spend_cap__gt=0),
                name="billing_profile_cap_positive",
            ),
        ]

    def __str__(self) -> str:
        return f"Billing profile of {self.customer_id}"
