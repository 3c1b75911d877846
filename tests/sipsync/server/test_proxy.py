"""The proxy in process: a caller, callees that register, and a fake trunk, all on one fake network.

The node's UDP socket is a `Network` that keeps what the node sends, by destination address;
each `UA` feeds the node bytes from its own address and reads what was sent to it.
"""

import hashlib
import itertools
import re
import time
from decimal import Decimal

import pytest

from sipsync.server.node import SipNode
from sipsync.server.provision import document_for_password
from sipsync.sip.message import Request, Response, make_response
from sipsync.sip.parser import parse_message
from sipsync.sip.sdp import SessionDescription, offered_codecs
from tests.sipsync.server.conftest import REALM, Phone

ALICE = ("198.51.100.7", 5062)
BOB = ("198.51.100.8", 5070)
BOB2 = ("198.51.100.9", 5080)
TRUNK = ("203.0.113.50", 5060)
PROXY = "192.0.2.10"

OFFER = (
    "v=0\r\no=- 1 1 IN IP4 10.0.0.2\r\ns=-\r\nc=IN IP4 10.0.0.2\r\nt=0 0\r\n"
    "m=audio 4000 RTP/AVP {pts} 101\r\n{maps}a=rtpmap:101 telephone-event/8000\r\n"
)
_MAPS = {"0": "PCMU/8000", "8": "PCMA/8000", "18": "G729/8000", "3": "GSM/8000", "9": "G722/8000"}


def offer(*payload_types: str) -> bytes:
    maps = "".join(f"a=rtpmap:{pt} {_MAPS[pt]}\r\n" for pt in payload_types)
    return OFFER.format(pts=" ".join(payload_types), maps=maps).encode()


class Network:
    """The node's UDP socket."""

    name = "UDP"
    reliable = False

    def __init__(self):
        self.outbox: list[tuple[tuple[str, int], bytes]] = []

    def send(self, data, address):
        self.outbox.append((address, data))

    def close(self):
        pass

    def take(self, address) -> list:
        mine = [parse_message(data) for to, data in self.outbox if to == address]
        self.outbox = [(to, data) for to, data in self.outbox if to != address]
        return mine


class UA:
    _ids = itertools.count(1)

    def __init__(self, node, net, username, password, address):
        self.node, self.net, self.username, self.password, self.address = (
            node,
            net,
            username,
            password,
            address,
        )
        self.cseq = 0

    # -- sending -------------------------------------------------------------------------------
    def send(self, message) -> list:
        data = message if isinstance(message, bytes) else message.to_bytes()
        self.node.service.handle(data, self.address, self.net)
        self.node.service.flush()
        return self.inbox()

    def inbox(self) -> list:
        return self.net.take(self.address)

    def register(self, contact_port=None):
        phone = Phone(self.node, self.username, self.password, source=self.address)
        phone.call_id = f"reg-{self.username}-{self.address[1]}@phone"  # Phone's default uses id()
        port = contact_port or self.address[1]
        response = phone.register(contact=f"<sip:{self.username}@10.0.0.2:{port}>")
        assert response.status == 200, response

    # -- requests ------------------------------------------------------------------------------
    def invite(self, target, *, body=None, headers=(), from_user=None, display=None, call_id=None):
        self.cseq += 1
        n = next(self._ids)
        name = f'"{display}" ' if display else ""
        lines = [
            f"INVITE sip:{target}@{REALM} SIP/2.0",
            f"Via: SIP/2.0/UDP 10.0.0.2:{self.address[1]};branch=z9hG4bK-inv{n};rport",
            f"From: {name}<sip:{from_user or self.username}@{REALM}>;tag=caller{n}",
            f"To: <sip:{target}@{REALM}>",
            f"Call-ID: {call_id or f'call{n}@10.0.0.2'}",
            f"CSeq: {self.cseq} INVITE",
            "Max-Forwards: 70",
            f"Contact: <sip:{self.username}@10.0.0.2:{self.address[1]}>",
            "Supported: replaces, 100rel",
            "User-Agent: TestPhone/1.0",
            "Content-Type: application/sdp",
            *(f"{k}: {v}" for k, v in headers),
        ]
        body = offer("0", "18") if body is None else body
        return parse_message(("\r\n".join(lines) + "\r\n\r\n").encode() + body + b"")

    def authorize(self, invite: Request, challenge: Response, password=None) -> Request:
        value = next(v for v in challenge.headers.get_all("Proxy-Authenticate") if "algorithm=MD5" in v)
        nonce = re.search(r'nonce="([^"]+)"', value).group(1)

        def h(text):
            return hashlib.md5(text.encode()).hexdigest()

        uri = invite.raw_uri
        ha1 = h(f"{self.username}:{REALM}:{password or self.password}")
        digest = h(f"{ha1}:{nonce}:00000001:c0ffee:auth:{h(f'INVITE:{uri}')}")
        self.cseq += 1
        again = parse_message(invite.to_bytes())
        again.headers.set("CSeq", f"{self.cseq} INVITE")
        branch = again.via.branch
        again.headers.set("Via", str(again.via).replace(branch, branch + "a"))
        again.headers.add(
            "Proxy-Authorization",
            f'Digest username="{self.username}", realm="{REALM}", nonce="{nonce}", uri="{uri}", '
            f'response="{digest}", algorithm=MD5, qop=auth, nc=00000001, cnonce="c0ffee"',
        )
        return again

    def call(self, target, *, password=None, **kwargs) -> tuple[Request, list]:
        """INVITE -> 407 (ACKed) -> the authenticated INVITE; returns it and what came back."""
        invite = self.invite(target, **kwargs)
        replies = self.send(invite)
        assert [r.status for r in replies] == [407], replies  # no 100 Trying: answered at once
        self.send(ack_for(invite, replies[-1]))
        authorized = self.authorize(invite, replies[-1], password)
        return authorized, self.send(authorized)

    def in_dialog(self, method, dialog_response: Response, *, caller: bool, cseq: int, remote_target=None):
        """A request inside the dialog a 2xx set up, routed by its Record-Route."""
        rr = dialog_response.headers.get_all("Record-Route")
        routes = list(reversed(rr)) if caller else rr
        if caller:
            from_, to = dialog_response.headers.get("From"), dialog_response.headers.get("To")
        else:
            from_, to = dialog_response.headers.get("To"), dialog_response.headers.get("From")
        target = remote_target or (
            dialog_response.contacts[0].uri if caller else f"sip:{'alice'}@10.0.0.2:{ALICE[1]}"
        )
        n = next(self._ids)
        lines = [
            f"{method} {target} SIP/2.0",
            f"Via: SIP/2.0/UDP 10.0.0.2:{self.address[1]};branch=z9hG4bK-dlg{n};rport",
            *(f"Route: {r}" for r in routes),
            f"From: {from_}",
            f"To: {to}",
            f"Call-ID: {dialog_response.call_id}",
            f"CSeq: {cseq} {method}",
            "Max-Forwards: 70",
        ]
        return parse_message(("\r\n".join(lines) + "\r\nContent-Length: 0\r\n\r\n").encode())


