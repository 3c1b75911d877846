"""LocalStore: schema, queue/flush contract, durability across kill -9, group commit."""

import asyncio
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from sipsync.server.location import Binding
from sipsync.server.store import SCHEMA_VERSION, LocalStore, StoreError

REPO = Path(__file__).resolve().parents[3]


def binding(i: int = 0, aor: str = "acme1001@sip.example.net", **kw) -> Binding:
    fields = dict(
        aor=aor, contact_uri=f"sip:acme1001@192.0.2.{i % 250}:{5060 + i};transport=udp",
        expires_at=2_000_000_000.0 + i, q=0.5 if i % 2 else None, call_id=f"call-{i}@ua", cseq=i + 1,
        source=("198.51.100.7", 40000 + i), transport="UDP", user_agent="Yealink SIP-T46U",
        instance_id=None, reg_id=None, registered_at=1_700_000_000.0 + i, path=(),
    )
    fields.update(kw)
    return Binding(**fields)


@pytest.fixture
def db_path(tmp_path):
    return tmp_path / "sip.sqlite3"


def test_schema_created_in_wal_mode(db_path):
    store = LocalStore(db_path)
    assert store.journal_mode == "wal"
    assert store.schema_version == SCHEMA_VERSION
    store.close()
    con = sqlite3.connect(db_path)
    tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"accounts", "bindings", "events", "meta"} <= tables
    assert con.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    con.close()
    LocalStore(db_path).close()     # reopening an up-to-date file migrates nothing


def test_newer_schema_is_refused(db_path):
    con = sqlite3.connect(db_path)
    con.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    con.close()
    with pytest.raises(StoreError, match="newer"):
        LocalStore(db_path)


def test_synchronous_mode_is_configurable(db_path):
    with pytest.raises(ValueError, match="synchronous"):
        LocalStore(db_path, synchronous="sometimes")
    store = LocalStore(db_path, synchronous="full")
    assert store._db.execute("PRAGMA synchronous").fetchone()[0] == 2
    store.close()
    store = LocalStore(db_path)
    assert store._db.execute("PRAGMA synchronous").fetchone()[0] == 1   # NORMAL
    store.close()


def test_memory_store_works(tmp_path):
    store = LocalStore(":memory:")
    store.put_binding(binding())
    assert store.flush() == 1
    assert store.load_bindings() == [binding()]
    store.close()


def test_bindings_persist_across_reopen(db_path):
    store = LocalStore(db_path)
    written = [binding(i) for i in range(20)]
    written.append(binding(99, instance_id="<urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6>", reg_id=1,
                           path=("<sip:edge1.example.net;lr>", "<sip:edge2.example.net;lr>"), transport="TCP",
                           user_agent=None, q=1.0))
    for b in written:
        store.put_binding(b)
    assert store.pending == len(written)
    assert store.flush() == len(written)
    assert store.pending == 0
    store.close()

    store = LocalStore(db_path)
    loaded = sorted(store.load_bindings(), key=lambda b: b.contact_uri)
    assert loaded == sorted(written, key=lambda b: b.contact_uri)
    store.close()


def test_queued_but_not_flushed_is_lost(db_path):
    """The contract: nothing is durable before flush(); close() discards the queue."""
    store = LocalStore(db_path)
    store.put_binding(binding(1))
    store.flush()
    store.put_binding(binding(2))
    store.delete_binding(binding(1).aor, binding(1).contact_uri)
    store.append_event({"kind": "x"})
    store.set_meta("node", "sip1")
    store.put_account({"username": "a", "realm": "r", "version": 1})
    assert store.pending == 5
    store.close()

    store = LocalStore(db_path)
    assert store.load_bindings() == [binding(1)]
    assert store.events_after(0) == []
    assert store.get_meta("node") is None
    assert list(store.load_accounts()) == []
    store.close()


def test_delete_binding(db_path):
    store = LocalStore(db_path)
    store.put_binding(binding(1))
    store.put_binding(binding(2))
    store.flush()
    store.delete_binding(binding(1).aor, binding(1).contact_uri)
    assert store.flush() == 1
    assert store.load_bindings() == [binding(2)]
    store.close()


def test_queued_writes_to_one_row_coalesce(db_path):
    store = LocalStore(db_path)
    b = binding(1)
    store.put_binding(b)
    store.delete_binding(b.aor, b.contact_uri)
    assert store.pending == 1
    store.flush()
    assert store.load_bindings() == []
    store.delete_binding(b.aor, b.contact_uri)
    refreshed = binding(1, cseq=50)
    store.put_binding(refreshed)                    # last write wins
    assert store.flush() == 1
    assert store.load_bindings() == [refreshed]
    store.close()


