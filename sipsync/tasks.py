"""Celery tasks of provisioning sync: thin, named, idempotent; arguments are ids.

- `sipsync.push_outbox`: push outbox entries (queued on commit by `sipsync.outbox`).
- `sipsync.sweep_outbox` (beat): push whatever is due and left over (broker down, node failed).
- `sipsync.reconcile` (beat): compare every node's digest with the portal and heal drift.
- `sipsync.collect_events` (beat): store every node's rejection events and acknowledge them.
- `sipsync.collect_records` (beat): store every node's call records (unrated) and acknowledge.
- `sipsync.collect_credit` (beat): store the credit every node's calls in progress reserve.

Failures worth retrying (a node unreachable, a database busy) are retried a bounded number of
times with exponential backoff and jitter; what is still left after that the next beat run
picks up.
"""

import logging

from celery import shared_task
from django.db import OperationalError

from sipsync import outbox, services
from sipsync.client import NodeError, NodeUnavailable

logger = logging.getLogger(__name__)

SWEEP_BATCH = 100


class SyncIncomplete(Exception):
    """Some nodes did not take what was pushed or could not be read; the task is retried."""


RETRYING = {
    "autoretry_for": (SyncIncomplete, NodeUnavailable, OperationalError),
    "retry_backoff": 2,
    "retry_backoff_max": 120,
    "retry_jitter": True,
}


@shared_task(name="sipsync.push_outbox", acks_late=True, max_retries=5, **RETRYING)
def push_outbox(entry_ids: list[int] | None = None) -> dict:
    report = services.push_entries(entry_ids)
    if report.failed:
        raise SyncIncomplete("; ".join(report.failed[:5]))
    return {"pushed": report.done}


@shared_task(name="sipsync.sweep_outbox", max_retries=0)
def sweep_outbox() -> dict:
    ids = outbox.due_entry_ids(limit=10 * SWEEP_BATCH)
    for start in range(0, len(ids), SWEEP_BATCH):
        push_outbox.delay(ids[start : start + SWEEP_BATCH])
    return {"queued": len(ids)}


@shared_task(name="sipsync.reconcile", max_retries=2, **RETRYING)
def reconcile() -> dict:
    failed, result = [], {}
    for node in outbox.node_urls():
        try:
            report = services.reconcile_node(node)
        except NodeError as exc:
            logger.warning("sipsync: reconcile of %s failed: %s", node, exc)
            failed.append(str(exc))
            continue
        result[node] = {
            "pushed": report.pushed,
            "queued": report.queued,
            "removed": len(report.removed),
            "in_sync": report.in_sync,
        }
    if failed:
        raise SyncIncomplete("; ".join(failed))
    return result


@shared_task(name="sipsync.collect_events", max_retries=2, **RETRYING)
def collect_events() -> dict:
    return _collect_from_every_node(services.collect_events, "events")


@shared_task(name="sipsync.collect_credit", max_retries=0)
def collect_credit() -> dict:
    """No retries: the next beat run (seconds later) reads a fresher figure anyway."""
    return _collect_from_every_node(services.collect_credit, "credit in use")


@shared_task(name="sipsync.collect_records", max_retries=2, **RETRYING)
def collect_records() -> dict:
    return _collect_from_every_node(services.collect_records, "call records")


def _collect_from_every_node(collect, what: str) -> dict:
    failed, result = [], {}
    for node in outbox.node_urls():
        try:
            result[node] = collect(node)
        except NodeError as exc:
            logger.warning("sipsync: collecting %s from %s failed: %s", what, node, exc)
            failed.append(str(exc))
    if failed:
        raise SyncIncomplete("; ".join(failed))
    return result
