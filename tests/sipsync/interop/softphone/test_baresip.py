"""A real softphone stack against the real node: headless baresip phones register and call each
other through `python -m sipsync.server`, started with its default digest settings.

Each phone is a `baresip` process driven over ctrl_tcp (see baresip.py); what the tests assert is
what the phone itself reports (its REGISTER_* and CALL_* events, the reason of CALL_CLOSED, the
codecs its audio stream runs) and the call records the node serves on its control interface.
"""

import time

import httpx
import pytest

from tests.sipsync.interop.conftest import REALM

pytestmark = pytest.mark.softphone


def bindings(node, user: str) -> list[dict]:
    response = httpx.get(
        f"http://127.0.0.1:{node.control_port}/v1/registrations",
        params={"aor": f"{user}@{REALM}"},
        headers={"Authorization": f"Bearer {node.secret}"},
        timeout=5.0,
    )
    response.raise_for_status()
    return response.json()["registrations"]


# --- registration -------------------------------------------------------------------------------


@pytest.mark.parametrize("transport", ["udp", "tcp"])
def test_baresip_registers_with_digest(node, phone, transport):
    """The node's default challenge (MD5) is one baresip answers: registered, and the binding
    remembers the phone's transport and user agent."""
    alice = phone("alice")
    outcome = alice.register("alice", "Alice-Passw0rd", proxy=node.proxy, realm=REALM, transport=transport)
    assert (outcome["type"], outcome.get("param")) == ("REGISTER_OK", "200 OK"), alice.log()[-3000:]
    [binding] = bindings(node, "alice")
    assert binding["transport"] == transport.upper()
    assert binding["user_agent"].startswith("baresip")
    suffix = ";transport=tcp" if transport == "tcp" else ""
    assert binding["contact"].endswith(f"@127.0.0.1:{alice.sip_port}{suffix}")


def test_baresip_with_a_wrong_password_gets_403(node, phone):
    alice = phone("alice")
    outcome = alice.register("alice", "not-the-password", proxy=node.proxy, realm=REALM)
    assert (outcome["type"], outcome.get("param")) == ("REGISTER_FAIL", "403 Forbidden")
    assert 'Warning: 399 sip.test "bad_credentials"' in alice.log()
    assert bindings(node, "alice") == []


def test_baresip_unregisters_when_it_quits(node, registered):
    bob = registered("bob")
    assert len(bindings(node, "bob")) == 1
    bob.stop()  # `quit`: baresip sends REGISTER with expires=0 first
    assert bindings(node, "bob") == []


# --- calls ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("caller_transport", "callee_transport"),
    [("udp", "udp"), ("tcp", "udp"), ("udp", "tcp"), ("tcp", "tcp")],
    ids=["udp", "tcp-caller", "tcp-callee", "tcp"],
)
def test_call_between_two_extensions(node, registered, caller_transport, callee_transport):
    """alice (who prefers PCMA, which her account may not use) calls bob's extension; bob's phone
    answers by itself. Both run PCMU (the proxy took PCMA out of the offer), RTP flows between
    them, alice hangs up and bob's phone sees the relayed BYE; the node records one answered
    call."""
    bob = registered("bob", answermode="auto", transport=callee_transport, codecs=("PCMA", "PCMU"))
    alice = registered("alice", transport=caller_transport, codecs=("PCMA", "PCMU"))
    mark = alice.dial(f"sip:1002@{REALM}")
    alice.call_event("CALL_RINGING", after=mark)
    alice.call_event("CALL_ESTABLISHED", after=mark)
    bob.call_event("CALL_ESTABLISHED")
    alice.call_event("CALL_RTPESTAB", after=mark)  # audio from bob arrived
    bob.call_event("CALL_RTPESTAB")
    assert alice.audio_codecs() == ("PCMU", "PCMU"), alice.log()[-4000:]
    assert bob.audio_codecs() == ("PCMU", "PCMU"), bob.log()[-4000:]

    mark_bob = bob.mark()
    alice.command("hangup")
    assert alice.closed(after=mark) == "Connection reset by user"
    assert bob.closed(after=mark_bob) == "Connection reset by peer"  # the BYE reached bob

    [record] = node.records()
    assert (record["account"], record["callee"]) == (f"alice@{REALM}", f"bob@{REALM}")
    assert record["dialled"] == "1002"
    assert (record["call_class"], record["final_code"], record["cause"]) == ("internal", 200, "bye")
    assert record["answered_at"] and record["ended_at"] >= record["answered_at"]
    assert record["cost"] == "0.0000"


