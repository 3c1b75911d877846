"""Tests for the sans-I/O transaction layer (RFC 3261 section 17, RFC 6026) and its timers.

The clock is fake: plain numbers passed as ``now``.  No sockets.
"""

from __future__ import annotations

import pytest

from sipsync.sip.message import Request, make_response
from sipsync.sip.parser import parse_message
from sipsync.sip.timers import TimerConfig
from sipsync.sip.transaction import (
    MAGIC_COOKIE,
    ClientInviteTransaction,
    ClientNonInviteTransaction,
    PassToTU,
    Send,
    ServerInviteTransaction,
    ServerNonInviteTransaction,
    State,
    Terminated,
    Timeout,
    TransactionLayer,
    TransportError,
    build_ack_for_non2xx,
    new_branch,
)

BRANCH = 'z9hG4bK776asdhds'
SOURCE = ('UDP', '192.0.2.10', 5060)
NEXT_HOP = ('UDP', '198.51.100.7', 5060)


def request(
    method: str = 'INVITE',
    *,
    branch: str | None = BRANCH,
    sent_by: str = 'pc33.atlanta.com',
    transport: str = 'UDP',
    cseq: int = 1,
    cseq_method: str | None = None,
    to_tag: str | None = None,
    uri: str = 'sip:bob@biloxi.com',
) -> Request:
    via_params = f';branch={branch}' if branch is not None else ''
    to = 'Bob <sip:bob@biloxi.com>' + (f';tag={to_tag}' if to_tag else '')
    text = (
        f'{method} {uri} SIP/2.0\r\n'
        f'Via: SIP/2.0/{transport} {sent_by}{via_params}\r\n'
        'Via: SIP/2.0/UDP proxy.example.com;branch=z9hG4bKlower\r\n'
        'Max-Forwards: 69\r\n'
        'Route: <sip:p1.example.com;lr>\r\n'
        'Route: <sip:p2.example.com;lr>, <sip:p3.example.com;lr>\r\n'
        f'To: {to}\r\n'
        'From: Alice <sip:alice@atlanta.com>;tag=1928301774\r\n'
        'Call-ID: a84b4c76e66710@pc33.atlanta.com\r\n'
        f'CSeq: {cseq} {cseq_method or method}\r\n'
        'Contact: <sip:alice@pc33.atlanta.com>\r\n'
    )
    body = b''
    if method == 'INVITE':
        body = b'v=0\r\n'
        text += 'Content-Type: application/sdp\r\n'
    text += f'Content-Length: {len(body)}\r\n\r\n'
    msg = parse_message(text.encode() + body)
    assert isinstance(msg, Request)
    return msg


def response(req: Request, status: int, to_tag: str | None = 'a6c85cf'):
    """A response as the peer would send it: built, serialized, parsed back."""
    tag = None if status == 100 else to_tag
    return parse_message(make_response(req, status, to_tag=tag).to_bytes())


def sends(actions) -> list[Send]:
    return [a for a in actions if isinstance(a, Send)]


def kinds(actions) -> list[type]:
    return [type(a) for a in actions]


def run(layer: TransactionLayer, until: float) -> list[tuple[float, object]]:
    """Drive the timers like an event loop would, up to ``until``; (time, action) pairs."""
    out = []
    while (deadline := layer.next_deadline()) is not None and deadline <= until:
        for action in layer.expire(deadline):
            out.append((deadline, action))
    return out


# ------------------------------------------------------------------ timers


def test_timer_config_defaults():
    c = TimerConfig()
    assert (c.T1, c.T2, c.T4) == (0.5, 4.0, 5.0)
    assert c.timer_a == 0.5 and c.timer_e == 0.5 and c.timer_g == 0.5
    assert c.timer_b == c.timer_f == c.timer_h == c.timer_l == c.timer_m == 32.0
    assert c.timer_d(False) == 32.0 and c.timer_d(True) == 0
    assert c.timer_i(False) == 5.0 and c.timer_i(True) == 0
    assert c.timer_j(False) == 32.0 and c.timer_j(True) == 0
    assert c.timer_k(False) == 5.0 and c.timer_k(True) == 0


