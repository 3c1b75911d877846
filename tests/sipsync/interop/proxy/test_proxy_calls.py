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

    def command(scenario, *, local_port, user, keys=(), remote=None, transport="u1") -> list[str]:
        stem = f"sipp-{next(runs)}-{scenario}"
        args = [
            sipp, "-sf", str(SCENARIOS / f"{scenario}.xml"), "-m", "1",
            "-timeout", f"{TIMEOUT}s", "-timeout_error",
            "-trace_err", "-error_file", str(tmp_path / f"{stem}-errors.log"),
            "-trace_msg", "-message_file", str(tmp_path / f"{stem}-messages.log"),
            "-t", transport, "-i", "127.0.0.1", "-p", str(local_port), "-nostdin",
            "-au", user, "-ap", PASSWORDS[user], "-auth_uri", REALM,
            "-key", "user", user, "-key", "domain", REALM,
        ]  # fmt: skip
        for name, value in keys:
            args += ["-key", name, value]
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