def test_cancel_while_ringing(node, registered):
    """bob's phone rings (no auto-answer); alice hangs up first: bob's phone stops ringing (the
    CANCEL reached it) and the call is recorded 487, not answered."""
    bob = registered("bob")
    alice = registered("alice")
    mark = alice.dial(f"sip:1002@{REALM}")
    bob.call_event("CALL_INCOMING")
    alice.call_event("CALL_RINGING", after=mark)
    mark_bob = bob.mark()
    alice.command("hangup")
    assert alice.closed(after=mark) == "Connection reset by user"
    bob.closed(after=mark_bob)
    [record] = node.records()
    assert (record["final_code"], record["cause"], record["answered_at"]) == (487, "cancelled", None)


def test_callee_rejecting_the_call_is_relayed_unchanged(node, registered):
    """bob's phone rejects the ringing call with its own 486 (reason phrase "Rejected"): alice's
    phone gets exactly that status line."""
    bob = registered("bob")
    alice = registered("alice")
    mark = alice.dial(f"sip:1002@{REALM}")
    bob.call_event("CALL_INCOMING")
    alice.call_event("CALL_RINGING", after=mark)
    bob.command("hangup")
    assert alice.closed(after=mark) == "486 Rejected"
    [record] = node.records()
    assert (record["final_code"], record["cause"], record["answered_at"]) == (486, "far_end", None)


# --- refusals the phone sees --------------------------------------------------------------------


def test_extension_without_a_registered_phone_is_480(node, registered):
    alice = registered("alice")
    mark = alice.dial(f"sip:1003@{REALM}")
    assert alice.closed(after=mark) == "480 Temporarily Unavailable"
    [record] = node.records()
    assert record["callee"] == f"carol@{REALM}"
    assert (record["final_code"], record["cause"]) == (480, "not_registered")


def test_offer_without_an_assigned_codec_is_488(node, registered):
    """alice's phone offers G.722 only; her account has PCMU and G.729: 488 with Warning 305, and
    bob's phone never rings."""
    bob = registered("bob", answermode="auto")
    alice = registered("alice", codecs=("G722",))
    mark = alice.dial(f"sip:1002@{REALM}")
    assert alice.closed(after=mark) == "488 Not Acceptable Here"
    warning = 'Warning: 305 sip.test "Incompatible media format: offered G722; assigned PCMU, G729"'
    assert warning in alice.log()
    [record] = node.records()
    assert (record["final_code"], record["cause"], record["answered_at"]) == (488, "codec_mismatch", None)
    assert not [e for e in bob.events if e.get("class") == "call"]


def test_number_the_account_may_not_call_is_404(node, registered):
    """International calls are not among alice's permissions."""
    alice = registered("alice")
    mark = alice.dial(f"sip:0044207946000@{REALM}")
    assert alice.closed(after=mark) == "404 Not Found - international calls not permitted"
    [record] = node.records()
    assert (record["number"], record["call_class"]) == ("+44207946000", "international")
    assert (record["final_code"], record["cause"]) == (404, "class_not_permitted")


def test_callee_at_its_call_limit_is_486(node, registered):
    """bob may be on one call at a time: while alice talks to him, carol's call to him is refused
    486 by the node (his phone never rings); alice's call goes on."""
    bob = registered("bob", answermode="auto")
    alice = registered("alice")
    carol = registered("carol")
    mark = alice.dial(f"sip:1002@{REALM}")
    alice.call_event("CALL_ESTABLISHED", after=mark)
    bob.call_event("CALL_ESTABLISHED")
    mark_bob = bob.mark()
    mark_carol = carol.dial(f"sip:1002@{REALM}")
    assert carol.closed(after=mark_carol) == "486 Busy Here"
    assert not [e for e in bob.events[mark_bob:] if e.get("type") in ("CALL_INCOMING", "CALL_ESTABLISHED")]
    alice.command("hangup")
    bob.closed(after=mark_bob)
    records = node.records(expected=2)
    assert sorted((r["account"], r["final_code"], r["cause"]) for r in records) == [
        (f"alice@{REALM}", 200, "bye"),
        (f"carol@{REALM}", 486, "callee_busy"),
    ]


def test_busy_phone_486_is_relayed(node, registered):
    """carol's phone takes one call at a time (baresip's call_max_calls); her account allows two,
    so the node lets bob's call through and relays her phone's own 486 to him."""
    registered("carol", answermode="auto", config={"call_max_calls": "1"})
    alice = registered("alice")
    bob = registered("bob")
    mark = alice.dial(f"sip:1003@{REALM}")
    alice.call_event("CALL_ESTABLISHED", after=mark)
    mark_bob = bob.dial(f"sip:1003@{REALM}")
    assert bob.closed(after=mark_bob).startswith("486 ")
    alice.command("hangup")
    alice.closed(after=mark)
    records = node.records(expected=2)
    assert sorted((r["account"], r["final_code"], r["cause"]) for r in records) == [
        (f"alice@{REALM}", 200, "bye"),
        (f"bob@{REALM}", 486, "far_end"),
    ]


# --- in the dialog: re-INVITEs, BYE from the callee, transfer -------------------------------------