def test_timer_config_scaled():
    c = TimerConfig(T1=1.0, T2=8.0, T4=10.0)
    assert c.timer_b == 64.0 and c.timer_j(False) == 64.0
    assert c.timer_d(False) == 64.0  # never below 64*T1
    assert TimerConfig(T1=0.1).timer_d(False) == 32.0  # but at least 32 s
    assert c.backoff(1.0) == 2.0
    assert c.backoff(4.0, 8.0) == 8.0
    assert c.backoff(8.0, 8.0) == 8.0


@pytest.mark.parametrize('kwargs', [{'T1': 0}, {'T1': 5.0, 'T2': 4.0}, {'T4': -1}])
def test_timer_config_rejects_nonsense(kwargs):
    with pytest.raises(ValueError):
        TimerConfig(**kwargs)


# ------------------------------------------------------------------ server non-INVITE


def test_server_non_invite_unreliable_lifecycle():
    layer = TransactionLayer()
    reg = request('REGISTER')
    actions = layer.receive_request(reg, SOURCE, reliable=False, now=0.0)
    assert kinds(actions) == [PassToTU]
    txn = actions[0].txn
    assert isinstance(txn, ServerNonInviteTransaction)
    assert actions[0].message is reg
    assert txn.state is State.TRYING and layer.match_server(reg) is txn

    # Trying: retransmissions are absorbed silently
    assert layer.receive_request(request('REGISTER'), SOURCE, reliable=False, now=0.4) == []

    # Proceeding: a retransmission repeats the provisional response
    [send100] = txn.send_response(make_response(reg, 100), now=0.5)
    assert txn.state is State.PROCEEDING and send100.destination == SOURCE
    [again] = layer.receive_request(request('REGISTER'), SOURCE, reliable=False, now=0.6)
    assert again.data is send100.data

    # Completed: final sent once, repeated on retransmission, Timer J = 64*T1
    ok = make_response(reg, 200, to_tag='x')
    [send200] = layer.send_response(txn, ok, now=1.0)
    assert send200.message is ok and send200.data == ok.to_bytes() and send200.txn is txn
    assert txn.state is State.COMPLETED
    assert layer.timers.deadline(txn, 'J') == 33.0
    [again] = layer.receive_request(request('REGISTER'), SOURCE, reliable=False, now=2.0)
    assert again.data is send200.data
    assert txn.send_response(make_response(reg, 500), now=2.0) == []  # further finals discarded

    assert run(layer, 32.9) == []
    events = run(layer, 40.0)
    assert [(t, type(a), a.txn) for t, a in events] == [(33.0, Terminated, txn)]
    assert txn.state is State.TERMINATED
    assert layer.match_server(reg) is None and len(layer) == 0
    assert layer.next_deadline() is None


def test_server_non_invite_reliable_terminates_at_once():
    layer = TransactionLayer()
    reg = request('REGISTER', transport='TCP')
    [pass_] = layer.receive_request(reg, SOURCE, reliable=True, now=0.0)
    txn = pass_.txn
    actions = txn.send_response(make_response(reg, 200, to_tag='x'), now=0.1)
    assert kinds(actions) == [Send, Terminated]
    assert txn.state is State.TERMINATED and len(layer) == 0 and layer.next_deadline() is None


def test_server_non_invite_transport_error():
    layer = TransactionLayer()
    reg = request('OPTIONS')
    [pass_] = layer.receive_request(reg, SOURCE, reliable=False, now=0.0)
    txn = pass_.txn
    txn.send_response(make_response(reg, 200, to_tag='x'), now=0.0)
    actions = layer.transport_error(txn, now=0.1)
    assert kinds(actions) == [TransportError, Terminated]
    assert len(layer) == 0 and layer.next_deadline() is None
    assert layer.transport_error(txn, now=0.2) == []


# ------------------------------------------------------------------ server INVITE