def ack_for(invite: Request, response: Response) -> bytes:
    """The ACK of a non-2xx (same branch as the INVITE)."""
    lines = [
        f"ACK {invite.raw_uri} SIP/2.0",
        f"Via: {invite.headers.get_first_value('Via')}",
        f"From: {invite.headers.get('From')}",
        f"To: {response.headers.get('To')}",
        f"Call-ID: {invite.call_id}",
        f"CSeq: {invite.cseq.seq} ACK",
        "Max-Forwards: 70",
    ]
    return ("\r\n".join(lines) + "\r\nContent-Length: 0\r\n\r\n").encode()


def answer(ua: UA, request: Request, status: int, *, tag="callee1", body=b"", port=None) -> list:
    """``ua`` answers ``request`` (as received from the proxy) with ``status``; returns what the
    proxy sent back to it (e.g. the ACK of a non-2xx)."""
    response = make_response(request, status, to_tag=tag)
    if 200 <= status < 300 and request.method == "INVITE":
        response.headers.add("Contact", f"<sip:{ua.username}@10.0.0.2:{port or ua.address[1]}>")
        for rr in request.headers.get_all("Record-Route"):
            response.headers.add("Record-Route", rr)
        response.headers.add("Content-Type", "application/sdp")
        response.body = body or offer("0")
    return ua.send(response)


def events(node, kind="rejection"):
    node.store.flush()
    return [e for _, e in node.store.events_after(0) if e["kind"] == kind]


CUSTOMER = {
    "kind": "customer",
    "customer": "C0000001",
    "version": 1,
    "status": "active",
    "currency": "ZAR",
    "balance": "100.0000",
    "country_code": "27",
    "national_prefix": "0",
    "rate_plan": "Standard",
}
RATES = {
    "kind": "rates",
    "plan": "Standard",
    "version": 1,
    "currency": "ZAR",
    "rates": [
        {"prefix": "27", "description": "South Africa", "price_per_minute": "0.60000",
         "connect_fee": "0.10000", "first_increment": 60, "next_increment": 60,
         "effective_from": "2026-01-01T00:00:00Z", "effective_to": None},
        {"prefix": "2782", "description": "SA mobile", "price_per_minute": "1.20000",
         "connect_fee": "0.00000", "first_increment": 30, "next_increment": 6,
         "effective_from": "2026-01-01T00:00:00Z", "effective_to": None},
    ],
}  # fmt: skip


class Clock:
    def __init__(self, t=1_800_000_000.0):
        self.t = t

    def __call__(self):
        return self.t


@pytest.fixture
def world(make_node):
    def build(alice=None, bob=None, customer=CUSTOMER, **config):
        node = make_node(
            [
                document_for_password(
                    "alice", REALM, "Alice-Pw",
                    **{"extension": "1001", "caller_ids": ["+27115550100"],
                       "default_caller_id": "+27115550100", **(alice or {})},
                ),
                document_for_password("bob", REALM, "Bob-Pw", extension="1002", **(bob or {})),
                document_for_password("dave", REALM, "Dave-Pw", extension="1004"),
            ],
            public_host=PROXY,
            public_port=5060,
            trunk=f"sip:{TRUNK[0]}:{TRUNK[1]}",
            timer_t1=0.05,
            **config,
        )  # fmt: skip
        if customer is not None:
            node.documents.apply("customer", customer)
            node.documents.apply("rates", RATES)
        net = Network()
        node.transports.udp.append(net)
        clock = Clock()
        node.calls._clock = clock
        alice = UA(node, net, "alice", "Alice-Pw", ALICE)
        bob = UA(node, net, "bob", "Bob-Pw", BOB)
        trunk = UA(node, net, "trunk", "", TRUNK)
        return node, alice, bob, trunk, clock

    return build


def only(messages, what=None):
    assert len(messages) == 1, messages
    message = messages[0]
    if what is not None:
        assert (message.method if isinstance(message, Request) else message.status) == what, message
    return message


# --- relaying a call -------------------------------------------------------------------------------


def test_invite_is_challenged_then_relayed_to_the_registered_contact(world):
    node, alice, bob, _, _ = world()
    bob.register()
    invite = alice.invite("1002")
    replies = alice.send(invite)
    assert [r.status for r in replies] == [407]  # answered at once: no 100 Trying first
    assert replies[0].headers.get_all("Proxy-Authenticate")
    assert events(node) == []  # a challenge is not a rejection
    assert alice.send(ack_for(invite, replies[0])) == []  # dropped: the 407 left no transaction
    authorized = alice.authorize(invite, replies[0])
    assert alice.send(authorized) == []  # 100 Trying waits to see whether bob rings in 200 ms
    relayed = only(bob.inbox(), "INVITE")
    assert relayed.raw_uri == f"sip:bob@10.0.0.2:{BOB[1]}"  # the registered contact ...
    vias = relayed.headers.get_all("Via")
    assert len(vias) == 2 and vias[0].startswith(f"SIP/2.0/UDP {PROXY}:5060;branch=z9hG4bK")
    assert vias[0].endswith(";rport") and str(relayed.via) == vias[0]  # the text is the view's
    assert "received=10.0.0.2" not in vias[1] and f"rport={ALICE[1]}" in vias[1]
    assert relayed.headers.get_all("Record-Route") == [f"<sip:{PROXY}:5060;lr>"]
    assert relayed.max_forwards == 69
    assert "Proxy-Authorization" not in relayed.headers
    assert "100rel" not in relayed.headers.get("Supported")
    # a retransmission of the INVITE gets 100 Trying at once, and is not relayed twice
    assert [r.status for r in alice.send(authorized)] == [100]
    assert bob.inbox() == []


def test_100_trying_only_when_the_callee_has_not_answered_in_200_ms(world):
    node, alice, bob, _, _ = world()
    bob.register()
    alice.call("1002")
    relayed = only(bob.inbox(), "INVITE")
    node.proxy.tick(node.proxy._now() + 0.19)
    assert alice.inbox() == []
    node.proxy.tick(node.proxy._now() + 0.21)
    assert [r.status for r in alice.inbox()] == [100]  # RFC 3261 17.2.1
    answer(bob, relayed, 180)
    assert [r.status for r in alice.inbox()] == [180]
    # a callee that rings within 200 ms: its 180 is all the caller gets, no 100 at all
    alice.call("1002")
    answer(bob, only(bob.inbox(), "INVITE"), 180, tag="callee2")
    assert [r.status for r in alice.inbox()] == [180]
    node.proxy.tick(node.proxy._now() + 1)
    assert alice.inbox() == []


