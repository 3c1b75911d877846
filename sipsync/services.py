"""Provisioning sync operations the Celery tasks call: push the outbox, reconcile a node,
collect a node's events. Each is idempotent: running it twice does no harm.
"""

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation

from django.db import transaction
from django.utils import timezone

from accounts.models import Customer, SipAccount
from billing.choices import CallDisposition
from billing.models import CallRecord, RatePlan
from sipsync import documents, outbox
from sipsync.client import NodeClient, NodeError
from sipsync.models import (
    DocumentKind,
    DocumentVersion,
    OutboxEntry,
    ProvisioningState,
    ProvisioningStatus,
    ReservedCredit,
    SipEvent,
)

logger = logging.getLogger(__name__)

MAX_REMOVALS_PER_RUN = 500


@dataclass
class PushReport:
    done: int = 0
    failed: list[str] = field(default_factory=list)


@dataclass
class ReconcileReport:
    node: str
    queued: int = 0  # to the outbox: new versions, for every node
    pushed: int = 0  # straight to this node: the versions it lacked
    removed: list[str] = field(default_factory=list)
    in_sync: int = 0


# --- push -----------------------------------------------------------------------------------


PUSH_BATCH = 500


def push_entries(entry_ids: list[int] | None = None, *, limit: int = PUSH_BATCH) -> PushReport:
    """Push the given outbox entries (all of them, `limit` at a time, stopping after a batch in
    which a node failed), or up to `limit` of those due, to every node; see `sipsync.outbox`.

    A batch is built with a handful of queries, sent to each node in one request
    (`POST /v1/batch`, one flush of the node's store) and recorded in a few statements."""
    report = PushReport()
    if entry_ids is None:
        batches: list[list[int] | None] = [None]
    else:
        ids = list(entry_ids)
        batches = [ids[start : start + limit] for start in range(0, len(ids), limit)]
    clients: list[NodeClient] = []
    try:
        for batch in batches:
            entries = outbox.claim(batch, limit=limit)
            if entries and not clients:
                clients = [NodeClient(node) for node in outbox.node_urls()]
            try:
                _push_batch(entries, clients, report)
            except BaseException:
                # An error (the database busy or gone): give back what this run still holds, so
                # the task's retry can take it at once instead of after the lease.
                outbox.release(entries)
                raise
            if report.failed:  # a node is failing: the rest waits for the task's retry or the sweep
                break
    finally:
        for client in clients:
            client.close()
    return report


def _push_batch(entries: list[OutboxEntry], clients: list[NodeClient], report: PushReport) -> None:
    if not entries:
        return
    built: dict[tuple[str, int], dict | None] = {}
    for kind in {entry.kind for entry in entries}:
        ids = [entry.object_id for entry in entries if entry.kind == kind]
        built.update(((kind, pk), doc) for pk, doc in documents.build_documents(kind, ids).items())
    completed: list[tuple[OutboxEntry, int | None]] = []
    pushing: list[tuple[OutboxEntry, dict]] = []
    for entry in entries:
        document = built[(entry.kind, entry.object_id)]
        if document is None:  # the object is gone; reconcile removes it from the nodes
            completed.append((entry, None))
            report.done += 1
        else:
            pushing.append((entry, document))
    answers: dict[str, list] = {}
    for client in clients:
        try:
            answers[client.base_url] = client.push_batch([document for _, document in pushing])
        except NodeError as exc:
            answers[client.base_url] = [exc] * len(pushing)
    pushes = []
    for index, (entry, document) in enumerate(pushing):
        version = document["version"]
        errors: dict[str, str] = {}
        held_by_node: dict[str, int] = {}
        for node, results in answers.items():
            result = results[index]
            if isinstance(result, NodeError):
                errors[node] = str(result)
            else:
                held_by_node[node] = result.held_version if result.held_version is not None else version
        if entry.kind == DocumentKind.ACCOUNT:
            pushes.append((entry.object_id, version, held_by_node, errors))
        ahead = max((held for held in held_by_node.values() if held > version), default=0)
        if ahead:
            # A node holds a newer version than the portal (e.g. a restored database): go above it.
            with transaction.atomic():
                outbox.enqueue(entry.kind, [entry.object_id], floor=ahead + 1)
                outbox.complete(entry, pushed_version=version)
        elif errors:
            outbox.fail(entry, error="; ".join(errors.values()))
            report.failed.extend(errors.values())
        else:
            completed.append((entry, version))
            report.done += 1
    _record_push(pushes)
    outbox.complete_many(completed)


