"""The event framework in process: SUBSCRIBE / NOTIFY for voicemail (message-summary) and busy
lamps (dialog) on the proxy's fake network, with one fake clock for wall and transaction time."""

import hashlib
import itertools
import re
import xml.etree.ElementTree as ET

import pytest

from sipsync.server.config import ServiceConfig
from sipsync.server.node import SipNode
from sipsync.server.notifier import RESTART_MARGIN
from sipsync.server.provision import document_for_password
from sipsync.sip.message import Response, make_response
from sipsync.sip.parser import parse_message
from tests.sipsync.server.conftest import REALM
from tests.sipsync.server.test_proxy import (
    ALICE,
    BOB,
    PROXY,
    UA,
    answer,
    events,
    only,
    world,  # noqa: F401 - the fixture
)

DAVE = ("198.51.100.4", 5090)
NS = "{urn:ietf:params:xml:ns:dialog-info}"


class Subscriber:
    """A phone's SUBSCRIBE side: one dialog, digest authentication on the first request."""

    _ids = itertools.count(1)

    def __init__(self, ua: UA, target: str, event: str, *, event_id=None):
        self.ua, self.target, self.event, self.event_id = ua, target, event, event_id
        n = next(self._ids)
        self.call_id = f"sub{n}@10.0.0.2"
        self.from_tag = f"subtag{n}"
        self.cseq = 0
        self.to_tag = None

    def request(self, expires=None, *, auth=None, event=None, to_tag=None, cseq=None):
        if cseq is None:
            self.cseq += 1
        port = self.ua.address[1]
        to_tag = to_tag if to_tag is not None else self.to_tag
        event = event or (self.event if self.event_id is None else f"{self.event};id={self.event_id}")
        lines = [
            f"SUBSCRIBE sip:{self.target}@{REALM} SIP/2.0",
            f"Via: SIP/2.0/UDP 10.0.0.2:{port};branch=z9hG4bK-s{next(self._ids)};rport",
            f"From: <sip:{self.ua.username}@{REALM}>;tag={self.from_tag}",
            f"To: <sip:{self.target}@{REALM}>" + (f";tag={to_tag}" if to_tag else ""),
            f"Call-ID: {self.call_id}",
            f"CSeq: {cseq or self.cseq} SUBSCRIBE",
            "Max-Forwards: 70",
            f"Contact: <sip:{self.ua.username}@10.0.0.2:{port}>",
            f"Event: {event}",
            "Accept: application/simple-message-summary, application/dialog-info+xml",
            "User-Agent: TestPhone/1.0",
        ]
        if expires is not None:
            lines.append(f"Expires: {expires}")
        if auth:
            lines.append(f"Proxy-Authorization: {auth}")
        return parse_message(("\r\n".join(lines) + "\r\nContent-Length: 0\r\n\r\n").encode())

    def authorization(self, challenge: Response, request) -> str:
        value = next(v for v in challenge.headers.get_all("Proxy-Authenticate") if "algorithm=MD5" in v)
        nonce = re.search(r'nonce="([^"]+)"', value).group(1)

        def h(text):
            return hashlib.md5(text.encode()).hexdigest()

        ha1 = h(f"{self.ua.username}:{REALM}:{self.ua.password}")
        digest = h(f"{ha1}:{nonce}:00000001:c0ffee:auth:{h(f'SUBSCRIBE:{request.raw_uri}')}")
        return (
            f'Digest username="{self.ua.username}", realm="{REALM}", nonce="{nonce}", '
            f'uri="{request.raw_uri}", response="{digest}", algorithm=MD5, qop=auth, nc=00000001, '
            f'cnonce="c0ffee"'
        )

    def subscribe(self, expires=None, **kwargs) -> list:
        """SUBSCRIBE -> 407 -> SUBSCRIBE with credentials; returns what came back to the second."""
        first = self.request(expires, **kwargs)
        challenge = only(self.ua.send(first), 407)
        again = self.request(expires, auth=self.authorization(challenge, first), **kwargs)
        replies = self.ua.send(again)
        ok = next((r for r in replies if isinstance(r, Response)), None)
        if ok is not None and ok.status == 200:
            self.to_tag = ok.to.tag
        return replies

    def in_dialog(self, expires=None, **kwargs) -> list:
        return self.ua.send(self.request(expires, **kwargs))


