"""Registrar bindings (RFC 3261 section 10): save, lookup, expire.

In the spirit of Kamailio's usrloc: the bindings live in memory (a dict from
address-of-record to a short list of :class:`Binding`), every change is also
queued on the :class:`~sipsync.server.store.LocalStore`, and a heap of expiry
times makes :meth:`LocationService.expire` cost O(expired log n).

Contract with the registrar
---------------------------
``apply_register`` and ``remove_all`` change memory at once (so a lookup right
after sees the new state) and *queue* the same change on the store; they never
flush.  The registrar must make the change durable -- ``store.flush()`` or
``await store.flush_soon()`` -- before it answers 200, so that an answered
REGISTER survives ``kill -9``.  If that flush fails, answer 500 (RFC 3261 10.3
step 7); the in-memory state is then ahead of the file until the next
successful flush (the queue is kept and retried by the next flush).

Times are wall-clock seconds (``time.time`` by default): ``expires_at`` is
absolute so it survives restarts.  On start-up the service rebuilds memory from
the store and drops (and queues the deletion of) bindings that expired while it
was down.

Choices where RFC 3261 10.3 leaves room
---------------------------------------
* Bindings are identified by the Contact URI string as registered (compared
  exactly, like usrloc's default matching, unless a ``contact_key`` function
  giving RFC 3261 19.1.4 equivalence is passed to the service), or -- when the Contact carries
  ``+sip.instance`` -- by (instance-id, reg-id) (RFC 5626 section 6; reg-id
  ``None`` for RFC 5627-only UAs).  A new Contact replaces every existing
  binding that matches it by either identity, so an outbound UA that comes
  back on a new flow (new port, new Contact) replaces its old flow binding.
* Step 6/7 ordering: when an existing binding has the request's Call-ID and a
  CSeq greater than or equal to the request's, the request is out of order; the
  RFC says the update is aborted and the request fails.  Nothing at all is
  changed (all-or-nothing) and :class:`LocationError` 500 "Out of order CSeq"
  is raised; a genuine retransmission never gets here because the transaction
  layer answers it.
* Too many contacts: :class:`LocationError` 403 "Too many registered contacts"
  (Kamailio says 503, but a 503 makes RFC 3263 clients fail over to another
  server and retry, which cannot help; 403 tells the UA the request is refused
  by policy).  Only a request that *adds* a binding beyond ``max_contacts``
  fails; refreshing or removing bindings always works even if the account's
  limit was lowered below what is registered.  ``max_contacts <= 0`` means no
  limit (as in Kamailio).
* Expires values arrive already clamped by the registrar (Min-Expires/423 and
  the maximum are its job); ``expires <= 0`` removes.
* Lookup order: q descending (a Contact without q ranks as q=1.0), then the
  most recently registered (refreshed) first.
"""

from __future__ import annotations

import heapq
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:  # pragma: no cover
    from sipsync.server.store import LocalStore

__all__ = ["Binding", "ContactChange", "LocationError", "LocationService"]

_intern: Final = sys.intern
_DEFAULT_Q: Final = 1.0


# Binding and ContactChange are built for every REGISTER: each __init__ is written out for mypyc
# (see sipsync.native).


@dataclass(init=False, slots=True)
class Binding:
    """One registered contact of an address-of-record."""

    aor: str                    # 'username@realm'
    contact_uri: str            # the Contact URI as registered
    expires_at: float           # absolute, wall-clock seconds
    q: float | None
    call_id: str
    cseq: int
    source: tuple[str, int]     # where the REGISTER came from; requests go there (NAT)
    transport: str              # 'UDP' | 'TCP' | 'TLS' | 'WS' | 'WSS'
    user_agent: str | None
    instance_id: str | None     # +sip.instance
    reg_id: int | None
    registered_at: float        # when the last REGISTER that created/refreshed it arrived
    path: tuple[str, ...]       # RFC 3327 Path, as received

    def __init__(
        self,
        *,
        aor: str,
        contact_uri: str,
        expires_at: float,
        q: float | None,
        call_id: str,
        cseq: int,
        source: tuple[str, int],
        transport: str,
        user_agent: str | None,
        instance_id: str | None,
        reg_id: int | None,
        registered_at: float,
        path: tuple[str, ...] = (),
    ) -> None:
        self.aor = aor
        self.contact_uri = contact_uri
        self.expires_at = expires_at
        self.q = q
        self.call_id = call_id
        self.cseq = cseq
        self.source = source
        self.transport = transport
        self.user_agent = user_agent
        self.instance_id = instance_id
        self.reg_id = reg_id
        self.registered_at = registered_at
        self.path = path

    def expires_in(self, now: float) -> int:
        """Seconds left, for the Contact ;expires= of the 200 OK (never negative)."""
        left = int(self.expires_at - now + 0.5)
        return left if left > 0 else 0


