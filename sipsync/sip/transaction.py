"""SIP transaction layer (RFC 3261 section 17, as updated by RFC 6026), sans-I/O.

No sockets, no asyncio and no clock here.  The owner (the transport/core glue) feeds
events into a :class:`TransactionLayer` together with the current time ``now`` (any
monotonic float, e.g. ``loop.time()``) and carries out the returned *actions*:

* :class:`Send` -- put ``data`` (the serialized ``message``) on the wire towards
  ``destination``; if that fails, call :meth:`TransactionLayer.transport_error`;
* :class:`PassToTU` -- hand ``message`` to the transaction user (core).  ``txn`` is
  ``None`` for requests/responses that match no transaction (a new ACK for a 2xx, a
  stray response): the core decides what to do with those (RFC 6026 section 7);
* :class:`Timeout` -- Timer B, F or H fired: the TU treats it as a 408 / failure;
* :class:`TransportError` -- the transport reported a failure for this transaction;
* :class:`Terminated` -- the transaction reached Terminated and has already been
  removed from the layer's tables.

Timers: transactions ask the layer's :class:`~sipsync.sip.timers.TimerWheel` for named
timers ('A', 'B', 'D', 'E', ...); the owner sleeps until :meth:`TransactionLayer.next_deadline`
and then calls :meth:`TransactionLayer.expire`.  Timers that are zero on reliable
transports are not scheduled at all: the transaction moves on immediately.

Driving loop, roughly::

    layer = TransactionLayer()
    actions = layer.receive_request(request, source, reliable=False, now=loop.time())
    actions = layer.receive_response(response, now=loop.time())
    txn, actions = layer.create_client(request, destination, reliable=False, now=loop.time())
    actions = txn.send_response(response, loop.time())       # server side, from the TU
    actions = layer.expire(loop.time())                      # when next_deadline() is due

Matching (RFC 3261 sections 17.1.3 and 17.2.3) uses dictionary look-ups only:

* server: ``(branch, sent-by host, sent-by port, method)`` with ACK folded onto INVITE;
  CANCEL has its own transaction (method CANCEL), and :meth:`TransactionLayer.find_invite_for_cancel`
  finds the INVITE it cancels.  The port of the sent-by defaults to 5060 (5061 for TLS)
  when absent so that ``host`` and ``host:5060`` are the same transaction.
* RFC 2543 requests (branch without the ``z9hG4bK`` magic cookie, or no branch): a
  simplified fallback key ``(Request-URI, From tag, Call-ID, CSeq number, top Via,
  method)``.  Unlike section 17.2.3 it ignores the To tag, so an ACK for a non-2xx
  matches its INVITE (whose To has no tag yet) through the same dictionary look-up;
  the only cost is that two requests differing only in To tag would collide, which
  a compliant RFC 2543 client does not produce.
* client: ``(top Via branch, CSeq method)``.

Not covered: RFC 3262 reliable provisional responses (PRACK) and RFC 4320's 100
Trying restrictions are TU policy; a client INVITE in Proceeding has no timer of its
own (the TU runs Timer C / its own call timeout and sends CANCEL).
"""

from __future__ import annotations

import enum
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from .message import Headers, Request, make_response
from .timers import TimerConfig, TimerWheel

if TYPE_CHECKING:  # pragma: no cover
    from .message import Response, SipMessage

__all__ = [
    'MAGIC_COOKIE',
    'Action',
    'ClientInviteTransaction',
    'ClientNonInviteTransaction',
    'ClientTransaction',
    'PassToTU',
    'Send',
    'ServerInviteTransaction',
    'ServerNonInviteTransaction',
    'ServerTransaction',
    'State',
    'Terminated',
    'Timeout',
    'Transaction',
    'TransactionLayer',
    'TransportError',
    'build_ack_for_non2xx',
    'client_key',
    'new_branch',
    'server_key',
]

MAGIC_COOKIE = 'z9hG4bK'


def new_branch() -> str:
    """A fresh RFC 3261 branch: the magic cookie plus 80 random bits."""
    return MAGIC_COOKIE + os.urandom(10).hex()  # secrets.token_hex, without its two Python frames


class State(enum.Enum):
    CALLING = 'Calling'
    TRYING = 'Trying'
    PROCEEDING = 'Proceeding'
    COMPLETED = 'Completed'
    CONFIRMED = 'Confirmed'
    ACCEPTED = 'Accepted'
    TERMINATED = 'Terminated'


