"""Calls in progress, credit reserved by them, and the call records they end in (rated by
:mod:`sipsync.server.rating`).

The proxy creates a :class:`Call` for every INVITE it accepts for relaying, marks it answered on
the first 2xx, and ends it on BYE, a final non-2xx or when its credit runs out; ending writes
exactly one call record through ``EventRecorder.record("call", ...)``.

Unsettled spend
---------------
The portal debits call records and pushes the new balance in a newer customer document. Until
that push arrives, the cost of calls that ended on this node is subtracted from the pushed
balance (``unsettled``); a push with a newer version starts the count again. (Approximation: a
call rated after the portal read the records but before it pushed is forgotten one push early.)

Reservations and the maximum duration
-------------------------------------
A paid call may start only if the customer's available balance (pushed balance minus what calls in
progress reserve minus unsettled spend) covers ``connect_fee + price_per_minute * first_increment /
60``. The call's maximum duration is then the longest that available balance pays for at its rate
(``Rate.max_seconds``: the first increment plus as many whole next increments as fit, never more than
the node's ``max_call_duration`` cap), and the cost of that whole duration is reserved from the
INVITE until the call ends: concurrent calls cannot spend the same credit twice. The price of that
guarantee: a call takes all the credit it may use (up to the cap) for as long as it lasts, so with
a small balance a second concurrent call gets what the first left, possibly nothing (503). When an
answered call reaches its maximum duration the proxy hangs it up (BYE to both parties) and it is
recorded with cause ``credit_exhausted``; a call is never billed beyond its maximum duration.

Calls in progress across a restart
----------------------------------
With a store, every call's state (dialog identifiers, the parties' addresses, route sets,
customer, rate, answer time, reservation) is queued into the store's ``calls_in_progress`` table
when the proxy starts relaying it, again when it is answered, and removed when it ends, in the
same group commit as its call record, so a call is recorded exactly once whatever moment the
process dies (a call that ends within the group commit it started in is never written there; the
state is serialised at the commit, as it is then, once however often it changed since). On
start-up :meth:`CallTable.close_out_after_restart` writes the record of every call left from
before, cause ``node_restart``, and removes it:

- an answered call ends at the last keepalive the node wrote, else the start-up time, never beyond
  its maximum duration, and is billed as such;
- a call still ringing ends unanswered (``final_code`` 500: the node failed it, nobody answered),
  at the last keepalive if that came after the INVITE, else at the INVITE; it costs nothing.

Reservations live in memory only, so they are gone with the old process and the closed-out
calls' cost counts as unsettled spend. The dialogs and transactions are not restored: a BYE for
such a call after the restart gets 481, and a phone still ringing for a closed-out call is left
to its caller's CANCEL or its own timeout.
"""

from __future__ import annotations

import itertools
import logging
import math
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from functools import partial
from typing import TYPE_CHECKING, Any

from sipsync.server.events import CALL_RECORD_KIND, iso_utc
from sipsync.server.rating import NO_COST, ZERO, Rate

if TYPE_CHECKING:  # pragma: no cover
    from sipsync.server.events import EventRecorder
    from sipsync.server.store import LocalStore

__all__ = ["Call", "CallTable", "Reservations"]

log = logging.getLogger("sipsync.calls")

# final code of a call that was still ringing when the node died: nobody answered it and the node
# failed it (the portal files a code with the node's own cause as refused by the service)
RESTART_UNANSWERED_CODE = 500


# --- reservations ------------------------------------------------------------------------------


class Reservations:
    """Credit held by calls in progress, per customer."""

    def __init__(self) -> None:
        self._held: dict[str, Decimal] = {}

    def held(self, customer: str) -> Decimal:
        return self._held.get(customer, ZERO)

    def reserve(self, customer: str, amount: Decimal) -> None:
        self._held[customer] = self.held(customer) + amount

    def release(self, customer: str, amount: Decimal) -> None:
        left = self.held(customer) - amount
        if left > 0:
            self._held[customer] = left
        else:
            self._held.pop(customer, None)


# --- calls --------------------------------------------------------------------------------------