def test_an_invite_without_credentials_is_challenged_without_keeping_state(world):
    node, alice, _, _, _ = world()
    invite = alice.invite("1002")
    first = only(alice.send(invite), 407)
    assert node.proxy.layer.server_transactions == 0 and node.proxy.layer.next_deadline() is None
    again = only(alice.send(invite), 407)  # a retransmission is challenged again, with the same tag
    assert again.to.tag == first.to.tag and again.headers.get("Call-ID") == invite.call_id
    # no Timer G: a spoofed INVITE costs its victim one datagram, not one per resend for 32 s
    node.proxy.tick(node.proxy._now() + 40)
    assert alice.inbox() == []
    assert alice.send(ack_for(invite, first)) == [] and events(node) == []


def test_an_invite_with_stale_credentials_is_challenged_by_its_transaction(world):
    node, alice, _, _, _ = world()
    invite = alice.invite("1002")
    challenge = only(alice.send(invite), 407)
    authorized = alice.authorize(invite, challenge)
    forged = authorized.to_bytes().replace(b'nonce="', b'nonce="x')  # a nonce this node never issued
    [again] = alice.send(forged)
    assert again.status == 407
    assert node.proxy.layer.server_transactions == 1  # held, so a lost 407 is resent
    node.proxy.tick(node.proxy._now() + 0.06)  # Timer G (T1 is 50 ms here)
    assert [r.status for r in alice.inbox()] == [407]
    assert alice.send(ack_for(parse_message(forged), again)) == []  # absorbed: no more resends
    node.proxy.tick(node.proxy._now() + 1)
    assert alice.inbox() == []


def test_ringing_answer_ack_and_bye_go_through_the_proxy(world):
    node, alice, bob, _, clock = world()
    bob.register()
    _, replies = alice.call("1002")
    relayed = only(bob.inbox(), "INVITE")
    assert answer(bob, relayed, 100) == []
    assert alice.inbox() == []  # 100 is not relayed
    answer(bob, relayed, 180)
    ringing = only(alice.inbox(), 180)
    assert len(ringing.headers.get_all("Via")) == 1  # our Via is gone
    clock.t += 1
    answer(bob, relayed, 200)
    ok = only(alice.inbox(), 200)
    assert ok.headers.get_all("Record-Route") == [f"<sip:{PROXY}:5060;lr>"]
    assert node.calls.active("alice@sip.test") == 1
    # ACK for the 2xx: end to end, by Route
    alice.send(alice.in_dialog("ACK", ok, caller=True, cseq=ok.cseq.seq))
    ack = only(bob.inbox(), "ACK")
    assert "Route" not in ack.headers and ack.raw_uri == f"sip:bob@10.0.0.2:{BOB[1]}"
    # BYE from the callee reaches the caller's source address (NAT)
    clock.t += 10
    bye = bob.in_dialog("BYE", ok, caller=False, cseq=1)
    bob.send(bye)
    relayed_bye = only(alice.inbox(), "BYE")
    assert relayed_bye.max_forwards == 69
    answer(alice, relayed_bye, 200)
    assert only(bob.inbox(), 200).cseq.method == "BYE"
    assert node.calls.active("alice@sip.test") == 0
    [record] = events(node, "call")
    assert record["call_class"] == "internal" and record["final_code"] == 200
    assert record["duration"] == 10 and record["cost"] == "0.0000"
    assert record["record_id"].startswith("local-")


def test_cancel_gets_200_and_487_and_cancels_the_callee(world):
    node, alice, bob, _, _ = world()
    bob.register()
    invite, _ = alice.call("1002")
    relayed = only(bob.inbox(), "INVITE")
    answer(bob, relayed, 180)
    only(alice.inbox(), 180)
    cancel_lines = ack_for(invite, make_response(invite, 180)).decode()
    cancel = cancel_lines.replace("ACK ", "CANCEL ", 1).replace(" ACK\r\n", " CANCEL\r\n")
    cancel = re.sub(r"To: (.*);tag=\w+", r"To: \1", cancel)
    replies = alice.send(cancel.encode())
    assert sorted((r.status, r.cseq.method) for r in replies) == [(200, "CANCEL"), (487, "INVITE")]
    bob_cancel = only(bob.inbox(), "CANCEL")
    assert bob_cancel.via.branch == relayed.via.branch
    answer(bob, bob_cancel, 200)
    assert only(answer(bob, relayed, 487), "ACK").via.branch == relayed.via.branch
    assert alice.inbox() == []  # the 487 from the callee is not relayed a second time
    [record] = events(node, "call")
    assert (record["final_code"], record["cause"]) == (487, "cancelled")
    assert node.calls.active("alice@sip.test") == 0


def test_a_cancel_for_no_invite_is_481(world):
    _, alice, _, _, _ = world()
    invite = alice.invite("1002")
    cancel = ack_for(invite, make_response(invite, 100)).decode()
    cancel = cancel.replace("ACK ", "CANCEL ", 1).replace(" ACK\r\n", " CANCEL\r\n")
    assert only(alice.send(cancel.encode())).status == 481


def test_forks_to_every_contact_and_cancels_the_loser(world):
    node, alice, bob, _, _ = world()
    bob.register()
    bob2 = UA(node, bob.net, "bob", "Bob-Pw", BOB2)
    bob2.register()
    alice.call("1002")
    first, second = only(bob.inbox(), "INVITE"), only(bob2.inbox(), "INVITE")
    assert first.via.branch != second.via.branch
    answer(bob, first, 180, tag="a")
    answer(bob2, second, 180, tag="b")
    assert [r.status for r in alice.inbox()] == [180, 180]
    answer(bob2, second, 200, tag="b")
    assert only(alice.inbox(), 200).to.tag == "b"
    cancel = only(bob.inbox(), "CANCEL")
    assert cancel.via.branch == first.via.branch
    answer(bob, cancel, 200)
    assert only(answer(bob, first, 487, tag="a"), "ACK")
    assert alice.inbox() == []


