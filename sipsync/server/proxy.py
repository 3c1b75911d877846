"""The stateful proxy (RFC 3261 section 16): new calls, in-dialog requests, CANCEL, responses.

Layering: the core hands this module every request other than REGISTER and OPTIONS, and every
response. The proxy feeds them to its sans-I/O :class:`~sipsync.sip.transaction.TransactionLayer`
and carries out the actions it returns (send bytes, hand a message up, a timer fired); the
layer's timers are driven from the event loop with one ``loop.call_later`` armed for
``next_deadline()`` (tests call :meth:`Proxy.tick` instead).

Initial INVITE (no To tag):
  one without Proxy-Authorization is challenged 407 statelessly (RFC 3261 8.2.7), like a
  REGISTER; for the others the server transaction absorbs retransmissions from the start; 407
  (stale or foreign-realm credentials) / 403 through the Authenticator with ``proxy=True``;
  :class:`~sipsync.server.policy.Policy` applies the enforcement table (order documented there),
  and a refusal is answered at once, without 100 Trying first (a datagram per call saved; RFC
  3261 asks for 100 only when no final response is due within 200 ms); an INVITE that passes
  gets 100 Trying only if nothing came back from downstream in 200 ms (``TRYING_DELAY``), and
  one client transaction per target -- every registered
  contact of an extension in parallel (forking), or the trunk with the E.164 number as
  Request-URI user. Each forwarded INVITE gets Max-Forwards - 1, our Via on top, our
  Record-Route (two when the transports in and out differ, RFC 5658), the caller's
  Proxy-Authorization and P-Preferred-Identity removed, the asserted caller ID as
  P-Asserted-Identity on calls to the trunk, ``100rel`` taken out of Supported (PRACK is not
  implemented), and the SDP offer without the codecs not assigned to the account. Routes the
  caller preloaded beyond this proxy are dropped: an initial INVITE goes where the dial plan says.

Responses (RFC 3261 16.7): 100 is not relayed; other provisional responses are; every 2xx is
relayed at once and the first one CANCELs the other branches; a 6xx CANCELs the other branches;
once every branch has a final response the best one is relayed (a 6xx, else the lowest class;
503 becomes 500). No answer at all (Timer B) is 408, a transport failure 480.

CANCEL: matched to its INVITE (``find_invite_for_cancel``; none: 481), answered 200, sent as
CANCEL on every branch that is still pending (once it has had a provisional response, RFC 3261
9.1), and the caller gets 487 for the INVITE at once.

In-dialog requests (To tag): ACK, BYE, INVITE, UPDATE, INFO, REFER, NOTIFY, SUBSCRIBE and
OPTIONS are relayed by loose routing (16.4, 16.6, 16.12) when their top Route is this proxy: our
Route values are removed; the next hop is the next Route, else the Request-URI. A request with a
To tag and no Route to us is refused with 404, one whose tags are not those of a call this node
set up (and has not seen end) with 481: this proxy is no open relay, and a forged Route is no way
to reach the trunk without authenticating. The next hop is the
*flow* the other party of the call is reached on -- the caller's source address and connection,
or the answering contact's registration source -- so phones behind NAT work without fixing their
Contact; when the far end's route set names another proxy after us, the request goes to that
proxy's address. The ACK for a 2xx is relayed statelessly like that; the ACK for a
non-2xx is absorbed by the server transaction. BYE ends the call (its record is written) and is
relayed. Other methods get 501.

A 2xx that arrives after the caller's CANCEL was answered 487 is ACKed and hung up (BYE) by the
proxy. Call records: every INVITE from an authenticated caller ends in exactly one (see
:mod:`sipsync.server.calls`); challenges and credential failures are rejection events only.

Maximum duration (paid calls): the policy gives every call to the trunk the longest duration the
customer's available credit pays for at its rate (:mod:`sipsync.server.calls`). When an answered
call reaches it, the proxy ends the call itself: a BYE to each party inside its dialog (the Call-ID;
From and To with the tags as that party knows them; a CSeq one above the highest the other party
used; the party's Contact as Request-URI and the Record-Route values beyond this proxy as Route
set; sent to the next Route, else on the party's flow), with ``Reason: SIP;cause=200;text="Credit
exhausted"``; the call is recorded with cause ``credit_exhausted`` and billed exactly its maximum
duration. Whatever the parties answer to those BYEs is absorbed.

SUBSCRIBE without a To tag, or inside a dialog that is no call's, goes to the notifier
(:mod:`sipsync.server.notifier`: voicemail and busy lamps); its NOTIFYs leave through
:meth:`Proxy.send_request`, client transactions whose final status (None: no answer) goes back to
it.

REFER (RFC 3515) in a dialog is relayed like any in-dialog request, and the far UA's 202 and its
NOTIFYs come back the same way. The transferee then sends a new INVITE of its own (with
``Referred-By``): it is authenticated, authorised and rated as the transferee's call; no step
reads ``Referred-By`` (see :mod:`sipsync.server.policy`), so a transfer cannot borrow the
transferor's permissions, caller ID or credit.

After a restart the dialogs of calls in progress before it are not restored: in-dialog requests
for them (a BYE) get 481, and the node closes their records out at start-up (cause
``node_restart``): an answered call with the duration known up to the last time it was seen, a
call still ringing as failed with code 500.

Not in this pass: calls coming in from the
trunk, strict-routing previous hops, DNS (RFC 3263) for next hops with host names (resolved with a
blocking look-up), TCP or TLS connections opened by the proxy (a TCP contact is reached only over
the connection it registered on; the trunk over UDP), codec filtering of re-INVITE offers,
relaying in-dialog OPTIONS (the core answers every OPTIONS itself), and CANCEL of a re-INVITE
(answered 200, not relayed).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import secrets
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sipsync.server.causes import Cause, Reply, record_rejection, reject, warning_values
from sipsync.server.policy import Customers, Policy, Verdict
from sipsync.server.transport import response_address
from sipsync.sip.errors import SipParseError
from sipsync.sip.headers import Via
from sipsync.sip.message import Headers, Request, Response, make_response
from sipsync.sip.timers import TimerConfig
from sipsync.sip.transaction import (
    ClientTransaction,
    PassToTU,
    Send,
    ServerInviteTransaction,
    ServerTransaction,
    Terminated,
    Timeout,
    TransactionLayer,
    TransportError,
    new_branch,
)
from sipsync.sip.uri import NameAddr, SipUri

if TYPE_CHECKING:  # pragma: no cover
    from sipsync.server.accounts import Account, AccountTable
    from sipsync.server.auth import Authenticator
    from sipsync.server.calls import Call, CallTable
    from sipsync.server.config import ServiceConfig
    from sipsync.server.events import EventRecorder
    from sipsync.server.location import Binding, LocationService
    from sipsync.server.notifier import Notifier
    from sipsync.server.transport import Address, Endpoint, Transports

log = logging.getLogger("sipsync.proxy")

IN_DIALOG_METHODS = frozenset(
    ("ACK", "BYE", "INVITE", "UPDATE", "INFO", "REFER", "NOTIFY", "SUBSCRIBE", "OPTIONS")
)
ALLOW = "INVITE, ACK, CANCEL, BYE, UPDATE, INFO, REFER, NOTIFY, SUBSCRIBE, OPTIONS, REGISTER"


# Built per message or per call: each __init__ is written out for mypyc (see sipsync.native).
# Treat Hop as read-only.


@dataclass(init=False, slots=True, eq=False)
class Hop:
    """Where to send: ``address`` through ``endpoint`` (the UDP socket or a TCP connection)."""

    address: Address
    endpoint: Endpoint
    source: Address | None  # for server transactions: where the request came from

    def __init__(self, address: Address, endpoint: Endpoint, source: Address | None = None) -> None:
        self.address = address
        self.endpoint = endpoint
        self.source = source

    @property
    def transport(self) -> str:
        return self.endpoint.name


@dataclass(init=False, slots=True, eq=False)
class Branch:
    ctx: InviteContext
    txn: ClientTransaction
    request: Request | None  # the INVITE as forwarded; let go of once the branch has its final
    hop: Hop
    on_timeout: Callable[[Branch], None]
    provisional: bool
    final: int | None
    response: Response | None
    cancel_pending: bool
    ring_until: float  # when Timer C is due: pushed back by each provisional response

    def __init__(
        self,
        ctx: InviteContext,
        txn: ClientTransaction,
        request: Request | None,
        hop: Hop,
        on_timeout: Callable[[Branch], None],
    ) -> None:
        self.ctx = ctx
        self.txn = txn
        self.request = request
        self.hop = hop
        self.on_timeout = on_timeout
        self.provisional = False
        self.final = None
        self.response = None
        self.cancel_pending = False
        self.ring_until = 0.0

    def on_timer(self, name: str, now: float) -> list:
        """Timer C (RFC 3261 16.6 step 11), kept in the transaction layer's timers."""
        self.on_timeout(self)
        return []


