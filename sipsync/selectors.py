"""Reads for provisioning sync, always narrowed by the asking tenant (`portal.tenancy.scope`)."""

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.db.models import Min, QuerySet, Sum

from accounts.models import SipAccount
from portal.errors import NotFound
from portal.tenancy import Tenant, scope
from sipsync.models import (
    DocumentKind,
    DocumentVersion,
    OutboxEntry,
    ProvisioningState,
    ProvisioningStatus,
    ReservedCredit,
    SipEvent,
)
from sipsync.outbox import node_urls


@dataclass(frozen=True, slots=True)
class NodeProvisioning:
    """One node's view of one account, for the UI and the API."""

    node: str
    state: str
    applied_version: int | None
    current_version: int | None
    error: str
    updated_at: datetime | None


@dataclass(frozen=True, slots=True)
class CreditInUse:
    """What a customer's calls in progress hold, summed over the configured nodes."""

    reserved: Decimal
    calls: int
    reported_at: datetime | None  # the oldest of the nodes' reports (None: no call anywhere)


def credit_in_use(*, customer) -> CreditInUse:
    rows = ReservedCredit.objects.filter(customer=customer, node__in=node_urls())
    totals = rows.aggregate(reserved=Sum("amount"), calls=Sum("calls"), reported_at=Min("reported_at"))
    return CreditInUse(
        reserved=(totals["reserved"] or Decimal(0)).quantize(Decimal("0.0001")),
        calls=totals["calls"] or 0,
        reported_at=totals["reported_at"],
    )


def provisioning_status_list(*, tenant: Tenant, state: str | None = None) -> QuerySet[ProvisioningStatus]:
    """Per-node statuses of the tenant's accounts, on the nodes configured now."""
    statuses = scope(ProvisioningStatus.objects.all(), tenant, customer_field="account__customer")
    statuses = statuses.filter(node__in=node_urls()).select_related("account", "account__customer")
    if state:
        statuses = statuses.filter(state=state)
    return statuses.order_by("account_id", "node")


def account_provisioning(*, tenant: Tenant, account_id: int) -> list[NodeProvisioning]:
    """One entry per configured node (pending where the node has not been heard from)."""
    account = scope(SipAccount.objects.all(), tenant).filter(pk=account_id).first()
    if account is None:
        raise NotFound("No such SIP account.")
    current = (
        DocumentVersion.objects.filter(kind=DocumentKind.ACCOUNT, object_id=account.pk)
        .values_list("version", flat=True)
        .first()
    )
    known = {s.node: s for s in ProvisioningStatus.objects.filter(account=account)}
    result = []
    for node in node_urls():
        status = known.get(node)
        if status is None:
            result.append(NodeProvisioning(node, ProvisioningState.PENDING, None, current, "", None))
        else:
            result.append(
                NodeProvisioning(
                    node, status.state, status.applied_version, current, status.error, status.updated_at
                )
            )
    return result


def sip_event_list(*, tenant: Tenant, account_id: int | None = None) -> QuerySet[SipEvent]:
    """Collected events; a customer sees only those about its own accounts."""
    events = scope(SipEvent.objects.all(), tenant).select_related("account", "customer")
    if account_id is not None:
        events = events.filter(account_id=account_id)
    return events.order_by("-time", "-id")


def outbox_backlog(*, tenant: Tenant) -> QuerySet[OutboxEntry]:
    """What is waiting to be pushed: the provider's staff only."""
    if not tenant.is_staff:
        return OutboxEntry.objects.none()
    return OutboxEntry.objects.order_by("next_attempt_at", "pk")