def _record_push(pushes: list[tuple[int, int, dict[str, int], dict[str, str]]]) -> None:
    """Per account and node: APPLIED at the version the node holds (PENDING if that is not the
    one pushed), or FAILING with the error (the version it held before stays shown)."""
    if not pushes:
        return
    present = set(SipAccount.objects.filter(pk__in=[p[0] for p in pushes]).values_list("pk", flat=True))
    reached, failing = [], []
    for account_id, version, held_by_node, errors in pushes:
        if account_id not in present:
            continue
        for node, held in held_by_node.items():
            state = ProvisioningState.APPLIED if held == version else ProvisioningState.PENDING
            reached.append(
                ProvisioningStatus(
                    account_id=account_id, node=node, state=state, applied_version=held, error=""
                )
            )
        for node, error in errors.items():
            failing.append(
                ProvisioningStatus(
                    account_id=account_id, node=node, state=ProvisioningState.FAILING, error=error[:500]
                )
            )
    for rows, fields in (
        (reached, ["state", "applied_version", "error", "updated_at"]),
        (failing, ["state", "error", "updated_at"]),
    ):
        if rows:
            ProvisioningStatus.objects.bulk_create(
                rows, update_conflicts=True, unique_fields=["account", "node"], update_fields=fields
            )


# --- reconcile ------------------------------------------------------------------------------


def reconcile_node(node: str, *, client: NodeClient | None = None) -> ReconcileReport:
    """Compare a node's versions with the portal's and heal the difference.

    Documents the node lacks or holds older are pushed straight to it in batches (a new or
    restarted node converges in seconds); whatever that push cannot place (the node fails, a
    document is refused, the node holds a newer one) goes to the outbox. Objects never
    versioned get a version and a node ahead of the portal is overtaken, through the outbox
    (their version changes for every node); accounts the node has but the portal doesn't are
    removed from it.
    """
    own_client = client is None
    client = client or NodeClient(node)
    try:
        digest = client.digest()  # first: whatever the node holds existed here before this read
        report = ReconcileReport(node=node.rstrip("/"))
        accounts = {
            _aor_key(username, realm): pk
            for pk, username, realm in SipAccount.objects.values_list("pk", "username", "realm")
        }
        held_accounts = {
            _aor_key(*aor.rsplit("@", 1)): v for aor, v in digest["accounts"].items() if "@" in aor
        }
        plans = dict(RatePlan.objects.values_list("name", "pk"))
        customers = dict(Customer.objects.values_list("account_number", "pk"))
        with transaction.atomic():
            account_states, missing_accounts = _reconcile_kind(
                DocumentKind.ACCOUNT, accounts, held_accounts, report
            )
            _, missing_customers = _reconcile_kind(
                DocumentKind.CUSTOMER, customers, digest["customers"], report
            )
            _, missing_plans = _reconcile_kind(DocumentKind.RATE_PLAN, plans, digest["rate_plans"], report)
            _sync_statuses(report.node, account_states)
        for kind, missing in (
            (DocumentKind.RATE_PLAN, missing_plans),
            (DocumentKind.CUSTOMER, missing_customers),
            (DocumentKind.ACCOUNT, missing_accounts),
        ):
            _push_missing(client, report, kind, missing)
        leftovers = sorted(set(held_accounts) - set(accounts))[:MAX_REMOVALS_PER_RUN]
        removals = [
            {
                "kind": "removal",
                "account": aor,
                "version": max(int(held_accounts[aor]) + 1, outbox.clock_version()),
            }
            for aor in leftovers
        ]
        for aor, result in zip(leftovers, client.push_batch(removals), strict=True):
            if isinstance(result, NodeError):
                logger.warning("sipsync: %s refused to remove %s: %s", node, aor, result)
            else:
                report.removed.append(aor)
        if report.removed:
            logger.info("sipsync: removed %d unknown accounts from %s", len(report.removed), node)
        return report
    finally:
        if own_client:
            client.close()