def split(replies):
    """(the response, the NOTIFYs) of what came back to a SUBSCRIBE."""
    responses = [r for r in replies if isinstance(r, Response)]
    notifies = [r for r in replies if not isinstance(r, Response)]
    assert len(responses) == 1, replies
    return responses[0], notifies


def ok(ua, notify):
    """The subscriber answers a NOTIFY 200."""
    return ua.send(make_response(notify, 200))


def dialog_states(notify) -> list[tuple[str, str]]:
    root = ET.fromstring(notify.body)
    return [(d.get("id"), d.find(f"{NS}state").text) for d in root.findall(f"{NS}dialog")]


@pytest.fixture
def events_world(world):  # noqa: F811
    def build(**kwargs):
        node, alice, bob, trunk, clock = world(**kwargs)
        node.notifier._clock = clock
        node.proxy._mono = clock
        dave = UA(node, alice.net, "dave", "Dave-Pw", DAVE)
        return node, alice, bob, dave, clock

    return build


def push(node, username, version, **fields):
    password = {"alice": "Alice-Pw", "bob": "Bob-Pw", "dave": "Dave-Pw"}[username]
    extension = {"alice": "1001", "bob": "1002", "dave": "1004"}[username]
    assert node.accounts.apply(
        document_for_password(username, REALM, password, version=version, extension=extension, **fields)
    )


# --- message-summary ---------------------------------------------------------------------------------


def test_mwi_subscribe_notify_change_refresh_and_unsubscribe(events_world):
    node, alice, _, _, clock = events_world()
    mwi = Subscriber(alice, "alice", "message-summary")
    response, notifies = split(mwi.subscribe(expires=7200))
    assert response.status == 200 and response.headers.get("Expires") == "3600"  # capped
    assert response.headers.get("Contact") == f"<sip:{PROXY}:5060>"
    initial = only(notifies, "NOTIFY")
    assert initial.raw_uri == f"sip:alice@10.0.0.2:{ALICE[1]}"
    assert initial.headers.get("Subscription-State") == "active;expires=3600"
    assert initial.headers.get("Event") == "message-summary"
    assert initial.headers.get("Content-Type") == "application/simple-message-summary"
    assert initial.from_.tag == mwi.to_tag and initial.to.tag == mwi.from_tag
    assert initial.call_id == mwi.call_id
    assert b"Messages-Waiting: no" in initial.body and b"Voice-Message: 0/0 (0/0)" in initial.body
    assert ok(alice, initial) == []

    push(node, "alice", 2, mailbox={"new": 2, "old": 5})
    changed = only(alice.inbox(), "NOTIFY")
    assert changed.cseq.seq == initial.cseq.seq + 1
    assert b"Messages-Waiting: yes" in changed.body and b"Voice-Message: 2/5 (0/0)" in changed.body
    ok(alice, changed)
    push(node, "alice", 3, mailbox={"new": 2, "old": 5}, dnd=True)  # no mailbox change: no NOTIFY
    assert alice.inbox() == []

    clock.t += 600
    response, notifies = split(mwi.in_dialog(expires=1800))
    assert response.status == 200 and response.headers.get("Expires") == "1800"
    refreshed = only(notifies, "NOTIFY")
    assert refreshed.headers.get("Subscription-State") == "active;expires=1800"
    assert b"Voice-Message: 2/5 (0/0)" in refreshed.body
    ok(alice, refreshed)

    response, notifies = split(mwi.in_dialog(expires=0))
    assert response.status == 200
    final = only(notifies, "NOTIFY")
    assert final.headers.get("Subscription-State") == "terminated;reason=timeout"
    ok(alice, final)
    assert node.notifier.involving("alice@sip.test") == []
    response, _ = split(mwi.in_dialog(expires=600))
    assert response.status == 481 and events(node)[-1]["cause"] == "no_such_subscription"


def test_unsupported_event_is_489_with_the_packages_offered(events_world):
    node, alice, _, _, _ = events_world()
    options = Subscriber(alice, "alice", "x").request().to_bytes().replace(b"SUBSCRIBE", b"OPTIONS")
    assert only(alice.send(options), 200).headers.get("Allow-Events") == "message-summary, dialog"
    response = only(alice.send(Subscriber(alice, "alice", "presence").request(600)), 489)
    assert response.headers.get("Allow-Events") == "message-summary, dialog"
    event = events(node)[-1]
    assert (event["cause"], event["code"], event["detail"]) == ("bad_event", 489, {"event": "presence"})


