"""The registrar in process: bytes in, responses out, against a real local store."""

import json
import time

import pytest

from sipsync.server.config import ServiceConfig
from sipsync.server.node import SipNode
from sipsync.server.provision import document_for_password
from sipsync.server.store import LocalStore
from tests.sipsync.server.conftest import REALM, Phone


def events(node):
    node.store.flush()
    return [event for _, event in node.store.events_after(0)]


def test_register_without_credentials_is_challenged_md5_only_by_default(node):
    response = Phone(node, "alice", "x").send(Phone(node, "alice", "x").request())
    assert response.status == 401
    challenges = response.headers.get_all("WWW-Authenticate")
    assert [("SHA-256" in c, "MD5" in c) for c in challenges] == [(False, True)]
    assert all(f'realm="{REALM}"' in c and 'qop="auth"' in c for c in challenges)
    assert events(node) == []  # a challenge is not a rejection


def test_sha256_is_challenged_when_configured(make_node):
    accounts = [document_for_password("alice", REALM, "Alice-Passw0rd")]
    node = make_node(accounts, digest_algorithms=("MD5", "SHA-256"))
    phone = Phone(node, "alice", "x")
    challenges = phone.send(phone.request()).headers.get_all("WWW-Authenticate")
    assert [("SHA-256" in c, "MD5" in c) for c in challenges] == [(False, True), (True, False)]


@pytest.mark.parametrize("algorithm", ["MD5", "SHA-256"])
def test_right_password_registers_the_contact(make_node, algorithm):
    node = make_node(
        [document_for_password("alice", REALM, "Alice-Passw0rd", max_contacts=2)],
        digest_algorithms=("MD5", "SHA-256"),
    )
    phone = Phone(node, "alice", "Alice-Passw0rd")
    response = phone.register(algorithm=algorithm)
    assert response.status == 200
    assert response.headers.get_all("Contact") == ["<sip:alice@10.0.0.2:5062>;expires=3600"]
    [binding] = node.location.lookup(f"alice@{REALM}")
    assert binding.source == ("198.51.100.7", 5062)  # where the phone really is (NAT)
    assert binding.transport == "UDP" and binding.user_agent == "TestPhone/1.0"
    via = response.headers.get_all("Via")[0]
    assert "received=198.51.100.7" in via and "rport=5062" in via


def test_wrong_password_and_unknown_user_are_403_with_one_wire_cause(node):
    wrong = Phone(node, "alice", "Alice-Passw0rd").register(password="nope")
    unknown = Phone(node, "mallory", "whatever").register()
    for response in (wrong, unknown):
        assert (response.status, response.reason) == (403, "Forbidden")
        assert response.headers.get("Warning") == f'399 {REALM} "bad_credentials"'
    causes = [(e["cause"], e["account"], e["code"]) for e in events(node)]
    assert causes == [("bad_password", f"alice@{REALM}", 403), ("unknown_user", f"mallory@{REALM}", 403)]
    assert node.location.lookup(f"alice@{REALM}") == []


def test_password_change_required_says_so(node):
    response = Phone(node, "bob", "Bob-Passw0rd").register()
    assert (response.status, response.reason) == (403, "Password change required")
    assert response.headers.get("Warning") == f'399 {REALM} "password_change_required"'
    assert events(node)[0]["cause"] == "password_change_required"


def test_disabled_account_is_refused(node):
    response = Phone(node, "carol", "Carol-Passw0rd").register()
    assert response.status == 403
    assert "disabled" in response.reason.lower()


def test_too_brief_interval_gets_423_with_min_expires(node):
    response = Phone(node, "alice", "Alice-Passw0rd").register(expires=10)
    assert response.status == 423
    assert response.headers.get("Min-Expires") == "60"


def test_expires_above_the_maximum_is_capped(node):
    response = Phone(node, "alice", "Alice-Passw0rd").register(expires=86400)
    assert response.headers.get("Contact").endswith(";expires=3600")


