"""EventRecorder: rejection events spooled through the store."""

from datetime import UTC, datetime

import pytest

from sipsync.server.events import EventRecorder, iso_utc
from sipsync.server.store import LocalStore

T0 = 1_795_996_800.25  # 2026-11-30T00:00:00.250Z


class Clock:
    def __init__(self, t: float = T0):
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def db_path(tmp_path):
    return tmp_path / "sip.sqlite3"


def reject(rec, **kw):
    fields = dict(
        method="REGISTER",
        code=403,
        cause="account_disabled",
        reason_phrase="Forbidden",
        account="acme1001@sip.example.net",
        source=("198.51.100.7", 5060),
        user_agent="Yealink SIP-T46U",
        call_id="abc@ua",
    )
    fields.update(kw)
    return rec.rejection(**fields)


def test_iso_utc():
    assert iso_utc(T0) == "2026-11-30T00:00:00.250Z"
    assert iso_utc(0) == "1970-01-01T00:00:00.000Z"


def test_rejection_event_shape(db_path):
    store = LocalStore(db_path)
    rec = EventRecorder(store, clock=Clock(), node="sip1")
    ev = reject(rec, detail={"nonce_stale": True})
    assert ev == {
        "kind": "rejection",
        "time": "2026-11-30T00:00:00.250Z",
        "node": "sip1",
        "method": "REGISTER",
        "code": 403,
        "reason_phrase": "Forbidden",
        "cause": "account_disabled",
        "account": "acme1001@sip.example.net",
        "source_ip": "198.51.100.7",
        "source_port": 5060,
        "user_agent": "Yealink SIP-T46U",
        "call_id": "abc@ua",
        "detail": {"nonce_stale": True},
    }
    assert store.pending == 1
    store.flush()
    ((_, stored),) = store.events_after(0)
    assert stored == ev
    store.close()


def test_unknown_account_and_missing_headers(db_path):
    store = LocalStore(db_path)
    rec = EventRecorder(store, clock=Clock())
    ev = reject(
        rec,
        account=None,
        user_agent=None,
        call_id=None,
        code=404,
        cause="unknown_account",
        reason_phrase="Not Found",
    )
    assert ev["account"] is None and ev["user_agent"] is None and "detail" not in ev
    assert ev["node"] == "local"
    store.close()


def test_network_text_is_bounded(db_path):
    store = LocalStore(db_path)
    ev = reject(EventRecorder(store, clock=Clock()), user_agent="x" * 10_000, call_id="y" * 10_000)
    assert len(ev["user_agent"]) == 256 and len(ev["call_id"]) == 256
    store.close()


def test_events_get_increasing_ids_and_are_collected_across_reopen(db_path):
    clock = Clock()
    store = LocalStore(db_path)
    rec = EventRecorder(store, clock=clock, node="sip1")
    for i in range(3):
        clock.t += 1
        reject(rec, code=400 + i)
    store.flush()
    store.close()

    store = LocalStore(db_path)
    rec = EventRecorder(store, clock=clock, node="sip1")
    reject(rec, code=480)
    store.flush()
    batch = store.events_after(0, limit=2)
    assert [e["code"] for _, e in batch] == [400, 401]
    cursor = batch[-1][0]
    rest = store.events_after(cursor)
    assert [e["code"] for _, e in rest] == [402, 480]
    ids = [i for i, _ in batch + rest]
    assert ids == sorted(set(ids))
    store.ack_events(cursor)
    store.flush()
    assert store.events_after(0) == rest
    store.close()


def test_flood_is_capped_and_summarised(db_path):
    clock = Clock(1_800_000_000.0)
    store = LocalStore(db_path)
    rec = EventRecorder(store, clock=clock, max_per_second=10)
    for _ in range(25):
        reject(rec)
    assert store.pending == 10
    assert rec.suppressed_total == 15
    clock.t += 1  # next second: the summary goes first
    reject(rec, code=404)
    store.flush()
    kinds = [(e["kind"], e.get("count"), e.get("code")) for _, e in store.events_after(0)]
    assert kinds[:10] == [("rejection", None, 403)] * 10
    assert kinds[10:] == [("suppressed", 15, None), ("rejection", None, 404)]
    summary = store.events_after(0)[10][1]
    assert summary["since"] == iso_utc(1_800_000_000.0)
    assert rec.flush_suppressed() is None
    store.close()


def test_no_cap(db_path):
    store = LocalStore(db_path)
    rec = EventRecorder(store, clock=Clock(), max_per_second=None)
    for _ in range(2000):
        reject(rec)
    assert store.pending == 2000
    store.close()


def test_generic_record_for_other_kinds(db_path):
    store = LocalStore(db_path)
    rec = EventRecorder(store, clock=Clock(), node="n")
    ev = rec.record("cdr", {"call_id": "c", "duration": 12.5})
    assert ev == {
        "kind": "cdr",
        "time": "2026-11-30T00:00:00.250Z",
        "node": "n",
        "call_id": "c",
        "duration": 12.5,
    }
    store.flush()
    assert store.events_after(0)[0][1] == ev
    store.close()


def test_call_records_are_never_suppressed_by_the_flood_cap(tmp_path):
    from sipsync.server.events import CALL_RECORD_KIND, EventRecorder
    from sipsync.server.store import LocalStore

    with LocalStore(tmp_path / "s.db") as store:
        recorder = EventRecorder(store, clock=lambda: 1000.0, max_per_second=3)
        for i in range(10):
            recorder.record("rejection", {"i": i})
            recorder.record(CALL_RECORD_KIND, {"record_id": f"r{i}"})
        store.flush()
        kinds = [event["kind"] for _, event in store.events_after(0, limit=100)]
    assert kinds.count("call") == 10
    assert kinds.count("rejection") == 3


@pytest.mark.parametrize(
    "moment",
    [0.0, 1_800_000_000.0, 1_800_000_000.0005, 1_800_000_000.9994999, 1_800_000_000.9999996,
     1_799_999_999.999, 4_102_444_799.25, 1_700_000_000.123456],
)  # fmt: skip
def test_iso_utc_is_what_datetime_says_to_the_millisecond(moment):
    expected = datetime.fromtimestamp(moment, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    assert iso_utc(moment) == expected
    assert iso_utc(moment) == expected  # from the cache of recent seconds the second time
