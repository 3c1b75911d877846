"""The proxy driven by real phones: SIPp callers and callees against `python -m sipsync.server`.

A callee is two SIPp runs from the same port: `register.xml` (the binding's source is that
port, which is where the proxy sends calls), then a UAS scenario waiting for the relayed INVITE.
The caller runs while the callee waits; both must exit 0 (every expected message arrived, every
check in them held), and the node's spool must hold the call record.
"""

import subprocess
import time
from pathlib import Path

import pytest

from sipsync.server.documents import DocumentTable
from sipsync.server.provision import document_for_password, load_documents
from sipsync.server.store import LocalStore
from tests.sipsync.interop.conftest import REALM, SipService, free_port

SCENARIOS = Path(__file__).resolve().parent / "scenarios"
TIMEOUT = 15
PASSWORDS = {"alice": "Alice-Passw0rd", "bob": "Bob-Passw0rd"}


CUSTOMER = {
    "kind": "customer",
    "customer": "C0000001",
    "version": 1,
    "status": "active",
    "currency": "ZAR",
    "balance": "10.0000",
    "country_code": "27",
    "national_prefix": "0",
    "rate_plan": "Standard",
}
RATES = {
    "kind": "rates", "plan": "Standard", "version": 1, "currency": "ZAR",
    "rates": [{"prefix": "27", "description": "South Africa", "price_per_minute": "0.60000",
               "connect_fee": "0.10000", "first_increment": 60, "next_increment": 60,
               "effective_from": "2026-01-01T00:00:00Z", "effective_to": None}],
}  # fmt: skip


class ProxyService(SipService):
    """The node with two extensions of one customer (alice 1001, bob 1002), the customer's
    document (R10 balance) and its rate plan."""

    def preload(self) -> None:
        alice = document_for_password(
            "alice", REALM, PASSWORDS["alice"], extension="1001",
            caller_ids=["+27115550100"], default_caller_id="+27115550100",
        )  # fmt: skip
        bob = document_for_password("bob", REALM, PASSWORDS["bob"], extension="1002")
        load_documents(self.store, [alice, bob])
        with LocalStore(self.store) as store:
            documents = DocumentTable(store)
            documents.apply("customer", CUSTOMER)
            documents.apply("rates", RATES)
            store.flush()

    def records(self) -> list[dict]:
        """The call records spooled (read once the service has stopped)."""
        with LocalStore(self.store) as store:
            return [event for _, event in store.events_after(0) if event["kind"] == "call"]


@pytest.fixture
def trunk_port():
    return free_port()


@pytest.fixture
def proxy_service(tmp_path, trunk_port):
    workdir = tmp_path / "service"
    workdir.mkdir()
    service = ProxyService(workdir, ("--trunk", f"sip:127.0.0.1:{trunk_port}"))
    service.preload()
    service.start()
    yield service
    service.stop(kill=False)


@pytest.fixture
def sipp_command(sipp, tmp_path):
    runs = iter(range(1, 100))

    def command(scenario, *, local_port, user, keys=(), remote=None, transport="u1", calls=1) -> list[str]:
        stem = f"sipp-{next(runs)}-{scenario}"
        args = [
            sipp, "-sf", str(SCENARIOS / f"{scenario}.xml"), "-m", str(calls),
            "-timeout", f"{TIMEOUT}s", "-timeout_error",
            "-trace_err", "-error_file", str(tmp_path / f"{stem}-errors.log"),
            "-trace_msg", "-message_file", str(tmp_path / f"{stem}-messages.log"),
            "-t", transport, "-i", "127.0.0.1", "-p", str(local_port), "-nostdin",
            "-au", user, "-ap", PASSWORDS[user], "-auth_uri", REALM,
            "-key", "user", user, "-key", "domain", REALM,
        ]  # fmt: skip
        for name, value in keys:
            args += ["-key", name, value]
        if calls > 1:  # all at once, each in flight together (-l), from one SIPp process
            args += ["-l", str(calls), "-r", str(calls)]
        if remote is not None:
            args.append(remote)
        return args

    return command


def _logs(tmp_path) -> str:
    files = sorted(tmp_path.glob("sipp-*"))
    return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-4000:]}" for p in files)