def test_a_6xx_on_one_branch_cancels_the_others_and_is_relayed(world):
    node, alice, bob, _, _ = world()
    bob.register()
    bob2 = UA(node, bob.net, "bob", "Bob-Pw", BOB2)
    bob2.register()
    alice.call("1002")
    first, second = only(bob.inbox(), "INVITE"), only(bob2.inbox(), "INVITE")
    answer(bob, first, 180, tag="a")
    only(alice.inbox(), 180)
    answer(bob2, second, 603, tag="b")
    only(bob.inbox(), "CANCEL")
    assert alice.inbox() == []  # waits for the cancelled branch
    answer(bob, first, 487, tag="a")
    assert only(alice.inbox()).status == 603


@pytest.mark.parametrize("status", [486, 600, 603])
def test_far_end_refusals_are_relayed_unchanged(world, status):
    node, alice, bob, _, _ = world()
    bob.register()
    alice.call("1002")
    relayed = only(bob.inbox(), "INVITE")
    assert only(answer(bob, relayed, status), "ACK")  # the proxy's client transaction ACKs
    response = only(alice.inbox())
    assert response.status == status and "Warning" not in response.headers
    [record] = events(node, "call")
    assert (record["final_code"], record["cause"]) == (status, "far_end")


def test_no_answer_from_the_contact_is_408(world):
    node, alice, bob, _, _ = world()
    bob.register()
    alice.call("1002")
    only(bob.inbox(), "INVITE")
    for step in range(1, 80):  # Timer B = 64 * T1 = 3.2 s
        node.proxy.tick(node.proxy._now() + step * 0.05)
    assert {r.status for r in alice.inbox()} == {100, 408}  # (408 resent: nobody ACKs it here)
    assert events(node)[0]["cause"] == "no_answer"


# --- the trunk ---------------------------------------------------------------------------------------


def test_an_answered_trunk_call_is_rated_and_recorded(world):
    node, alice, _, trunk, clock = world()
    alice.call("0115550123")
    relayed = only(trunk.inbox(), "INVITE")
    assert relayed.raw_uri == f"sip:+27115550123@{TRUNK[0]}:{TRUNK[1]}"
    assert relayed.headers.get("P-Asserted-Identity") == f"<sip:+27115550100@{REALM}>"
    # the call may last the node's cap (7,200 s): 0.10 + 0.60 * 120 minutes is reserved
    assert node.calls.reservations.held("C0000001") == Decimal("72.1000")
    assert node.calls.get(relayed.call_id).max_duration == 7200
    answer(trunk, relayed, 200)
    ok = only(alice.inbox(), 200)
    clock.t += 61
    alice.send(alice.in_dialog("BYE", ok, caller=True, cseq=ok.cseq.seq + 1))
    bye = only(trunk.inbox(), "BYE")
    answer(trunk, bye, 200)
    assert only(alice.inbox(), 200).cseq.method == "BYE"
    [record] = events(node, "call")
    assert record["number"] == "+27115550123" and record["dialled"] == "0115550123"
    assert record["call_class"] == "national" and record["duration"] == 61
    assert record["billed_seconds"] == 120 and record["cost"] == "1.3000"  # 0.10 + 0.60 * 2
    assert record["rate"]["prefix"] == "27" and record["account"] == "alice@sip.test"
    assert node.calls.reservations.held("C0000001") == 0


# --- enforcement ---------------------------------------------------------------------------------


def refused(node, alice, target, **kwargs):
    _, replies = alice.call(target, **kwargs)
    [response] = replies  # refused at once: no 100 Trying first
    [event] = events(node)
    return response, event


def assert_refusal(response, event, status, reason, cause, wire=None):
    assert (response.status, response.reason) == (status, reason)
    assert f'399 {REALM} "{wire or cause}"' in response.headers.get_all("Warning")
    assert (event["code"], event["cause"], event["method"]) == (status, cause, "INVITE")


def test_wrong_password_is_403(world):
    node, alice, bob, _, _ = world()
    response, event = refused(node, alice, "1002", password="nope")
    assert_refusal(response, event, 403, "Forbidden", "bad_password", wire="bad_credentials")
    assert events(node, "call") == []  # not a call: nobody was authenticated


def test_from_must_be_the_authenticated_user(world):
    node, alice, _, _, _ = world()
    response, event = refused(node, alice, "1002", from_user="bob")
    assert_refusal(response, event, 403, "Forbidden - From does not match the credentials", "from_mismatch")


def test_invalid_number_is_404_and_recorded(world):
    node, alice, _, _, _ = world()
    response, event = refused(node, alice, "12")
    assert_refusal(response, event, 404, "Not Found - Invalid number", "invalid_number")
    [record] = events(node, "call")
    assert (record["final_code"], record["cause"], record["dialled"]) == (404, "invalid_number", "12")


def test_a_class_the_account_may_not_call_is_404(world):
    node, alice, _, _, _ = world()
    response, event = refused(node, alice, "00441632960001")
    assert_refusal(
        response, event, 404, "Not Found - international calls not permitted", "class_not_permitted"
    )
    assert event["detail"]["call_class"] == "international"


def test_a_caller_id_not_assigned_is_503(world):
    node, alice, _, _, _ = world()
    response, event = refused(
        node, alice, "0115550123", headers=[("P-Preferred-Identity", "<sip:+27219999999@sip.test>")]
    )
    assert_refusal(response, event, 503, "Service Unavailable - Invalid caller ID", "invalid_caller_id")


def test_an_account_without_caller_ids_cannot_call_out(world):
    node, alice, _, _, _ = world(alice={"caller_ids": [], "default_caller_id": None})
    response, event = refused(node, alice, "0115550123")
    assert_refusal(response, event, 503, "Service Unavailable - Invalid caller ID", "invalid_caller_id")


def test_an_assigned_caller_id_in_national_form_is_accepted(world):
    node, alice, _, trunk, _ = world()
    alice.call("0115550123", display="0115550100")
    assert only(trunk.inbox(), "INVITE")


def test_insufficient_funds_is_503(world):
    node, alice, _, _, _ = world(customer={**CUSTOMER, "balance": "0.5000"})
    response, event = refused(node, alice, "0115550123")
    assert_refusal(response, event, 503, "Service Unavailable - Insufficient funds", "insufficient_funds")
    assert event["detail"]["needed"] == "0.7000"


def test_a_reached_daily_spend_cap_is_503(world):
    tomorrow = "2100-01-01T00:00:00+00:00"
    capped = {**CUSTOMER, "daily_spend_cap": "5.0000", "spent_today": "4.5000", "spend_day_ends": tomorrow}
    node, alice, _, _, _ = world(customer=capped)
    response, event = refused(node, alice, "0115550123")
    assert_refusal(response, event, 503, "Service Unavailable - Daily spend limit reached", "daily_spend_cap")
    assert event["detail"]["cap"] == "5.0000"