def _server_invite(layer, *, reliable=False, transport='UDP'):
    inv = request('INVITE', transport=transport)
    [pass_] = layer.receive_request(inv, SOURCE, reliable=reliable, now=0.0)
    assert isinstance(pass_, PassToTU) and pass_.message is inv
    txn = pass_.txn
    assert isinstance(txn, ServerInviteTransaction) and txn.state is State.PROCEEDING
    return inv, txn


def test_server_invite_trying_helper_and_retransmission():
    layer = TransactionLayer()
    inv, txn = _server_invite(layer)
    # before any response, a retransmitted INVITE gets 100 Trying (the caller is waiting)
    [trying] = layer.receive_request(request('INVITE'), SOURCE, reliable=False, now=0.1)
    assert trying.message.status == 100 and trying.message.to.tag is None
    assert txn.trying(now=0.2) == []  # only once
    [again] = layer.receive_request(request('INVITE'), SOURCE, reliable=False, now=0.3)
    assert again.data is trying.data
    [ringing] = txn.send_response(make_response(inv, 180, to_tag='t'), now=0.4)
    [again] = layer.receive_request(request('INVITE'), SOURCE, reliable=False, now=0.5)
    assert again.data is ringing.data  # the *last* provisional
    assert layer.next_deadline() is None  # nothing scheduled while Proceeding