def test_unregister_one_contact_and_all(node):
    phone = Phone(node, "alice", "Alice-Passw0rd")
    assert phone.register().status == 200
    assert phone.register(contact="<sip:alice@10.0.0.3:5070>").status == 200
    assert len(node.location.lookup(f"alice@{REALM}")) == 2
    response = phone.register(contact="<sip:alice@10.0.0.3:5070>;expires=0")
    assert response.headers.get_all("Contact") == ["<sip:alice@10.0.0.2:5062>;expires=3600"]
    response = phone.register(contact="*", expires=0)
    assert response.status == 200 and response.headers.get_all("Contact") == []
    assert node.location.lookup(f"alice@{REALM}") == []


def test_star_without_expires_zero_is_a_bad_request(node):
    response = Phone(node, "alice", "Alice-Passw0rd").register(contact="*", expires=3600)
    assert response.status == 400


def test_query_lists_bindings_without_changing_them(node):
    phone = Phone(node, "alice", "Alice-Passw0rd")
    phone.register()
    response = phone.register(contact=None)
    assert response.status == 200
    assert response.headers.get_all("Contact") == ["<sip:alice@10.0.0.2:5062>;expires=3600"]


def test_max_contacts_is_enforced(node):
    phone = Phone(node, "alice", "Alice-Passw0rd")
    for port in (5070, 5071):
        assert phone.register(contact=f"<sip:alice@10.0.0.3:{port}>").status == 200
    response = phone.register(contact="<sip:alice@10.0.0.3:5072>")
    assert response.status == 403 and "Too many" in response.reason


def test_a_retransmitted_register_gets_the_same_answer(node):
    phone = Phone(node, "alice", "Alice-Passw0rd")
    challenge = phone.send(phone.request())
    request = phone.request(headers=[("Authorization", phone.authorization(challenge))])
    first = phone.send(request)
    again = phone.send(request)
    assert first.status == again.status == 200
    assert first.headers.get_all("Contact") == again.headers.get_all("Contact")
    assert first.to.tag == again.to.tag


def test_an_older_cseq_on_the_same_call_id_is_refused(node):
    phone = Phone(node, "alice", "Alice-Passw0rd")
    assert phone.register().status == 200
    challenge = phone.send(phone.request())
    stale = phone.request(cseq=1, headers=[("Authorization", phone.authorization(challenge))])
    assert phone.send(stale).status == 500


def test_to_must_match_the_authenticated_user(node):
    response = Phone(node, "alice", "Alice-Passw0rd").register(to_user="bob")
    assert response.status == 403
    assert events(node)[0]["cause"] == "identity_mismatch"


def test_malformed_authorization_is_a_bad_request(node):
    phone = Phone(node, "alice", "Alice-Passw0rd")
    response = phone.send(phone.request(headers=[("Authorization", "Digest garbage")]))
    assert response.status == 400


def test_a_foreign_or_forged_nonce_is_just_challenged_again(node):
    phone = Phone(node, "alice", "Alice-Passw0rd")
    challenge = phone.send(phone.request())
    forged = phone.authorization(challenge).replace('nonce="', 'nonce="X')
    response = phone.send(phone.request(headers=[("Authorization", forged)]))
    assert response.status == 401
    assert events(node) == []


def test_an_expired_nonce_is_challenged_with_stale(make_node):
    node = make_node([document_for_password("alice", REALM, "Alice-Passw0rd")], nonce_ttl=0.001)
    phone = Phone(node, "alice", "Alice-Passw0rd")
    challenge = phone.send(phone.request())
    time.sleep(0.01)
    response = phone.send(phone.request(headers=[("Authorization", phone.authorization(challenge))]))
    assert response.status == 401
    assert all("stale=true" in c for c in response.headers.get_all("WWW-Authenticate"))