CALLING = State.CALLING
TRYING = State.TRYING
PROCEEDING = State.PROCEEDING
COMPLETED = State.COMPLETED
CONFIRMED = State.CONFIRMED
ACCEPTED = State.ACCEPTED
TERMINATED = State.TERMINATED


# ---------------------------------------------------------------------------- actions


# Built several times per message: each __init__ is written out for mypyc (see sipsync.native).


@dataclass(init=False, slots=True, eq=False)
class Send:
    """Transmit ``data`` (``message`` serialized once per transaction) to ``destination``.

    ``destination`` is whatever the owner passed when the transaction was created
    (the request's source for server transactions, the next hop for client ones).
    ``message`` is None for a retransmission by a transaction that has already let go
    of its parsed messages (see :meth:`Transaction._shed`).
    """

    message: SipMessage | None
    destination: Any
    data: bytes
    txn: Transaction | None

    def __init__(
        self, message: SipMessage | None, destination: Any, data: bytes, txn: Transaction | None = None
    ) -> None:
        self.message = message
        self.destination = destination
        self.data = data
        self.txn = txn


@dataclass(init=False, slots=True, eq=False)
class PassToTU:
    message: Request | Response
    txn: Transaction | None

    def __init__(self, message: Request | Response, txn: Transaction | None = None) -> None:
        self.message = message
        self.txn = txn


@dataclass(init=False, slots=True, eq=False)
class Timeout:
    txn: Transaction
    timer: str  # 'B', 'F' or 'H'

    def __init__(self, txn: Transaction, timer: str) -> None:
        self.txn = txn
        self.timer = timer


@dataclass(init=False, slots=True, eq=False)
class TransportError:
    txn: Transaction

    def __init__(self, txn: Transaction) -> None:
        self.txn = txn


@dataclass(init=False, slots=True, eq=False)
class Terminated:
    txn: Transaction

    def __init__(self, txn: Transaction) -> None:
        self.txn = txn


Action = Send | PassToTU | Timeout | TransportError | Terminated


# ------------------------------------------------------------------------------- keys


def _sent_by_key(via: Any) -> tuple[str, int]:
    host, port = via.sent_by
    if port is None:
        port = 5061 if via.transport in ('TLS', 'WSS') else 5060
    return host.lower(), port


def server_key(request: Request, method: str | None = None) -> tuple:
    """The RFC 3261 section 17.2.3 key of a request; ACK maps onto its INVITE.

    ``method`` overrides the request's own method (used to look a CANCEL's INVITE up).
    """
    if method is None:
        method = request.method
        if method == 'ACK':
            method = 'INVITE'
    via = request.via
    branch = via.branch
    if branch is not None and branch.startswith(MAGIC_COOKIE):
        host, port = _sent_by_key(via)
        return (branch, host, port, method)
    # RFC 2543 fallback (see the module docstring)
    return (
        '',
        getattr(request, 'raw_uri', None) or str(request.uri),
        request.from_.tag,
        request.call_id,
        request.cseq.seq,
        str(via),
        method,
    )


def client_key(message: SipMessage) -> tuple[str | None, str]:
    """The RFC 3261 section 17.1.3 key: (top Via branch, CSeq method)."""
    return message.via.branch, message.cseq.method


def build_ack_for_non2xx(invite: Request, response: Response) -> Request:
    """The ACK a client INVITE transaction sends for a 300-699 (RFC 3261 section 17.1.1.3).

    Same Request-URI, Call-ID, From, CSeq number and single top Via (so the same
    branch) as the INVITE; To from the response (with its tag); the INVITE's Route
    header fields; no body.
    """
    src = invite.headers
    headers = Headers()
    headers.add('Via', src.get_first_value('Via') or str(invite.via))
    headers.add('Max-Forwards', (src.get('Max-Forwards') or '70').strip())
    for route in src.get_all('Route'):
        headers.add('Route', route)
    headers.add('From', src.get('From') or str(invite.from_))
    headers.add('To', response.headers.get('To') or str(response.to))
    headers.add('Call-ID', invite.call_id)
    headers.add('CSeq', f'{invite.cseq.seq} ACK')
    headers.add('Content-Length', '0')
    # the raw text keeps the Request-URI byte-for-byte identical to the INVITE's
    return Request('ACK', getattr(invite, 'raw_uri', None) or invite.uri, headers, b'')


# ------------------------------------------------------------------------ transactions


