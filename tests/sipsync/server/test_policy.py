"""Rating, reservations and caller-ID rules of the policy, without SIP traffic."""

from decimal import Decimal

import pytest

from sipsync.server.accounts import Account
from sipsync.server.calls import CallTable, Reservations, find_rate, first_charge, rate_cost
from sipsync.server.policy import presented_identity
from sipsync.server.provision import document_for_password
from sipsync.sip.parser import parse_message

RATE = {
    "prefix": "27",
    "price_per_minute": "0.60000",
    "connect_fee": "0.10000",
    "first_increment": 60,
    "next_increment": 60,
}


@pytest.mark.parametrize(
    ("seconds", "billed", "cost"),
    [
        (0, 0, "0.0000"),
        (0.2, 60, "0.7000"),
        (60, 60, "0.7000"),
        (61, 120, "1.3000"),
        (120, 120, "1.3000"),
        (121, 180, "1.9000"),
    ],
)
def test_cost_rounds_up_to_the_next_increment(seconds, billed, cost):
    assert rate_cost(RATE, seconds) == (billed, Decimal(cost))


def test_cost_with_a_short_next_increment_and_half_up_rounding():
    rate = {
        **RATE,
        "price_per_minute": "0.33333",
        "connect_fee": "0",
        "first_increment": 30,
        "next_increment": 6,
    }
    assert rate_cost(rate, 31) == (36, Decimal("0.2000"))  # 0.33333 * 36/60 = 0.199998
    assert rate_cost(rate, 10) == (30, Decimal("0.1667"))  # 0.166665 -> half up


def test_first_charge_is_connect_fee_plus_first_increment():
    assert first_charge(RATE) == Decimal("0.7000")


def test_longest_prefix_in_effect_wins():
    plan = {
        "rates": [
            {**RATE, "prefix": "27", "effective_from": "2026-01-01T00:00:00Z", "effective_to": None},
            {**RATE, "prefix": "2782", "effective_from": "2026-01-01T00:00:00Z", "effective_to": None},
            {**RATE, "prefix": "27821", "effective_from": "2030-01-01T00:00:00Z", "effective_to": None},
        ]
    }
    now = 1_800_000_000  # 2027-01-15
    assert find_rate(plan, "27821234567", now)["prefix"] == "2782"
    assert find_rate(plan, "27115550100", now)["prefix"] == "27"
    assert find_rate(plan, "44123", now) is None
    assert find_rate(None, "27115550100", now) is None


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
