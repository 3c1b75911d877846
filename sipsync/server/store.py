"""The SIP service's durable local store: SQLite in WAL mode with group commit.

The service keeps what the portal pushes (account provisioning documents), the
registrar's bindings, the event subscriptions it notifies, the calls in progress,
its outgoing event spool and a little key/value state in one SQLite file, so it
keeps enforcing the last known state while the portal is down and so that
answered REGISTERs survive a crash.

Contract (write-behind queue, one transaction per flush)
--------------------------------------------------------
Every mutating method (``put_*``, ``delete_*``, ``append_event``,
``ack_events``, ``set_meta``) only *queues* the change in memory and returns
at once.  Nothing reaches the file until :meth:`LocalStore.flush`, which writes
everything queued in ONE transaction (group commit): a thousand registrations
cost one commit, not a thousand.  Whoever must not act before a change is
durable (the registrar before answering 200 to a REGISTER) calls ``flush()``
first, or awaits :meth:`LocalStore.flush_soon`, which coalesces every request
made during one event-loop turn into a single flush.  A change queued but not
flushed is lost if the process dies; that is by design.

Queued changes to the same row coalesce: the last write wins (a put after a
delete of the same binding leaves a put, and so on), so :attr:`pending` counts
rows to write, not calls made.  If a flush fails (disk full, I/O error) the
transaction is rolled back, the queue is kept intact for a retry, and the
exception propagates: the caller must not answer as if the change were durable
(RFC 3261 10.3 says 500).

Durability
----------
The journal is WAL.  With ``synchronous='NORMAL'`` (the default) a commit is
written to the WAL file with ``write()`` before ``flush()`` returns, so it
survives the death of the process (``kill -9``, a crash, the OOM killer); it is
not fsync'ed, so a power loss or kernel panic may lose the last commits (never
corrupt the file).  Pass ``synchronous='FULL'`` to fsync the WAL on every
commit (durable against power loss, at the cost of one fsync per group commit).
``':memory:'`` is accepted for tests (no WAL, nothing durable).

SQLite folds the WAL back into the main file (a checkpoint, which does fsync)
inside the commit that crosses ``wal_autocheckpoint`` pages (SQLite's default
1000).  A service that cannot afford that occasional pause in a flush passes
``wal_autocheckpoint=0`` and runs a :class:`Checkpointer`, which checkpoints from
a thread of its own (SQLite releases the GIL while it copies pages and syncs).

Reads (``load_*``, ``events_after``) see only flushed data, except
:meth:`get_meta`, which answers from the queue first.

Threading: one LocalStore belongs to one thread (the asyncio loop's); sqlite3
enforces this.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import sqlite3
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any, Final

import orjson

from sipsync.server.location import Binding

log = logging.getLogger("sipsync.store")

__all__ = ["Checkpointer", "LocalStore", "StoreError", "SCHEMA_VERSION"]

_intern: Final = sys.intern
_SYNC_MODES: Final = ("OFF", "NORMAL", "FULL", "EXTRA")
_PATH_SEP: Final = "\x1f"  # unit separator: cannot appear in a SIP URI / header value


class StoreError(Exception):
    """The store file is unusable (newer schema than this code knows, etc.)."""


# -- schema migrations (PRAGMA user_version) ---------------------------------
#
# Each entry brings the schema from version i to i+1.  Append, never edit.


def _m1(db: sqlite3.Connection) -> None:
    db.execute(
        "CREATE TABLE accounts ("
        " username TEXT NOT NULL, realm TEXT NOT NULL, doc TEXT NOT NULL,"
        " PRIMARY KEY (username, realm)) WITHOUT ROWID"
    )
    db.execute(
        "CREATE TABLE bindings ("
        " aor TEXT NOT NULL, contact_uri TEXT NOT NULL,"
        " expires_at REAL NOT NULL, q REAL, call_id TEXT NOT NULL, cseq INTEGER NOT NULL,"
        " source_host TEXT NOT NULL, source_port INTEGER NOT NULL, transport TEXT NOT NULL,"
        " user_agent TEXT, instance_id TEXT, reg_id INTEGER, registered_at REAL NOT NULL,"
        " path TEXT NOT NULL DEFAULT '',"
        " PRIMARY KEY (aor, contact_uri)) WITHOUT ROWID"
    )
    # AUTOINCREMENT: ids are never reused, even after every event was acked and
    # deleted, so a collector's cursor stays valid across restarts.
    db.execute("CREATE TABLE events (id INTEGER PRIMARY KEY AUTOINCREMENT, doc TEXT NOT NULL)")
    db.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID")


def _m2(db: sqlite3.Connection) -> None:
    # Answered calls in progress (sipsync.server.calls), so a restart can close them out.
    db.execute("CREATE TABLE calls_in_progress (record_id TEXT PRIMARY KEY, doc TEXT NOT NULL) WITHOUT ROWID")


def _m3(db: sqlite3.Connection) -> None:
    # Event subscriptions (sipsync.server.notifier), so phones keep their lamps across a restart.
    db.execute("CREATE TABLE subscriptions (id TEXT PRIMARY KEY, doc TEXT NOT NULL) WITHOUT ROWID")


_MIGRATIONS: tuple[Callable[[sqlite3.Connection], None], ...] = (_m1, _m2, _m3)
SCHEMA_VERSION = len(_MIGRATIONS)

_DELETE: Final = None  # queue marker: the row is to be deleted


# orjson, not json: a call writes its record and its state through these, and json's encoder
# took 3 % of a call's CPU (five microseconds a record, against half of one). Compact JSON, as
# before; text outside ASCII is now UTF-8 instead of \u escapes, which every reader accepts.
# What orjson refuses goes through json, as before: text with the lone surrogates that stand for
# undecodable bytes from the wire (a User-Agent in Latin-1, say), integers beyond 64 bits.
_JSON_SORTED: Final = json.JSONEncoder(separators=(",", ":"), sort_keys=True).encode
_JSON: Final = json.JSONEncoder(separators=(",", ":")).encode


def _encode(doc: Any) -> str:
    try:
        return orjson.dumps(doc, option=orjson.OPT_SORT_KEYS).decode()
    except orjson.JSONEncodeError:
        return _JSON_SORTED(doc)


def _encode_event(event: Any) -> str:
    try:
        return orjson.dumps(event).decode()
    except orjson.JSONEncodeError:
        return _JSON(event)


class LocalStore:
    """Durable local store; see the module docstring for the queue/flush contract."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        synchronous: str = "NORMAL",
        wal_autocheckpoint: int | None = None,
    ) -> None:
        sync = synchronous.upper()
        if sync not in _SYNC_MODES:
            raise ValueError(f"synchronous must be one of {_SYNC_MODES}, not {synchronous!r}")
        self.path = os.fspath(path)
        # isolation_level=None: no implicit transactions, flush() says BEGIN/COMMIT itself.
        self._db = sqlite3.connect(self.path, isolation_level=None)
        self._db.execute("PRAGMA busy_timeout = 5000")
        self.journal_mode = self._db.execute("PRAGMA journal_mode = WAL").fetchone()[0]
        self._db.execute(f"PRAGMA synchronous = {sync}")
        if wal_autocheckpoint is not None:
            self._db.execute(f"PRAGMA wal_autocheckpoint = {int(wal_autocheckpoint)}")
        self._migrate()
        # Queues.  Dicts keep insertion order and coalesce writes to one row.
        self._accounts: dict[tuple[str, str], str | None] = {}
        self._bindings: dict[tuple[str, str], Binding | None] = {}
        self._meta: dict[str, str] = {}
        # a call's state is serialised at the flush, once, however often it changed since
        self._calls: dict[str, Callable[[], dict[str, Any]] | None] = {}
        self._subscriptions: dict[str, str | None] = {}
        self._events: list[str] = []
        self._ack_upto: int | None = None
        self._flush_waiters: list[asyncio.Future[int]] = []
        self._flush_handle: asyncio.Handle | None = None
        self._closed = False

    # -- schema ------------------------------------------------------------
    def _migrate(self) -> None:
        current = self._db.execute("PRAGMA user_version").fetchone()[0]
        if current > SCHEMA_VERSION:
            raise StoreError(
                f"{self.path}: schema version {current} is newer than this code ({SCHEMA_VERSION})"
            )
        if current == SCHEMA_VERSION:
            return
        self._db.execute("BEGIN IMMEDIATE")
        try:
            for step in _MIGRATIONS[current:]:
                step(self._db)
            self._db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise

    @property
    def schema_version(self) -> int:
        return self._db.execute("PRAGMA user_version").fetchone()[0]

    # -- accounts ------------------------------------------------------------
    def load_accounts(self) -> Iterator[dict[str, Any]]:
        """Every stored provisioning document (flushed ones), as stored, one at a time: a node
        with 100,000 accounts never holds all their decoded documents at once."""
        rows = self._db.execute("SELECT doc FROM accounts ORDER BY username, realm")
        for (doc,) in rows:
            yield json.loads(doc)

    def put_account(self, doc: dict[str, Any]) -> None:
        """Queue a document, keyed by ``(doc['username'], doc['realm'])``.

        The document is serialised now, so a value JSON cannot hold fails here
        and not in a later flush that carries other people's changes.
        """
        username, realm = doc["username"], doc["realm"]
        if not isinstance(username, str) or not isinstance(realm, str):
            raise TypeError("account documents need string 'username' and 'realm'")
        self._accounts[(username, realm)] = _encode(doc)

    def delete_account(self, username: str, realm: str) -> None:
        self._accounts[(username, realm)] = _DELETE

    # -- bindings ------------------------------------------------------------
    def load_bindings(self) -> list[Binding]:
        rows = self._db.execute(
            "SELECT aor, contact_uri, expires_at, q, call_id, cseq, source_host, source_port,"
            " transport, user_agent, instance_id, reg_id, registered_at, path FROM bindings"
        )
        out = []
        for (
            aor,
            contact,
            exp,
            q,
            call_id,
            cseq,
            host,
            port,
            transport,
            ua,
            inst,
            reg_id,
            reg_at,
            path,
        ) in rows:
            out.append(
                Binding(
                    aor=_intern(aor),
                    contact_uri=contact,
                    expires_at=exp,
                    q=q,
                    call_id=call_id,
                    cseq=cseq,
                    source=(_intern(host), port),
                    transport=_intern(transport),
                    user_agent=_intern(ua) if ua is not None else None,
                    instance_id=inst,
                    reg_id=reg_id,
                    registered_at=reg_at,
                    path=tuple(path.split(_PATH_SEP)) if path else (),
                )
            )
        return out

    def put_binding(self, b: Binding) -> None:
        self._bindings[(b.aor, b.contact_uri)] = b

    def delete_binding(self, aor: str, contact_uri: str) -> None:
        self._bindings[(aor, contact_uri)] = _DELETE

    # -- events --------------------------------------------------------------
    def append_event(self, event: dict[str, Any]) -> None:
        """Queue an event; it gets its id (monotonically increasing) on flush."""
        self._events.append(_encode_event(event))

    def events_after(self, cursor: int, limit: int = 500) -> list[tuple[int, dict[str, Any]]]:
        """Flushed events with id > cursor, oldest first, at most ``limit``."""
        rows = self._db.execute(
            "SELECT id, doc FROM events WHERE id > ? ORDER BY id LIMIT ?", (cursor, limit)
        )
        return [(i, json.loads(doc)) for i, doc in rows]

    def ack_events(self, upto: int) -> None:
        """Queue deletion of every event with id <= upto (the collector has them)."""
        if self._ack_upto is None or upto > self._ack_upto:
            self._ack_upto = upto

    def event_count(self) -> int:
        """Flushed, unacknowledged events (for monitoring the spool)."""
        return self._db.execute("SELECT count(*) FROM events").fetchone()[0]

    # -- calls in progress ------------------------------------------------------
    def put_call(self, record_id: str, state: Callable[[], dict[str, Any]]) -> None:
        """Queue the state of a call in progress: ``state()`` gives it as a JSON-able dict, called
        at the next flush, so a call that changed several times since the last one is serialised
        once, and one that ended before it (a delete queued after) not at all."""
        self._calls[record_id] = state

    def _serialised_calls(self) -> dict[str, str | None]:
        documents: dict[str, str | None] = {}
        for record_id, state in list(self._calls.items()):
            try:
                documents[record_id] = None if state is None else _encode(state())
            except Exception:  # one broken state must not keep every later flush from committing
                log.exception("call %s: its state could not be serialised; not stored", record_id)
                del self._calls[record_id]
        return documents

    def delete_call(self, record_id: str) -> None:
        self._calls[record_id] = _DELETE

    def load_calls(self) -> list[tuple[str, dict[str, Any]]]:
        """Every flushed call in progress: ``(record_id, state)``."""
        rows = self._db.execute("SELECT record_id, doc FROM calls_in_progress ORDER BY record_id")
        return [(record_id, json.loads(doc)) for record_id, doc in rows]

    # -- event subscriptions ---------------------------------------------------
    def put_subscription(self, subscription_id: str, state: dict[str, Any]) -> None:
        """Queue the state of a subscription (serialised now, like accounts)."""
        self._subscriptions[subscription_id] = _encode(state)

    def delete_subscription(self, subscription_id: str) -> None:
        self._subscriptions[subscription_id] = _DELETE

    def load_subscriptions(self) -> list[dict[str, Any]]:
        """Every flushed subscription's state."""
        rows = self._db.execute("SELECT doc FROM subscriptions ORDER BY id")
        return [json.loads(doc) for (doc,) in rows]

    # -- meta ------------------------------------------------------------------
    def get_meta(self, key: str) -> str | None:
        if key in self._meta:
            return self._meta[key]
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else None

    def set_meta(self, key: str, value: str) -> None:
        if not isinstance(value, str):
            raise TypeError("meta values are strings")
        self._meta[key] = value

    # -- group commit ----------------------------------------------------------
    @property
    def pending(self) -> int:
        """Rows waiting for the next flush (after coalescing)."""
        return (
            len(self._accounts)
            + len(self._bindings)
            + len(self._meta)
            + len(self._calls)
            + len(self._subscriptions)
            + len(self._events)
            + (self._ack_upto is not None)
        )

    def flush(self) -> int:
        """Write everything queued in one transaction; return how many queued ops it wrote.

        A no-op (no transaction at all) when nothing is queued.  On failure the
        transaction is rolled back, the queue is kept, and the error propagates.
        """
        n = self.pending
        if n == 0:
            self._wake_waiters(0)
            return 0
        db = self._db
        calls = self._serialised_calls()
        try:
            db.execute("BEGIN IMMEDIATE")
            if self._accounts:
                puts = [(u, r, d) for (u, r), d in self._accounts.items() if d is not None]
                dels = [k for k, d in self._accounts.items() if d is None]
                if dels:
                    db.executemany("DELETE FROM accounts WHERE username = ? AND realm = ?", dels)
                if puts:
                    db.executemany("INSERT OR REPLACE INTO accounts VALUES (?, ?, ?)", puts)
            if self._bindings:
                dels = [k for k, b in self._bindings.items() if b is None]
                if dels:
                    db.executemany("DELETE FROM bindings WHERE aor = ? AND contact_uri = ?", dels)
                rows = [
                    (
                        b.aor,
                        b.contact_uri,
                        b.expires_at,
                        b.q,
                        b.call_id,
                        b.cseq,
                        b.source[0],
                        b.source[1],
                        b.transport,
                        b.user_agent,
                        b.instance_id,
                        b.reg_id,
                        b.registered_at,
                        _PATH_SEP.join(b.path),
                    )
                    for b in self._bindings.values()
                    if b is not None
                ]
                if rows:
                    db.executemany(
                        "INSERT OR REPLACE INTO bindings VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)", rows
                    )
            if self._meta:
                db.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)", self._meta.items())
            _write_documents(db, "calls_in_progress", "record_id", calls)
            _write_documents(db, "subscriptions", "id", self._subscriptions)
            if self._events:
                db.executemany("INSERT INTO events (doc) VALUES (?)", [(e,) for e in self._events])
            if self._ack_upto is not None:
                db.execute("DELETE FROM events WHERE id <= ?", (self._ack_upto,))
            db.execute("COMMIT")
        except BaseException as exc:
            if db.in_transaction:
                db.execute("ROLLBACK")
            self._fail_waiters(exc)
            raise
        self._accounts.clear()
        self._bindings.clear()
        self._meta.clear()
        self._calls.clear()
        self._subscriptions.clear()
        self._events.clear()
        self._ack_upto = None
        self._wake_waiters(n)
        return n

    def flush_soon(self) -> asyncio.Future[int]:
        """Group commit for asyncio callers: a future resolved once a flush has
        made everything queued so far durable.

        All callers during one loop turn share one flush (scheduled with
        ``call_soon``), so concurrent REGISTER handlers each ``await
        store.flush_soon()`` and then answer.  The future carries the flush's
        exception if it failed.  Must be called from within a running loop.
        """
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[int] = loop.create_future()
        self._flush_waiters.append(fut)
        if self._flush_handle is None:
            self._flush_handle = loop.call_soon(self._flush_from_loop)
        return fut

    def _flush_from_loop(self) -> None:
        self._flush_handle = None
        # A failure is delivered to every waiter by flush() (_fail_waiters).
        with contextlib.suppress(Exception):
            self.flush()

    def _wake_waiters(self, n: int) -> None:
        waiters, self._flush_waiters = self._flush_waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_result(n)

    def _fail_waiters(self, exc: BaseException) -> None:
        waiters, self._flush_waiters = self._flush_waiters, []
        for fut in waiters:
            if not fut.done():
                fut.set_exception(exc)

    # -- lifecycle ------------------------------------------------------------
    def total_changes(self) -> int:
        """sqlite3 ``total_changes`` of this connection (rows written since open)."""
        return self._db.total_changes

    def checkpoint(self) -> None:
        """Fold the WAL back into the main file (e.g. at quiet times or shutdown)."""
        self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def close(self) -> None:
        """Close the connection.  Queued, unflushed changes are discarded: flush first."""
        if self._closed:
            return
        self._closed = True
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        self._fail_waiters(StoreError("store closed before the flush"))
        self._db.close()

    def __enter__(self) -> LocalStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Checkpointer:
    """Checkpoints a store's WAL every ``interval`` seconds from a background thread.

    PASSIVE checkpoints never block the writer; a commit in the event loop then only appends
    to the WAL, and the copy back into the main file (with its fsync) happens off the loop.
    """

    def __init__(self, path: str | os.PathLike[str], interval: float = 1.0) -> None:
        self._path = os.fspath(path)
        self._interval = interval
        self._stopped = threading.Event()
        self._worker = threading.Thread(target=self._run, name="sqlite-checkpoint", daemon=True)

    def start(self) -> None:
        if self._path != ":memory:":
            self._worker.start()

    def _run(self) -> None:
        db = sqlite3.connect(self._path, isolation_level=None)
        try:
            db.execute("PRAGMA busy_timeout = 1000")
            while not self._stopped.wait(self._interval):
                with contextlib.suppress(sqlite3.Error):
                    db.execute("PRAGMA wal_checkpoint(PASSIVE)")
        finally:
            db.close()

    def stop(self) -> None:
        self._stopped.set()
        if self._worker.is_alive():
            self._worker.join(timeout=5)


def _write_documents(db: sqlite3.Connection, table: str, key: str, queued: dict[str, str | None]) -> None:
    """Write queued JSON documents of a two-column table; ``None`` deletes the row."""
    gone = [(k,) for k, doc in queued.items() if doc is None]
    if gone:
        db.executemany(f"DELETE FROM {table} WHERE {key} = ?", gone)  # noqa: S608 - fixed names
    kept = [(k, doc) for k, doc in queued.items() if doc is not None]
    if kept:
        db.executemany(f"INSERT OR REPLACE INTO {table} VALUES (?, ?)", kept)  # noqa: S608