class Transaction:
    """Common machinery; see the four concrete classes."""

    __slots__ = ('_data', '_interval', '_request', 'destination', 'key', 'last_response', 'layer',
                 'reliable', 'state')

    is_invite: ClassVar[bool]
    is_server: ClassVar[bool]
    TIMERS: ClassVar[tuple[str, ...]]

    def __init__(
        self,
        layer: TransactionLayer,
        key: tuple,
        request: Request,
        destination: Any,
        reliable: bool,
        state: State,
    ) -> None:
        self.layer = layer
        self.key = key
        self._request: Request | None = request
        self.destination = destination
        self.reliable = reliable
        self.state = state
        self.last_response: Response | None = None
        self._data: bytes | None = None  # serialized request (client) / last response (server)
        self._interval = 0.0  # current retransmit interval (A, E or G)

    def __repr__(self) -> str:
        return f'<{type(self).__name__} {self.state.value} {self.key!r}>'

    @property
    def request(self) -> Request:
        """The request that made the transaction; gone once it only lingers (see ``_shed``)."""
        request = self._request
        if request is None:
            raise RuntimeError(f'{self!r} no longer holds its request')
        return request

    @property
    def config(self) -> TimerConfig:
        return self.layer.config

    @property
    def awaiting_final(self) -> bool:
        """No final response has been sent or received yet."""
        return self.state is TRYING or self.state is PROCEEDING or self.state is CALLING

    @property
    def terminated(self) -> bool:
        return self.state is TERMINATED

    # -- helpers
    def _start(self, name: str, delay: float, now: float) -> None:
        self.layer.timers.set(self, name, now + delay)

    def _stop(self, *names: str) -> None:
        self.layer.timers.cancel_all(self, names)

    def _send(self, message: SipMessage | None, data: bytes) -> Send:
        return Send(message, self.destination, data, self)

    def _shed(self, *, keep_data: bool) -> None:
        """Let go of the parsed messages once the transaction only lingers (Completed, Confirmed,
        Accepted) to absorb retransmissions: at hundreds of calls a second, transactions waiting
        out Timers J, L and M (32 s) would otherwise hold tens of kilobytes per call and keep the
        garbage collector walking them. ``keep_data``: the serialized last response (or ACK) is
        still to be retransmitted."""
        self._request = None
        self.last_response = None
        if not keep_data:
            self._data = None

    def _terminate(self, actions: list[Action]) -> list[Action]:
        if self.state is not TERMINATED:
            self.state = TERMINATED
            self.layer._forget(self)
            actions.append(Terminated(self))
        return actions

    def _linger(
        self, state: State, timer: str, delay: float, now: float, actions: list[Action]
    ) -> list[Action]:
        """Enter ``state`` and wait ``delay`` in it; zero (reliable transport) terminates now."""
        self.state = state
        if delay > 0:
            self._start(timer, delay, now)
            return actions
        return self._terminate(actions)

    # -- events (overridden where they mean something)
    def on_request(self, request: Request, now: float) -> list[Action]:
        return []

    def on_response(self, response: Response, now: float) -> list[Action]:
        return []

    def send_response(self, response: Response, now: float) -> list[Action]:
        return []

    def on_timer(self, name: str, now: float) -> list[Action]:
        handler = getattr(self, f'_timer_{name}', None)
        return handler(now) if handler is not None else []

    def on_transport_error(self, now: float) -> list[Action]:
        if self.state in (TERMINATED, ACCEPTED, CONFIRMED):
            # Accepted: the TU owns 2xx (re)transmission and is told, but the
            # transaction stays to absorb INVITE retransmissions / stray 2xx.
            return [TransportError(self)] if self.state is ACCEPTED else []
        return self._terminate([TransportError(self)])

    def terminate(self) -> list[Action]:
        """Abandon the transaction now (e.g. the TU is shutting down)."""
        return self._terminate([])


class ServerTransaction(Transaction):
    __slots__ = ()
    is_server = True

    def _respond(self, response: Response) -> Send:
        data = response.to_bytes()
        self.last_response = response
        self._data = data
        return self._send(response, data)

    def _resend_last(self) -> list[Action]:
        if self._data is None:
            return []
        return [self._send(self.last_response, self._data)]