@dataclass(slots=True, eq=False)
class DurationTimer:
    """The maximum-duration timer of an answered call, in the transaction layer's timers."""

    proxy: Proxy
    call: Call

    def on_timer(self, name: str, now: float) -> list:
        self.proxy.credit_exhausted(self.call)
        return []


@dataclass(slots=True, eq=False)
class Requester:
    """A request the node itself sends (a NOTIFY): told the final status, None if none came
    (Timer F or a transport failure)."""

    on_final: Callable[[int | None], None]


@dataclass(init=False, slots=True, eq=False)
class InviteContext:
    server: ServerInviteTransaction
    account: Account
    call: Call | None
    branches: list[Branch]
    final_sent: bool
    final_status: int | None  # what the caller was answered (None: nothing final yet)

    def __init__(self, server: ServerInviteTransaction, account: Account, call: Call | None) -> None:
        self.server = server
        self.account = account
        self.call = call
        self.branches = []
        self.final_sent = False
        self.final_status = None

    def on_timer(self, name: str, now: float) -> list:
        """TRYING_DELAY after the INVITE was relayed: 100 Trying, unless a provisional or final
        response has gone upstream since (the transaction sends nothing then)."""
        return self.server.trying(now)


# RFC 3261 17.2.1: a server transaction sends 100 Trying unless the TU answers within 200 ms. A
# relayed INVITE gets it only if nothing has come back from downstream by then: where the callee
# rings at once (the usual case), one datagram per call saved, as reSIProcate does with its T100.
TRYING_DELAY = 0.2