def test_too_brief_is_423_with_min_expires_and_a_fetch_keeps_nothing(events_world):
    node, alice, _, _, _ = events_world()
    mwi = Subscriber(alice, "alice", "message-summary")
    first = mwi.request(30)
    challenge = only(alice.send(first), 407)
    refused = only(alice.send(mwi.request(30, auth=mwi.authorization(challenge, first))), 423)
    assert refused.headers.get("Min-Expires") == "60"
    assert events(node)[-1]["cause"] == "subscription_too_brief"
    response, notifies = split(mwi.subscribe(expires=0))
    assert response.status == 200
    assert only(notifies, "NOTIFY").headers.get("Subscription-State") == "terminated;reason=timeout"
    assert len(node.notifier.table) == 0


def test_wrong_password_is_403_and_someone_elses_mailbox_is_refused(events_world):
    node, alice, bob, _, _ = events_world()
    mwi = Subscriber(alice, "alice", "message-summary")
    first = mwi.request(600)
    challenge = only(alice.send(first), 407)
    alice.password = "wrong"
    assert only(alice.send(mwi.request(600, auth=mwi.authorization(challenge, first))), 403)
    alice.password = "Alice-Pw"
    response, _ = split(Subscriber(alice, "1002", "message-summary").subscribe(600))
    assert (response.status, response.reason) == (403, "Forbidden - Not your mailbox")
    assert events(node)[-1]["cause"] == "mailbox_not_own"
    # by extension, the own mailbox is fine
    response, _ = split(Subscriber(alice, "1001", "message-summary").subscribe(600))
    assert response.status == 200


def test_expiry_sends_the_final_notify(events_world):
    node, alice, _, _, clock = events_world()
    mwi = Subscriber(alice, "alice", "message-summary")
    _, notifies = split(mwi.subscribe(expires=600))
    ok(alice, only(notifies))
    clock.t += 599
    node.proxy.tick(clock.t)
    assert alice.inbox() == []
    clock.t += 1
    node.proxy.tick(clock.t)
    final = only(alice.inbox(), "NOTIFY")
    assert final.headers.get("Subscription-State") == "terminated;reason=timeout"
    assert len(node.notifier.table) == 0


def test_notify_is_retransmitted_and_a_silent_subscriber_loses_the_subscription(events_world):
    node, alice, _, _, clock = events_world()
    mwi = Subscriber(alice, "alice", "message-summary")
    _, notifies = split(mwi.subscribe(expires=600))
    initial = only(notifies)
    t1 = node.proxy.layer.config.T1
    clock.t += t1
    node.proxy.tick(clock.t)
    again = only(alice.inbox(), "NOTIFY")  # Timer E: the same request again
    assert again.cseq.seq == initial.cseq.seq and again.via.branch == initial.via.branch
    clock.t += 64 * t1  # Timer F: no answer at all
    node.proxy.tick(clock.t)
    alice.inbox()
    assert len(node.notifier.table) == 0
    node.store.flush()
    assert node.store.load_subscriptions() == []


def test_481_to_a_notify_ends_the_subscription(events_world):
    node, alice, _, _, _ = events_world()
    mwi = Subscriber(alice, "alice", "message-summary")
    _, notifies = split(mwi.subscribe(expires=600))
    alice.send(make_response(only(notifies), 481))
    assert len(node.notifier.table) == 0
    push(node, "alice", 2, mailbox={"new": 1, "old": 0})
    assert alice.inbox() == []


def test_subscriptions_survive_a_restart(events_world):
    node, alice, _, _, clock = events_world()
    mwi = Subscriber(alice, "alice", "message-summary")
    _, notifies = split(mwi.subscribe(expires=3600))
    initial = only(notifies)
    ok(alice, initial)
    node.notifier.save()  # what housekeeping does before each flush
    node.service.flush()
    node.store.close()
    again = SipNode(
        ServiceConfig(realm=REALM, store_path=node.config.store_path, public_host=PROXY, public_port=5060)
    )
    again.notifier._clock = clock
    again.proxy._mono = clock
    again.transports.udp.append(alice.net)
    (held,) = again.notifier.involving("alice@sip.test")
    assert held.event == "message-summary" and held.expires_at == clock.t + 3600
    alice.node = again
    clock.t += 60
    response, notifies = split(mwi.in_dialog(expires=3600))
    assert response.status == 200
    refreshed = only(notifies, "NOTIFY")
    assert refreshed.cseq.seq == initial.cseq.seq + RESTART_MARGIN + 1
    again.store.close()


