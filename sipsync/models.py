"""Provisioning sync: versions of what the SIP service enforces, the outbox that pushes them,
per-node provisioning status, and the diagnostic events collected from the nodes.

The SIP service never reads these tables; they are the portal's side of the contract.
"""

from django.db import models
from django.db.models import Q


class DocumentKind(models.TextChoices):
    """The kinds of provisioning document; each is keyed by the primary key of its portal row."""

    ACCOUNT = "account", "SIP account"
    CUSTOMER = "customer", "Customer"
    RATE_PLAN = "rate_plan", "Rate plan"


class ProvisioningState(models.TextChoices):
    PENDING = "pending", "Pending"
    APPLIED = "applied", "Applied"
    FAILING = "failing", "Failing"


class DocumentVersion(models.Model):
    """The current version of one object's provisioning document.

    Bumped in the transaction that changes the object (see `sipsync.outbox`), to
    max(previous + 1, now in microseconds): strictly increasing per object under the row lock,
    and above anything an earlier database (a restore, a reset demo) may have pushed.
    """

    kind = models.CharField(max_length=16, choices=DocumentKind.choices)
    object_id = models.PositiveBigIntegerField()
    version = models.PositiveBigIntegerField()
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["kind", "object_id"], name="document_version_unique_object"),
            models.CheckConstraint(
                condition=Q(kind__in=DocumentKind.values), name="document_version_kind_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind}:{self.object_id} v{self.version}"


class OutboxEntry(models.Model):
    """ "Push this object's document to every node": one row per object, merged on repeat.

    Written in the business transaction, drained on commit by a Celery task, swept by a
    periodic task, deleted once every node holds the current version.
    """

    kind = models.CharField(max_length=16, choices=DocumentKind.choices)
    object_id = models.PositiveBigIntegerField()
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField()
    next_attempt_at = models.DateTimeField()
    attempts = models.PositiveIntegerField(default=0)
    claimed_until = models.DateTimeField(null=True, blank=True)
    claim_token = models.CharField(max_length=32, blank=True)
    last_error = models.TextField(blank=True)

    class Meta:
        ordering = ["next_attempt_at", "id"]
        verbose_name_plural = "outbox entries"
        indexes = [models.Index(fields=["next_attempt_at"], name="outbox_due")]
        constraints = [
            models.UniqueConstraint(fields=["kind", "object_id"], name="outbox_one_entry_per_object"),
            models.CheckConstraint(condition=Q(kind__in=DocumentKind.values), name="outbox_kind_valid"),
        ]

    def __str__(self) -> str:
        return f"{self.kind}:{self.object_id}"


class ProvisioningStatus(models.Model):
    """Whether one SIP service node holds an account's current document (for the UI and API)."""

    account = models.ForeignKey(
        "accounts.SipAccount", on_delete=models.CASCADE, related_name="provisioning_statuses"
    )
    node = models.CharField(max_length=200, help_text="the node's control URL")
    state = models.CharField(
        max_length=16, choices=ProvisioningState.choices, default=ProvisioningState.PENDING
    )
    applied_version = models.PositiveBigIntegerField(null=True, blank=True)
    error = models.CharField(max_length=500, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["account_id", "node"]
        verbose_name_plural = "provisioning statuses"
        constraints = [
            models.UniqueConstraint(fields=["account", "node"], name="provisioning_status_unique_node"),
            models.CheckConstraint(
                condition=Q(state__in=ProvisioningState.values), name="provisioning_state_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.account_id}@{self.node}: {self.state}"


class SipEvent(models.Model):
    """A diagnostic event (a rejection) as a SIP node reported it; stored once per node and id."""

    node = models.CharField(max_length=200, help_text="the node's control URL")
    event_id = models.PositiveBigIntegerField(help_text="the node's id for the event")
    kind = models.CharField(max_length=32)
    time = models.DateTimeField(null=True, blank=True)
    node_name = models.CharField(max_length=64, blank=True, help_text="the name the node reports")
    method = models.CharField(max_length=32, blank=True)
    code = models.PositiveSmallIntegerField(null=True, blank=True)
    reason_phrase = models.CharField(max_length=128, blank=True)
    cause = models.CharField(max_length=64, blank=True)
    aor = models.CharField(max_length=320, blank=True, help_text="username@realm the event is about")
    account = models.ForeignKey(
        "accounts.SipAccount", null=True, blank=True, on_delete=models.SET_NULL, related_name="sip_events"
    )
    customer = models.ForeignKey(
        "accounts.Customer", null=True, blank=True, on_delete=models.SET_NULL, related_name="sip_events"
    )
    source_ip = models.CharField(max_length=64, blank=True)
    source_port = models.PositiveIntegerField(null=True, blank=True)
    user_agent = models.CharField(max_length=256, blank=True)
    call_id = models.CharField(max_length=256, blank=True)
    detail = models.JSONField(default=dict, blank=True)
    received_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-time", "-id"]
        indexes = [
            models.Index(fields=["customer", "-time"], name="sip_event_customer_recent"),
            models.Index(fields=["account", "-time"], name="sip_event_account_recent"),
        ]
        constraints = [
            models.UniqueConstraint(fields=["node", "event_id"], name="sip_event_unique_per_node"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.code or ''} {self.cause} {self.aor}".strip()


class ReservedCredit(models.Model):
    """Credit that one node's calls in progress hold for a customer, as the node last reported
    it (`sipsync.collect_credit`); a customer without calls on that node has no row. Available
    credit is the balance less the sum over the configured nodes."""

    customer = models.ForeignKey(
        "accounts.Customer", on_delete=models.CASCADE, related_name="reserved_credit"
    )
    node = models.CharField(max_length=200, help_text="the node's control URL")
    amount = models.DecimalField(max_digits=14, decimal_places=4)
    calls = models.PositiveIntegerField(help_text="calls in progress on the node")
    reported_at = models.DateTimeField(help_text="when the node reported it")

    class Meta:
        ordering = ["customer_id", "node"]
        verbose_name_plural = "reserved credit"
        constraints = [
            models.UniqueConstraint(fields=["customer", "node"], name="reserved_credit_unique_node"),
            models.CheckConstraint(condition=Q(amount__gte=0), name="reserved_credit_not_negative"),
        ]

    def __str__(self) -> str:
        return f"{self.customer_id}@{self.node}: {self.amount} ({self.calls} calls)"