def test_group_commit_is_one_transaction(db_path):
    store = LocalStore(db_path)
    statements: list[str] = []
    store._db.set_trace_callback(statements.append)
    before = store.total_changes()
    for i in range(1000):
        store.put_binding(binding(i))
    assert statements == []                         # queued: nothing reached SQLite yet
    assert store.flush() == 1000
    assert store.total_changes() - before == 1000
    verbs = [s.split()[0].upper() for s in statements]
    assert verbs.count("BEGIN") == 1
    assert verbs.count("COMMIT") == 1
    statements.clear()
    assert store.flush() == 0                       # nothing queued: no transaction at all
    assert statements == []
    store.close()


def refuse_bindings_of(store: LocalStore, call_id: str) -> None:
    """Make the database refuse to write one binding (as a full disk or a constraint would)."""
    store._db.execute(
        "CREATE TEMP TRIGGER refuse BEFORE INSERT ON bindings "
        f"WHEN NEW.call_id = '{call_id}' BEGIN SELECT RAISE(ABORT, 'refused'); END"
    )


def test_failed_flush_rolls_back_and_keeps_the_queue(db_path):
    store = LocalStore(db_path)
    refuse_bindings_of(store, "call-2@ua")
    store.put_binding(binding(1))
    store.put_binding(binding(2))
    store.append_event({"kind": "e"})
    with pytest.raises(sqlite3.IntegrityError):
        store.flush()
    assert store.pending == 3                       # kept for a retry
    assert store.load_bindings() == []              # all or nothing
    assert store.events_after(0) == []
    store._db.execute("DROP TRIGGER refuse")        # the database takes the row again
    assert store.flush() == 3
    assert len(store.load_bindings()) == 2
    assert len(store.events_after(0)) == 1
    store.close()


KILL_SCRIPT = textwrap.dedent("""
    import sys, time
    from sipsync.server.location import Binding
    from sipsync.server.store import LocalStore
    path, n = sys.argv[1], int(sys.argv[2])
    store = LocalStore(path)
    for i in range(n):
        store.put_binding(Binding(
            aor=f"user{i}@sip.example.net", contact_uri=f"sip:user{i}@192.0.2.1:{5060 + i}",
            expires_at=2_000_000_000.0, q=None, call_id=f"c{i}", cseq=1, source=("192.0.2.1", 5060 + i),
            transport="UDP", user_agent="ua", instance_id=None, reg_id=None, registered_at=1.0))
    store.flush()
    # queued after the flush: must be lost, since it is never flushed
    store.put_binding(Binding(
        aor="late@sip.example.net", contact_uri="sip:late@192.0.2.9", expires_at=2_000_000_000.0,
        q=None, call_id="late", cseq=1, source=("192.0.2.9", 5060), transport="UDP", user_agent=None,
        instance_id=None, reg_id=None, registered_at=1.0))
    print("flushed", flush=True)
    time.sleep(60)
""")


def test_flushed_bindings_survive_kill_9(db_path):
    n = 2000
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen(
        [sys.executable, "-c", KILL_SCRIPT, str(db_path), str(n)],
        stdout=subprocess.PIPE, text=True, env=env, cwd=REPO,
    )
    try:
        line = proc.stdout.readline()
        assert line.strip() == "flushed"
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=10) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
    store = LocalStore(db_path)
    aors = {b.aor for b in store.load_bindings()}
    assert len(aors) == n
    assert "late@sip.example.net" not in aors
    store.close()


def test_events_get_increasing_ids_and_survive_reopen(db_path):
    store = LocalStore(db_path)
    for i in range(5):
        store.append_event({"kind": "rejection", "n": i})
    assert store.events_after(0) == []              # not flushed yet
    store.flush()
    events = store.events_after(0)
    ids = [i for i, _ in events]
    assert ids == sorted(ids) and len(set(ids)) == 5
    assert [e["n"] for _, e in events] == [0, 1, 2, 3, 4]
    assert store.events_after(ids[1], limit=2) == events[2:4]
    store.close()

    store = LocalStore(db_path)
    assert store.events_after(0) == events
    store.ack_events(ids[2])
    assert store.events_after(0) == events          # the ack is queued too
    store.flush()
    assert store.events_after(0) == events[3:]
    assert store.event_count() == 2
    store.close()

    store = LocalStore(db_path)
    assert store.events_after(0) == events[3:]
    store.ack_events(ids[4])
    store.flush()
    assert store.events_after(0) == []
    store.close()

    # ids are never reused, even once every event was acknowledged and deleted
    store = LocalStore(db_path)
    store.append_event({"kind": "later"})
    store.flush()
    ((new_id, doc),) = store.events_after(ids[4])
    assert new_id > ids[4] and doc == {"kind": "later"}
    store.close()


