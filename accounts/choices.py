from django.db import models


class CustomerStatus(models.TextChoices):
    ACTIVE = "active", "Active"
    SUSPENDED = "suspended", "Suspended"
    CLOSED = "closed", "Closed"


class MemberRole(models.TextChoices):
    OWNER = "owner", "Owner"
    MANAGER = "manager", "Manager"
    VIEWER = "viewer", "Viewer"


class CallClass(models.TextChoices):
    """Destination classes a SIP account may be allowed to call (the dial plan classifies numbers)."""

    INTERNAL = "internal", "Internal extensions"
    NATIONAL = "national", "National landlines"
    MOBILE = "mobile", "Mobile numbers"
    INTERNATIONAL = "international", "International"
    PREMIUM = "premium", "Premium-rate numbers"


DEFAULT_CALL_CLASSES = (CallClass.INTERNAL, CallClass.NATIONAL, CallClass.MOBILE)


class Codec(models.TextChoices):
    """The codec catalogue. Names are the SDP encoding names the SIP service matches on."""

    PCMU = "PCMU", "G.711 u-law (PCMU)"
    PCMA = "PCMA", "G.711 a-law (PCMA)"
    G729 = "G729", "G.729A"
    G722 = "G722", "G.722 wideband"
    OPUS = "OPUS", "Opus"
    GSM = "GSM", "GSM"


# The provider's guide: "Ninja, by default, assigns G711u ... and G729A enabled."
DEFAULT_CODECS = (Codec.PCMU, Codec.G729)


class CallerIdStatus(models.TextChoices):
    PENDING = "pending", "Pending approval"
    APPROVED = "approved", "Approved"
    REJECTED = "rejected", "Rejected"
