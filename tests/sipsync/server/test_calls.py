"""Calls in progress kept in the store, and the records they end in."""

import sqlite3
from datetime import UTC, datetime
from decimal import Decimal

import pytest

from sipsync.server.calls import CallTable, call_from_state, call_state
from sipsync.server.events import EventRecorder
from sipsync.server.rating import Rate
from sipsync.server.store import SCHEMA_VERSION, LocalStore

RATE = Rate({"prefix": "27", "price_per_minute": "0.60000", "connect_fee": "0.10000",
             "first_increment": 60, "next_increment": 60})  # fmt: skip


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
        dialled="0115550123", number="+27115550123", call_class="national", rate=RATE,
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


def test_record_ids_are_unique_within_a_run_and_across_restarts(table):
    calls, store, _ = table
    restarted = CallTable(EventRecorder(store), node_id="n1", store=store)
    ids = [start(calls, call_id=f"c{n}@x").record_id for n in range(3)]
    ids += [start(restarted, call_id=f"c{n}@x").record_id for n in range(3)]
    ids.append(calls.record_refused(code=404, cause="invalid_number", call_id="r@x", caller_tag="a",
                                    account="alice@sip.test", customer="C0000001", dialled="9",
                                    number=None, call_class=None)["record_id"])  # fmt: skip
    assert len(set(ids)) == len(ids)
    assert all(i.startswith("n1-") and len(i) <= 64 for i in ids)  # the portal keeps 64 characters


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
