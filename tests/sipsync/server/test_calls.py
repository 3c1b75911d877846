"""Rating helpers for the maximum duration, and calls in progress kept in the store."""

import sqlite3
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from sipsync.server.calls import CallTable, call_from_state, call_state, max_seconds, rate_cost
from sipsync.server.events import EventRecorder
from sipsync.server.store import SCHEMA_VERSION, LocalStore


def rate(per_minute="0.60000", connect="0.10000", first=60, step=60):
    return {"prefix": "27", "price_per_minute": per_minute, "connect_fee": connect,
            "first_increment": first, "next_increment": step}  # fmt: skip


@pytest.mark.parametrize(
    ("the_rate", "available", "cap", "expected"),
    [
        (rate(), "0.7000", 7200, 60),  # exactly connect + one increment
        (rate(), "1.2999", 7200, 60),  # a cent short of the second
        (rate(), "1.3000", 7200, 120),
        (rate(), "0.6999", 7200, 0),  # not even the first
        (rate(), "1000", 7200, 7200),  # the cap
        (rate(first=30, step=6, connect="0"), "0.7500", 7200, 72),  # 30 s + seven 6 s steps at 1 c/s
        (rate(per_minute="1.00000", connect="0", first=1, step=1), "0.0500", 7200, 3),  # 3 s at 1/min
        (rate(per_minute="0.00000"), "0.1000", 500, 500),  # free per minute: the cap
        (rate(per_minute="0.00100", connect="0", first=1, step=1), "0.0001", 7200, 8),  # cost rounds half up
    ],
)
def test_max_seconds(the_rate, available, cap, expected):
    seconds = max_seconds(the_rate, Decimal(available), cap)
    assert seconds == expected
    if seconds:
        assert rate_cost(the_rate, seconds)[1] <= Decimal(available)
        if seconds < cap:  # one more increment would not be covered
            assert rate_cost(the_rate, seconds + 1)[1] > Decimal(available)


def test_what_the_max_duration_allows_is_what_rating_charges():
    """For many balances the longest call allowed costs at most the balance, and a second more
    would cost more."""
    for the_rate in (rate(), rate(first=30, step=6, connect="0.05000"), rate(per_minute="0.35000")):
        for cents in range(70, 2000, 37):
            available = Decimal(cents) / 100
            seconds = max_seconds(the_rate, available, 10**6)
            assert rate_cost(the_rate, seconds)[1] <= available < rate_cost(the_rate, seconds + 1)[1]


@pytest.fixture
def table(tmp_path):
    store = LocalStore(tmp_path / "s.sqlite3")
    clock = [1_800_000_000.0]
    calls = CallTable(EventRecorder(store), node_id="n1", store=store, clock=lambda: clock[0])
    yield calls, store, clock
    store.close()


def start(calls, **fields):
    return calls.start(
        call_id=fields.pop("call_id", "c1@x"), caller_tag="a", account="alice@sip.test", customer="C0000001",
        dialled="0115550123", number="+27115550123", call_class="national", rate=rate(),
        reserved=Decimal("1.3000"), max_duration=120, caller_hop=None, **fields,
    )  # fmt: skip


def test_calls_are_stored_from_the_invite_to_their_end_and_the_state_round_trips(table):
    calls, store, clock = table
    call = start(calls, caller_from="<sip:alice@sip.test>;tag=a", caller_route=("<sip:p1;lr>",))
    store.flush()
    [(record_id, ringing)] = store.load_calls()
    assert record_id == call.record_id and ringing["answered_at"] is None
    call.callee_tag, call.callee_to = "b", "<sip:+27115550123@t>;tag=b"
    calls.answer(call)
    store.flush()
    [(record_id, state)] = store.load_calls()
    assert record_id == call.record_id and state["answered_at"] == clock[0]
    again = call_from_state(state)
    assert call_state(again) == state
    assert again.reserved == Decimal("1.3000") and again.caller_route == ("<sip:p1;lr>",)
    calls.end(call, code=200, cause="bye")
    store.flush()
    assert store.load_calls() == []