def test_the_daily_cap_leaves_calls_that_fit_and_a_new_day_starts_afresh(world):
    capped = {**CUSTOMER, "daily_spend_cap": "5.0000", "spent_today": "4.0000"}
    node, alice, _, trunk, _ = world(customer={**capped, "spend_day_ends": "2100-01-01T00:00:00+00:00"})
    alice.call("0115550123")  # 0.70 needed, 1.00 left today
    assert only(trunk.inbox(), "INVITE")
    node, alice, _, trunk, _ = world(
        customer={**capped, "spent_today": "5.0000", "spend_day_ends": "2000-01-01T00:00:00+00:00"}
    )
    alice.call("0115550123")  # yesterday's spend no longer counts
    assert only(trunk.inbox(), "INVITE")


def test_reservations_stop_concurrent_calls_from_overspending(world):
    node, alice, _, trunk, _ = world(customer={**CUSTOMER, "balance": "1.0000"}, alice={"max_calls": 5})
    alice.call("0115550123")
    only(trunk.inbox(), "INVITE")
    response, event = refused(node, alice, "0115550124")  # 1.00 - 0.70 held < 0.70
    assert_refusal(response, event, 503, "Service Unavailable - Insufficient funds", "insufficient_funds")


def test_no_offered_codec_assigned_is_488_with_warning_305(world):
    node, alice, _, _, _ = world()
    response, event = refused(node, alice, "1002", body=offer("8", "3"))
    assert (response.status, response.reason) == (488, "Not Acceptable Here")
    warnings = response.headers.get_all("Warning")
    assert warnings[0] == f'305 {REALM} "Incompatible media format: offered PCMA, GSM; assigned PCMU, G729"'
    assert event["cause"] == "codec_mismatch"


def test_codecs_not_assigned_are_removed_from_the_relayed_offer(world):
    node, alice, bob, _, _ = world()
    bob.register()
    alice.call("1002", body=offer("8", "0", "9"))
    relayed = only(bob.inbox(), "INVITE")
    sdp = SessionDescription.parse(relayed.body)
    assert offered_codecs(sdp) == ["PCMU"]
    assert sdp.media[0].formats == ["0", "101"]


def test_an_offer_of_assigned_codecs_only_is_relayed_byte_for_byte(world):
    node, alice, bob, _, _ = world()
    bob.register()
    body = offer("0", "18")
    alice.call("1002", body=body)
    assert only(bob.inbox(), "INVITE").body == body


def test_a_busy_callee_is_486(world):
    node, alice, bob, _, _ = world(bob={"max_calls": 1}, alice={"max_calls": 5})
    bob.register()
    alice.call("1002")
    only(bob.inbox(), "INVITE")
    response, event = refused(node, alice, "1002")
    assert_refusal(response, event, 486, "Busy Here", "callee_busy")


def test_a_caller_at_its_limit_is_403(world):
    node, alice, bob, _, _ = world(alice={"max_calls": 1})
    bob.register()
    alice.call("1002")
    response, event = refused(node, alice, "1002")
    assert_refusal(response, event, 403, "Forbidden - Too many simultaneous calls", "caller_too_many_calls")


@pytest.mark.parametrize(
    ("target", "contact"),
    [("1004", f"<sip:1004@{REALM}>"), ("0215550199", f"<sip:+27215550199@{REALM}>")],
)
def test_forward_all_is_302_with_the_target(world, target, contact):
    node, alice, _, _, _ = world(bob={"forward_all": target})
    response, event = refused(node, alice, "1002")
    assert_refusal(response, event, 302, "Moved Temporarily", "callee_forwarded")
    assert response.headers.get("Contact") == contact


def test_do_not_disturb_is_603(world):
    node, alice, bob, _, _ = world(bob={"dnd": True})
    bob.register()
    response, event = refused(node, alice, "1002")
    assert_refusal(response, event, 603, "Decline", "callee_dnd")


def test_an_unregistered_callee_is_480(world):
    node, alice, _, _, _ = world()
    response, event = refused(node, alice, "1002")
    assert_refusal(response, event, 480, "Temporarily Unavailable", "not_registered")


def test_unimplemented_methods_are_501(world):
    node, alice, _, _, _ = world()
    message = alice.invite("1002").to_bytes().replace(b"INVITE", b"MESSAGE")
    response = only(alice.send(message))
    assert response.status == 501 and "INVITE" in response.headers.get("Allow")
    assert events(node)[0]["cause"] == "not_implemented"


def test_an_in_dialog_request_without_our_route_is_404(world):
    node, alice, _, _, _ = world()
    fake = make_response(alice.invite("1002"), 200, to_tag="x")
    bye = alice.in_dialog("BYE", fake, caller=True, cseq=5, remote_target="sip:bob@203.0.113.99")
    response = only(alice.send(bye))
    assert response.status == 404 and events(node)[0]["cause"] == "no_route"


def test_timer_c_cancels_a_branch_that_rings_too_long(world):
    node, alice, bob, _, _ = world(ring_timeout=5.0)
    bob.register()
    alice.call("1002")
    relayed = only(bob.inbox(), "INVITE")
    answer(bob, relayed, 180)
    only(alice.inbox(), 180)
    node.proxy.tick(node.proxy._now() + 5.1)
    cancel = only(bob.inbox(), "CANCEL")
    answer(bob, cancel, 200)
    answer(bob, relayed, 487)
    assert only(alice.inbox()).status == 487


def test_each_provisional_response_pushes_timer_c_back(world):
    node, alice, bob, _, _ = world(ring_timeout=5.0)
    now = [1000.0]
    node.proxy._mono = lambda: now[0]  # the proxy's clock, moved by hand
    bob.register()
    alice.call("1002")
    relayed = only(bob.inbox(), "INVITE")
    answer(bob, relayed, 180)
    now[0] += 3
    answer(bob, relayed, 183)  # RFC 3261 16.7 step 2: Timer C starts again
    node.proxy.tick(1005.1)
    assert bob.inbox() == []  # not yet: 5 s from the 183
    node.proxy.tick(1008.1)
    only(bob.inbox(), "CANCEL")


def test_a_tcp_contact_is_reached_over_its_connection_with_double_record_route(world):
    node, alice, bob, _, _ = world()

    class Connection(Network):
        name = "TCP"
        reliable = True

    connection = Connection()
    node.transports.tcp_connections[BOB] = connection
    phone = Phone(node, "bob", "Bob-Pw", source=BOB, transport="TCP")
    assert phone.register(contact=f"<sip:bob@10.0.0.2:{BOB[1]};transport=tcp>").status == 200
    alice.call("1002")
    assert bob.inbox() == []  # nothing on UDP
    relayed = only(connection.take(BOB), "INVITE")
    assert relayed.via.transport == "TCP"
    assert relayed.headers.get_all("Record-Route") == [
        f"<sip:{PROXY}:5060;lr;transport=tcp>",  # the callee's side
        f"<sip:{PROXY}:5060;lr>",  # the caller's side
    ]
    response = make_response(relayed, 180, to_tag="t")
    node.service.handle(response.to_bytes(), BOB, connection)
    assert only(alice.inbox()).status == 180