@dataclass(init=False, slots=True)
class ContactChange:
    """One Contact of a REGISTER, already parsed and with its expiry decided."""

    contact_uri: str
    expires: int
    q: float | None
    source: tuple[str, int]
    transport: str
    user_agent: str | None
    instance_id: str | None
    reg_id: int | None
    path: tuple[str, ...]

    def __init__(
        self,
        contact_uri: str,
        expires: int,
        q: float | None = None,
        source: tuple[str, int] = ("", 0),
        transport: str = "UDP",
        user_agent: str | None = None,
        instance_id: str | None = None,
        reg_id: int | None = None,
        path: tuple[str, ...] = (),
    ) -> None:
        self.contact_uri = contact_uri
        self.expires = expires
        self.q = q
        self.source = source
        self.transport = transport
        self.user_agent = user_agent
        self.instance_id = instance_id
        self.reg_id = reg_id
        self.path = path


class LocationError(Exception):
    """The REGISTER must be answered with ``code``/``reason``; nothing was changed."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"{code} {reason}")
        self.code = code
        self.reason = reason


def _order_key(b: Binding) -> tuple[float, float, str]:
    return (-(b.q if b.q is not None else _DEFAULT_Q), -b.registered_at, b.contact_uri)


class LocationService:
    """The in-memory location table, persisted through a LocalStore."""

    def __init__(
        self,
        store: LocalStore,
        clock: Callable[[], float] = time.time,
        *,
        contact_key: Callable[[str], object] | None = None,
    ) -> None:
        """``contact_key`` maps a Contact URI to what binding matching compares
        (e.g. a canonical form implementing RFC 3261 19.1.4 URI equivalence);
        the default compares the URI strings exactly."""
        self._store = store
        self._clock = clock
        self._contact_key = contact_key
        self._by_aor: dict[str, list[Binding]] = {}
        self._heap: list[tuple[float, str]] = []
        self._next: dict[str, float] = {}   # AOR -> time of its live heap entry
        self._count = 0
        self.dropped_at_load = 0
        now = clock()
        for b in store.load_bindings():
            if b.expires_at <= now:
                store.delete_binding(b.aor, b.contact_uri)
                self.dropped_at_load += 1
                continue
            self._by_aor.setdefault(b.aor, []).append(b)
            self._count += 1
        for aor, bs in self._by_aor.items():
            self._next[aor] = min(b.expires_at for b in bs)
        self._heap = [(t, aor) for aor, t in self._next.items()]
        heapq.heapify(self._heap)

    # -- queries ---------------------------------------------------------------
    def lookup(self, aor: str, now: float | None = None) -> list[Binding]:
        """Unexpired bindings of ``aor``: q descending, then most recent first."""
        bs = self._by_aor.get(aor)
        if not bs:
            return []
        if now is None:
            now = self._clock()
        live = [b for b in bs if b.expires_at > now]
        live.sort(key=_order_key)
        return live

    def written_by(self, aor: str, call_id: str, cseq: int, now: float) -> bool:
        """Whether a live binding of ``aor`` was last written by the REGISTER ``call_id``/``cseq``
        (so this one is its retransmission)."""
        for b in self._by_aor.get(aor, ()):
            if b.cseq == cseq and b.call_id == call_id and b.expires_at > now:
                return True
        return False

    def count(self) -> int:
        """Bindings held in memory (including expired ones not yet collected by expire())."""
        return self._count

    def aors(self) -> Iterable[str]:
        return self._by_aor.keys()

    def __len__(self) -> int:
        return self._count

    # -- changes ---------------------------------------------------------------
    def apply_register(
        self,
        aor: str,
        changes: list[ContactChange],
        *,
        call_id: str,
        cseq: int,
        max_contacts: int,
        now: float | None = None,
    ) -> list[Binding]:
        """Apply one REGISTER's Contacts atomically (RFC 3261 10.3 steps 7-8).

        Returns the AOR's full current binding list (for the 200 OK).  Raises
        :class:`LocationError` (and changes nothing) for an out-of-order
        request or too many contacts.  An empty ``changes`` is a query.
        """
        if now is None:
            now = self._clock()
        aor = _intern(aor)
        old = self._by_aor.get(aor, [])
        current = [b for b in old if b.expires_at > now]   # stale ones are dropped below
        removed: list[Binding] = [b for b in old if b.expires_at <= now]
        touched: set[str] = set()     # contact URIs written by this request
        added = False
        ckey = self._contact_key
        for c in changes:
            keep: list[Binding] = []
            matched = False
            c_key = ckey(c.contact_uri) if ckey is not None else c.contact_uri
            for b in current:
                if (
                    (b.contact_uri == c.contact_uri
                     or (ckey is not None and ckey(b.contact_uri) == c_key))
                    or (c.instance_id is not None and b.instance_id == c.instance_id
                        and b.reg_id == c.reg_id)
                ):
                    if b.contact_uri not in touched and b.call_id == call_id and cseq <= b.cseq:
                        raise LocationError(500, "Out of order CSeq")
                    matched = True
                    if b.contact_uri != c.contact_uri or c.expires <= 0:
                        removed.append(b)
                    # else: overwritten by the new binding below (same store key)
                else:
                    keep.append(b)
            current = keep
            if c.expires > 0:
                current.append(Binding(
                    aor=aor, contact_uri=c.contact_uri, expires_at=now + c.expires, q=c.q,
                    call_id=call_id, cseq=cseq, source=(_intern(c.source[0]), c.source[1]),
                    transport=_intern(c.transport),
                    user_agent=_intern(c.user_agent) if c.user_agent is not None else None,
                    instance_id=c.instance_id, reg_id=c.reg_id, registered_at=now,
                    path=tuple(c.path),
                ))
                touched.add(c.contact_uri)
                if not matched:
                    added = True
        if added and 0 < max_contacts < len(current):
            raise LocationError(403, "Too many registered contacts")
        # Commit: memory first, then queue the same on the store.
        store = self._store
        kept = {b.contact_uri for b in current}
        for b in removed:
            if b.contact_uri not in kept:
                store.delete_binding(aor, b.contact_uri)
        old_ids = {id(b) for b in old}
        for b in current:
            if id(b) not in old_ids:
                store.put_binding(b)
        self._set(aor, old, current)
        current.sort(key=_order_key)
        return list(current)

    def remove_all(self, aor: str, *, call_id: str, cseq: int, now: float | None = None) -> int:
        """``Contact: *`` with ``Expires: 0`` (RFC 3261 10.3 step 6); returns how many went.

        Raises LocationError 500 (nothing removed) if a binding has this
        Call-ID and a CSeq >= the request's.
        """
        old = self._by_aor.get(aor)
        if not old:
            return 0
        if now is None:
            now = self._clock()
        for b in old:
            if b.expires_at > now and b.call_id == call_id and cseq <= b.cseq:
                raise LocationError(500, "Out of order CSeq")
        for b in old:
            self._store.delete_binding(b.aor, b.contact_uri)
        self._set(aor, old, [])
        return len(old)

    def expire(self, now: float | None = None) -> int:
        """Drop bindings whose time is up, from memory and (queued) from the store.

        Cheap when nothing is due: it only looks at the top of a heap of
        (earliest expiry, AOR) entries.
        """
        if now is None:
            now = self._clock()
        heap, nxt = self._heap, self._next
        dropped = 0
        while heap and heap[0][0] <= now:
            t, aor = heapq.heappop(heap)
            if nxt.get(aor) != t:
                continue            # superseded entry (AOR gone, or re-armed earlier)
            del nxt[aor]
            bs = self._by_aor.get(aor)
            if not bs:
                continue
            live = [b for b in bs if b.expires_at > now]
            if len(live) != len(bs):
                for b in bs:
                    if b.expires_at <= now:
                        self._store.delete_binding(b.aor, b.contact_uri)
                dropped += len(bs) - len(live)
            self._set(aor, bs, live)   # re-arms the AOR at its next expiry
        return dropped

    # -- internals ---------------------------------------------------------------
    def _set(self, aor: str, old: list[Binding], new: list[Binding]) -> None:
        """Install ``new`` as the AOR's bindings and keep the expiry heap armed.

        Invariant: for every AOR held, ``_next[aor]`` is the time of an entry
        in the heap and is <= the AOR's earliest expiry.  An entry is pushed
        only when the earliest expiry moves *earlier*; a refresh (later expiry)
        leaves the old entry, which fires early and re-arms.  So the heap
        stays about one entry per AOR however often UAs re-register.
        """
        self._count += len(new) - len(old)
        if new:
            self._by_aor[aor] = new
            m = min(b.expires_at for b in new)
            t = self._next.get(aor)
            if t is None or m < t:
                self._next[aor] = m
                heapq.heappush(self._heap, (m, aor))
        else:
            self._by_aor.pop(aor, None)
            self._next.pop(aor, None)