@dataclass(init=False, slots=True, eq=False)
class Call:
    """A call the proxy relays, from its INVITE to its record (__init__ written out for mypyc,
    see sipsync.native)."""

    record_id: str
    call_id: str
    caller_tag: str | None
    account: str  # the caller's aor
    customer: str
    dialled: str
    number: str | None  # E.164, or the extension for internal calls (None: not valid)
    call_class: str | None
    invited_at: float
    callee: str | None  # the callee's aor (internal calls)
    rate: Rate | None
    reserved: Decimal
    answered_at: float | None
    ended_at: float | None
    final_code: int | None
    cause: str | None
    # where in-dialog requests go: the caller's hop, and each answering branch's hop by To tag
    caller_hop: Any
    callee_hops: dict[str, Any]
    max_duration: int | None  # seconds from the answer (paid calls); None: no limit
    # the dialog, for requests the proxy itself sends in it (a BYE when the credit runs out)
    caller_from: str | None  # From of the INVITE (with the caller's tag)
    caller_contact: str | None  # the caller's remote target
    caller_route: tuple[str, ...]  # Record-Route values beyond us towards the caller
    caller_cseq: int  # highest CSeq the caller used in the dialog
    callee_tag: str | None  # the answering branch's To tag
    callee_to: str | None  # To of the 2xx (with the callee's tag)
    callee_contact: str | None
    callee_route: tuple[str, ...]  # Record-Route values beyond us towards the callee
    callee_cseq: int
    timer: Any  # the proxy's max-duration timer
    early: bool  # a provisional response with a To tag was relayed (the phone rings)

    def __init__(
        self,
        *,
        record_id: str,
        call_id: str,
        caller_tag: str | None,
        account: str,
        customer: str,
        dialled: str,
        number: str | None,
        call_class: str | None,
        invited_at: float,
        callee: str | None = None,
        rate: Rate | None = None,
        reserved: Decimal = ZERO,
        answered_at: float | None = None,
        ended_at: float | None = None,
        final_code: int | None = None,
        cause: str | None = None,
        caller_hop: Any = None,
        max_duration: int | None = None,
        caller_from: str | None = None,
        caller_contact: str | None = None,
        caller_route: tuple[str, ...] = (),
        caller_cseq: int = 0,
        callee_tag: str | None = None,
        callee_to: str | None = None,
        callee_contact: str | None = None,
        callee_route: tuple[str, ...] = (),
        callee_cseq: int = 0,
        timer: Any = None,
        early: bool = False,
        callee_hops: dict[str, Any] | None = None,
    ) -> None:
        self.record_id = record_id
        self.call_id = call_id
        self.caller_tag = caller_tag
        self.account = account
        self.customer = customer
        self.dialled = dialled
        self.number = number
        self.call_class = call_class
        self.invited_at = invited_at
        self.callee = callee
        self.rate = rate
        self.reserved = reserved
        self.answered_at = answered_at
        self.ended_at = ended_at
        self.final_code = final_code
        self.cause = cause
        self.caller_hop = caller_hop
        self.callee_hops = callee_hops if callee_hops is not None else {}
        self.max_duration = max_duration
        self.caller_from = caller_from
        self.caller_contact = caller_contact
        self.caller_route = caller_route
        self.caller_cseq = caller_cseq
        self.callee_tag = callee_tag
        self.callee_to = callee_to
        self.callee_contact = callee_contact
        self.callee_route = callee_route
        self.callee_cseq = callee_cseq
        self.timer = timer
        self.early = early

    @property
    def answered(self) -> bool:
        return self.answered_at is not None

    def in_dialog(self, from_tag: str | None, to_tag: str | None) -> bool:
        """Whether a request with these tags belongs to a dialog of this call (either direction)."""
        if from_tag is None or to_tag is None:
            return False
        if from_tag == self.caller_tag:
            return to_tag in self.callee_hops
        return from_tag in self.callee_hops and to_tag == self.caller_tag


