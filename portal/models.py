"""The portal's own rows: an append-only audit log of what the provider's staff (and, for their
security-relevant changes such as API keys, customers' users) did."""

from django.conf import settings
from django.db import models


class AuditAction(models.TextChoices):
    CALLER_ID_APPROVED = "caller_id_approved", "Caller ID approved"
    CALLER_ID_REJECTED = "caller_id_rejected", "Caller ID rejected"
    CREDIT_LOADED = "credit_loaded", "Credit loaded"
    PASSWORD_CHANGE_REQUIRED = "password_change_required", "Password change required"
    PASSWORD_RESET = "password_reset", "SIP password reset"
    ACCOUNT_ENABLED = "account_enabled", "SIP account enabled"
    ACCOUNT_DISABLED = "account_disabled", "SIP account disabled"
    API_KEY_CREATED = "api_key_created", "API key created"
    API_KEY_REVOKED = "api_key_revoked", "API key revoked"
    CUSTOMER_CREATED = "customer_created", "Customer created"
    CUSTOMER_STATUS_CHANGED = "customer_status_changed", "Customer status changed"
    CALL_RATING_RETRIED = "call_rating_retried", "Call records rated again"
    OTHER = "other", "Other"


class AuditLogEntry(models.Model):
    """Who did what to which object, and when. Written by `portal.audit.record`, never edited."""

    at = models.DateTimeField(auto_now_add=True, db_index=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    actor_name = models.CharField(max_length=150, blank=True, help_text="kept if the user is deleted")
    action = models.CharField(max_length=32, choices=AuditAction.choices)
    object_type = models.CharField(max_length=100, blank=True, help_text="app_label.model")
    object_id = models.CharField(max_length=64, blank=True)
    object_repr = models.CharField(max_length=200, blank=True)
    customer = models.ForeignKey(
        "accounts.Customer", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    details = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-at", "-id"]
        verbose_name = "audit log entry"
        verbose_name_plural = "audit log"
        indexes = [models.Index(fields=["object_type", "object_id"], name="audit_object")]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M} {self.actor_name} {self.action} {self.object_repr}"