def test_our_own_routes_are_all_removed_from_an_in_dialog_request(world):
    node, alice, bob, _, _ = world()
    bob.register()
    _, _ = alice.call("1002")
    relayed = only(bob.inbox(), "INVITE")
    answer(bob, relayed, 200)
    ok = only(alice.inbox(), 200)
    ok.headers.add("Record-Route", f"<sip:{PROXY}:5060;lr;transport=tcp>")  # as if double-routed
    info = alice.in_dialog("INFO", ok, caller=True, cseq=9)
    alice.send(info)
    relayed_info = only(bob.inbox(), "INFO")
    assert "Route" not in relayed_info.headers
    answer(bob, relayed_info, 200)
    assert only(alice.inbox()).status == 200


def test_an_answer_after_the_caller_cancelled_is_hung_up(world):
    node, alice, bob, _, _ = world()
    bob.register()
    invite, _ = alice.call("1002")
    relayed = only(bob.inbox(), "INVITE")
    answer(bob, relayed, 180)
    only(alice.inbox(), 180)
    cancel = ack_for(invite, make_response(invite, 180)).decode()
    cancel = cancel.replace("ACK ", "CANCEL ", 1).replace(" ACK\r\n", " CANCEL\r\n")
    cancel = re.sub(r"To: (.*);tag=\w+", r"To: \1", cancel)
    assert sorted(r.status for r in alice.send(cancel.encode())) == [200, 487]
    only(bob.inbox(), "CANCEL")
    # the callee had already answered: its 2xx crosses the CANCEL
    late = answer(bob, relayed, 200)
    assert [m.method for m in late] == ["ACK", "BYE"]
    assert late[1].to.tag == "callee1" and late[1].raw_uri == f"sip:bob@10.0.0.2:{BOB[1]}"
    assert alice.inbox() == []  # the caller, already told 487, never sees the 200
    [record] = events(node, "call")
    assert record["final_code"] == 487 and record["answered_at"] is None


def test_a_forged_route_reaches_nothing_without_a_call(world):
    """A request with our Route and a To tag but no call behind it: 481, nothing relayed."""
    node, alice, _, trunk, _ = world()
    fake = make_response(alice.invite("1002"), 200, to_tag="x")
    fake.headers.add("Record-Route", f"<sip:{PROXY}:5060;lr>")
    invite = alice.in_dialog("INVITE", fake, caller=True, cseq=5, remote_target=f"sip:+4420@{TRUNK[0]}")
    assert [r.status for r in alice.send(invite)] == [481]
    assert trunk.inbox() == []
    assert events(node)[0]["cause"] == "no_such_dialog"


def test_a_reinvite_from_the_callee_reaches_the_caller_and_bye_ends_the_dialog(world):
    node, alice, bob, _, _ = world()
    bob.register()
    alice.call("1002")
    relayed = only(bob.inbox(), "INVITE")
    answer(bob, relayed, 200)
    ok = only(alice.inbox(), 200)
    alice.send(alice.in_dialog("ACK", ok, caller=True, cseq=ok.cseq.seq))
    only(bob.inbox(), "ACK")
    reinvite = bob.in_dialog("INVITE", ok, caller=False, cseq=7)
    assert [r.status for r in bob.send(reinvite)] == [100]
    to_alice = only(alice.inbox(), "INVITE")
    assert to_alice.via.host == PROXY
    answer(alice, to_alice, 200, tag=ok.from_.tag)
    assert only(bob.inbox()).status == 200
    bob.send(bob.in_dialog("BYE", ok, caller=False, cseq=8))
    answer(alice, only(alice.inbox(), "BYE"), 200)
    only(bob.inbox(), 200)
    # the dialog is over: a late request in it is refused
    assert [r.status for r in alice.send(alice.in_dialog("INFO", ok, caller=True, cseq=9))] == [481]


@pytest.mark.parametrize("method", ["PRACK", "PUBLISH", "MESSAGE"])
def test_methods_the_service_does_not_implement(world, method):
    node, alice, _, _, _ = world()
    data = alice.invite("1002").to_bytes().replace(b"INVITE", method.encode())
    assert only(alice.send(data)).status == 501


def test_spend_not_yet_settled_counts_until_the_next_balance_push(world):
    node, alice, _, trunk, clock = world(customer={**CUSTOMER, "balance": "1.9000"}, alice={"max_calls": 5})
    alice.call("0115550123")
    relayed = only(trunk.inbox(), "INVITE")
    answer(trunk, relayed, 200)
    ok = only(alice.inbox(), 200)
    clock.t += 61
    alice.send(alice.in_dialog("BYE", ok, caller=True, cseq=ok.cseq.seq + 1))
    answer(trunk, only(trunk.inbox(), "BYE"), 200)
    only(alice.inbox(), 200)
    assert node.calls.unsettled("C0000001") == Decimal("1.3000")
    response, event = refused(node, alice, "0115550124")  # 1.90 - 1.30 spent < 0.70
    assert event["cause"] == "insufficient_funds" and event["detail"]["available"] == "0.6000"
    node.documents.apply(
        "customer", {**CUSTOMER, "version": 2, "balance": "0.7000"}
    )  # settled: 1.90 - 1.30 + 0.10
    assert node.calls.unsettled("C0000001") == 0
    alice.call("0115550125")
    assert only(trunk.inbox(), "INVITE")


def test_max_forwards_zero_is_483(world):
    node, alice, _, _, _ = world()
    data = alice.invite("1002").to_bytes().replace(b"Max-Forwards: 70", b"Max-Forwards: 0")
    assert [r.status for r in alice.send(data)] == [483]


# --- the maximum duration from credit ------------------------------------------------------------


def answered_trunk_call(world, balance, *, trunk_routes=(), caller_headers=()):
    """alice calls a national number with ``balance`` on the customer; the trunk answers (with
    ``trunk_routes`` Record-Routed above ours) and alice ACKs. Returns the pieces."""
    node, alice, _, trunk, clock = world(customer={**CUSTOMER, "balance": balance}, alice={"max_calls": 5})
    invite, _ = alice.call("0115550123", headers=caller_headers)
    relayed = only(trunk.inbox(), "INVITE")
    for route in trunk_routes:
        relayed.headers.insert_first("Record-Route", route)
    answer(trunk, relayed, 200, tag="trunk1")
    ok = only(alice.inbox(), 200)
    alice.send(alice.in_dialog("ACK", ok, caller=True, cseq=ok.cseq.seq))
    if not trunk_routes:
        only(trunk.inbox(), "ACK")
    trunk.net.outbox.clear()  # (with routes, the ACK went to the first of them)
    return node, alice, trunk, clock, invite, ok