class CallTable:
    """Calls in progress by Call-ID, with per-account counts for the max_calls limits."""

    def __init__(
        self,
        events: EventRecorder,
        *,
        node_id: str,
        reservations: Reservations | None = None,
        clock: Callable[[], float] = time.time,
        customer_version: Callable[[str], int | None] = lambda customer: None,
        store: LocalStore | None = None,
    ) -> None:
        self._events = events
        self._store = store  # answered calls are kept there until they end (None: not kept)
        self._customer_version = customer_version
        # customer -> (version of the customer document then held, cost of calls ended since)
        self._spent: dict[str, tuple[int | None, Decimal]] = {}
        # Record ids: the node, a random part drawn at start-up (so no restart repeats an id) and a
        # serial number. A uuid4 per call cost 1.5 % of the CPU of a call (a getrandom call each).
        self._id_prefix = f"{node_id}-{secrets.token_hex(8)}-"
        self._id_serial = itertools.count(1)
        self._clock = clock
        self.reservations = reservations if reservations is not None else Reservations()
        self._calls: dict[str, Call] = {}
        self._per_account: dict[str, int] = {}
        # told (call, state) as calls go trying / early / confirmed / terminated (busy lamps)
        self.observer: Callable[[Call, str], None] | None = None

    def __len__(self) -> int:
        return len(self._calls)

    def _new_record_id(self) -> str:
        return f"{self._id_prefix}{next(self._id_serial)}"

    def get(self, call_id: str) -> Call | None:
        return self._calls.get(call_id)

    def unsettled(self, customer: str) -> Decimal:
        """What calls that ended since the customer's balance was last pushed have cost."""
        entry = self._spent.get(customer)
        if entry is None:
            return ZERO
        if entry[0] != self._customer_version(customer):
            del self._spent[customer]  # a newer balance was pushed since
            return ZERO
        return entry[1]

    def credit_in_use(self) -> dict[str, tuple[Decimal, int]]:
        """Per customer with calls in progress: (credit they reserve, how many calls)."""
        calls: dict[str, int] = {}
        for call in self._calls.values():
            calls[call.customer] = calls.get(call.customer, 0) + 1
        return {customer: (self.reservations.held(customer), count) for customer, count in calls.items()}

    def active(self, aor: str) -> int:
        """Calls in progress (ringing or answered) that ``aor`` makes or receives."""
        return self._per_account.get(aor, 0)

    def start(
        self,
        *,
        call_id: str,
        caller_tag: str | None,
        account: str,
        customer: str,
        dialled: str,
        number: str | None,
        call_class: str | None,
        callee: str | None = None,
        rate: Rate | None = None,
        reserved: Decimal = ZERO,
        caller_hop: Any = None,
        max_duration: int | None = None,
        caller_from: str | None = None,
        caller_contact: str | None = None,
        caller_route: tuple[str, ...] = (),
        caller_cseq: int = 0,
    ) -> Call:
        """A call the proxy relays from now on: counted, its credit reserved, its state queued."""
        call = Call(
            record_id=self._new_record_id(), call_id=call_id, caller_tag=caller_tag,
            account=account, customer=customer, dialled=dialled, number=number, call_class=call_class,
            invited_at=self._clock(), callee=callee, rate=rate, reserved=reserved, caller_hop=caller_hop,
            max_duration=max_duration, caller_from=caller_from, caller_contact=caller_contact,
            caller_route=caller_route, caller_cseq=caller_cseq,
        )  # fmt: skip
        self._calls[call.call_id] = call
        for aor in {call.account, call.callee}:
            if aor is not None:
                self._per_account[aor] = self._per_account.get(aor, 0) + 1
        if call.reserved:
            self.reservations.reserve(call.customer, call.reserved)
        self.persist(call)  # a call ringing when the node dies is recorded after the restart too
        self._tell(call, "trying")
        return call

    def ringing(self, call: Call) -> None:
        """The callee's phone rings (the first provisional response relayed)."""
        if not call.early and not call.answered and self._calls.get(call.call_id) is call:
            call.early = True
            self._tell(call, "early")

    def _tell(self, call: Call, state: str) -> None:
        if self.observer is not None:
            try:
                self.observer(call, state)
            except Exception:  # a busy lamp must never break the call itself
                log.exception("call observer failed on %s (%s)", call.call_id, state)

    def record_refused(self, *, code: int, cause: str, **fields: Any) -> dict[str, Any]:
        """The record of an INVITE refused before it was relayed (not tracked as in progress)."""
        call = Call(record_id=self._new_record_id(), invited_at=self._clock(), **fields)
        call.ended_at, call.final_code, call.cause = call.invited_at, code, cause
        return self._write(call)

    def answer(self, call: Call) -> None:
        if call.answered_at is None:
            call.answered_at = self._clock()
            call.final_code = 200
            self.persist(call)
            self._tell(call, "confirmed")

    def persist(self, call: Call) -> None:
        """Queue the state of a call in progress in the store (again after it changed)."""
        if self._store is not None and self._calls.get(call.call_id) is call:
            self._store.put_call(call.record_id, partial(call_state, call))

    def end(
        self,
        call: Call,
        *,
        code: int | None = None,
        cause: str | None = None,
        ended_at: float | None = None,
    ) -> dict[str, Any] | None:
        """Close ``call`` (once) and write its record; returns the record, None if already ended.
        ``ended_at`` (epoch) replaces the clock's time (a hang-up at a known moment)."""
        if self._calls.get(call.call_id) is not call:
            return None
        if self._store is not None:
            self._store.delete_call(call.record_id)  # in the same flush as the record
        del self._calls[call.call_id]
        for aor in {call.account, call.callee} - {None}:
            left = self._per_account.get(aor, 0) - 1  # type: ignore[arg-type]
            if left > 0:
                self._per_account[aor] = left  # type: ignore[index]
            else:
                self._per_account.pop(aor, None)  # type: ignore[arg-type]
        if call.reserved:
            self.reservations.release(call.customer, call.reserved)
        call.ended_at = self._clock() if ended_at is None else ended_at
        if not call.answered:
            call.final_code = code
        call.cause = cause
        self._tell(call, "terminated")
        return self._write(call)

    def close_out_after_restart(self, *, last_alive: float | None = None) -> list[dict[str, Any]]:
        """Write the record of every call the store holds from before a restart (cause
        ``node_restart``) and remove it. An answered call ends at ``last_alive`` (the last
        keepalive the old process wrote) if that is after the answer, else now; a ringing one
        ends unanswered with :data:`RESTART_UNANSWERED_CODE`, at ``last_alive`` if that is after
        the INVITE, else at the INVITE. Returns the records."""
        if self._store is None:
            return []
        now = self._clock()
        records = []
        for record_id, state in self._store.load_calls():
            call = call_from_state(state)
            since = call.answered_at if call.answered_at is not None else call.invited_at
            if last_alive is not None and last_alive >= since:
                ended = last_alive
            else:
                ended = now if call.answered else call.invited_at
            if not call.answered:
                call.final_code = RESTART_UNANSWERED_CODE
            call.ended_at = min(ended, now)
            call.cause = "node_restart"
            self._store.delete_call(record_id)
            records.append(self._write(call))
        return records

    def _write(self, call: Call) -> dict[str, Any]:
        record = self._write_record(call)
        cost = Decimal(record["cost"])
        if cost:
            held = self.unsettled(call.customer)
            self._spent[call.customer] = (self._customer_version(call.customer), held + cost)
        return record

    def _write_record(self, call: Call) -> dict[str, Any]:
        # Call records are exempt from the recorder's flood cap (see EventRecorder.record).
        return self._events.record(CALL_RECORD_KIND, self._record(call))

    def _record(self, call: Call) -> dict[str, Any]:
        duration = 0.0
        if call.answered_at is not None and call.ended_at is not None:
            duration = max(0.0, call.ended_at - call.answered_at)
            if call.max_duration is not None:  # never billed beyond what the credit paid for
                duration = min(duration, float(call.max_duration))
        billed, cost = call.rate.cost(duration) if call.rate is not None else (0, NO_COST)
        return {
            "record_id": call.record_id,
            "call_id": call.call_id,
            "account": call.account,
            "customer": call.customer,
            "callee": call.callee,
            "dialled": call.dialled,
            "number": call.number,
            "call_class": call.call_class,
            "invited_at": iso_utc(call.invited_at),
            "answered_at": iso_utc(call.answered_at) if call.answered_at is not None else None,
            "ended_at": iso_utc(call.ended_at) if call.ended_at is not None else None,
            "duration": math.ceil(duration - 1e-9) if duration > 0 else 0,
            "billed_seconds": billed,
            "final_code": call.final_code,
            "cause": call.cause,
            "rate": dict(call.rate.doc) if call.rate is not None else None,
            "cost": str(cost),
        }


