"""The provisioning outbox: "this object's document changed, push it to every SIP node".

Services call one helper per kind inside the transaction that makes the change:

    with transaction.atomic():
        account.save(...)
        outbox.enqueue_account(account)

The helper bumps the object's document version, writes (or merges into) its outbox row and
marks the account pending on every node, all in that transaction; a rollback takes all of it
back. On commit, a Celery task (`sipsync.push_outbox`) pushes the entries; a periodic task
(`sipsync.sweep_outbox`) pushes whatever is left (the broker was down, a node failed), so
nothing is lost.

Versions are max(previous + 1, now in microseconds), updated in one statement under the row
lock: strictly increasing per object even for two changes in the same microsecond or after
the clock steps back, and (through the clock) above the versions an earlier database may have
pushed. A node that still holds a newer version gets a version above it (`floor`).
"""

import logging
import time
import uuid
from collections.abc import Iterable
from datetime import timedelta
from functools import partial

from django.conf import settings
from django.db import DatabaseError, IntegrityError, transaction
from django.db.models import F, Q, Value
from django.db.models.functions import Greatest
from django.utils import timezone

from sipsync.models import DocumentKind, DocumentVersion, OutboxEntry, ProvisioningState, ProvisioningStatus

logger = logging.getLogger(__name__)

CLAIM_SECONDS = 120
MAX_BACKOFF_SECONDS = 600


def node_urls() -> list[str]:
    """The control URLs of every SIP service node, normalised (no trailing slash)."""
    return [url.rstrip("/") for url in settings.SIP_NODES if url.strip()]


def clock_version() -> int:
    """The clock part of a version: microseconds since the epoch (fits a JSON double exactly)."""
    return time.time_ns() // 1000


# --- enqueue (called from services, inside their transaction) -------------------------------


def enqueue_account(account) -> None:
    enqueue(DocumentKind.ACCOUNT, [account.pk])


def enqueue_accounts(account_ids: Iterable[int]) -> None:
    enqueue(DocumentKind.ACCOUNT, account_ids)


def enqueue_customer_accounts(customer) -> None:
    """Every account of a customer (caller IDs, the customer's status affect them all)."""
    from accounts.models import SipAccount

    enqueue(DocumentKind.ACCOUNT, SipAccount.objects.filter(customer=customer).values_list("pk", flat=True))


def enqueue_customer(customer) -> None:
    enqueue(DocumentKind.CUSTOMER, [customer.pk])


def enqueue_rate_plan(plan) -> None:
    enqueue(DocumentKind.RATE_PLAN, [plan.pk])


def enqueue(kind: str, object_ids: Iterable[int], *, bump: bool = True, floor: int = 0) -> list[int]:
    """Queue the objects' documents for pushing; returns the outbox entry ids.

    `bump=False` re-pushes the current version (reconcile of a node that lost it); `floor`
    makes the new version higher than that (a node holds a newer version than the portal).
    """
    ids = sorted({int(pk) for pk in object_ids})
    if not ids:
        return []
    with transaction.atomic():
        if bump:
            bump_versions(kind, ids, floor=floor)
        else:
            _create_missing_versions(kind, ids, clock_version())
        now = timezone.now()
        OutboxEntry.objects.bulk_create(
            [OutboxEntry(kind=kind, object_id=pk, updated_at=now, next_attempt_at=now) for pk in ids],
            update_conflicts=True,
            unique_fields=["kind", "object_id"],
            update_fields=["updated_at", "next_attempt_at"],
        )
        if kind == DocumentKind.ACCOUNT:
            _mark_pending(ids)
        entry_ids = list(
            OutboxEntry.objects.filter(kind=kind, object_id__in=ids).values_list("pk", flat=True)
        )
        transaction.on_commit(partial(_push_after_commit, entry_ids), robust=True)
    return entry_ids


def bump_versions(kind: str, ids: list[int], *, floor: int = 0) -> None:
    target = max(clock_version(), floor)
    existing = set(
        DocumentVersion.objects.filter(kind=kind, object_id__in=ids).values_list("object_id", flat=True)
    )
    if existing:
        DocumentVersion.objects.filter(kind=kind, object_id__in=existing).update(
            version=Greatest(F("version") + 1, Value(target)), updated_at=timezone.now()
        )
    missing = [pk for pk in ids if pk not in existing]
    if missing:
        raced = _create_missing_versions(kind, missing, target)
        if raced:  # created by a concurrent transaction meanwhile: bump theirs
            DocumentVersion.objects.filter(kind=kind, object_id__in=raced).update(
                version=Greatest(F("version") + 1, Value(target)), updated_at=timezone.now()
            )


def _create_missing_versions(kind: str, ids: list[int], version: int) -> list[int]:
    """Create version rows for `ids` that have none; returns the ids that existed after all."""
    present = set(
        DocumentVersion.objects.filter(kind=kind, object_id__in=ids).values_list("object_id", flat=True)
    )
    rows = [DocumentVersion(kind=kind, object_id=pk, version=version) for pk in ids if pk not in present]
    if rows:
        try:
            with transaction.atomic():
                DocumentVersion.objects.bulk_create(rows)
        except IntegrityError:
            DocumentVersion.objects.bulk_create(rows, ignore_conflicts=True)
            return [row.object_id for row in rows]
    return sorted(present)