def test_the_credit_for_one_increment_ends_the_call_after_it_with_bye_to_both(world):
    # 0.70 = connect 0.10 + one 60 s increment at 0.60/min: the call may last 60 s
    node, alice, trunk, clock, invite, ok = answered_trunk_call(world, "0.7000")
    call = node.calls.get(invite.call_id)
    assert call.max_duration == 60 and node.calls.reservations.held("C0000001") == Decimal("0.7000")
    # in-dialog requests before the end raise the CSeqs the proxy must go above
    alice.send(alice.in_dialog("INFO", ok, caller=True, cseq=5))
    answer(trunk, only(trunk.inbox(), "INFO"), 200)
    only(alice.inbox(), 200)
    alice_contact = f"sip:alice@10.0.0.2:{ALICE[1]}"
    trunk.send(trunk.in_dialog("INFO", ok, caller=False, cseq=41, remote_target=alice_contact))
    answer(alice, only(alice.inbox(), "INFO"), 200, tag=ok.from_.tag)
    only(trunk.inbox(), 200)
    clock.t += 59
    node.proxy.tick(node.proxy._now() + 59.5)
    assert trunk.inbox() == [] and alice.inbox() == []  # not yet
    clock.t += 5  # the timer fires a little late: the record still says 60 s
    node.proxy.tick(node.proxy._now() + 60.5)
    to_trunk, to_alice = only(trunk.inbox(), "BYE"), only(alice.inbox(), "BYE")
    # to the trunk: as alice would send it
    assert to_trunk.raw_uri == f"sip:trunk@10.0.0.2:{TRUNK[1]}"  # the trunk's Contact
    assert (to_trunk.from_.tag, to_trunk.to.tag) == (invite.from_.tag, "trunk1")
    assert to_trunk.call_id == invite.call_id and to_trunk.cseq.seq == 6
    assert "Route" not in to_trunk.headers and to_trunk.via.host == PROXY
    assert 'text="Credit exhausted"' in to_trunk.headers.get("Reason")
    # to alice: as the trunk would send it
    assert to_alice.raw_uri == f"sip:alice@10.0.0.2:{ALICE[1]}"  # alice's Contact, sent to her source
    assert (to_alice.from_.tag, to_alice.to.tag) == ("trunk1", invite.from_.tag)
    assert to_alice.call_id == invite.call_id and to_alice.cseq.seq == 42
    assert answer(trunk, to_trunk, 200, tag="trunk1") == [] and answer(alice, to_alice, 200) == []
    [record] = events(node, "call")
    assert (record["cause"], record["final_code"]) == ("credit_exhausted", 200)
    assert (record["duration"], record["billed_seconds"], record["cost"]) == (60, 60, "0.7000")
    assert node.calls.active("alice@sip.test") == 0 and node.calls.reservations.held("C0000001") == 0
    # the dialog is over for the proxy: a late BYE from alice is 481
    assert [r.status for r in alice.send(alice.in_dialog("BYE", ok, caller=True, cseq=7))] == [481]


def test_the_hang_up_follows_the_route_sets_beyond_the_proxy(world):
    edge_of_trunk, edge_of_alice = "<sip:203.0.113.60;lr>", "<sip:198.51.100.99:5099;lr>"
    node, alice, trunk, clock, invite, ok = answered_trunk_call(
        world, "0.7000", trunk_routes=[edge_of_trunk], caller_headers=[("Record-Route", edge_of_alice)]
    )
    node.proxy.tick(node.proxy._now() + 61)
    [(to_edge_of_trunk, bye1)] = [(a, d) for a, d in trunk.net.outbox if a == ("203.0.113.60", 5060)]
    [(to_edge_of_alice, bye2)] = [(a, d) for a, d in trunk.net.outbox if a == ("198.51.100.99", 5099)]
    bye1, bye2 = parse_message(bye1), parse_message(bye2)
    assert bye1.headers.get_all("Route") == [edge_of_trunk] and bye1.to.tag == "trunk1"
    assert bye2.headers.get_all("Route") == [edge_of_alice] and bye2.to.tag == invite.from_.tag


def test_a_call_that_ends_before_its_credit_runs_out_is_not_hung_up(world):
    node, alice, trunk, clock, invite, ok = answered_trunk_call(world, "1.9000")
    assert node.calls.get(invite.call_id).max_duration == 180  # 0.10 + 3 * 0.60
    clock.t += 100
    alice.send(alice.in_dialog("BYE", ok, caller=True, cseq=ok.cseq.seq + 1))
    answer(trunk, only(trunk.inbox(), "BYE"), 200, tag="trunk1")
    node.proxy.tick(node.proxy._now() + 200)
    assert trunk.inbox() == [] and [m.status for m in alice.inbox()] == [200]
    [record] = events(node, "call")
    assert (record["cause"], record["billed_seconds"], record["cost"]) == ("bye", 120, "1.3000")


def test_internal_calls_have_no_maximum_duration(world):
    node, alice, bob, _, _ = world(customer={**CUSTOMER, "balance": "0.0000"})
    bob.register()
    invite, _ = alice.call("1002")
    answer(bob, only(bob.inbox(), "INVITE"), 200)
    only(alice.inbox(), 200)
    assert node.calls.get(invite.call_id).max_duration is None
    node.proxy.tick(node.proxy._now() + 100_000)
    assert bob.inbox() == [] and node.calls.active("alice@sip.test") == 1


# --- calls in progress across a restart ----------------------------------------------------------