def place_call(
    proxy_service,
    sipp_command,
    tmp_path,
    caller_scenario,
    callee_scenario,
    *,
    dialled="1002",
    callee_port=None,
    caller_transport="u1",
):
    """Register bob's phone (unless ``callee_port`` is the trunk's), run the callee scenario there,
    and the caller's against the proxy; returns the call records once the service stopped."""
    remote = f"127.0.0.1:{proxy_service.port}"
    if callee_port is None:
        callee_port = free_port()
        registered = subprocess.run(
            sipp_command("register", local_port=callee_port, user="bob", remote=remote),
            cwd=tmp_path, capture_output=True, text=True, timeout=TIMEOUT + 15,
        )  # fmt: skip
        assert registered.returncode == 0, _logs(tmp_path)
    callee = subprocess.Popen(
        sipp_command(callee_scenario, local_port=callee_port, user="bob"),
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        time.sleep(0.5)  # let it bind
        caller = subprocess.run(
            sipp_command(caller_scenario, local_port=free_port(), user="alice", keys=[("callee", dialled)],
                         remote=remote, transport=caller_transport),
            cwd=tmp_path, capture_output=True, text=True, timeout=TIMEOUT + 15,
        )  # fmt: skip
        callee_out, _ = callee.communicate(timeout=TIMEOUT + 15)
    finally:
        if callee.poll() is None:
            callee.kill()
            callee.wait()
    service_log = proxy_service.stderr_text()
    assert caller.returncode == 0, f"caller exit {caller.returncode}\n{_logs(tmp_path)}\n{service_log}"
    assert callee.returncode == 0, f"callee exit {callee.returncode}\n{_logs(tmp_path)}\n{callee_out[-2000:]}"
    time.sleep(0.6)  # one housekeeping round: the spool is flushed
    proxy_service.stop(kill=False)
    return proxy_service.records()


@pytest.mark.sipp
@pytest.mark.parametrize("caller_transport", ["u1", "t1"], ids=["udp", "tcp-caller"])
def test_extension_to_extension_call_with_bye(proxy_service, sipp_command, tmp_path, caller_transport):
    """The caller over UDP, or over TCP to a UDP callee (then the proxy record-routes twice)."""
    records = place_call(
        proxy_service,
        sipp_command,
        tmp_path,
        "caller_bye",
        "callee_answer",
        caller_transport=caller_transport,
    )
    [record] = records
    assert record["account"] == f"alice@{REALM}" and record["callee"] == f"bob@{REALM}"
    assert (record["call_class"], record["final_code"], record["cause"]) == ("internal", 200, "bye")
    assert record["answered_at"] and record["ended_at"] and record["cost"] == "0.0000"


@pytest.mark.sipp
def test_cancel_while_ringing_is_487(proxy_service, sipp_command, tmp_path):
    records = place_call(proxy_service, sipp_command, tmp_path, "caller_cancel", "callee_cancelled")
    [record] = records
    assert (record["final_code"], record["cause"], record["answered_at"]) == (487, "cancelled", None)


@pytest.mark.sipp
def test_call_to_a_number_goes_to_the_trunk_and_is_rated(proxy_service, sipp_command, tmp_path, trunk_port):
    records = place_call(
        proxy_service, sipp_command, tmp_path, "caller_bye", "trunk_answer",
        dialled="0115550123", callee_port=trunk_port,
    )  # fmt: skip
    [record] = records
    assert (record["number"], record["call_class"], record["final_code"]) == ("+27115550123", "national", 200)
    assert record["billed_seconds"] == 60 and record["cost"] == "0.7000"  # connect 0.10 + one minute


# --- little credit: the maximum duration, concurrent calls -------------------------------------

SHORT_RATES = {
    "kind": "rates", "plan": "Short", "version": 1, "currency": "ZAR",
    "rates": [{"prefix": "27", "description": "South Africa", "price_per_minute": "1.00000",
               "connect_fee": "0.00000", "first_increment": 1, "next_increment": 1,
               "effective_from": "2026-01-01T00:00:00Z", "effective_to": None}],
}  # fmt: skip
# R1.00 a minute billed per second: R0.05 pays for exactly 3 s
SHORT_CUSTOMER = {**CUSTOMER, "balance": "0.0500", "rate_plan": "Short"}


class ShortCreditService(ProxyService):
    """alice (up to 50 calls at once) of a customer whose R0.05 pays for 3 s at R1.00/min."""

    def preload(self) -> None:
        alice = document_for_password(
            "alice", REALM, PASSWORDS["alice"], extension="1001", max_calls=50,
            caller_ids=["+27115550100"], default_caller_id="+27115550100",
        )  # fmt: skip
        load_documents(self.store, [alice])
        with LocalStore(self.store) as store:
            documents = DocumentTable(store)
            documents.apply("customer", SHORT_CUSTOMER)
            documents.apply("rates", SHORT_RATES)
            store.flush()


@pytest.fixture
def short_credit_service(tmp_path, trunk_port):
    workdir = tmp_path / "short"
    workdir.mkdir()
    service = ShortCreditService(workdir, ("--trunk", f"sip:127.0.0.1:{trunk_port}"))
    service.preload()
    service.start()
    yield service
    service.stop(kill=False)


def run_against_trunk(service, sipp_command, tmp_path, trunk_port, caller, trunk, *, calls=1):
    """The trunk's scenario waits on ``trunk_port`` (one call); ``calls`` calls of the caller's run
    at once from one SIPp process. Returns (caller exit code, trunk exit code, seconds the caller
    ran, logs)."""
    remote = f"127.0.0.1:{service.port}"
    callee = subprocess.Popen(
        sipp_command(trunk, local_port=trunk_port, user="alice"),
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        time.sleep(0.5)
        started = time.monotonic()
        caller_run = subprocess.run(
            sipp_command(caller, local_port=free_port(), user="alice", keys=[("callee", "0115550123")],
                         remote=remote, calls=calls),
            cwd=tmp_path, capture_output=True, text=True, timeout=TIMEOUT + 15,
        )  # fmt: skip
        elapsed = time.monotonic() - started
        callee.communicate(timeout=TIMEOUT + 15)
    finally:
        if callee.poll() is None:
            callee.kill()
            callee.wait()
    logs = f"{_logs(tmp_path)}\n{caller_run.stdout[-3000:]}\n{service.stderr_text()[-3000:]}"
    time.sleep(0.6)  # one housekeeping round: the spool is flushed
    service.stop(kill=False)
    return caller_run.returncode, callee.returncode, elapsed, logs


@pytest.mark.sipp
def test_the_proxy_hangs_up_when_the_credit_runs_out(
    short_credit_service, sipp_command, tmp_path, trunk_port
):
    """R0.05 at R1.00/min per second: after 3 s the caller and the trunk both get the proxy's BYE."""
    caller, trunk, elapsed, logs = run_against_trunk(
        short_credit_service, sipp_command, tmp_path, trunk_port, "caller_credit", "trunk_credit"
    )
    assert (caller, trunk) == (0, 0), logs
    assert 1.5 + 3 <= elapsed < 1.5 + 3 + 3, logs  # answered after 1.5 s, hung up 3 s later
    [record] = short_credit_service.records()
    assert (record["cause"], record["final_code"]) == ("credit_exhausted", 200)
    assert (record["duration"], record["billed_seconds"], record["cost"]) == (3, 3, "0.0500")


@pytest.mark.sipp
def test_thirty_concurrent_calls_on_the_credit_of_one_connect_one(
    short_credit_service, sipp_command, tmp_path, trunk_port
):
    """30 calls at once from one account: one reaches the trunk (answered after 1.5 s, so all
    overlap) and is hung up when its credit runs out; the 29 others get 503 insufficient funds."""
    caller, trunk, _, logs = run_against_trunk(
        short_credit_service, sipp_command, tmp_path, trunk_port, "caller_credit", "trunk_credit", calls=30
    )
    assert (caller, trunk) == (0, 0), logs
    records = short_credit_service.records()
    assert len(records) == 30
    connected = [r for r in records if r["answered_at"]]
    assert [(r["cause"], r["cost"]) for r in connected] == [("credit_exhausted", "0.0500")]
    refused = [r for r in records if not r["answered_at"]]
    assert {(r["final_code"], r["cause"]) for r in refused} == {(503, "insufficient_funds")}
    assert len(refused) == 29


# --- a restart in the middle of a call ------------------------------------------------------------


@pytest.mark.sipp
def test_a_call_in_progress_survives_kill_9_as_one_record(proxy_service, sipp_command, tmp_path, trunk_port):
    """The node is killed (SIGKILL) while a trunk call is up and started again: the call is
    recorded once, cause node_restart; the caller's later BYE gets 481 (the dialog is gone)."""
    remote = f"127.0.0.1:{proxy_service.port}"
    trunk = subprocess.Popen(
        sipp_command("trunk_hold", local_port=trunk_port, user="alice"),
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        time.sleep(0.5)
        caller = subprocess.Popen(
            sipp_command("caller_restart", local_port=free_port(), user="alice",
                         keys=[("callee", "0115550123")], remote=remote),
            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        time.sleep(2.0)  # answered at once; in the store after the next group commit (< 0.5 s)
        proxy_service.restart(kill=True)
        caller_out, _ = caller.communicate(timeout=TIMEOUT + 15)
        trunk.communicate(timeout=TIMEOUT + 15)
    finally:
        for process in (trunk, caller):
            if process.poll() is None:
                process.kill()
                process.wait()
    logs = f"{_logs(tmp_path)}\n{caller_out[-2000:]}\n{proxy_service.stderr_text()[-3000:]}"
    assert (caller.returncode, trunk.returncode) == (0, 0), logs
    assert "closed out 1 call(s) left in progress" in proxy_service.stderr_text(), logs
    proxy_service.stop(kill=False)
    proxy_service.start()  # and once more: nothing is recorded twice
    proxy_service.stop(kill=False)
    [record] = proxy_service.records()
    assert (record["cause"], record["final_code"], record["number"]) == ("node_restart", 200, "+27115550123")
    assert record["answered_at"] and record["ended_at"] >= record["answered_at"]
    assert 1 <= record["duration"] <= 4  # ended at the last keepalive before the kill
    assert record["cost"] == "0.7000"  # connect 0.10 + one minute