def _reconcile_kind(
    kind: str, objects: dict[str, int], held: dict[str, int], report: ReconcileReport
) -> tuple[dict, list[int]]:
    """Queue what needs a new version; returns {object_id: (state, held version)} for the
    objects not missing, and the ids of those missing (the node lacks their version)."""
    versions = dict(DocumentVersion.objects.filter(kind=kind).values_list("object_id", "version"))
    never, missing, ahead_floor, ahead = [], [], 0, []
    states: dict[int, tuple[str, int | None]] = {}
    for key, pk in objects.items():
        node_version = held.get(key)
        node_version = node_version if isinstance(node_version, int) else None
        mine = versions.get(pk)
        if mine is None:
            never.append(pk)
        elif node_version is None or node_version < mine:
            missing.append(pk)
            continue  # its status is recorded by the push
        elif node_version > mine:
            ahead.append(pk)
            ahead_floor = max(ahead_floor, node_version + 1)
        else:
            report.in_sync += 1
            states[pk] = (ProvisioningState.APPLIED, node_version)
            continue
        states[pk] = (ProvisioningState.PENDING, node_version)
    outbox.enqueue(kind, never)
    if ahead:
        outbox.enqueue(kind, ahead, floor=ahead_floor)
    report.queued += len(never) + len(ahead)
    return states, missing


def _push_missing(client: NodeClient, report: ReconcileReport, kind: str, ids: list[int]) -> None:
    """Push the current documents of `ids` to the one node being reconciled, a batch at a time.
    A node that fails leaves the rest to the outbox (and the error to the task)."""
    for start in range(0, len(ids), PUSH_BATCH):
        built = documents.build_documents(kind, ids[start : start + PUSH_BATCH])
        pushing = [(pk, doc) for pk, doc in built.items() if doc is not None]
        try:
            results = client.push_batch([doc for _, doc in pushing])
        except NodeError:
            outbox.enqueue(kind, ids[start:], bump=False)
            report.queued += len(ids) - start
            raise
        pushes, refused = [], []
        for (pk, doc), result in zip(pushing, results, strict=True):
            if isinstance(result, NodeError):
                refused.append(pk)  # the outbox's push records the reason on the status
                continue
            version = doc["version"]
            held = result.held_version if result.held_version is not None else version
            pushes.append((pk, version, {report.node: held}, {}))
            if held > version:  # the node is ahead: a version above it, for every node
                outbox.enqueue(kind, [pk], floor=held + 1)
                report.queued += 1
            else:
                report.pushed += 1
        if kind == DocumentKind.ACCOUNT:
            _record_push(pushes)
        outbox.enqueue(kind, refused, bump=False)
        report.queued += len(refused)


def _sync_statuses(node: str, states: dict[int, tuple[str, int | None]]) -> None:
    existing = {s.account_id: s for s in ProvisioningStatus.objects.filter(node=node)}
    changed, created = [], []
    now = timezone.now()
    for account_id, (state, held) in states.items():
        status = existing.get(account_id)
        if status is None:
            created.append(
                ProvisioningStatus(account_id=account_id, node=node, state=state, applied_version=held)
            )
            continue
        if status.state == ProvisioningState.FAILING and state == ProvisioningState.PENDING:
            continue  # keep the push error visible until a push succeeds
        if status.state != state or status.applied_version != held:
            status.state, status.applied_version, status.updated_at = state, held, now
            if state == ProvisioningState.APPLIED:
                status.error = ""
            changed.append(status)
    ProvisioningStatus.objects.bulk_create(created, ignore_conflicts=True)
    ProvisioningStatus.objects.bulk_update(changed, ["state", "applied_version", "error", "updated_at"])


def _aor_key(username: str, realm: str) -> str:
    return f"{username}@{realm.lower()}"


# --- credit held by calls in progress -------------------------------------------------------