def test_repeated_failures_from_one_source_are_refused_without_checking(make_node):
    node = make_node([document_for_password("alice", REALM, "Alice-Passw0rd")], auth_failure_limit=3)
    attacker = Phone(node, "alice", "guess")
    for _ in range(3):
        assert attacker.register().status == 403
    response = attacker.register(password="Alice-Passw0rd")  # even the right password, from there
    assert response.status == 403 and "Too many failed attempts" in response.reason
    elsewhere = Phone(node, "alice", "Alice-Passw0rd", source=("203.0.113.9", 5060))
    assert elsewhere.register().status == 200


def test_challenges_never_count_as_failures(make_node):
    node = make_node([document_for_password("alice", REALM, "Alice-Passw0rd")], auth_failure_limit=2)
    phone = Phone(node, "alice", "Alice-Passw0rd")
    for _ in range(10):
        assert phone.register().status == 200


def test_bindings_survive_a_restart(make_node, tmp_path):
    node = make_node([document_for_password("alice", REALM, "Alice-Passw0rd")])
    Phone(node, "alice", "Alice-Passw0rd").register()
    path = node.config.store_path
    node.store.close()  # no flush: the 200 was only sent after the group commit
    reopened = SipNode(ServiceConfig(realm=REALM, store_path=path))
    try:
        assert [b.contact_uri for b in reopened.location.lookup(f"alice@{REALM}")] == [
            "sip:alice@10.0.0.2:5062"
        ]
    finally:
        reopened.store.close()


def test_options_is_answered_and_unknown_methods_are_501(node):
    phone = Phone(node, "alice", "x")
    response = phone.send(phone.request("OPTIONS", contact=None))
    assert response.status == 200 and "REGISTER" in response.headers.get("Allow")
    response = phone.send(phone.request("FOO", contact=None))
    assert response.status == 501
    assert events(node)[0]["cause"] == "not_implemented"


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x00\xff" * 50,
        b"REGISTER sip:x SIP/2.0\r\n\r\n",
        b"REGISTER sip:x SIP/2.0\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nCall-ID: a\r\nCSeq: x\r\n\r\n",
        b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\n\r\n",
    ],
)
def test_garbage_never_raises(node, data):
    endpoint = Phone(node, "alice", "x").endpoint
    node.service.handle(data, ("192.0.2.1", 5060), endpoint)
    for payload, _ in endpoint.sent:
        assert payload.startswith(b"SIP/2.0 400")


def test_a_parse_error_that_can_be_answered_gets_400_and_an_event(node):
    endpoint = Phone(node, "alice", "x").endpoint
    data = (
        b"REGISTER sip:sip.test SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.2:5062;branch=z9hG4bK-x\r\n"
        b"From: <sip:alice@sip.test>;tag=1\r\nTo: <sip:alice@sip.test>\r\nCall-ID: abc\r\n"
        b"CSeq: 1 REGISTER\r\nMax-Forwards: 70\r\nContent-Length: 999\r\n\r\n"
    )
    node.service.handle(data, ("192.0.2.1", 5062), endpoint)
    assert endpoint.sent and endpoint.sent[0][0].startswith(b"SIP/2.0 400")
    assert events(node)[0]["code"] == 400


def test_events_are_json_with_the_source(node):
    Phone(node, "alice", "Alice-Passw0rd").register(password="bad")
    node.store.flush()
    [(event_id, event)] = node.store.events_after(0)
    assert json.loads(json.dumps(event))["source_ip"] == "198.51.100.7"
    assert event["user_agent"] == "TestPhone/1.0" and event["method"] == "REGISTER"


def test_the_nonce_secret_survives_a_restart(make_node):
    node = make_node()
    secret = node.store.get_meta("nonce_secret")
    assert secret and len(bytes.fromhex(secret)) == 32
    path = node.config.store_path
    node.store.close()
    with LocalStore(path) as store:
        assert store.get_meta("nonce_secret") == secret