def audio_direction(instance) -> str:
    """The direction of the current call's audio stream (``audio dir=...`` of audio_debug)."""
    for word in instance.command("audio_debug").split():
        if word.startswith("dir="):
            return word.removeprefix("dir=")
    instance.fail("audio_debug shows no stream direction")
    return ""


def test_hold_resume_and_reinvite_go_through_the_proxy(node, registered):
    """alice puts bob on hold and back (re-INVITEs from the caller), bob re-INVITEs (from the
    callee), then bob hangs up: every in-dialog request is loose-routed through the node."""
    bob = registered("bob", answermode="auto")
    alice = registered("alice")
    mark = alice.dial(f"sip:1002@{REALM}")
    alice.call_event("CALL_ESTABLISHED", after=mark)
    bob.call_event("CALL_ESTABLISHED")

    mark_bob = bob.mark()
    alice.command("hold")
    bob.call_event("CALL_REMOTE_SDP", after=mark_bob)  # the re-INVITE's offer reached bob
    alice.wait_event("CALL_REMOTE_SDP", after=mark, where=lambda e: e.get("param") == "answer")
    assert audio_direction(bob) == "recvonly"
    mark_bob = bob.mark()
    alice.command("resume")
    bob.call_event("CALL_REMOTE_SDP", after=mark_bob)
    assert audio_direction(bob) == "sendrecv"

    mark_alice = alice.mark()
    bob.command("reinvite")
    alice.wait_event("CALL_REMOTE_SDP", after=mark_alice, where=lambda e: e.get("param") == "offer")
    bob.wait_event("CALL_REMOTE_SDP", after=mark_bob, where=lambda e: e.get("param") == "answer")

    bob.command("hangup")
    assert alice.closed(after=mark) == "Connection reset by peer"  # bob's BYE reached alice
    [record] = node.records()
    assert (record["final_code"], record["cause"]) == (200, "bye") and record["answered_at"]


def test_blind_transfer_with_refer(node, registered):
    """alice calls bob; bob transfers her to carol (REFER through the proxy, 202, NOTIFYs); alice's
    phone calls carol on its own, authenticated as alice, and bob's call ends. Two records, both
    alice's calls."""
    bob = registered("bob", answermode="auto")
    carol = registered("carol", answermode="auto")
    alice = registered("alice")
    mark = alice.dial(f"sip:1002@{REALM}")
    alice.call_event("CALL_ESTABLISHED", after=mark)
    bob.call_event("CALL_ESTABLISHED")
    mark_bob = bob.mark()
    bob.command("transfer", f"sip:1003@{REALM}")
    assert bob.closed(after=mark_bob) == "Call transfered"  # (sic) baresip: the NOTIFY said 200
    established = carol.call_event("CALL_ESTABLISHED")
    assert established["peeruri"] == f"sip:alice@{REALM}"
    alice.wait_event("CALL_ESTABLISHED", after=mark, where=lambda e: e.get("peeruri") == f"sip:1003@{REALM}")
    assert "SIP/2.0 202 Accepted" in bob.log(), bob.log()[-4000:]  # the REFER's answer reached bob

    mark_carol = carol.mark()
    alice.command("hangup")
    carol.closed(after=mark_carol)
    records = node.records(expected=2)
    assert sorted((r["account"], r["callee"], r["final_code"], r["cause"]) for r in records) == [
        (f"alice@{REALM}", f"bob@{REALM}", 200, "bye"),
        (f"alice@{REALM}", f"carol@{REALM}", 200, "bye"),
    ]


# --- a crash while a call rings -------------------------------------------------------------------


def test_a_call_ringing_when_the_node_is_killed_is_recorded_after_the_restart(node, registered):
    """bob's phone is ringing when the node gets SIGKILL. After the restart the call is recorded
    once: not answered, free, cause node_restart. bob's phone then rejects the call and the
    restarted node still gets that answer back to alice (by the Via, as a stray response)."""
    bob = registered("bob")
    alice = registered("alice")
    mark = alice.dial(f"sip:1002@{REALM}")
    bob.call_event("CALL_INCOMING")
    alice.call_event("CALL_RINGING", after=mark)
    time.sleep(1.2)  # in the store after the next group commit (housekeeping flushes every 0.5 s)
    node.restart(kill=True)
    assert "closed out 1 call(s) left in progress" in node.stderr_text()
    [record] = node.records()
    assert (record["account"], record["callee"]) == (f"alice@{REALM}", f"bob@{REALM}")
    assert (record["final_code"], record["cause"], record["answered_at"]) == (500, "node_restart", None)
    assert (record["duration"], record["cost"]) == (0, "0.0000")
    assert record["ended_at"] >= record["invited_at"]

    bob.command("hangup")
    assert alice.closed(after=mark) == "486 Rejected"
    node.restart(kill=False)  # and once more: nothing is recorded twice
    assert [r["record_id"] for r in node.records(expected=2, timeout=1.0)] == [record["record_id"]]