class ServerNonInviteTransaction(ServerTransaction):
    """RFC 3261 figure 8: Trying -> Proceeding -> Completed -> Terminated."""

    __slots__ = ()
    is_invite = False
    TIMERS = ('J',)

    def on_request(self, request: Request, now: float) -> list[Action]:
        # Trying: discard; Proceeding/Completed: repeat the last response.
        if self.state is PROCEEDING or self.state is COMPLETED:
            return self._resend_last()
        return []

    def send_response(self, response: Response, now: float) -> list[Action]:
        if self.state is not TRYING and self.state is not PROCEEDING:
            return []  # Completed: further responses from the TU are discarded
        actions: list[Action] = [self._respond(response)]
        if response.status < 200:
            self.state = PROCEEDING
            return actions
        self._shed(keep_data=True)
        return self._linger(COMPLETED, 'J', self.config.timer_j(self.reliable), now, actions)

    def _timer_J(self, now: float) -> list[Action]:
        return self._terminate([]) if self.state is COMPLETED else []


class ServerInviteTransaction(ServerTransaction):
    """RFC 3261 figure 7 with RFC 6026's Accepted state."""

    __slots__ = ()
    is_invite = True
    TIMERS = ('G', 'H', 'I', 'L')

    def trying(self, now: float) -> list[Action]:
        """Send 100 Trying (RFC 3261 section 17.2.1), when the TU will not answer within 200 ms."""
        if self.state is not PROCEEDING or self.last_response is not None:
            return []
        return self.send_response(make_response(self.request, 100), now)

    def on_request(self, request: Request, now: float) -> list[Action]:
        state = self.state
        if request.method == 'ACK':
            if state is COMPLETED:
                self._stop('G', 'H')
                self._shed(keep_data=False)
                return self._linger(CONFIRMED, 'I', self.config.timer_i(self.reliable), now, [])
            if state is ACCEPTED:
                return [PassToTU(request, self)]  # RFC 6026 section 8.7
            return []  # Confirmed: absorb; Proceeding: not ours to take
        # retransmitted INVITE
        if state is PROCEEDING and self.last_response is None:
            return self.trying(now)  # the caller is waiting for something: 100 now (17.2.1)
        if state is PROCEEDING or state is COMPLETED:
            return self._resend_last()
        return []  # Accepted (RFC 6026: MUST NOT pass to TU) and Confirmed: absorb

    def send_response(self, response: Response, now: float) -> list[Action]:
        state = self.state
        status = response.status
        if state is PROCEEDING:
            actions: list[Action] = [self._respond(response)]
            if status < 200:
                return actions
            if status < 300:
                self.state = ACCEPTED
                self._shed(keep_data=False)  # 2xx retransmissions come from the TU
                self._start('L', self.config.timer_l, now)
                return actions
            self.state = COMPLETED
            self._shed(keep_data=True)
            if not self.reliable:
                self._interval = self.config.timer_g
                self._start('G', self._interval, now)
            self._start('H', self.config.timer_h, now)
            return actions
        if state is ACCEPTED and 200 <= status < 300:
            # RFC 6026: 2xx retransmissions come from the TU and pass straight through.
            return [self._respond(response)]
        return []

    def _timer_G(self, now: float) -> list[Action]:
        if self.state is not COMPLETED:
            return []
        config = self.config
        self._interval = config.backoff(self._interval, config.T2)
        self._start('G', self._interval, now)
        return self._resend_last()

    def _timer_H(self, now: float) -> list[Action]:
        if self.state is not COMPLETED:
            return []
        self._stop('G')
        return self._terminate([Timeout(self, 'H')])

    def _timer_I(self, now: float) -> list[Action]:
        return self._terminate([]) if self.state is CONFIRMED else []

    def _timer_L(self, now: float) -> list[Action]:
        return self._terminate([]) if self.state is ACCEPTED else []


class ClientTransaction(Transaction):
    __slots__ = ()
    is_server = False

    def _start_request(self, now: float) -> list[Action]:
        data = self.request.to_bytes()
        self._data = data
        return [self._send(self.request, data)]

    def _retransmit(self) -> Send:
        assert self._data is not None
        return self._send(self.request, self._data)