def test_unserialisable_event_fails_at_append_not_at_flush(db_path):
    store = LocalStore(db_path)
    with pytest.raises(TypeError):
        store.append_event({"kind": "x", "bad": object()})
    assert store.pending == 0
    store.close()


def test_what_comes_off_the_wire_is_stored_as_it_was(db_path):
    """Undecodable bytes (kept as lone surrogates), text outside ASCII and integers beyond 64
    bits come back from the store unchanged, in events and in documents alike."""
    store = LocalStore(db_path)
    latin1 = b"Sn\xf8m Phone".decode("utf-8", "surrogateescape")
    event = {"kind": "rejection", "user_agent": latin1, "display": "Zoë 📞", "cseq": 2**70}
    store.append_event(event)
    account = {"username": "alice", "realm": "sip.test", "display": "Zoë", "ua": latin1}
    store.put_account(account)
    store.flush()
    [(_, stored)] = store.events_after(0)
    assert stored == event
    assert list(store.load_accounts()) == [account]
    store.close()


def test_meta(db_path):
    store = LocalStore(db_path)
    assert store.get_meta("node_id") is None
    store.set_meta("node_id", "sip-a")
    assert store.get_meta("node_id") == "sip-a"     # read-your-writes from the queue
    store.flush()
    store.set_meta("node_id", "sip-b")
    store.close()
    store = LocalStore(db_path)
    assert store.get_meta("node_id") == "sip-a"
    with pytest.raises(TypeError):
        store.set_meta("n", 5)
    store.close()


def test_accounts_put_delete_load(db_path):
    store = LocalStore(db_path)
    store.put_account({"username": "a", "realm": "r", "version": 1, "x": [1, 2]})
    store.put_account({"username": "b", "realm": "r", "version": 3})
    store.flush()
    store.put_account({"username": "a", "realm": "r", "version": 2})
    store.delete_account("b", "r")
    store.flush()
    store.close()
    store = LocalStore(db_path)
    assert list(store.load_accounts()) == [{"username": "a", "realm": "r", "version": 2}]
    store.close()


def test_flush_soon_coalesces_one_loop_turn_into_one_flush(db_path):
    store = LocalStore(db_path)
    statements: list[str] = []
    store._db.set_trace_callback(statements.append)

    async def handler(i: int) -> int:
        store.put_binding(binding(i))
        return await store.flush_soon()

    async def main():
        return await asyncio.gather(*(handler(i) for i in range(50)))

    results = asyncio.run(main())
    assert results == [50] * 50                     # every waiter saw the same single flush
    assert [s.split()[0].upper() for s in statements].count("COMMIT") == 1
    assert len(store.load_bindings()) == 50
    store.close()


def test_flush_soon_delivers_failures(db_path):
    store = LocalStore(db_path)

    refuse_bindings_of(store, "call-1@ua")

    async def main():
        store.put_binding(binding(1))
        with pytest.raises(sqlite3.IntegrityError):
            await store.flush_soon()

    asyncio.run(main())
    assert store.pending == 1
    store.close()


def test_flush_throughput_smoke(db_path):
    """Not a benchmark: a generous bound that catches accidental per-row commits."""
    store = LocalStore(db_path)
    t0 = time.perf_counter()
    for batch in range(10):
        for i in range(1000):
            store.put_binding(binding(batch * 1000 + i))
        store.flush()
    assert time.perf_counter() - t0 < 10
    assert len(store.load_bindings()) == 10_000
    store.close()


def test_wal_autocheckpoint_and_manual_checkpoint(db_path):
    store = LocalStore(db_path, wal_autocheckpoint=0)
    assert store._db.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 0
    for i in range(100):
        store.put_binding(binding(i))
    store.flush()
    wal = Path(f"{db_path}-wal")
    assert wal.stat().st_size > 0
    store.checkpoint()
    assert wal.stat().st_size == 0
    store.close()
    store = LocalStore(db_path)
    assert len(store.load_bindings()) == 100
    store.close()


def test_checkpointer_folds_the_wal_back_without_the_writer(tmp_path):
    from sipsync.server.store import Checkpointer

    path = tmp_path / "ckpt.db"
    store = LocalStore(path, wal_autocheckpoint=0)
    for i in range(300):
        store.set_meta(f"k{i}", "x" * 500)
        store.flush()
    # With automatic checkpoints off, the rows are only in the WAL: the main file stays small.
    assert path.stat().st_size < 50_000 < (tmp_path / "ckpt.db-wal").stat().st_size
    checkpointer = Checkpointer(path, interval=0.05)
    checkpointer.start()
    try:
        deadline = time.monotonic() + 10
        while path.stat().st_size < 100_000 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        checkpointer.stop()
    assert path.stat().st_size >= 100_000
    assert store.get_meta("k299") == "x" * 500
    store.close()