def _mark_pending(account_ids: list[int]) -> None:
    nodes = node_urls()
    ProvisioningStatus.objects.bulk_create(
        [ProvisioningStatus(account_id=pk, node=node) for pk in account_ids for node in nodes],
        ignore_conflicts=True,
    )
    ProvisioningStatus.objects.filter(account_id__in=account_ids, state=ProvisioningState.APPLIED).update(
        state=ProvisioningState.PENDING, updated_at=timezone.now()
    )


def _push_after_commit(entry_ids: list[int]) -> None:
    from sipsync.tasks import push_outbox

    push_outbox.delay(entry_ids)


# --- drain (called from the tasks) -----------------------------------------------------------


def claim(entry_ids: list[int] | None = None, *, limit: int = 100) -> list[OutboxEntry]:
    """Lease entries to this worker: the given ones, or those due. Locked rows are skipped.

    A lease lasts CLAIM_SECONDS, so a worker that dies frees its entries on its own.
    """
    now = timezone.now()
    token = uuid.uuid4().hex
    free = Q(claimed_until__isnull=True) | Q(claimed_until__lt=now)
    with transaction.atomic():
        candidates = OutboxEntry.objects.filter(free)
        if entry_ids is None:
            candidates = candidates.filter(next_attempt_at__lte=now)
        else:
            candidates = candidates.filter(pk__in=entry_ids)
        ids = list(
            candidates.select_for_update(skip_locked=True)
            .order_by("next_attempt_at", "pk")
            .values_list("pk", flat=True)[:limit]
        )
        if not ids:
            return []
        OutboxEntry.objects.filter(pk__in=ids).filter(free).update(
            claimed_until=now + timedelta(seconds=CLAIM_SECONDS), claim_token=token
        )
    return list(OutboxEntry.objects.filter(claim_token=token).order_by("pk"))


def complete(entry: OutboxEntry, *, pushed_version: int | None) -> bool:
    """Every node holds `pushed_version` (None: the object is gone). Deletes the entry unless
    a newer change was enqueued meanwhile, in which case it is released for another push.
    Returns True when deleted."""
    with transaction.atomic():
        current = (
            DocumentVersion.objects.select_for_update()
            .filter(kind=entry.kind, object_id=entry.object_id)
            .values_list("version", flat=True)
            .first()
        )
        if current is None or pushed_version is None or current <= pushed_version:
            OutboxEntry.objects.filter(pk=entry.pk).delete()
            return True
        OutboxEntry.objects.filter(pk=entry.pk, claim_token=entry.claim_token).update(
            claimed_until=None, claim_token="", next_attempt_at=timezone.now()
        )
        # The push for the newer change may have found the entry claimed by us: push again.
        transaction.on_commit(partial(_push_after_commit, [entry.pk]), robust=True)
        return False


def complete_many(pushed: list[tuple[OutboxEntry, int | None]]) -> int:
    """`complete` for many entries in one transaction; returns how many were deleted."""
    if not pushed:
        return 0
    with transaction.atomic():
        current: dict[tuple[str, int], int] = {}
        for kind in {entry.kind for entry, _ in pushed}:
            ids = [entry.object_id for entry, _ in pushed if entry.kind == kind]
            rows = (
                DocumentVersion.objects.select_for_update()
                .filter(kind=kind, object_id__in=ids)
                .values_list("object_id", "version")
            )
            current.update(((kind, pk), version) for pk, version in rows)
        done, again = [], []
        for entry, version in pushed:
            held = current.get((entry.kind, entry.object_id))
            (done if held is None or version is None or held <= version else again).append(entry)
        OutboxEntry.objects.filter(pk__in=[entry.pk for entry in done]).delete()
        if again:
            OutboxEntry.objects.filter(
                pk__in=[entry.pk for entry in again], claim_token__in={entry.claim_token for entry in again}
            ).update(claimed_until=None, claim_token="", next_attempt_at=timezone.now())
            # The pushes of the newer changes may have found these entries claimed: push again.
            transaction.on_commit(partial(_push_after_commit, [entry.pk for entry in again]), robust=True)
    return len(done)


def release(entries: list[OutboxEntry]) -> None:
    """Give back entries still leased to this worker (its push broke off); best effort: if even
    this fails, the lease runs out on its own."""
    tokens = {entry.claim_token for entry in entries if entry.claim_token}
    if not tokens:
        return
    try:
        OutboxEntry.objects.filter(pk__in=[entry.pk for entry in entries], claim_token__in=tokens).update(
            claimed_until=None, claim_token=""
        )
    except DatabaseError:
        logger.warning("sipsync: could not release %d outbox entries; their lease will lapse", len(entries))


def fail(entry: OutboxEntry, *, error: str) -> None:
    """Keep the entry, back off exponentially (capped) before the sweeper tries again."""
    attempts = entry.attempts + 1
    delay = min(MAX_BACKOFF_SECONDS, 5 * 2 ** min(attempts, 10))
    OutboxEntry.objects.filter(pk=entry.pk, claim_token=entry.claim_token).update(
        attempts=attempts,
        last_error=error[:2000],
        claimed_until=None,
        claim_token="",
        next_attempt_at=timezone.now() + timedelta(seconds=delay),
    )


def due_entry_ids(*, limit: int = 1000) -> list[int]:
    now = timezone.now()
    return list(
        OutboxEntry.objects.filter(next_attempt_at__lte=now)
        .filter(Q(claimed_until__isnull=True) | Q(claimed_until__lt=now))
        .order_by("next_attempt_at", "pk")
        .values_list("pk", flat=True)[:limit]
    )