def test_server_invite_non2xx_timer_g_schedule_and_timer_h():
    layer = TransactionLayer()
    inv, txn = _server_invite(layer)
    busy = make_response(inv, 486, to_tag='t')
    [first] = txn.send_response(busy, now=0.0)
    assert txn.state is State.COMPLETED
    events = run(layer, 100.0)
    resend_times = [t for t, a in events if isinstance(a, Send)]
    # G doubles from T1 and is capped at T2; H fires at 64*T1
    assert resend_times == [0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    assert all(a.data is first.data for _, a in events if isinstance(a, Send))
    tail = [(t, type(a)) for t, a in events if not isinstance(a, Send)]
    assert tail == [(32.0, Timeout), (32.0, Terminated)]
    assert next(a for _, a in events if isinstance(a, Timeout)).timer == 'H'
    assert txn.state is State.TERMINATED and len(layer) == 0 and layer.next_deadline() is None


def test_server_invite_ack_confirms_then_timer_i():
    layer = TransactionLayer()
    inv, txn = _server_invite(layer)
    [final] = txn.send_response(make_response(inv, 404, to_tag='t'), now=0.0)
    [again] = layer.receive_request(request('INVITE'), SOURCE, reliable=False, now=0.2)
    assert again.data is final.data
    [g] = layer.expire(0.5)
    assert isinstance(g, Send)

    ack = request('ACK', to_tag='t')  # same branch: the ACK for a non-2xx
    assert layer.match_server(ack) is txn
    assert layer.receive_request(ack, SOURCE, reliable=False, now=0.8) == []  # absorbed, not to TU
    assert txn.state is State.CONFIRMED
    assert layer.receive_request(request('ACK', to_tag='t'), SOURCE, reliable=False, now=1.0) == []
    assert layer.receive_request(request('INVITE'), SOURCE, reliable=False, now=1.0) == []
    events = run(layer, 100.0)
    assert [(t, type(a)) for t, a in events] == [(5.8, Terminated)]  # Timer I = T4, no more G
    assert len(layer) == 0


def test_server_invite_reliable_no_g_and_ack_terminates():
    layer = TransactionLayer()
    inv, txn = _server_invite(layer, reliable=True, transport='TCP')
    txn.send_response(make_response(inv, 486, to_tag='t'), now=0.0)
    assert layer.timers.pending(txn, 'H') and not layer.timers.pending(txn, 'G')
    ack = request('ACK', to_tag='t', transport='TCP')
    actions = layer.receive_request(ack, SOURCE, reliable=True, now=1.0)
    assert kinds(actions) == [Terminated]
    assert len(layer) == 0 and layer.next_deadline() is None


def test_server_invite_2xx_accepted_rfc6026():
    layer = TransactionLayer()
    inv, txn = _server_invite(layer)
    ok = make_response(inv, 200, to_tag='t')
    [sent] = txn.send_response(ok, now=1.0)
    assert txn.state is State.ACCEPTED
    assert layer.timers.deadline(txn, 'L') == 33.0
    # a retransmitted INVITE is absorbed: not to the TU, no automatic 2xx retransmission
    assert layer.receive_request(request('INVITE'), SOURCE, reliable=False, now=1.5) == []
    # 2xx retransmissions come from the TU and pass straight through
    [resent] = txn.send_response(ok, now=1.5)
    assert resent.message is ok
    assert txn.send_response(make_response(inv, 500), now=1.6) == []
    # ACK for the 2xx carries a new branch: no transaction, straight to the TU
    ack = request('ACK', branch='z9hG4bKnewack', to_tag='t')
    assert layer.match_server(ack) is None
    [to_tu] = layer.receive_request(ack, SOURCE, reliable=False, now=2.0)
    assert isinstance(to_tu, PassToTU) and to_tu.txn is None and to_tu.message is ack
    assert len(layer) == 1  # the ACK created nothing
    # an ACK that does match the transaction in Accepted is passed to the TU too
    [to_tu] = layer.receive_request(request('ACK', to_tag='t'), SOURCE, reliable=False, now=2.0)
    assert isinstance(to_tu, PassToTU) and to_tu.txn is txn
    # a transport error is reported but the transaction keeps absorbing
    assert kinds(layer.transport_error(txn, now=3.0)) == [TransportError]
    assert txn.state is State.ACCEPTED
    events = run(layer, 100.0)
    assert [(t, type(a)) for t, a in events] == [(33.0, Terminated)]
    assert len(layer) == 0


def test_server_invite_transport_error_in_proceeding():
    layer = TransactionLayer()
    _inv, txn = _server_invite(layer)
    txn.trying(now=0.0)
    assert kinds(layer.transport_error(txn, now=0.1)) == [TransportError, Terminated]
    assert len(layer) == 0


def test_cancel_lookup_and_own_transaction():
    layer = TransactionLayer()
    _inv, invite_txn = _server_invite(layer)
    cancel = request('CANCEL')
    assert layer.find_invite_for_cancel(cancel) is invite_txn
    assert layer.match_server(cancel) is None  # CANCEL is its own transaction
    [pass_] = layer.receive_request(cancel, SOURCE, reliable=False, now=0.1)
    assert isinstance(pass_.txn, ServerNonInviteTransaction)
    assert pass_.txn is not invite_txn and len(layer) == 2
    assert layer.find_invite_for_cancel(request('CANCEL', branch='z9hG4bKother')) is None
    assert layer.find_invite_for_cancel(request('CANCEL', sent_by='evil.example.com')) is None
    # a CANCEL for a non-INVITE transaction finds nothing
    layer.receive_request(request('OPTIONS', branch='z9hG4bKopt'), SOURCE, reliable=False, now=0.2)
    assert layer.find_invite_for_cancel(request('CANCEL', branch='z9hG4bKopt')) is None


def test_server_matching_keys():
    layer = TransactionLayer()
    _inv, txn = _server_invite(layer)
    # default port is explicit-port equivalent; host compared case-insensitively
    assert layer.match_server(request('ACK', sent_by='PC33.atlanta.com:5060')) is txn
    assert layer.match_server(request('INVITE', sent_by='pc33.atlanta.com:5070')) is None
    assert layer.match_server(request('INVITE', sent_by='other.example.com')) is None
    assert layer.match_server(request('INVITE', branch='z9hG4bKdifferent')) is None
    assert layer.match_server(request('BYE')) is None  # same branch, other method
    # the TLS default port is 5061
    _tls, tls_txn = _server_invite(TransactionLayer(), transport='TLS')
    tls_ack = request('ACK', transport='TLS', sent_by='pc33.atlanta.com:5061')
    assert tls_txn.layer.match_server(tls_ack) is tls_txn


def test_rfc2543_fallback_matching():
    layer = TransactionLayer()
    inv = request('INVITE', branch=None)
    [pass_] = layer.receive_request(inv, SOURCE, reliable=False, now=0.0)
    txn = pass_.txn
    assert layer.match_server(request('INVITE', branch=None)) is txn
    assert layer.match_server(request('INVITE', branch='1234')) is None  # different top Via
    assert layer.match_server(request('INVITE', branch=None, cseq=2)) is None
    txn.send_response(make_response(inv, 486, to_tag='t'), now=0.0)
    ack = request('ACK', branch=None, to_tag='t')
    assert layer.match_server(ack) is txn
    assert layer.receive_request(ack, SOURCE, reliable=False, now=0.1) == []
    assert txn.state is State.CONFIRMED


def test_duplicate_and_ack_creation_rejected():
    layer = TransactionLayer()
    inv, _txn = _server_invite(layer)
    with pytest.raises(ValueError):
        layer.create_server(inv, SOURCE, reliable=False, now=0.0)
    with pytest.raises(ValueError):
        layer.create_server(request('ACK'), SOURCE, reliable=False, now=0.0)


# ------------------------------------------------------------------ client INVITE


def _client_invite(layer, *, reliable=False, transport='UDP'):
    inv = request('INVITE', transport=transport)
    txn, actions = layer.create_client(inv, NEXT_HOP, reliable=reliable, now=0.0)
    assert isinstance(txn, ClientInviteTransaction) and txn.state is State.CALLING
    [send] = actions
    assert send.message is inv and send.destination == NEXT_HOP and send.data == inv.to_bytes()
    return inv, txn, send


def test_client_invite_timer_a_doubling_and_timer_b():
    layer = TransactionLayer()
    _inv, txn, first = _client_invite(layer)
    events = run(layer, 100.0)
    resend_times = [t for t, a in events if isinstance(a, Send)]
    assert resend_times == [0.5, 1.5, 3.5, 7.5, 15.5, 31.5]  # A doubles without a cap
    assert all(a.data is first.data for _, a in events if isinstance(a, Send))
    tail = [(t, type(a)) for t, a in events if not isinstance(a, Send)]
    assert tail == [(32.0, Timeout), (32.0, Terminated)]
    timeout = next(a for _, a in events if isinstance(a, Timeout))
    assert timeout.txn is txn and timeout.timer == 'B'
    assert len(layer) == 0 and layer.next_deadline() is None


def test_client_invite_provisional_stops_retransmission():
    layer = TransactionLayer()
    inv, txn, _ = _client_invite(layer)
    layer.expire(0.5)
    [to_tu] = layer.receive_response(response(inv, 100), now=0.7)
    assert isinstance(to_tu, PassToTU) and to_tu.txn is txn
    assert txn.state is State.PROCEEDING
    assert layer.next_deadline() is None  # no A, no B in Proceeding
    [to_tu] = layer.receive_response(response(inv, 180), now=1.0)
    assert to_tu.message.status == 180


def test_client_invite_non2xx_generates_ack_and_timer_d():
    layer = TransactionLayer()
    inv, txn, _ = _client_invite(layer)
    layer.receive_response(response(inv, 180), now=0.2)
    busy = response(inv, 486, to_tag='remote')
    actions = layer.receive_response(busy, now=1.0)
    assert kinds(actions) == [PassToTU, Send]
    ack_send = actions[1]
    ack = ack_send.message
    assert ack is txn.ack and ack_send.destination == NEXT_HOP
    assert ack.method == 'ACK'
    assert ack.raw_uri == inv.raw_uri
    assert ack.headers.get_all('Via') == [inv.headers.get_first_value('Via')]
    assert ack.via.branch == BRANCH
    assert ack.to.tag == 'remote'
    assert ack.from_.tag == '1928301774'
    assert ack.call_id == inv.call_id
    assert (ack.cseq.seq, ack.cseq.method) == (1, 'ACK')
    assert ack.headers.get_all('Route') == inv.headers.get_all('Route')
    assert ack.headers.get_all('Route') == [
        '<sip:p1.example.com;lr>', '<sip:p2.example.com;lr>', '<sip:p3.example.com;lr>'
    ]
    assert ack.body == b'' and ack.headers.get('Content-Type') is None
    assert parse_message(ack_send.data).method == 'ACK'
    assert txn.state is State.COMPLETED
    assert layer.timers.deadline(txn, 'D') == 33.0

    # retransmitted final: the ACK again, nothing to the TU
    [again] = layer.receive_response(response(inv, 486, to_tag='remote'), now=2.0)
    assert isinstance(again, Send) and again.data is ack_send.data
    events = run(layer, 100.0)
    assert [(t, type(a)) for t, a in events] == [(33.0, Terminated)]
    assert len(layer) == 0


def test_build_ack_without_routes():
    inv = parse_message(
        b'INVITE sip:bob@biloxi.com SIP/2.0\r\n'
        b'Via: SIP/2.0/UDP h.example.com;branch=z9hG4bKabc, SIP/2.0/UDP lower.example.com;branch=z9hG4bKx\r\n'
        b'To: <sip:bob@biloxi.com>\r\nFrom: <sip:a@h.example.com>;tag=1\r\nCall-ID: c1\r\n'
        b'CSeq: 7 INVITE\r\nContent-Length: 0\r\n\r\n'
    )
    ack = build_ack_for_non2xx(inv, response(inv, 603, to_tag='z'))
    assert ack.headers.get_all('Via') == ['SIP/2.0/UDP h.example.com;branch=z9hG4bKabc']
    assert ack.headers.get_all('Route') == []
    assert ack.max_forwards == 70
    assert str(ack.cseq) == '7 ACK'


def test_client_invite_reliable():
    layer = TransactionLayer()
    inv, txn, _ = _client_invite(layer, reliable=True, transport='TCP')
    assert not layer.timers.pending(txn, 'A') and layer.timers.pending(txn, 'B')
    actions = layer.receive_response(response(inv, 503), now=1.0)
    assert kinds(actions) == [PassToTU, Send, Terminated]
    assert len(layer) == 0 and layer.next_deadline() is None


def test_client_invite_2xx_accepted_timer_m():
    layer = TransactionLayer()
    inv, txn, _ = _client_invite(layer)
    [to_tu] = layer.receive_response(response(inv, 200, to_tag='one'), now=1.0)
    assert isinstance(to_tu, PassToTU) and txn.state is State.ACCEPTED
    assert not layer.timers.pending(txn, 'A') and not layer.timers.pending(txn, 'B')
    assert layer.timers.deadline(txn, 'M') == 33.0
    # retransmitted and forked 2xx both reach the TU (it sends the ACKs)
    assert kinds(layer.receive_response(response(inv, 200, to_tag='one'), now=2.0)) == [PassToTU]
    assert kinds(layer.receive_response(response(inv, 200, to_tag='two'), now=2.0)) == [PassToTU]
    assert layer.receive_response(response(inv, 486, to_tag='three'), now=2.0) == []
    assert layer.receive_response(response(inv, 180, to_tag='four'), now=2.0) == []
    events = run(layer, 100.0)
    assert [(t, type(a)) for t, a in events] == [(33.0, Terminated)]
    assert layer.match_client(response(inv, 200, to_tag='one')) is None
    [stray] = layer.receive_response(response(inv, 200, to_tag='one'), now=40.0)
    assert isinstance(stray, PassToTU) and stray.txn is None


def test_client_invite_transport_error():
    layer = TransactionLayer()
    _inv, txn, _ = _client_invite(layer)
    assert kinds(layer.transport_error(txn, now=0.1)) == [TransportError, Terminated]
    assert len(layer) == 0 and layer.next_deadline() is None


def test_client_match_uses_branch_and_cseq_method():
    layer = TransactionLayer()
    inv, txn, _ = _client_invite(layer)
    cancel = request('CANCEL')
    cancel_txn, _ = layer.create_client(cancel, NEXT_HOP, reliable=False, now=0.1)
    assert isinstance(cancel_txn, ClientNonInviteTransaction)
    assert layer.match_client(response(inv, 487)) is txn
    assert layer.match_client(response(cancel, 200)) is cancel_txn
    other = request('INVITE', branch='z9hG4bKsomethingelse')
    assert layer.match_client(response(other, 200)) is None


def test_create_client_validation():
    layer = TransactionLayer()
    with pytest.raises(ValueError):
        layer.create_client(request('ACK'), NEXT_HOP, reliable=False, now=0.0)
    with pytest.raises(ValueError):
        layer.create_client(request('INVITE', branch='oldstyle'), NEXT_HOP, reliable=False, now=0.0)
    layer.create_client(request('INVITE'), NEXT_HOP, reliable=False, now=0.0)
    with pytest.raises(ValueError):
        layer.create_client(request('INVITE'), NEXT_HOP, reliable=False, now=0.0)
    branch = new_branch()
    assert branch.startswith(MAGIC_COOKIE) and branch != new_branch()


# ------------------------------------------------------------------ client non-INVITE


def _client_non_invite(layer, method='OPTIONS', *, reliable=False, transport='UDP'):
    req = request(method, transport=transport)
    txn, [send] = layer.create_client(req, NEXT_HOP, reliable=reliable, now=0.0)
    assert isinstance(txn, ClientNonInviteTransaction) and txn.state is State.TRYING
    return req, txn, send


def test_client_non_invite_timer_e_capped_and_timer_f():
    layer = TransactionLayer()
    _req, txn, first = _client_non_invite(layer)
    events = run(layer, 100.0)
    resend_times = [t for t, a in events if isinstance(a, Send)]
    assert resend_times == [0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    assert all(a.data is first.data for _, a in events if isinstance(a, Send))
    tail = [(t, type(a)) for t, a in events if not isinstance(a, Send)]
    assert tail == [(32.0, Timeout), (32.0, Terminated)]
    assert next(a for _, a in events if isinstance(a, Timeout)).timer == 'F'
    assert len(layer) == 0


def test_client_non_invite_proceeding_retransmits_at_t2():
    layer = TransactionLayer()
    req, txn, _ = _client_non_invite(layer, 'REGISTER')
    layer.expire(0.5)  # E: next in 1.0
    [to_tu] = layer.receive_response(response(req, 100), now=0.6)
    assert to_tu.txn is txn and txn.state is State.PROCEEDING
    events = run(layer, 20.0)
    # the pending E (1.5) still fires, after which the interval is T2
    assert [t for t, a in events if isinstance(a, Send)] == [1.5, 5.5, 9.5, 13.5, 17.5]
    [to_tu] = layer.receive_response(response(req, 200), now=20.0)
    assert to_tu.message.status == 200 and txn.state is State.COMPLETED
    assert not layer.timers.pending(txn, 'E') and not layer.timers.pending(txn, 'F')
    # Completed: response retransmissions are absorbed; Timer K = T4
    assert layer.receive_response(response(req, 200), now=21.0) == []
    events = run(layer, 100.0)
    assert [(t, type(a)) for t, a in events] == [(25.0, Terminated)]
    assert len(layer) == 0


def test_client_non_invite_reliable():
    layer = TransactionLayer()
    req, txn, _ = _client_non_invite(layer, 'BYE', reliable=True, transport='TCP')
    assert not layer.timers.pending(txn, 'E') and layer.timers.pending(txn, 'F')
    actions = layer.receive_response(response(req, 481), now=0.3)
    assert kinds(actions) == [PassToTU, Terminated]
    assert len(layer) == 0 and layer.next_deadline() is None


def test_client_non_invite_transport_error():
    layer = TransactionLayer()
    _req, txn, _ = _client_non_invite(layer)
    assert kinds(layer.transport_error(txn, now=0.1)) == [TransportError, Terminated]
    assert len(layer) == 0


# ------------------------------------------------------------------ layer


def test_expire_interleaves_transactions_in_deadline_order():
    layer = TransactionLayer()
    _inv, inv_txn, _ = _client_invite(layer)
    opt = request('OPTIONS', branch='z9hG4bKopt')
    opt_txn, _ = layer.create_client(opt, NEXT_HOP, reliable=False, now=0.25)
    actions = layer.expire(0.8)  # INVITE A at 0.5, OPTIONS E at 0.75
    assert [a.txn for a in actions] == [inv_txn, opt_txn]
    assert layer.next_deadline() == 1.8  # both re-armed from the time they were served
    assert layer.client_transactions == 2 and layer.server_transactions == 0


def test_late_expire_does_not_burst():
    layer = TransactionLayer()
    _client_invite(layer)
    actions = layer.expire(10.0)  # the loop woke up late: one retransmission, rescheduled from now
    assert kinds(actions) == [Send]
    assert layer.next_deadline() == 11.0


def test_remove_and_terminate():
    layer = TransactionLayer()
    _inv, txn, _ = _client_invite(layer)
    _sinv, stxn = _server_invite(layer)
    assert len(layer) == 2
    layer.remove(txn)
    assert txn.terminated and len(layer) == 1
    assert kinds(stxn.terminate()) == [Terminated]
    assert stxn.terminate() == []
    assert len(layer) == 0 and layer.next_deadline() is None
    # events after termination are no-ops
    assert stxn.send_response(make_response(stxn.request, 200, to_tag='x'), now=1.0) == []
    assert txn.on_timer('A', 1.0) == []


def test_lingering_transactions_let_go_of_their_messages():
    """Once a transaction only waits out its timer, it holds the bytes it may still have to
    repeat and nothing parsed: a retransmission still gets exactly the same answer."""
    layer = TransactionLayer()
    reg = request('REGISTER')
    [pass_] = layer.receive_request(reg, SOURCE, reliable=False, now=0.0)
    server = pass_.txn
    [sent] = server.send_response(make_response(reg, 200, to_tag='x'), now=1.0)
    [again] = layer.receive_request(request('REGISTER'), SOURCE, reliable=False, now=2.0)
    assert again.data == sent.data and again.message is None and server.last_response is None
    with pytest.raises(RuntimeError, match='no longer holds its request'):
        server.request  # noqa: B018

    inv, invite_server = _server_invite(layer)
    assert invite_server.request is inv and invite_server.awaiting_final
    [busy] = invite_server.send_response(make_response(inv, 486, to_tag='y'), now=1.0)
    [resent] = layer.receive_request(request('INVITE'), SOURCE, reliable=False, now=1.2)
    assert resent.data == busy.data and not invite_server.awaiting_final
    with pytest.raises(RuntimeError):
        invite_server.request  # noqa: B018

    client_layer = TransactionLayer()
    cinv, client, _ = _client_invite(client_layer)
    assert client.request is cinv
    client_layer.receive_response(response(cinv, 200), now=0.5)
    assert client.state is State.ACCEPTED
    with pytest.raises(RuntimeError):
        client.request  # noqa: B018
    [to_tu] = client_layer.receive_response(response(cinv, 200), now=0.6)  # a retransmitted 2xx
    assert isinstance(to_tu, PassToTU) and to_tu.txn is client


def test_stray_response_goes_to_tu():
    layer = TransactionLayer()
    [stray] = layer.receive_response(response(request('INVITE'), 200), now=0.0)
    assert isinstance(stray, PassToTU) and stray.txn is None
    assert len(layer) == 0


def test_custom_config_is_used():
    layer = TransactionLayer(TimerConfig(T1=0.1, T2=0.4, T4=1.0))
    _req, txn, _ = _client_non_invite(layer)
    assert layer.timers.deadline(txn, 'E') == 0.1
    assert layer.timers.deadline(txn, 'F') == pytest.approx(6.4)