class Proxy:
    allow = ALLOW

    def __init__(
        self,
        *,
        config: ServiceConfig,
        authenticator: Authenticator,
        accounts: AccountTable,
        location: LocationService,
        events: EventRecorder,
        calls: CallTable,
        transports: Transports,
        customers: Customers | None = None,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._config = config
        self._auth = authenticator
        self._location = location
        self._events = events
        self.calls = calls
        self._transports = transports
        self._clock = clock
        self._mono = monotonic
        self.policy = Policy(
            realm=config.realm,
            accounts=accounts,
            location=location,
            calls=calls,
            customers=customers,
            clock=clock,
            max_call_duration=config.max_call_duration,
        )
        self.layer = TransactionLayer(TimerConfig(T1=config.timer_t1, T2=max(4.0, config.timer_t1)))
        self._contexts: dict[ServerTransaction, InviteContext] = {}
        # what a client transaction's responses are for: a branch of a new call, the server
        # transaction of an in-dialog request being relayed, or nothing (our CANCELs)
        self._owners: dict[ClientTransaction, Branch | ServerTransaction | Requester | None] = {}
        self.notifier: Notifier | None = None  # SUBSCRIBE (the event framework), once attached
        self._to_tags: dict[ServerTransaction, str] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._ticking: float | None = None
        host, port = config.listen[0] if config.listen else ("127.0.0.1", 5060)
        self.set_local(host, port)
        self.trunk: tuple[SipUri, Address] | None = None
        if config.trunk:
            self.set_trunk(config.trunk)

    # --- configuration ------------------------------------------------------------------------

    def set_local(self, host: str, port: int) -> None:
        """The address this node is reached on (called again by the node with the bound port)."""
        public = self._config.public_host
        if public is None:
            public = host if host not in ("0.0.0.0", "::", "") else self._config.realm  # noqa: S104
        self.host = public
        self.port = self._config.public_port or port
        self._own_hosts = {public.lower(), host.lower(), self._config.realm.lower()}
        # the Record-Route values this node writes, as phones echo them back in Route: known
        # to be ours without parsing them
        self._own_routes = {self._record_route(transport) for transport in ("UDP", "TCP", "TLS")}

    def set_trunk(self, uri_text: str) -> None:
        uri = SipUri.parse(uri_text)
        self.trunk = (uri, (_resolve(uri.host), uri.port or 5060))

    # --- entry points from the core -----------------------------------------------------------

    def on_request(self, request: Request, source: Address, endpoint: Endpoint) -> Reply | None:
        """Relay or answer ``request``; a returned Reply is for the core to send statelessly."""
        method = request.method
        if method == "INVITE" and "Proxy-Authorization" not in request.headers:
            challenge = self._stateless_challenge(request)
            if challenge is not None:
                return challenge
        elif (
            method == "ACK"
            and request.headers.get("Route") is None
            and self.layer.match_server(request) is None
        ):
            return None  # the ACK for a stateless 407, or a stray: nothing to absorb, no route on
        via = request.via
        _stamp_via(request, via, source)
        hop = Hop(response_address(via, source, endpoint), endpoint, source)
        actions = self.layer.receive_request(request, hop, reliable=endpoint.reliable, now=self._now())
        self._execute(actions)
        return None

    def _stateless_challenge(self, request: Request) -> Reply | None:
        """The 407 for a new INVITE that brings no credentials, answered without a transaction.

        RFC 3261 8.2.7 lets a UAS answer an unauthenticated request statelessly, as Kamailio's
        proxies do. Held as a transaction, the 407 would be resent on Timer G until the ACK came,
        ten times over 32 s when it never does: a flood of spoofed INVITEs would make this node
        keep state for each and send every victim ten datagrams. Retransmissions of the INVITE
        get a 407 each; the ACK for it (no Route, no transaction) is dropped in ``on_request``.
        """
        if request.to.tag is not None:
            return None
        max_forwards = request.max_forwards
        if max_forwards is not None and max_forwards <= 0:
            return None  # the transaction path answers 483
        return self._auth.challenge(proxy=True)

    def on_response(self, response: Response, source: Address, endpoint: Endpoint) -> None:
        response.via  # noqa: B018 - a response without a Via is malformed (raises, dropped by the core)
        response.cseq  # noqa: B018
        self._execute(self.layer.receive_response(response, now=self._now()))

    def tick(self, now: float | None = None) -> None:
        """Fire the transaction timers due at ``now`` (the loop does this on its own)."""
        self._timer = self._timer_at = None
        self._ticking = self._mono() if now is None else now
        try:
            self._execute(self.layer.expire(self._ticking))
        finally:
            self._ticking = None

    def _now(self) -> float:
        """The transaction layer's time: the timer being fired's, while firing (so timers set
        then are relative to it), else the monotonic clock."""
        return self._ticking if self._ticking is not None else self._mono()

    # --- actions ------------------------------------------------------------------------------

    def _execute(self, actions: list) -> None:
        pending = list(actions)
        while pending:
            action = pending.pop(0)
            try:
                if isinstance(action, Send):
                    hop: Hop = action.destination
                    hop.endpoint.send(action.data, hop.address)
                elif isinstance(action, PassToTU):
                    self._pass_to_tu(action.message, action.txn)
                elif isinstance(action, Timeout):
                    self._branch_failed(action.txn, 408)
                elif isinstance(action, TransportError):
                    self._branch_failed(action.txn, 503)
                elif isinstance(action, Terminated):
                    self._forget(action.txn)
            except Exception:
                log.exception("proxy failed on %r", action)
        self._schedule()

    def _schedule(self) -> None:
        deadline = self.layer.next_deadline()
        if deadline is None or (self._timer_at is not None and self._timer_at <= deadline):
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop (tests): tick() drives the timers
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = deadline
        self._timer = loop.call_later(max(0.0, deadline - self._now()), self.tick)

    def reschedule(self) -> None:
        """Arm the loop's timer for the earliest deadline (after timers were set from outside)."""
        self._schedule()

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = self._timer_at = None

    def _forget(self, txn: Any) -> None:
        if txn.is_server:
            self._to_tags.pop(txn, None)
            ctx = self._contexts.get(txn)
            if ctx is not None and all(b.final is not None for b in ctx.branches):
                del self._contexts[txn]
            return
        owner = self._owners.pop(txn, None)
        if isinstance(owner, Branch):
            ctx = owner.ctx
            if ctx.server.terminated and all(b.final is not None for b in ctx.branches):
                self._contexts.pop(ctx.server, None)

    def _pass_to_tu(self, message: Request | Response, txn: Any) -> None:
        if isinstance(message, Response):
            if txn is None:
                self._forward_stray_response(message)
                return
            owner = self._owners.get(txn)
            if isinstance(owner, Branch):
                self._on_branch_response(owner, message)
            elif isinstance(owner, Requester):
                if message.status >= 200:
                    owner.on_final(message.status)
            elif owner is not None and message.status != 100:
                self._relay_response(owner, message)
            return
        if message.method == "ACK":  # the ACK for a 2xx (the transaction absorbs the others)
            self._relay_in_dialog(message, None)
            return
        if txn is None:
            return
        try:
            self._new_request(message, txn)
        except SipParseError as error:
            if txn.awaiting_final:
                self._reject(txn, reject(Cause.MALFORMED_REQUEST, detail={"error": str(error)}))
        except Exception:
            log.exception("error handling %s from %s:%s", message.method, *txn.destination.address)
            if txn.awaiting_final:
                self._respond(txn, 500)

    # --- requests -----------------------------------------------------------------------------

    def _new_request(self, request: Request, txn: ServerTransaction) -> None:
        method = request.method
        if method == "CANCEL":
            self._cancel(request, txn)
            return
        max_forwards = request.max_forwards
        if max_forwards is not None and max_forwards <= 0:
            self._reject(txn, reject(Cause.TOO_MANY_HOPS))
            return
        if method == "SUBSCRIBE" and self.notifier is not None and self._for_notifier(request):
            self.notifier.on_subscribe(request, txn)
            return
        if request.to.tag is not None:
            if method not in IN_DIALOG_METHODS:
                self._not_implemented(txn, method)
            else:
                self._relay_in_dialog(request, txn)
            return
        if method == "INVITE":
            self._initial_invite(request, txn)  # type: ignore[arg-type]
            return
        self._not_implemented(txn, method)

    def _for_notifier(self, request: Request) -> bool:
        """A SUBSCRIBE this node answers as notifier: every new one, and every one inside a
        dialog that is not a call's (a subscription a REFER made in a call is the far UA's)."""
        return request.to.tag is None or self.calls.get(request.call_id) is None

    def _not_implemented(self, txn: ServerTransaction, method: str) -> None:
        self._reject(
            txn, reject(Cause.NOT_IMPLEMENTED, headers=[("Allow", ALLOW)], detail={"method": method})
        )

    def _initial_invite(self, request: Request, txn: ServerInviteTransaction) -> None:
        source = txn.destination.source
        outcome = self._auth.authenticate(request, source, proxy=True)
        if isinstance(outcome, Reply):
            self._reject(txn, outcome)
            return
        account: Account = outcome
        if self.calls.get(request.call_id) is not None:  # a second initial INVITE of a call in progress
            self._reject(txn, reject(Cause.LOOP_DETECTED, account=account.aor))
            return
        verdict = self.policy.check(account, request)
        destination = verdict.destination
        if verdict.reply is not None:
            self._record_refused(request, account, verdict, verdict.reply)
            self._reject(txn, verdict.reply)
            return
        assert destination is not None
        targets: list[tuple[SipUri, Hop]] = []
        if destination.internal:
            for binding in verdict.bindings:
                hop = self._hop_for_binding(binding)
                if hop is not None:
                    targets.append((SipUri.parse(binding.contact_uri), hop))
            cause = Cause.UNREACHABLE
        elif self.trunk is not None:
            uri, address = self.trunk
            udp = self._udp()
            if udp is not None:
                targets.append((uri.copy(user=destination.e164), Hop(address, udp)))
            cause = Cause.UNREACHABLE
        else:
            cause = Cause.NO_TRUNK
        if not targets:
            reply = reject(cause, account=account.aor, detail={"number": destination.number})
            self._record_refused(request, account, verdict, reply)
            self._reject(txn, reply)
            return
        call = self.calls.start(
            call_id=request.call_id,
            caller_tag=request.from_.tag,
            account=account.aor,
            customer=account.customer,
            dialled=destination.dialled,
            number=destination.number,
            call_class=destination.call_class,
            callee=destination.callee.aor if destination.callee is not None else None,
            rate=verdict.rate,
            reserved=verdict.reserve,
            caller_hop=Hop(source, txn.destination.endpoint),
            max_duration=verdict.max_duration,
            caller_from=request.headers.get("From"),
            caller_contact=_contact_text(request),
            caller_route=tuple(request.headers.get_all("Record-Route")),
            caller_cseq=request.cseq.seq,
        )
        ctx = InviteContext(server=txn, account=account, call=call)
        self._contexts[txn] = ctx
        # 100 Trying only for an INVITE that is relayed (every other one is answered at once),
        # and only if the callee has not answered in TRYING_DELAY
        self.layer.timers.set(ctx, "100", self._now() + TRYING_DELAY)
        for uri, hop in targets:
            forwarded = self._forward_copy(request, uri, hop, txn.destination.endpoint)
            _strip_caller_headers(forwarded)
            if not destination.internal and verdict.caller_id:
                forwarded.headers.set(
                    "P-Asserted-Identity", f"<sip:{verdict.caller_id}@{self._config.realm}>"
                )
            if verdict.body is not None:
                forwarded.body = verdict.body
            client, actions = self.layer.create_client(
                forwarded, hop, reliable=hop.endpoint.reliable, now=self._now()
            )
            branch = Branch(ctx, client, forwarded, hop, self._timer_c)
            ctx.branches.append(branch)
            self._owners[client] = branch
            branch.ring_until = self._now() + self._config.ring_timeout
            self.layer.timers.set(branch, "C", branch.ring_until)
            self._execute(actions)

    def _relay_in_dialog(self, request: Request, txn: ServerTransaction | None) -> None:
        """Loose routing of a request inside a dialog; ``txn`` None for the (stateless) 2xx ACK."""
        if txn is None and request.max_forwards == 0:  # an ACK cannot be answered 483: dropped
            return
        if not self._pop_own_routes(request):
            if txn is not None:
                self._reject(txn, reject(Cause.NO_ROUTE, detail={"method": request.method}))
            return
        call = self.calls.get(request.call_id)
        if call is None or not call.in_dialog(request.from_.tag, request.to.tag):
            # Only dialogs of calls this node set up are relayed: a forged Route is no way to
            # reach the trunk or anywhere else without authenticating.
            if txn is not None:
                self._reject(txn, reject(Cause.NO_SUCH_DIALOG, detail={"method": request.method}))
            return
        if request.method != "ACK":
            seq = request.cseq.seq
            if request.from_.tag == call.caller_tag:
                call.caller_cseq = max(call.caller_cseq, seq)
            else:
                call.callee_cseq = max(call.callee_cseq, seq)
        if request.method == "BYE":
            self._cancel_duration_timer(call)
            self.calls.end(call, code=200, cause="bye")
        routes = request.headers.get_all("Route")
        try:
            target = NameAddr.parse(routes[0], "Route").uri if routes else request.uri
        except SipParseError:
            if txn is not None:
                self._reject(txn, reject(Cause.MALFORMED_REQUEST, detail={"error": "malformed Route"}))
            return
        # the next Route (a proxy the far end put in the route set), else the other party's flow
        hop = self._hop_for_uri(target) if routes else self._hop_in_call(call, request)
        if hop is None:
            if txn is not None:
                self._reject(txn, reject(Cause.UNREACHABLE, detail={"target": str(target)}))
            return
        arrival = txn.destination.endpoint if txn is not None else hop.endpoint
        forwarded = self._forward_copy(request, None, hop, arrival, record_route=False)
        if txn is None:  # ACK: no transaction, no response
            hop.endpoint.send(forwarded.to_bytes(), hop.address)
            return
        if isinstance(txn, ServerInviteTransaction):  # a re-INVITE
            self._execute(txn.trying(self._now()))
        client, actions = self.layer.create_client(
            forwarded, hop, reliable=hop.endpoint.reliable, now=self._now()
        )
        self._owners[client] = txn
        self._execute(actions)

    # --- the maximum duration -------------------------------------------------------------------

    def _answered(self, call: Call, branch: Branch, response: Response) -> None:
        """The first 2xx of ``call``: note the dialog, mark it answered (which persists it) and
        arm its maximum-duration timer."""
        call.callee_tag = response.to.tag
        call.callee_to = response.headers.get("To")
        call.callee_contact = _contact_text(response)
        records = response.headers.get_all("Record-Route")
        own = next((i for i, value in enumerate(records) if self._is_own_route(value)), len(records))
        call.callee_route = tuple(reversed(records[:own]))
        self.calls.answer(call)
        if call.max_duration is not None:
            call.timer = DurationTimer(self, call)
            self.layer.timers.set(call.timer, "max", self._now() + call.max_duration)

    def _cancel_duration_timer(self, call: Call) -> None:
        if call.timer is not None:
            self.layer.timers.cancel(call.timer, "max")
            call.timer = None

    def credit_exhausted(self, call: Call) -> None:
        """The call reached its maximum duration: BYE to both parties, record it."""
        call.timer = None
        if self.calls.get(call.call_id) is not call or call.answered_at is None:
            return
        reason = 'SIP;cause=200;text="Credit exhausted"'
        for request, hop in (self._bye_to_callee(call, reason), self._bye_to_caller(call, reason)):
            if request is None or hop is None:
                log.warning("cannot reach a party of call %s to hang it up", call.call_id)
                continue
            client, actions = self.layer.create_client(
                request, hop, reliable=hop.endpoint.reliable, now=self._now()
            )
            self._owners[client] = None
            self._execute(actions)
        assert call.max_duration is not None
        self.calls.end(
            call, code=200, cause="credit_exhausted", ended_at=call.answered_at + call.max_duration
        )

    def _bye_to_callee(self, call: Call, reason: str) -> tuple[Request | None, Hop | None]:
        hop = call.callee_hops.get(call.callee_tag or "")
        return self._bye(
            call, call.callee_contact, call.caller_from, call.callee_to, call.caller_cseq + 1,
            call.callee_route, hop, reason,
        )  # fmt: skip

    def _bye_to_caller(self, call: Call, reason: str) -> tuple[Request | None, Hop | None]:
        return self._bye(
            call, call.caller_contact, call.callee_to, call.caller_from, call.callee_cseq + 1,
            call.caller_route, call.caller_hop, reason,
        )  # fmt: skip

    def _bye(
        self,
        call: Call,
        target: str | None,
        from_: str | None,
        to: str | None,
        cseq: int,
        routes: tuple[str, ...],
        flow: Hop | None,
        reason: str,
    ) -> tuple[Request | None, Hop | None]:
        """A BYE in the dialog as the other party would send it, and where it goes."""
        if target is None or from_ is None or to is None:
            return None, None
        try:
            uri = SipUri.parse(target)
            hop = self._hop_for_uri(NameAddr.parse(routes[0], "Route").uri) if routes else flow
        except SipParseError:
            return None, None
        if hop is None:
            return None, None
        headers = Headers()
        headers.add("Via", f"SIP/2.0/{hop.transport} {self.host}:{self.port};branch={new_branch()};rport")
        headers.add("Max-Forwards", "70")
        for route in routes:
            headers.add("Route", route)
        headers.add("From", from_)
        headers.add("To", to)
        headers.add("Call-ID", call.call_id)
        headers.add("CSeq", f"{cseq} BYE")
        headers.add("Reason", reason)
        headers.add("Server", self._config.server_header)
        return Request("BYE", uri, headers), hop

    def _is_own_route(self, value: str) -> bool:
        if value in self._own_routes:
            return True
        try:
            return self._is_own_uri(NameAddr.parse(value, "Record-Route").uri)
        except SipParseError:
            return False

    def _hop_in_call(self, call: Call, request: Request) -> Hop | None:
        if request.from_.tag == call.caller_tag:
            hops = call.callee_hops
            hop = hops.get(request.to.tag or "")
            if hop is None and len(hops) == 1:
                hop = next(iter(hops.values()))
            return hop
        return call.caller_hop

    # --- CANCEL -----------------------------------------------------------------------------------

    def _cancel(self, request: Request, txn: ServerTransaction) -> None:
        invite = self.layer.find_invite_for_cancel(request)
        if invite is None:
            self._reject(txn, reject(Cause.NO_SUCH_TRANSACTION, detail={"method": "CANCEL"}))
            return
        self._respond(txn, 200)
        ctx = self._contexts.get(invite)
        if ctx is None or ctx.final_sent:
            return
        for branch in ctx.branches:
            self._cancel_branch(branch)
        self._final_upstream(ctx, 487, cause="cancelled")

    def _cancel_branch(self, branch: Branch) -> None:
        if branch.final is not None or branch.cancel_pending:
            return
        branch.cancel_pending = True
        if branch.provisional:
            self._send_cancel(branch)

    def _send_cancel(self, branch: Branch) -> None:
        invite = branch.request
        if invite is None:  # the branch already has its final response: nothing to cancel
            return
        headers = Headers()
        headers.add("Via", invite.headers.get_first_value("Via") or "")
        headers.add("Max-Forwards", "70")
        for route in invite.headers.get_all("Route"):
            headers.add("Route", route)
        headers.add("From", invite.headers.get("From") or "")
        headers.add("To", invite.headers.get("To") or "")
        headers.add("Call-ID", invite.call_id)
        headers.add("CSeq", f"{invite.cseq.seq} CANCEL")
        cancel = Request("CANCEL", invite.raw_uri, headers)
        try:
            client, actions = self.layer.create_client(
                cancel, branch.hop, reliable=branch.hop.endpoint.reliable, now=self._now()
            )
        except ValueError:  # already cancelled
            return
        self._owners[client] = None
        self._execute(actions)

    # --- responses --------------------------------------------------------------------------------

    def _on_branch_response(self, branch: Branch, response: Response) -> None:
        ctx = branch.ctx
        status = response.status
        call = ctx.call
        to_tag = response.to.tag
        if call is not None and to_tag and status > 100 and status < 300:
            call.callee_hops.setdefault(to_tag, branch.hop)
        if status < 200:
            if status > 100 and branch.final is None and not branch.cancel_pending:  # 16.7 step 2: reset C
                # the timer stays where it is; when it fires, _timer_c sets it again for the rest
                # (a timer per provisional response would be one more entry per call, for 3 min)
                branch.ring_until = self._now() + self._config.ring_timeout
            if branch.cancel_pending and not branch.provisional:
                branch.provisional = True
                self._send_cancel(branch)
            branch.provisional = True
            if status > 100 and not ctx.final_sent:
                if call is not None:
                    self.calls.ringing(call)
                self._relay_response(ctx.server, response)
            return
        self.layer.timers.cancel(branch, "C")
        if status < 300:
            first = branch.final is None
            branch.final = status
            too_late = ctx.final_status is not None and ctx.final_status >= 300
            if too_late and first:  # answered after the caller got its 487 (or another final): hang up
                self._hang_up_late_answer(branch, response)
            branch.request = None  # the context lingers for 2xx retransmissions: keep it small
            if too_late:
                return
            if call is not None and self.calls.get(call.call_id) is call and not call.answered:
                self._answered(call, branch, response)
            ctx.final_sent = True
            ctx.final_status = status
            self._relay_response(ctx.server, response)  # every 2xx
            if first:
                for other in ctx.branches:
                    if other is not branch:
                        self._cancel_branch(other)
            return
        if branch.final is not None:
            return
        branch.final = status
        branch.request = None
        branch.response = response  # for the choice of the best final response
        if status >= 600:
            for other in ctx.branches:
                if other is not branch:
                    self._cancel_branch(other)
        self._maybe_finish(ctx)

    def _branch_failed(self, txn: Any, status: int) -> None:
        owner = self._owners.get(txn)
        if isinstance(owner, Branch):
            if owner.final is None:
                owner.final = status
                owner.request = None
                self._maybe_finish(owner.ctx)
        elif isinstance(owner, Requester):
            owner.on_final(None)
        elif owner is not None:  # an in-dialog request the next hop did not answer
            self._reject(owner, reject(Cause.NO_ANSWER if status == 408 else Cause.UNREACHABLE))

    def _timer_c(self, branch: Branch) -> None:
        """No final response in time: CANCEL a ringing branch (and give it 64*T1 to answer the
        CANCEL); a branch that still has none after that, or never rang, counts as a 408."""
        if branch.final is not None:
            return
        if branch.ring_until > self._now():  # a provisional response came since it was set
            self.layer.timers.set(branch, "C", branch.ring_until)
            return
        if branch.provisional and not branch.cancel_pending:
            self._cancel_branch(branch)
            self.layer.timers.set(branch, "C", self._now() + self.layer.config.timer_b)
            return
        branch.final = 408
        branch.request = None
        self._execute(branch.txn.terminate())
        self._maybe_finish(branch.ctx)

    def _hang_up_late_answer(self, branch: Branch, response: Response) -> None:
        """ACK and BYE a 2xx the caller can no longer get (it was already answered 487)."""
        invite = branch.request
        if invite is None:
            return
        try:
            target = response.contacts[0].uri if response.contacts else invite.uri
        except SipParseError:
            target = invite.uri
        for method, seq in (("ACK", invite.cseq.seq), ("BYE", invite.cseq.seq + 1)):
            headers = Headers()
            headers.add(
                "Via", f"SIP/2.0/{branch.hop.transport} {self.host}:{self.port};branch={new_branch()};rport"
            )
            headers.add("Max-Forwards", "70")
            headers.add("From", invite.headers.get("From") or "")
            headers.add("To", response.headers.get("To") or "")
            headers.add("Call-ID", invite.call_id)
            headers.add("CSeq", f"{seq} {method}")
            if method == "BYE":
                headers.add("Reason", 'SIP;cause=487;text="Request Terminated"')
            request = Request(method, target.copy(), headers)
            if method == "ACK":
                branch.hop.endpoint.send(request.to_bytes(), branch.hop.address)
                continue
            client, actions = self.layer.create_client(
                request, branch.hop, reliable=branch.hop.endpoint.reliable, now=self._now()
            )
            self._owners[client] = None
            self._execute(actions)

    def _maybe_finish(self, ctx: InviteContext) -> None:
        if ctx.final_sent or any(b.final is None for b in ctx.branches):
            return
        answered = [b for b in ctx.branches if b.response is not None]
        if not answered:
            timed_out = any(b.final == 408 for b in ctx.branches)
            cause = Cause.NO_ANSWER if timed_out else Cause.UNREACHABLE
            reply = reject(cause, account=ctx.account.aor)
            self._end_call(ctx, reply.status, str(cause))
            ctx.final_sent = True
            ctx.final_status = reply.status
            self._reject(ctx.server, reply)
            return
        best = _best_response([b.response for b in answered])  # type: ignore[misc]
        ctx.final_sent = True
        ctx.final_status = best.status
        self._end_call(ctx, best.status, "far_end")
        if best.status == 503:  # RFC 3261 16.7 step 6
            best.status, best.reason = 500, "Server Internal Error"
        self._relay_response(ctx.server, best)

    def _final_upstream(self, ctx: InviteContext, status: int, *, cause: str) -> None:
        ctx.final_sent = True
        ctx.final_status = status
        self._end_call(ctx, status, cause)
        self._respond(ctx.server, status)

    def _end_call(self, ctx: InviteContext, status: int, cause: str) -> None:
        if ctx.call is not None and not ctx.call.answered:
            self.calls.end(ctx.call, code=status, cause=cause)

    def _relay_response(self, server: ServerTransaction, response: Response) -> None:
        """Send a downstream response upstream through its server transaction (our Via removed)."""
        if response.headers.get("Via") is not None and self._is_own_via(response.via):
            response.headers.remove_first("Via")
        if not response.headers.get_all("Via"):
            return
        if server.terminated:
            self._forward_stray_response(response, own_via_removed=True)
            return
        self._execute(server.send_response(response, self._now()))

    def _forward_stray_response(self, response: Response, *, own_via_removed: bool = False) -> None:
        """A response matching no transaction (e.g. a late 2xx): forward it by its Via (16.11)."""
        if not own_via_removed:
            if not self._is_own_via(response.via):
                return
            response.headers.remove_first("Via")
        try:
            via = response.via
        except SipParseError:
            return
        host = via.received or via.host
        port = via.rport or via.port or 5060
        address = (host.strip("[]"), port)
        tcp = self._transports.tcp_connections
        endpoint = tcp.get(address) if via.transport == "TCP" else self._udp()
        if endpoint is not None:
            endpoint.send(response.to_bytes(), address)

    # --- for the notifier (sipsync.server.notifier) -----------------------------------------------

    def attach_notifier(self, notifier: Notifier) -> None:
        self.notifier = notifier

    def now(self) -> float:
        return self._now()

    def send_request(self, request: Request, hop: Hop, on_final: Callable[[int | None], None]) -> None:
        """Send a request of the node's own in a client transaction (retransmitted over UDP)."""
        client, actions = self.layer.create_client(
            request, hop, reliable=hop.endpoint.reliable, now=self._now()
        )
        self._owners[client] = Requester(on_final)
        self._execute(actions)

    def answer(
        self,
        txn: ServerTransaction,
        status: int,
        reason: str | None = None,
        headers: list[tuple[str, str]] | None = None,
        *,
        to_tag: str | None = None,
    ) -> None:
        if to_tag is not None:
            self._to_tags[txn] = to_tag
        self._respond(txn, status, reason, headers)

    def refuse(self, txn: ServerTransaction, reply: Reply) -> None:
        self._reject(txn, reply)

    def flow_hop(self, source: Address, transport: str) -> Hop | None:
        """The hop back to a party on the flow its request came in on."""
        if transport == "UDP":
            udp = self._udp()
            return Hop(source, udp) if udp is not None else None
        connection = self._transports.tcp_connections.get(source)
        return Hop(source, connection) if connection is not None else None

    def hop_for_uri(self, uri: SipUri) -> Hop | None:
        return self._hop_for_uri(uri)

    def via(self, transport: str) -> str:
        return f"SIP/2.0/{transport} {self.host}:{self.port};branch={new_branch()};rport"

    def contact(self, transport: str) -> str:
        return self._record_route(transport).replace(";lr", "")

    # --- building messages ------------------------------------------------------------------------

    def _forward_copy(
        self, request: Request, uri: SipUri | None, hop: Hop, arrival: Endpoint, *, record_route: bool = True
    ) -> Request:
        """The request as this proxy forwards it (RFC 3261 16.6): new Request-URI, Max-Forwards,
        Record-Route and Via."""
        headers = request.headers.copy()
        forwarded = Request(
            request.method, uri if uri is not None else request.raw_uri, headers, request.body
        )
        max_forwards = request.max_forwards
        headers.set("Max-Forwards", str(max_forwards - 1 if max_forwards is not None else 70))
        if record_route:
            # the first one the callee's route set starts with, the second one the caller's
            headers.insert_first("Record-Route", self._record_route(arrival.name))
            if hop.transport != arrival.name:
                headers.insert_first("Record-Route", self._record_route(hop.transport))
        branch = new_branch()
        forwarded.push_via(
            Via(hop.transport, self.host, self.port, {"branch": branch, "rport": None}),
            f"SIP/2.0/{hop.transport} {self.host}:{self.port};branch={branch};rport",
        )
        return forwarded

    def _record_route(self, transport: str) -> str:
        suffix = "" if transport == "UDP" else f";transport={transport.lower()}"
        return f"<sip:{self.host}:{self.port};lr{suffix}>"

    def _respond(
        self,
        txn: ServerTransaction,
        status: int,
        reason: str | None = None,
        headers: list[tuple[str, str]] | None = None,
    ) -> None:
        tag = self._to_tags.get(txn)
        if tag is None:
            tag = self._to_tags[txn] = secrets.token_hex(6)
        response = make_response(
            txn.request,
            status,
            reason,
            to_tag=tag if status > 100 else None,
            extra_headers=[*(headers or ()), ("Server", self._config.server_header)],
        )
        self._execute(txn.send_response(response, self._now()))

    def _reject(self, txn: ServerTransaction, reply: Reply) -> None:
        request = txn.request
        if reply.cause is not None:
            record_rejection(self._events, request, reply, txn.destination.source or txn.destination.address)
        headers = [
            *reply.headers,
            *(("Warning", value) for value in warning_values(reply, self._config.realm)),
        ]
        self._respond(txn, reply.status, reply.reason, headers)

    def _record_refused(self, request: Request, account: Account, verdict: Verdict, reply: Reply) -> None:
        destination = verdict.destination
        self.calls.record_refused(
            code=reply.status,
            cause=str(reply.cause),
            call_id=request.call_id,
            caller_tag=request.from_.tag,
            account=account.aor,
            customer=account.customer,
            dialled=destination.dialled if destination is not None else (request.uri.user or ""),
            number=destination.number if destination is not None else None,
            call_class=destination.call_class if destination is not None else None,
            callee=destination.callee.aor
            if destination is not None and destination.callee is not None
            else None,
            rate=verdict.rate,
        )

    # --- next hops --------------------------------------------------------------------------------

    def _udp(self) -> Endpoint | None:
        return self._transports.udp[0] if self._transports.udp else None

    def _hop_for_binding(self, binding: Binding) -> Hop | None:
        if binding.transport == "UDP":
            udp = self._udp()
            return Hop(binding.source, udp) if udp is not None else None
        connection = self._transports.tcp_connections.get(binding.source)
        return Hop(binding.source, connection) if connection is not None else None

    def _hop_for_uri(self, uri: SipUri) -> Hop | None:
        if uri.user:
            for binding in self._location.lookup(f"{uri.user}@{self._config.realm}"):
                try:
                    contact = SipUri.parse(binding.contact_uri)
                except SipParseError:
                    continue
                if contact.host.lower() == uri.host.lower() and (contact.port or 5060) == (uri.port or 5060):
                    return self._hop_for_binding(binding)
        if self.trunk is not None:
            trunk_uri, address = self.trunk
            if uri.host.lower() == trunk_uri.host.lower() and (uri.port or 5060) == address[1]:
                udp = self._udp()
                return Hop(address, udp) if udp is not None else None
        try:
            address = (_resolve(uri.host), uri.port or 5060)
        except OSError:
            return None
        if uri.transport == "TCP":
            connection = self._transports.tcp_connections.get(address)
            return Hop(address, connection) if connection is not None else None
        udp = self._udp()
        return Hop(address, udp) if udp is not None else None

    # --- our own addresses --------------------------------------------------------------------------

    def _is_own_uri(self, uri: SipUri) -> bool:
        return uri.host.lower() in self._own_hosts and (uri.port or 5060) == self.port

    def _is_own_via(self, via: Via) -> bool:
        return via.host.lower() in self._own_hosts and (via.port or 5060) == self.port

    def _pop_own_routes(self, request: Request) -> bool:
        """Remove the Route values that name this proxy from the top; True if there was one."""
        popped = False
        while True:
            value = request.headers.get_first_value("Route")
            if value is None:
                return popped
            if value not in self._own_routes:
                try:
                    uri = NameAddr.parse(value, "Route").uri
                except SipParseError:
                    return popped
                if not self._is_own_uri(uri):
                    return popped
            request.headers.remove_first("Route")
            popped = True


# --- helpers ------------------------------------------------------------------------------------


def _resolve(host: str) -> str:
    host = host.strip("[]")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return socket.gethostbyname(host)
    return host


def _stamp_via(request: Request, via: Via, source: Address) -> None:
    """received/rport on the top Via (RFC 3261 18.2.1, RFC 3581) before the request goes on."""
    if via.host.strip("[]") == source[0] and not via.has_rport:
        return
    stamped = via.copy()
    if via.host.strip("[]") != source[0]:
        stamped.params["received"] = source[0]
    if via.has_rport:
        stamped.params["rport"] = str(source[1])
    request.replace_top_via(stamped)


def _contact_text(message: Request | Response) -> str | None:
    """The first Contact URI of ``message`` as text (None: none or malformed)."""
    try:
        contacts = message.contacts
    except SipParseError:
        return None
    return str(contacts[0].uri) if contacts else None


def _strip_caller_headers(request: Request) -> None:
    headers = request.headers
    headers.remove("Proxy-Authorization")
    headers.remove("P-Preferred-Identity")
    headers.remove("Route")
    supported = [v for v in headers.get_all("Supported") if v.lower() != "100rel"]
    if headers.remove("Supported") and supported:
        headers.add("Supported", ", ".join(supported))


_CLASS_PREFERENCE = {6: 0, 2: 1, 3: 2, 4: 3, 5: 4}


def _best_response(responses: list[Response]) -> Response:
    """RFC 3261 16.7 step 6: a 6xx if any, else the lowest class; the first of that class."""
    return min(responses, key=lambda r: _CLASS_PREFERENCE.get(r.status // 100, 9))
