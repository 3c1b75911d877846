"""Paid calls with real phones at both ends: alice's baresip calls a national number, the node
sends it to its trunk, and the trunk is a baresip too (a user agent that does not register, named
after the E.164 number it answers, as a carrier's gateway would be reached).

The customer's R0.05 pays for 3 s at R1.00 a minute billed per second: the node hangs the call up
itself (a BYE to each phone) when that credit is used up, and refuses a second call while the
first holds the credit.
"""

import time

import pytest

from sipsync.server.documents import DocumentTable
from sipsync.server.provision import document_for_password, load_documents
from sipsync.server.store import LocalStore
from tests.sipsync.interop.conftest import REALM
from tests.sipsync.interop.softphone.conftest import CUSTOMER, PASSWORDS, SoftphoneNode, phone_ports

pytestmark = pytest.mark.softphone

NUMBER = "+27115550123"
RATES = {
    "kind": "rates", "plan": "Short", "version": 1, "currency": "ZAR",
    "rates": [{"prefix": "27", "description": "South Africa", "price_per_minute": "1.00000",
               "connect_fee": "0.00000", "first_increment": 1, "next_increment": 1,
               "effective_from": "2026-01-01T00:00:00Z", "effective_to": None}],
}  # fmt: skip


class TrunkNode(SoftphoneNode):
    """alice (1001, caller ID +27115550100) of a customer whose R0.05 pays for 3 s."""

    def preload(self) -> None:
        alice = document_for_password(
            "alice", REALM, PASSWORDS["alice"], extension="1001",
            caller_ids=["+27115550100"], default_caller_id="+27115550100",
        )  # fmt: skip
        load_documents(self.store, [alice])
        with LocalStore(self.store) as store:
            documents = DocumentTable(store)
            documents.apply("customer", {**CUSTOMER, "balance": "0.0500", "rate_plan": "Short"})
            documents.apply("rates", RATES)
            store.flush()


@pytest.fixture
def trunk_ports() -> tuple[int, int]:
    return phone_ports()


@pytest.fixture
def node(tmp_path, trunk_ports):
    """Overrides the extensions' node: this one's trunk is the phone started on trunk_ports."""
    workdir = tmp_path / "node"
    workdir.mkdir()
    service = TrunkNode(workdir, ("--trunk", f"sip:127.0.0.1:{trunk_ports[0]}"))
    service.preload()
    service.start()
    yield service
    service.stop(kill=False)


@pytest.fixture
def trunk(phone, trunk_ports):
    instance = phone("trunk", ports=trunk_ports)
    instance.add_account(NUMBER, proxy=None, realm="127.0.0.1", answermode="auto")
    return instance


def test_the_node_hangs_up_both_phones_when_the_credit_runs_out(node, trunk, registered):
    alice = registered("alice", codecs=("PCMA", "PCMU"))
    started = time.monotonic()
    mark = alice.dial(f"sip:0115550123@{REALM}")
    alice.call_event("CALL_ESTABLISHED", after=mark)
    trunk.call_event("CALL_ESTABLISHED")
    assert alice.audio_codecs() == ("PCMU", "PCMU")  # PCMA taken out of the offer to the trunk too
    assert alice.closed(after=mark, timeout=10) == "Connection reset by peer"  # the node's BYE
    assert trunk.closed(timeout=5) == "Connection reset by peer"
    assert 3.0 <= time.monotonic() - started < 6.0
    trunk_log = trunk.log()
    assert f"INVITE sip:{NUMBER}@127.0.0.1:{trunk.sip_port} SIP/2.0" in trunk_log
    assert "P-Asserted-Identity: <sip:+27115550100@sip.test>" in trunk_log
    assert 'Reason: SIP;cause=200;text="Credit exhausted"' in trunk_log

    [record] = node.records()
    assert (record["number"], record["call_class"]) == (NUMBER, "national")
    assert record["cause"] == "credit_exhausted"
    assert (record["duration"], record["billed_seconds"], record["cost"]) == (3, 3, "0.0500")


def test_a_second_call_while_the_first_holds_the_credit_is_503(node, trunk, registered):
    alice = registered("alice")
    mark = alice.dial(f"sip:0115550123@{REALM}")
    first = alice.call_event("CALL_ESTABLISHED", after=mark)["id"]
    second = alice.dial(f"sip:0115550124@{REALM}")
    assert alice.closed(after=second) == "503 Service Unavailable - Insufficient funds"
    assert alice.closed(after=mark, call=first, timeout=10) == "Connection reset by peer"  # credit used up
    records = node.records(expected=2)
    assert sorted((r["final_code"], r["cause"]) for r in records) == [
        (200, "credit_exhausted"),
        (503, "insufficient_funds"),
    ]
