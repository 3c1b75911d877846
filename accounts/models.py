"""Customers (tenants), their users, SIP accounts, codecs and caller IDs.

Rules that must always hold are database constraints; rules that need context (a password's
strength, who may approve) live in services.
"""

from django.conf import settings
from django.db import models
from django.db.models import Q

from accounts.choices import CallClass, CallerIdStatus, Codec, CustomerStatus, MemberRole

E164_REGEX = r"^\+[1-9][0-9]{6,14}$"
EXTENSION_REGEX = r"^[0-9]{2,8}$"
SIP_USERNAME_REGEX = r"^[A-Za-z0-9._-]{3,64}$"
FORWARD_TARGET_REGEX = r"^(\+?[0-9]{2,15})?$"
MAX_VOICEMAIL_MESSAGES = 9999  # what a phone can show; RFC 3842 sets no limit


class Customer(models.Model):
    account_number = models.CharField(max_length=16, unique=True)
    name = models.CharField(max_length=200)
    status = models.CharField(max_length=16, choices=CustomerStatus.choices, default=CustomerStatus.ACTIVE)
    # Dial plan: national numbers are written with the trunk prefix ("0") and become E.164 with
    # the country code ("27"): 0115550100 -> +27115550100.
    country_code = models.CharField(max_length=3, default="27")
    national_prefix = models.CharField(max_length=2, default="0", blank=True)
    currency = models.CharField(max_length=3, default="ZAR")
    rate_plan = models.ForeignKey(
        "billing.RatePlan", null=True, blank=True, on_delete=models.PROTECT, related_name="customers"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=Q(account_number__regex=r"^[A-Z0-9]{4,16}$"), name="customer_account_number_format"
            ),
            models.CheckConstraint(
                condition=Q(country_code__regex=r"^[1-9][0-9]{0,2}$"), name="customer_country_code_digits"
            ),
            models.CheckConstraint(
                condition=Q(national_prefix__regex=r"^[0-9]{0,2}$"), name="customer_national_prefix_digits"
            ),
            models.CheckConstraint(
                condition=Q(currency__regex=r"^[A-Z]{3}$"), name="customer_currency_iso4217"
            ),
            models.CheckConstraint(
                condition=Q(status__in=CustomerStatus.values), name="customer_status_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.account_number})"


class Membership(models.Model):
    """Links a Django user to the one customer they act for. Staff users have none."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="membership")
    customer = models.ForeignKey(Customer, on_delete=models.PROTECT, related_name="memberships")
    role = models.CharField(max_length=16, choices=MemberRole.choices, default=MemberRole.MANAGER)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=Q(role__in=MemberRole.values), name="membership_role_valid")
        ]

    def __str__(self) -> str:
        return f"{self.user} @ {self.customer}"


class CallerId(models.Model):
    """A number a customer may present on outgoing calls, once the provider's staff approve it."""

    customer = models.ForeignKey(Customer, on_delete=models.PROTECT, related_name="caller_ids")
    number = models.CharField(max_length=16, help_text="E.164, e.g. +27115550100")
    status = models.CharField(max_length=16, choices=CallerIdStatus.choices, default=CallerIdStatus.PENDING)
    requested_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    requested_at = models.DateTimeField(auto_now_add=True)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    decision_note = models.CharField(max_length=300, blank=True)

    class Meta:
        ordering = ["number"]
        constraints = [
            models.UniqueConstraint(fields=["customer", "number"], name="caller_id_unique_per_customer"),
            models.CheckConstraint(condition=Q(number__regex=E164_REGEX), name="caller_id_e164"),
            models.CheckConstraint(
                condition=Q(status__in=CallerIdStatus.values), name="caller_id_status_valid"
            ),
            models.CheckConstraint(
                condition=(Q(status=CallerIdStatus.PENDING, decided_at__isnull=True, decided_by__isnull=True))
                | (~Q(status=CallerIdStatus.PENDING) & Q(decided_at__isnull=False)),
                name="caller_id_decision_recorded",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.number} ({self.get_status_display()})"


class SipAccount(models.Model):
    """A SIP account (an extension) of a customer. The password itself is never stored."""

    customer = models.ForeignKey(Customer, on_delete=models.PROTECT, related_name="sip_accounts")
    extension = models.CharField(max_length=8)
    label = models.CharField(max_length=100, blank=True, help_text="e.g. Reception desk")
    username = models.CharField(max_length=64)
    realm = models.CharField(max_length=255)
    ha1_md5 = models.CharField(max_length=32)
    ha1_sha256 = models.CharField(max_length=64)
    password_changed_at = models.DateTimeField()
    enabled = models.BooleanField(default=True)
    password_change_required = models.BooleanField(default=False)
    max_concurrent_calls = models.PositiveSmallIntegerField(default=2)
    max_contacts = models.PositiveSmallIntegerField(default=5)
    may_call_internal = models.BooleanField(default=True)
    may_call_national = models.BooleanField(default=True)
    may_call_mobile = models.BooleanField(default=True)
    may_call_international = models.BooleanField(default=False)
    may_call_premium = models.BooleanField(default=False)
    forward_all_to = models.CharField(max_length=16, blank=True)
    do_not_disturb = models.BooleanField(default=False)
    default_caller_id = models.ForeignKey(
        CallerId, null=True, blank=True, on_delete=models.SET_NULL, related_name="default_for"
    )
    # Message counts an external voicemail system reports; the SIP service tells subscribed
    # phones (message-summary, RFC 3842) so their message-waiting lamp matches.
    voicemail_new = models.PositiveIntegerField(default=0)
    voicemail_old = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["customer_id", "extension"]
        constraints = [
            models.UniqueConstraint(fields=["realm", "username"], name="sip_username_unique_per_realm"),
            models.UniqueConstraint(
                fields=["customer", "extension"], name="sip_extension_unique_per_customer"
            ),
            models.CheckConstraint(
                condition=Q(extension__regex=EXTENSION_REGEX), name="sip_extension_digits"
            ),
            models.CheckConstraint(
                condition=Q(username__regex=SIP_USERNAME_REGEX), name="sip_username_no_spaces"
            ),
            models.CheckConstraint(condition=Q(ha1_md5__regex=r"^[0-9a-f]{32}$"), name="sip_ha1_md5_hex"),
            models.CheckConstraint(
                condition=Q(ha1_sha256__regex=r"^[0-9a-f]{64}$"), name="sip_ha1_sha256_hex"
            ),
            models.CheckConstraint(
                condition=Q(max_concurrent_calls__gte=1, max_concurrent_calls__lte=100),
                name="sip_max_calls_range",
            ),
            models.CheckConstraint(
                condition=Q(max_contacts__gte=1, max_contacts__lte=20), name="sip_max_contacts_range"
            ),
            models.CheckConstraint(
                condition=Q(forward_all_to__regex=FORWARD_TARGET_REGEX), name="sip_forward_target_format"
            ),
            models.CheckConstraint(condition=Q(realm__gt=""), name="sip_realm_not_empty"),
            models.CheckConstraint(
                condition=Q(
                    voicemail_new__lte=MAX_VOICEMAIL_MESSAGES, voicemail_old__lte=MAX_VOICEMAIL_MESSAGES
                ),
                name="sip_voicemail_counts_range",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.extension} {self.username}@{self.realm}"

    CALL_CLASS_FIELDS = {
        CallClass.INTERNAL: "may_call_internal",
        CallClass.NATIONAL: "may_call_national",
        CallClass.MOBILE: "may_call_mobile",
        CallClass.INTERNATIONAL: "may_call_international",
        CallClass.PREMIUM: "may_call_premium",
    }

    @property
    def call_classes(self) -> list[str]:
        return [str(cls) for cls, field in self.CALL_CLASS_FIELDS.items() if getattr(self, field)]


class SipAccountCodec(models.Model):
    """One codec in an account's ordered codec list (position 0 is preferred)."""

    account = models.ForeignKey(SipAccount, on_delete=models.CASCADE, related_name="codec_assignments")
    codec = models.CharField(max_length=8, choices=Codec.choices)
    position = models.PositiveSmallIntegerField()

    class Meta:
        ordering = ["account_id", "position"]
        constraints = [
            models.UniqueConstraint(fields=["account", "codec"], name="codec_once_per_account"),
            models.UniqueConstraint(fields=["account", "position"], name="codec_position_unique"),
            models.CheckConstraint(condition=Q(codec__in=Codec.values), name="codec_in_catalogue"),
        ]

    def __str__(self) -> str:
        return f"{self.codec}#{self.position}"


class ApiKey(models.Model):
    """A named key for the REST API, acting for one customer or (without one) for the provider's staff.

    Only a SHA-256 digest of the key is stored; `prefix` is the key's visible start, used to find
    the row. The plaintext is shown once when the key is created (`accounts.api_keys`).
    """

    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=16, unique=True)
    key_hash = models.CharField(max_length=64)
    customer = models.ForeignKey(
        Customer, null=True, blank=True, on_delete=models.PROTECT, related_name="api_keys"
    )
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="api_keys",
        help_text="the user the key acts as (required for staff keys)",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(customer__isnull=False) | Q(user__isnull=False),
                name="api_key_customer_or_staff_user",
            ),
            models.CheckConstraint(condition=Q(key_hash__regex=r"^[0-9a-f]{64}$"), name="api_key_hash_hex"),
            models.CheckConstraint(condition=Q(name__gt=""), name="api_key_named"),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def is_staff(self) -> bool:
        return self.customer_id is None

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None