def collect_credit(node: str, *, client: NodeClient | None = None) -> int:
    """Replace what the portal knows of the credit a node's calls in progress hold with what the
    node reports now; returns how many customers have calls there. Entries the portal cannot use
    (an unknown customer, an amount that is not a decimal >= 0) are logged and left out."""
    own_client = client is None
    client = client or NodeClient(node)
    node = node.rstrip("/")
    try:
        report = client.credit()
    finally:
        if own_client:
            client.close()
    reported_at = _parse_time(report.get("at")) or timezone.now()
    entries = report.get("customers") if isinstance(report.get("customers"), dict) else {}
    customers = dict(
        Customer.objects.filter(account_number__in=list(entries)).values_list("account_number", "pk")
    )
    rows = []
    for number, entry in entries.items():
        amount, calls = _reserved(entry)
        if number not in customers or amount is None:
            logger.warning("sipsync: %s reported unusable credit in use for %r: %r", node, number, entry)
            continue
        rows.append(
            ReservedCredit(
                customer_id=customers[number], node=node, amount=amount, calls=calls, reported_at=reported_at
            )
        )
    with transaction.atomic():
        ReservedCredit.objects.filter(node=node).exclude(
            customer_id__in=[r.customer_id for r in rows]
        ).delete()
        ReservedCredit.objects.bulk_create(
            rows,
            update_conflicts=True,
            unique_fields=["customer", "node"],
            update_fields=["amount", "calls", "reported_at"],
        )
    return len(rows)


def _reserved(entry) -> tuple[Decimal | None, int]:
    if not isinstance(entry, dict):
        return None, 0
    try:
        amount = Decimal(str(entry.get("reserved")))
    except (InvalidOperation, ValueError):
        return None, 0
    calls = entry.get("calls")
    if not amount.is_finite() or amount < 0 or amount >= 10**10:
        return None, 0
    return amount.quantize(Decimal("0.0001")), calls if _is_id(calls) else 0


# --- events ---------------------------------------------------------------------------------


def collect_events(
    node: str, *, client: NodeClient | None = None, limit: int = 500, max_pages: int = 20
) -> int:
    """Store a node's spooled events (once each, by node and id) and acknowledge them.

    Returns how many new events were stored.
    """
    return _collect(node, "events", store_events, client=client, limit=limit, max_pages=max_pages)


def collect_records(
    node: str, *, client: NodeClient | None = None, limit: int = 500, max_pages: int = 20
) -> int:
    """Store a node's call records (once each, by record id) unrated, and acknowledge them.

    Rating and debiting them is billing's job (a later step); returns how many were new.
    """
    return _collect(
        node, "records", lambda _node, records: store_call_records(records), client=client, limit=limit,
        max_pages=max_pages,
    )  # fmt: skip


def _collect(node: str, stream: str, store, *, client: NodeClient | None, limit: int, max_pages: int) -> int:
    """Page through one of a node's streams: store a page, then acknowledge up to its cursor
    (delivery is at least once; storing is idempotent)."""
    own_client = client is None
    client = client or NodeClient(node)
    node = node.rstrip("/")
    read = client.events if stream == "events" else client.records
    ack = client.ack_events if stream == "events" else client.ack_records
    stored = 0
    after = 0
    try:
        for _ in range(max_pages):
            page = read(after=after, limit=limit)
            items = [item for item in page.items if _is_id(item.get("id"))]
            stored += store(node, items)
            upto = max([after, *(i["id"] for i in items), *([page.next] if page.next is not None else [])])
            if upto > after:
                ack(upto=upto)
            after = upto
            if not page.more:
                break
    finally:
        if own_client:
            client.close()
    return stored


def store_events(node: str, events: list[dict]) -> int:
    if not events:
        return 0
    ids = [e["id"] for e in events]
    known = set(SipEvent.objects.filter(node=node, event_id__in=ids).values_list("event_id", flat=True))
    fresh = [e for e in events if e["id"] not in known]
    if not fresh:
        return 0
    owners = _resolve_accounts({str(e.get("account")) for e in fresh if e.get("account")})
    rows = []
    for event in fresh:
        aor = str(event.get("account") or "")[:320]
        account_id, customer_id = owners.get(aor, (None, None))
        detail = event.get("detail")
        rows.append(
            SipEvent(
                node=node,
                event_id=event["id"],
                kind=str(event.get("kind") or "")[:32],
                time=_parse_time(event.get("time")),
                node_name=str(event.get("node") or "")[:64],
                method=str(event.get("method") or "")[:32],
                code=event["code"] if _is_id(event.get("code")) and event["code"] < 1000 else None,
                reason_phrase=str(event.get("reason_phrase") or "")[:128],
                cause=str(event.get("cause") or "")[:64],
                aor=aor,
                account_id=account_id,
                customer_id=customer_id,
                source_ip=str(event.get("source_ip") or "")[:64],
                source_port=event["source_port"] if _is_id(event.get("source_port")) else None,
                user_agent=str(event.get("user_agent") or "")[:256],
                call_id=str(event.get("call_id") or "")[:256],
                detail=detail if isinstance(detail, dict) else {},
            )
        )
    SipEvent.objects.bulk_create(rows, ignore_conflicts=True)
    return len(rows)