def test_a_call_that_ends_before_the_group_commit_is_never_written(table):
    calls, store, _ = table
    calls.end(start(calls), code=487, cause="cancelled")
    store.flush()
    assert store.load_calls() == []


def test_the_group_commit_stores_a_call_as_it_is_then_once(table):
    calls, store, clock = table
    call = start(calls)
    calls.ringing(call)
    call.callee_tag = "b"
    calls.answer(call)
    store.flush()
    [(_, state)] = store.load_calls()
    assert state["answered_at"] == clock[0] and state["callee_tag"] == "b"


def test_a_state_that_cannot_be_serialised_does_not_stop_the_commit(table, caplog):
    calls, store, _ = table
    call = start(calls)
    store.put_call("broken", lambda: {"not json": object()})
    store.flush()
    assert [record_id for record_id, _ in store.load_calls()] == [call.record_id]
    assert "broken: its state could not be serialised" in caplog.text
    assert store.pending == 0


@pytest.mark.parametrize(
    ("alive_after_invite", "ended_after_invite"), [(None, 0), (-5, 0), (4, 4)], ids=["none", "stale", "noted"]
)
def test_a_call_ringing_at_the_restart_is_closed_out_unanswered_and_free(
    table, alive_after_invite, ended_after_invite
):
    """Ended at the last keepalive if the old process noted one after the INVITE, else at the
    INVITE (never at the restart, which may be much later); code 500, no cost."""
    calls, store, clock = table
    call = start(calls)
    invited = clock[0]
    store.flush()
    clock[0] += 600  # restarted ten minutes later
    last_alive = None if alive_after_invite is None else invited + alive_after_invite
    [record] = calls.close_out_after_restart(last_alive=last_alive)
    assert record["record_id"] == call.record_id
    assert (record["final_code"], record["cause"], record["answered_at"]) == (500, "node_restart", None)
    assert (record["duration"], record["billed_seconds"], record["cost"]) == (0, 0, "0.0000")
    expected = datetime.fromtimestamp(invited + ended_after_invite, UTC)
    assert datetime.fromisoformat(record["ended_at"].replace("Z", "+00:00")) == expected
    assert calls.unsettled("C0000001") == 0
    store.flush()
    assert store.load_calls() == []


def test_close_out_uses_the_restart_time_without_a_keepalive_and_caps_at_the_max_duration(table):
    calls, store, clock = table
    call = start(calls)
    calls.answer(call)
    store.flush()
    clock[0] += 1000  # restarted much later, no keepalive noted
    [record] = calls.close_out_after_restart(last_alive=None)
    assert record["cause"] == "node_restart" and record["duration"] == 120  # not 1000
    assert record["cost"] == "1.3000"
    store.flush()
    assert store.load_calls() == [] and calls.close_out_after_restart() == []


def test_a_keepalive_from_before_the_answer_is_ignored(table):
    calls, store, clock = table
    call = start(calls)
    calls.answer(call)
    store.flush()
    clock[0] += 50
    [record] = calls.close_out_after_restart(last_alive=clock[0] - 100)
    assert record["duration"] == 50


def test_a_version_1_store_gains_the_calls_table(tmp_path):
    path = tmp_path / "old.sqlite3"
    with LocalStore(path) as store:
        assert store.schema_version == SCHEMA_VERSION
    db = sqlite3.connect(path)
    db.execute("DROP TABLE calls_in_progress")
    db.execute("DROP TABLE subscriptions")
    db.execute("PRAGMA user_version = 1")
    db.commit()
    db.close()
    with LocalStore(path) as store:
        assert store.schema_version == SCHEMA_VERSION and store.load_calls() == []
        assert store.load_subscriptions() == []
        store.put_call("r1", lambda: {"x": 1})
        store.put_call("r2", lambda: {"x": 2})
        store.delete_call("r1")
        assert store.pending == 2
        store.flush()
        assert store.load_calls() == [("r2", {"x": 2})]