# --- state kept in the store while a call is in progress ----------------------------------------

_STATE_FIELDS = (
    "record_id", "call_id", "caller_tag", "account", "customer", "dialled", "number", "call_class",
    "invited_at", "callee", "rate", "answered_at", "final_code", "max_duration", "caller_from",
    "caller_contact", "caller_cseq", "callee_tag", "callee_to", "callee_contact", "callee_cseq",
)  # fmt: skip


def _hop_state(hop: Any) -> list | None:
    if hop is None:
        return None
    return [hop.address[0], hop.address[1], hop.transport]


def call_state(call: Call) -> dict[str, Any]:
    """What the store keeps of an answered call (JSON-able)."""
    state: dict[str, Any] = {name: getattr(call, name) for name in _STATE_FIELDS}
    state["rate"] = call.rate.doc if call.rate is not None else None
    state["reserved"] = str(call.reserved)
    state["caller_route"] = list(call.caller_route)
    state["callee_route"] = list(call.callee_route)
    state["caller_hop"] = _hop_state(call.caller_hop)
    state["callee_hop"] = _hop_state(call.callee_hops.get(call.callee_tag or ""))
    return state


def call_from_state(state: dict[str, Any]) -> Call:
    """The :class:`Call` a stored state describes (its hops as ``(host, port, transport)``)."""
    fields: dict[str, Any] = {
        name: state.get(name) for name in _STATE_FIELDS if name not in ("caller_cseq", "callee_cseq")
    }
    if fields["rate"] is not None:
        fields["rate"] = Rate(fields["rate"])
    call = Call(**fields)
    call.caller_cseq = int(state.get("caller_cseq") or 0)
    call.callee_cseq = int(state.get("callee_cseq") or 0)
    call.reserved = Decimal(state.get("reserved") or "0")
    call.caller_route = tuple(state.get("caller_route") or ())
    call.callee_route = tuple(state.get("callee_route") or ())
    if state.get("caller_hop"):
        call.caller_hop = tuple(state["caller_hop"])
    if state.get("callee_hop") and call.callee_tag:
        call.callee_hops = {call.callee_tag: tuple(state["callee_hop"])}
    return call
