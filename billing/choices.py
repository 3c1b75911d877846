from django.db import models


class EntryKind(models.TextChoices):
    CREDIT_LOAD = "credit_load", "Credit load"
    CALL_CHARGE = "call_charge", "Call charge"
    ADJUSTMENT = "adjustment", "Adjustment"
    REVERSAL = "reversal", "Reversal"


class CallDisposition(models.TextChoices):
    ANSWERED = "answered", "Answered"
    REJECTED = "rejected", "Rejected by the service"
    FAILED = "failed", "Failed at the far end"
    CANCELLED = "cancelled", "Cancelled by the caller"