def test_too_many_subscriptions_is_403(events_world):
    node, alice, _, _, _ = events_world(max_subscriptions=2)
    for target in ("1002", "1004"):
        assert split(Subscriber(alice, target, "dialog").subscribe(600))[0].status == 200
    response, _ = split(Subscriber(alice, "1001", "message-summary").subscribe(600))
    assert (response.status, response.reason) == (403, "Forbidden - Too many subscriptions")
    assert events(node)[-1]["detail"] == {"limit": 2}


def test_removing_the_watched_account_terminates_with_noresource(events_world):
    node, alice, _, _, _ = events_world()
    _, notifies = split(Subscriber(alice, "1002", "dialog").subscribe(600))
    ok(alice, only(notifies))
    assert node.accounts.remove("bob", REALM, 5)
    final = only(alice.inbox(), "NOTIFY")
    assert final.headers.get("Subscription-State") == "terminated;reason=noresource"


# --- dialog (busy lamp) ------------------------------------------------------------------------------


def test_blf_follows_a_call_trying_early_confirmed_terminated(events_world):
    node, alice, bob, dave, clock = events_world()
    bob.register()
    blf = Subscriber(dave, "1002", "dialog")
    response, notifies = split(blf.subscribe(expires=600))
    assert response.status == 200
    initial = only(notifies, "NOTIFY")
    assert initial.headers.get("Content-Type") == "application/dialog-info+xml"
    root = ET.fromstring(initial.body)
    assert root.get("entity") == "sip:bob@sip.test" and root.get("state") == "full"
    assert root.get("version") == "0" and dialog_states(initial) == []
    ok(dave, initial)

    _, replies = alice.call("1002")
    invite = only(bob.inbox(), "INVITE")
    trying = only(dave.inbox(), "NOTIFY")
    answer(bob, invite, 180)
    early = only(dave.inbox(), "NOTIFY")
    answer(bob, invite, 200)
    confirmed = only(dave.inbox(), "NOTIFY")
    okay = only([r for r in alice.inbox() if isinstance(r, Response) and r.status == 200])
    bob.send(bob.in_dialog("BYE", okay, caller=False, cseq=1))
    terminated = only(dave.inbox(), "NOTIFY")
    states = [dialog_states(n) for n in (trying, early, confirmed, terminated)]
    call_dialog = f"{invite.call_id}-r"
    assert states == [[(call_dialog, s)] for s in ("trying", "early", "confirmed", "terminated")]
    versions = [ET.fromstring(n.body).get("version") for n in (trying, early, confirmed, terminated)]
    assert versions == ["1", "2", "3", "4"]
    dialog = ET.fromstring(confirmed.body).find(f"{NS}dialog")
    assert dialog.get("direction") == "recipient" and dialog.get("remote-tag") == invite.from_.tag
    assert dialog.get("local-tag") == "callee1"
    assert dialog.find(f"{NS}remote/{NS}identity").text == "sip:alice@sip.test"
    # the call is over: the next NOTIFY shows the extension idle again
    push(node, "bob", 2, dnd=False, max_calls=3)
    assert dave.inbox() == []  # nothing a lamp shows changed


def test_the_caller_side_is_shown_as_initiator(events_world):
    node, alice, bob, dave, _ = events_world()
    bob.register()
    _, notifies = split(Subscriber(dave, "1001", "dialog").subscribe(expires=600))
    ok(dave, only(notifies))
    alice.call("1002")
    trying = only(dave.inbox(), "NOTIFY")
    dialog = ET.fromstring(trying.body).find(f"{NS}dialog")
    assert dialog.get("direction") == "initiator" and dialog.find(f"{NS}state").text == "trying"
    assert dialog.find(f"{NS}remote/{NS}identity").text == "sip:bob@sip.test"


def test_do_not_disturb_shows_as_busy(events_world):
    node, _, bob, dave, _ = events_world()
    _, notifies = split(Subscriber(dave, "1002", "dialog").subscribe(expires=600))
    ok(dave, only(notifies))
    push(node, "bob", 2, dnd=True)
    busy = only(dave.inbox(), "NOTIFY")
    assert dialog_states(busy) == [("dnd", "confirmed")]
    ok(dave, busy)
    push(node, "bob", 3, dnd=False)
    assert dialog_states(only(dave.inbox(), "NOTIFY")) == []


