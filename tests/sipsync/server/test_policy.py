"""Reservations and caller-ID rules of the policy, without SIP traffic."""

from decimal import Decimal

from sipsync.server.accounts import Account
from sipsync.server.calls import CallTable, Reservations
from sipsync.server.policy import presented_identity
from sipsync.server.provision import document_for_password
from sipsync.server.rating import Rate
from sipsync.sip.parser import parse_message

RATE = Rate({"prefix": "27", "price_per_minute": "0.60000", "connect_fee": "0.10000",
             "first_increment": 60, "next_increment": 60})  # fmt: skip


def test_reservations_add_up_and_release():
    held = Reservations()
    held.reserve("C1", Decimal("0.7"))
    held.reserve("C1", Decimal("0.3"))
    assert held.held("C1") == Decimal("1.0")
    held.release("C1", Decimal("0.7"))
    held.release("C1", Decimal("0.3"))
    assert held.held("C1") == 0


def test_a_call_counts_for_both_parties_until_it_ends(tmp_path):
    from sipsync.server.events import EventRecorder
    from sipsync.server.store import LocalStore

    store = LocalStore(str(tmp_path / "s.sqlite3"))
    clock = iter([100.0, 105.0, 166.0]).__next__
    calls = CallTable(EventRecorder(store), node_id="n1", clock=clock)
    call = calls.start(
        call_id="c1",
        caller_tag="t",
        account="a@r",
        customer="C1",
        dialled="0115550100",
        number="+27115550100",
        call_class="national",
        rate=RATE,
        reserved=Decimal("0.7"),
    )
    assert calls.active("a@r") == 1 and calls.reservations.held("C1") == Decimal("0.7")
    calls.answer(call)
    record = calls.end(call, code=200, cause="bye")
    assert calls.end(call) is None  # once only
    assert calls.active("a@r") == 0 and calls.reservations.held("C1") == 0
    assert record["record_id"].startswith("n1-") and record["duration"] == 61
    assert record["cost"] == "1.3000" and record["final_code"] == 200
    store.flush()
    assert record["invited_at"].endswith("Z") and [e["kind"] for _, e in store.events_after(0)] == ["call"]
    store.close()


def _account(**fields) -> Account:
    return Account.from_document(document_for_password("alice", "sip.test", "pw", extension="1001", **fields))


def _invite(*headers, from_="<sip:alice@sip.test>;tag=1"):
    lines = [
        "INVITE sip:1002@sip.test SIP/2.0",
        "Via: SIP/2.0/UDP h;branch=z9hG4bK1",
        f"From: {from_}",
        "To: <sip:1002@sip.test>",
        "Call-ID: c",
        "CSeq: 1 INVITE",
        *headers,
    ]
    return parse_message(("\r\n".join(lines) + "\r\n\r\n").encode())


def test_the_identity_presented():
    account = _account()
    assert presented_identity(_invite("P-Asserted-Identity: <sip:+27115550100@x>"), account) == "+27115550100"
    assert presented_identity(_invite("P-Preferred-Identity: <tel:0115550100>"), account) == "0115550100"
    assert (
        presented_identity(_invite(from_='"0115550100" <sip:alice@sip.test>;tag=1'), account) == "0115550100"
    )
    assert presented_identity(_invite(from_='"Alice" <sip:alice@sip.test>;tag=1'), account) is None
    assert presented_identity(_invite(from_="<sip:1001@sip.test>;tag=1"), account) is None  # its extension


def test_call_records_are_never_dropped_by_the_event_rate_cap(tmp_path):
    from sipsync.server.events import EventRecorder
    from sipsync.server.store import LocalStore

    with LocalStore(str(tmp_path / "s.sqlite3")) as store:
        recorder = EventRecorder(store, max_per_second=0)  # every rejection event is suppressed
        calls = CallTable(recorder, node_id="n1")
        calls.record_refused(code=404, cause="invalid_number", call_id="c", caller_tag="t", account="a@r",
                             customer="C1", dialled="12", number=None, call_class=None)  # fmt: skip
        store.flush()
        assert [e["kind"] for _, e in store.events_after(0)] == ["call"]
        assert recorder.max_per_second == 0