class ClientInviteTransaction(ClientTransaction):
    """RFC 3261 figure 5 with RFC 6026's Accepted state."""

    __slots__ = ('ack', '_ack_data')
    is_invite = True
    TIMERS = ('A', 'B', 'D', 'M')

    def __init__(
        self,
        layer: TransactionLayer,
        key: tuple,
        request: Request,
        destination: Any,
        reliable: bool,
        state: State,
    ) -> None:
        super().__init__(layer, key, request, destination, reliable, state)
        self.ack: Request | None = None
        self._ack_data: bytes | None = None

    def _begin(self, now: float) -> list[Action]:
        config = self.config
        actions = self._start_request(now)
        if not self.reliable:
            self._interval = config.timer_a
            self._start('A', self._interval, now)
        self._start('B', config.timer_b, now)
        return actions

    def on_response(self, response: Response, now: float) -> list[Action]:
        state = self.state
        status = response.status
        if status < 200:
            if state is CALLING:
                self._stop('A', 'B')
                self.state = PROCEEDING
                return [PassToTU(response, self)]
            if state is PROCEEDING:
                return [PassToTU(response, self)]
            return []
        if status < 300:
            if state is CALLING or state is PROCEEDING:
                self._stop('A', 'B')
                self.state = ACCEPTED
                self._shed(keep_data=False)
                self._start('M', self.config.timer_m, now)
                return [PassToTU(response, self)]
            if state is ACCEPTED:
                return [PassToTU(response, self)]  # retransmitted or forked 2xx
            return []
        if state is CALLING or state is PROCEEDING:
            self._stop('A', 'B')
            ack = build_ack_for_non2xx(self.request, response)
            self.ack = ack
            self._ack_data = ack.to_bytes()
            actions: list[Action] = [PassToTU(response, self), self._send(ack, self._ack_data)]
            self._shed(keep_data=False)
            return self._linger(COMPLETED, 'D', self.config.timer_d(self.reliable), now, actions)
        if state is COMPLETED and self.ack is not None and self._ack_data is not None:
            return [self._send(self.ack, self._ack_data)]  # absorbed, ACK repeated
        return []

    def _timer_A(self, now: float) -> list[Action]:
        if self.state is not CALLING:
            return []
        self._interval = self.config.backoff(self._interval)
        self._start('A', self._interval, now)
        return [self._retransmit()]

    def _timer_B(self, now: float) -> list[Action]:
        if self.state is not CALLING:
            return []
        self._stop('A')
        return self._terminate([Timeout(self, 'B')])

    def _timer_D(self, now: float) -> list[Action]:
        return self._terminate([]) if self.state is COMPLETED else []

    def _timer_M(self, now: float) -> list[Action]:
        return self._terminate([]) if self.state is ACCEPTED else []


class ClientNonInviteTransaction(ClientTransaction):
    """RFC 3261 figure 6: Trying -> Proceeding -> Completed -> Terminated."""

    __slots__ = ()
    is_invite = False
    TIMERS = ('E', 'F', 'K')

    def _begin(self, now: float) -> list[Action]:
        config = self.config
        actions = self._start_request(now)
        if not self.reliable:
            self._interval = config.timer_e
            self._start('E', self._interval, now)
        self._start('F', config.timer_f, now)
        return actions

    def on_response(self, response: Response, now: float) -> list[Action]:
        state = self.state
        if state is not TRYING and state is not PROCEEDING:
            return []  # Completed: absorb retransmitted responses
        if response.status < 200:
            self.state = PROCEEDING
            return [PassToTU(response, self)]
        self._stop('E', 'F')
        actions: list[Action] = [PassToTU(response, self)]
        self._shed(keep_data=False)
        return self._linger(COMPLETED, 'K', self.config.timer_k(self.reliable), now, actions)

    def _timer_E(self, now: float) -> list[Action]:
        state = self.state
        config = self.config
        if state is TRYING:
            self._interval = config.backoff(self._interval, config.T2)
        elif state is PROCEEDING:
            self._interval = config.T2
        else:
            return []
        self._start('E', self._interval, now)
        return [self._retransmit()]

    def _timer_F(self, now: float) -> list[Action]:
        if self.state is not TRYING and self.state is not PROCEEDING:
            return []
        self._stop('E')
        return self._terminate([Timeout(self, 'F')])

    def _timer_K(self, now: float) -> list[Action]:
        return self._terminate([]) if self.state is COMPLETED else []


# ------------------------------------------------------------------------------ layer