def _resolve_accounts(aors: set[str]) -> dict[str, tuple[int, int]]:
    wanted = {}
    for aor in aors:
        username, sep, realm = aor.rpartition("@")
        if sep and username:
            wanted[(username, realm.lower())] = aor
    if not wanted:
        return {}
    result = {}
    rows = SipAccount.objects.filter(username__in={u for u, _ in wanted}).values_list(
        "pk", "username", "realm", "customer_id"
    )
    for pk, username, realm, customer_id in rows:
        aor = wanted.get((username, realm.lower()))
        if aor is not None:
            result[aor] = (pk, customer_id)
    return result


def _parse_time(value) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=UTC)


def _is_id(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


# --- call records ---------------------------------------------------------------------------


def store_call_records(records: list[dict]) -> int:
    """Store call records as the node reported them (unrated); a record id is stored once.

    Records of customers the portal does not know, or too malformed to keep, are logged and
    left out: they cannot be billed here.
    """
    if not records:
        return 0
    ids = {str(r.get("record_id") or "") for r in records} - {""}
    known = set(CallRecord.objects.filter(record_id__in=ids).values_list("record_id", flat=True))
    fresh = [r for r in records if str(r.get("record_id") or "") not in known]
    if not fresh:
        return 0
    customers = dict(
        Customer.objects.filter(account_number__in={str(r.get("customer")) for r in fresh}).values_list(
            "account_number", "pk"
        )
    )
    owners = _resolve_accounts({str(r.get("account")) for r in fresh if r.get("account")})
    rows, seen = [], set()
    for record in fresh:
        row = _call_record(record, customers, owners)
        if row is None:
            logger.warning("sipsync: call record left out (unknown customer or malformed): %r", record)
            continue
        if row.record_id not in seen:
            seen.add(row.record_id)
            rows.append(row)
    CallRecord.objects.bulk_create(rows, ignore_conflicts=True)
    _rate_stored([row.record_id for row in rows])
    return len(rows)


def _rate_stored(record_ids: list[str]) -> None:
    """Hand the stored records to billing, which rates and debits each exactly once. A failure
    here never loses a record: it stays unrated and billing's periodic sweep rates it."""
    from billing.services import call_records_rate

    ids = CallRecord.objects.filter(record_id__in=record_ids, rated=False).values_list("pk", flat=True)
    try:
        call_records_rate(list(ids))
    except Exception:
        logger.exception("sipsync: rating %d stored call records failed", len(record_ids))


def _call_record(record: dict, customers: dict[str, int], owners: dict) -> CallRecord | None:
    record_id = str(record.get("record_id") or "")
    customer_id = customers.get(str(record.get("customer")))
    invited_at = _parse_time(record.get("invited_at"))
    final_code = record.get("final_code")
    if not record_id or len(record_id) > 64 or customer_id is None or invited_at is None:
        return None
    if not _is_id(final_code) or not 100 <= final_code <= 699:
        return None
    answered_at = _parse_time(record.get("answered_at"))
    ended_at = _parse_time(record.get("ended_at")) or invited_at
    aor = str(record.get("account") or "")
    account_id, _ = owners.get(aor, (None, None))
    number = str(record.get("number") or "")
    cause = str(record.get("cause") or "")
    if answered_at is not None:
        disposition = CallDisposition.ANSWERED
    elif final_code == 487:
        disposition = CallDisposition.CANCELLED
    elif cause:  # the service's own machine-readable cause: it refused the call
        disposition = CallDisposition.REJECTED
    else:
        disposition = CallDisposition.FAILED
    duration = record.get("duration")
    return CallRecord(
        record_id=record_id,
        customer_id=customer_id,
        sip_account_id=account_id,
        caller=aor.rpartition("@")[0][:64],
        dialled_number=str(record.get("dialled") or "")[:64],
        normalised_number=number if len(number) <= 16 else "",
        invited_at=invited_at,
        answered_at=answered_at,
        ended_at=max(ended_at, invited_at),
        duration_seconds=duration if _is_id(duration) else 0,
        disposition=disposition,
        final_code=final_code,
        cause=cause[:64],
    )