def test_another_customers_extension_and_an_unknown_one_read_the_same(make_node):
    node = make_node(
        [
            document_for_password("alice", REALM, "Alice-Pw", extension="1001"),
            document_for_password("eve", REALM, "Eve-Pw", extension="1002", customer="C0000002"),
        ],
        public_host=PROXY,
        public_port=5060,
    )
    from tests.sipsync.server.test_proxy import Network

    net = Network()
    node.transports.udp.append(net)
    alice = UA(node, net, "alice", "Alice-Pw", ALICE)
    other, _ = split(Subscriber(alice, "eve", "dialog").subscribe(600))
    unknown, _ = split(Subscriber(alice, "1099", "dialog").subscribe(600))
    assert (
        (other.status, other.reason)
        == (unknown.status, unknown.reason)
        == (
            403,
            "Forbidden - Not an extension of your company",
        )
    )
    assert (
        other.headers.get("Warning") == unknown.headers.get("Warning") == '399 sip.test "watch_not_permitted"'
    )
    causes = [e["cause"] for e in events(node)][-2:]
    assert causes == ["watch_other_customer", "watch_unknown_target"]
    # the other customer's own extension 1002 is not alice's 1002: there is none
    assert split(Subscriber(alice, "1002", "dialog").subscribe(600))[0].status == 403


def test_event_id_is_echoed_and_keeps_two_subscriptions_apart(events_world):
    node, _, _, dave, _ = events_world()
    blf = Subscriber(dave, "1002", "dialog", event_id="7")
    _, notifies = split(blf.subscribe(expires=600))
    assert only(notifies).headers.get("Event") == "dialog;id=7"
    response, _ = split(blf.in_dialog(expires=600, event="dialog;id=8"))
    assert response.status == 481


def test_control_api_lists_subscriptions_held_and_watching(events_world):
    from tests.sipsync.server.test_control import drive

    node, alice, bob, dave, clock = events_world()
    _, notifies = split(Subscriber(dave, "1002", "dialog").subscribe(expires=600))
    ok(dave, only(notifies))
    _, notifies = split(Subscriber(bob, "1002", "message-summary").subscribe(expires=600))
    ok(bob, only(notifies))

    async def scenario(api):
        return await api("GET", "/v1/subscriptions?aor=bob@sip.test"), await api("GET", "/v1/subscriptions")

    (status, body), (missing, _) = drive(node, scenario)
    assert status == 200 and missing == 400
    by_event = {s["event"]: s for s in body["subscriptions"]}
    blf, mwi = by_event["dialog"], by_event["message-summary"]
    assert (blf["subscriber"], blf["target"]) == ("dave@sip.test", "bob@sip.test")
    assert blf["source"] == f"{DAVE[0]}:{DAVE[1]}" and blf["transport"] == "UDP"
    assert blf["contact"] == f"sip:dave@10.0.0.2:{DAVE[1]}"
    assert blf["expires_at"] == clock.t + 600
    assert (mwi["subscriber"], mwi["target"]) == ("bob@sip.test", "bob@sip.test")
    assert mwi["source"] == f"{BOB[0]}:{BOB[1]}"


def test_moving_to_another_customer_ends_busy_lamps_across_customers(events_world):
    node, alice, bob, dave, _ = events_world()
    _, notifies = split(Subscriber(dave, "1002", "dialog").subscribe(expires=600))  # dave watches bob
    ok(dave, only(notifies))
    _, notifies = split(Subscriber(bob, "1001", "dialog").subscribe(expires=600))  # bob watches alice
    ok(bob, only(notifies))
    _, notifies = split(Subscriber(bob, "1002", "message-summary").subscribe(expires=600))
    ok(bob, only(notifies))
    push(node, "bob", 2, customer="C0000002")
    assert only(dave.inbox(), "NOTIFY").headers.get("Subscription-State") == "terminated;reason=rejected"
    ended = only(bob.inbox(), "NOTIFY")
    assert ended.headers.get("Event") == "dialog"
    assert ended.headers.get("Subscription-State") == "terminated;reason=rejected"
    assert [s.event for s in node.notifier.involving("bob@sip.test")] == ["message-summary"]