def test_a_call_in_progress_when_the_node_dies_is_recorded_once_after_the_restart(world):
    node, alice, _, trunk, clock = world()
    clock.t = time.time() - 100  # answered 100 s ago
    invite, _ = alice.call("0115550123")
    answer(trunk, only(trunk.inbox(), "INVITE"), 200, tag="trunk1")
    ok = only(alice.inbox(), 200)
    [(record_id, state)] = node.store.load_calls()  # flushed with the 200
    assert state["call_id"] == invite.call_id and state["callee_tag"] == "trunk1"
    assert state["caller_hop"] == [*ALICE, "UDP"] and state["reserved"] == "72.1000"
    node.store.set_meta("alive_at", repr(clock.t + 30))  # the node's last keepalive
    node.store.flush()
    node.store.close()  # the process dies: nothing more is written

    config = node.config
    again = SipNode(config)
    try:
        [closed] = again.closed_out
        assert closed["record_id"] == record_id and closed["cause"] == "node_restart"
        [record] = events(again, "call")
        assert record["record_id"] == record_id and record["answered_at"] is not None
        assert (record["duration"], record["billed_seconds"], record["cost"]) == (30, 60, "0.7000")
        assert again.store.load_calls() == []
        assert again.calls.reservations.held("C0000001") == 0
        assert again.calls.unsettled("C0000001") == Decimal("0.7000")
        # the dialog is not restored: a BYE for it is 481
        net = Network()
        again.transports.udp.append(net)
        again.proxy.set_local(PROXY, 5060)
        alice2 = UA(again, net, "alice", "Alice-Pw", ALICE)
        assert [r.status for r in alice2.send(alice2.in_dialog("BYE", ok, caller=True, cseq=9))] == [481]
    finally:
        again.store.close()
    third = SipNode(config)  # and a second restart records nothing more
    try:
        assert third.closed_out == [] and len(events(third, "call")) == 1
    finally:
        third.store.close()


def test_the_stored_call_is_removed_with_its_record_in_one_flush(world):
    node, alice, _, trunk, clock = world()
    _, _ = alice.call("0115550123")
    answer(trunk, only(trunk.inbox(), "INVITE"), 200, tag="trunk1")
    ok = only(alice.inbox(), 200)
    assert len(node.store.load_calls()) == 1
    alice.send(alice.in_dialog("BYE", ok, caller=True, cseq=ok.cseq.seq + 1))
    assert node.store.load_calls() == [] and len(events(node, "call")) == 1


def test_thirty_concurrent_calls_on_one_increment_of_credit_connect_one(world):
    node, alice, _, trunk, _ = world(customer={**CUSTOMER, "balance": "0.7000"}, alice={"max_calls": 50})
    finals = []
    for n in range(30):  # all placed before any is answered
        _, replies = alice.call(f"011555{n:04d}")
        finals.append(replies[-1].status if replies else "relayed")
    assert finals == ["relayed"] + [503] * 29
    [relayed] = trunk.inbox()
    assert relayed.raw_uri.startswith("sip:+27115550000@")
    answer(trunk, relayed, 200)
    assert only(alice.inbox(), 200)
    refusals = events(node)
    assert len(refusals) == 29 and {e["cause"] for e in refusals} == {"insufficient_funds"}
    assert {e["detail"]["available"] for e in refusals} == {"0.0000"}
    records = events(node, "call")
    assert len(records) == 29 and {r["cause"] for r in records} == {"insufficient_funds"}
    assert node.calls.active("alice@sip.test") == 1


# --- REFER (call transfer) -----------------------------------------------------------------------


def test_refer_in_a_dialog_is_relayed_and_the_202_and_notify_come_back(world):
    node, alice, bob, _, _ = world()
    bob.register()
    alice.call("1002")
    answer(bob, only(bob.inbox(), "INVITE"), 200)
    ok = only(alice.inbox(), 200)
    alice.send(alice.in_dialog("ACK", ok, caller=True, cseq=ok.cseq.seq))
    only(bob.inbox(), "ACK")
    refer = alice.in_dialog("REFER", ok, caller=True, cseq=ok.cseq.seq + 1)
    refer.headers.add("Refer-To", f"<sip:0115550123@{REALM}>")
    refer.headers.add("Referred-By", f"<sip:alice@{REALM}>")
    alice.send(refer)
    relayed = only(bob.inbox(), "REFER")
    assert relayed.headers.get("Refer-To") == f"<sip:0115550123@{REALM}>"
    assert relayed.headers.get("Referred-By") == f"<sip:alice@{REALM}>"
    assert relayed.max_forwards == 69 and "Route" not in relayed.headers
    answer(bob, relayed, 202)
    accepted = only(alice.inbox(), 202)
    assert accepted.cseq.method == "REFER" and len(accepted.headers.get_all("Via")) == 1
    notify = bob.in_dialog("NOTIFY", ok, caller=False, cseq=1)
    notify.headers.add("Event", "refer")
    notify.headers.add("Subscription-State", "active;expires=60")
    bob.send(notify)
    answer(alice, only(alice.inbox(), "NOTIFY"), 200, tag=ok.from_.tag)
    assert only(bob.inbox(), 200).cseq.method == "NOTIFY"
    assert events(node) == []


def test_the_transferees_invite_is_its_own_call_whatever_referred_by_says(world):
    """bob, transferred by alice, calls out: bob is authenticated, checked and billed; alice's
    caller ID and permissions in Referred-By (or anywhere else) count for nothing."""
    node, alice, bob, trunk, _ = world(
        alice={"permissions": ["internal", "national", "mobile", "international"]},
        bob={"caller_ids": ["+27115550200"], "default_caller_id": "+27115550200"},
    )
    referred_by = [("Referred-By", f'"Alice" <sip:alice@{REALM}>')]
    # alice may call abroad; bob, the transferee, may not
    _, replies = bob.call("00441632960001", headers=referred_by)
    assert (replies[-1].status, replies[-1].reason) == (404, "Not Found - international calls not permitted")
    # alice's caller ID presented with a Referred-By: still not one of bob's
    alices_id = ("P-Preferred-Identity", "<sip:+27115550100@sip.test>")
    _, replies = bob.call("0115550123", headers=[*referred_by, alices_id])
    assert replies[-1].status == 503 and events(node)[-1]["cause"] == "invalid_caller_id"
    # the transfer itself: bob's own call, bob's caller ID, bob's record
    invite, _ = bob.call("0115550123", headers=referred_by)
    relayed = only(trunk.inbox(), "INVITE")
    assert relayed.headers.get("P-Asserted-Identity") == f"<sip:+27115550200@{REALM}>"
    answer(trunk, relayed, 486)
    only(bob.inbox(), 486)
    record = events(node, "call")[-1]
    assert (record["account"], record["call_id"]) == ("bob@sip.test", invite.call_id)
    assert record["final_code"] == 486


def test_a_referred_by_does_not_stand_in_for_credentials(world):
    node, alice, bob, trunk, _ = world()
    invite = bob.invite("0115550123", headers=[("Referred-By", f"<sip:alice@{REALM}>")])
    assert [r.status for r in bob.send(invite)] == [407]
    _, replies = bob.call("0115550123", password="wrong", headers=[("Referred-By", f"<sip:alice@{REALM}>")])
    assert replies[-1].status == 403 and trunk.inbox() == []
