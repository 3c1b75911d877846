"""Recording staff actions in the audit log (`portal.models.AuditLogEntry`).

Call `record()` in the same transaction as the change it describes, from admin actions and
services that staff use, and from the customer pages for changes that grant access (API keys).
"""

from django.db import models

from portal.models import AuditAction, AuditLogEntry


def record(
    *, actor, action: str, obj: models.Model | None = None, details: dict | None = None
) -> AuditLogEntry:
    if action not in AuditAction.values:
        raise ValueError(f"unknown audit action {action!r}")
    customer_id = None
    if obj is not None:
        customer_id = getattr(obj, "customer_id", None)
        if customer_id is None and obj._meta.label == "accounts.Customer":
            customer_id = obj.pk
    return AuditLogEntry.objects.create(
        actor=actor if getattr(actor, "pk", None) else None,
        actor_name=getattr(actor, "get_username", lambda: "")() if actor is not None else "",
        action=action,
        object_type=obj._meta.label_lower if obj is not None else "",
        object_id=str(obj.pk) if obj is not None else "",
        object_repr=str(obj)[:200] if obj is not None else "",
        customer_id=customer_id,
        details=_jsonable(details or {}),
    )


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)