class TransactionLayer:
    """The transaction tables plus the shared timer heap."""

    __slots__ = ('_client', '_server', 'config', 'timers')

    def __init__(self, config: TimerConfig | None = None) -> None:
        self.config = config if config is not None else TimerConfig()
        self.timers = TimerWheel()
        self._server: dict[tuple, ServerTransaction] = {}
        self._client: dict[tuple, ClientTransaction] = {}

    def __len__(self) -> int:
        return len(self._server) + len(self._client)

    @property
    def server_transactions(self) -> int:
        return len(self._server)

    @property
    def client_transactions(self) -> int:
        return len(self._client)

    # -- matching
    def match_server(self, request: Request) -> ServerTransaction | None:
        return self._server.get(server_key(request))

    def find_invite_for_cancel(self, cancel: Request) -> ServerInviteTransaction | None:
        """The server INVITE transaction a CANCEL refers to (RFC 3261 section 9.2)."""
        txn = self._server.get(server_key(cancel, 'INVITE'))
        return txn if isinstance(txn, ServerInviteTransaction) else None

    def match_client(self, response: Response) -> ClientTransaction | None:
        return self._client.get(client_key(response))

    # -- creation
    def create_server(
        self, request: Request, source: Any, *, reliable: bool, now: float
    ) -> ServerTransaction:
        """A server transaction for a request that matched none (not for ACK)."""
        method = request.method
        if method == 'ACK':
            raise ValueError('ACK does not create a server transaction')
        key = server_key(request)
        if key in self._server:
            raise ValueError(f'server transaction {key!r} already exists')
        txn: ServerTransaction
        if method == 'INVITE':
            txn = ServerInviteTransaction(self, key, request, source, reliable, PROCEEDING)
        else:
            txn = ServerNonInviteTransaction(self, key, request, source, reliable, TRYING)
        self._server[key] = txn
        return txn

    def create_client(
        self, request: Request, destination: Any, *, reliable: bool, now: float
    ) -> tuple[ClientTransaction, list[Action]]:
        """Start a client transaction; the returned actions send the request.

        The request's top Via must carry a unique ``z9hG4bK`` branch (see :func:`new_branch`).
        """
        method = request.method
        if method == 'ACK':
            raise ValueError('ACK is sent without a client transaction')
        key = client_key(request)
        branch = key[0]
        if not branch or not branch.startswith(MAGIC_COOKIE):
            raise ValueError('client requests need an RFC 3261 branch (z9hG4bK...)')
        if key in self._client:
            raise ValueError(f'client transaction {key!r} already exists')
        txn: ClientInviteTransaction | ClientNonInviteTransaction
        if method == 'INVITE':
            txn = ClientInviteTransaction(self, key, request, destination, reliable, CALLING)
        else:
            txn = ClientNonInviteTransaction(self, key, request, destination, reliable, TRYING)
        self._client[key] = txn
        return txn, txn._begin(now)

    # -- event dispatch
    def receive_request(self, request: Request, source: Any, *, reliable: bool, now: float) -> list[Action]:
        """Match a request from the transport, or create a server transaction for it.

        An ACK that matches nothing (the ACK for a 2xx) goes to the TU with ``txn=None``.
        """
        txn = self._server.get(server_key(request))
        if txn is not None:
            return txn.on_request(request, now)
        if request.method == 'ACK':
            return [PassToTU(request, None)]
        txn = self.create_server(request, source, reliable=reliable, now=now)
        return [PassToTU(request, txn)]

    def receive_response(self, response: Response, now: float) -> list[Action]:
        """Match a response from the transport; strays go to the TU with ``txn=None``."""
        txn = self._client.get(client_key(response))
        if txn is None:
            return [PassToTU(response, None)]
        return txn.on_response(response, now)

    def send_response(self, txn: ServerTransaction, response: Response, now: float) -> list[Action]:
        return txn.send_response(response, now)

    def transport_error(self, txn: Transaction, now: float) -> list[Action]:
        return txn.on_transport_error(now)

    # -- timers
    def next_deadline(self) -> float | None:
        return self.timers.next_deadline()

    def expire(self, now: float) -> list[Action]:
        """Fire every timer due at ``now``, in deadline order."""
        actions: list[Action] = []
        while (due := self.timers.pop_due(now)) is not None:
            txn, name = due
            actions.extend(txn.on_timer(name, now))  # type: ignore[attr-defined]
        return actions

    # -- removal
    def remove(self, txn: Transaction) -> None:
        """Drop a transaction without any actions (same as ``txn.terminate()``)."""
        txn.terminate()

    def _forget(self, txn: Transaction) -> None:
        table: dict[tuple, Any] = self._server if txn.is_server else self._client
        if table.get(txn.key) is txn:
            del table[txn.key]
        self.timers.cancel_all(txn, txn.TIMERS)
