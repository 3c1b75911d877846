"""Voicemail and busy lamps with real phones: SIPp subscribers against `python -m sipsync.server`
with its control interface on, mailbox counts pushed through that interface, and a real call
(SIPp caller and callee) watched by a SIPp busy-lamp key.

Accounts of customer C0000001: alice 1001, bob 1002, dave 1004; eve 1002 of customer C0000002.
"""

import json
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from sipsync.server.provision import document_for_password, load_documents
from tests.sipsync.interop.conftest import REALM, SipService, free_port

SCENARIOS = Path(__file__).resolve().parent / "scenarios"
CALL_SCENARIOS = Path(__file__).resolve().parents[1] / "proxy" / "scenarios"
TIMEOUT = 15
SECRET = "interop-control-secret-0123456789"
PASSWORDS = {"alice": "Alice-Passw0rd", "bob": "Bob-Passw0rd", "dave": "Dave-Passw0rd", "eve": "Eve-Passw0rd"}
EXTENSIONS = {"alice": "1001", "bob": "1002", "dave": "1004", "eve": "1002"}


def account(user, version=1, **fields):
    customer = "C0000002" if user == "eve" else "C0000001"
    return document_for_password(
        user, REALM, PASSWORDS[user], version=version, extension=EXTENSIONS[user], customer=customer, **fields
    )


class EventsService(SipService):
    """The node with its control interface on a free port."""

    def __init__(self, workdir: Path) -> None:
        self.control_port = free_port()
        super().__init__(workdir, ("--control", f"127.0.0.1:{self.control_port}"))

    def preload(self) -> None:
        load_documents(self.store, [account(user) for user in PASSWORDS])

    def api(self, method: str, path: str, body=None) -> dict:
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.control_port}{path}",
            method=method,
            data=json.dumps(body).encode() if body is not None else None,
            headers={"Authorization": f"Bearer {SECRET}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            return json.loads(response.read())

    def wait_for_control(self) -> None:
        deadline = time.monotonic() + 10
        while True:
            try:
                self.api("GET", "/v1/health")
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def wait_for_subscription(self, aor: str, event: str) -> dict:
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            found = [
                s
                for s in self.api("GET", f"/v1/subscriptions?aor={aor}")["subscriptions"]
                if s["event"] == event
            ]
            if found:
                return found[0]
            time.sleep(0.05)
        raise AssertionError(f"no {event} subscription of {aor} appeared")


@pytest.fixture
def events_service(tmp_path, monkeypatch):
    monkeypatch.setenv("SIP_CONTROL_SECRET", SECRET)
    workdir = tmp_path / "service"
    workdir.mkdir()
    service = EventsService(workdir)
    service.preload()
    service.start()
    service.wait_for_control()
    yield service
    service.stop(kill=False)


@pytest.fixture
def sipp_command(sipp, tmp_path):
    runs = iter(range(1, 100))

    def command(scenario, *, user, remote=None, keys=(), local_port=None, directory=SCENARIOS) -> list[str]:
        stem = f"sipp-{next(runs)}-{scenario}"
        args = [
            sipp, "-sf", str(directory / f"{scenario}.xml"), "-m", "1",
            "-timeout", f"{TIMEOUT}s", "-timeout_error",
            "-trace_err", "-error_file", str(tmp_path / f"{stem}-errors.log"),
            "-trace_msg", "-message_file", str(tmp_path / f"{stem}-messages.log"),
            "-t", "u1", "-i", "127.0.0.1", "-p", str(local_port or free_port()), "-nostdin",
            "-au", user, "-ap", PASSWORDS[user], "-auth_uri", REALM,
            "-key", "user", user, "-key", "domain", REALM,
        ]  # fmt: skip
        for name, value in keys:
            args += ["-key", name, value]
        if remote is not None:
            args.append(remote)
        return args

    return command


def _logs(tmp_path, service) -> str:
    files = sorted(tmp_path.glob("sipp-*"))
    sipp_logs = "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-4000:]}" for p in files)
    return f"{sipp_logs}\n--- service\n{service.stderr_text()[-4000:]}"


def start(command, tmp_path) -> subprocess.Popen:
    return subprocess.Popen(
        command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )


def finish(process: subprocess.Popen) -> int:
    try:
        process.communicate(timeout=TIMEOUT + 15)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    return process.returncode


def run(command, tmp_path) -> int:
    return subprocess.run(
        command, cwd=tmp_path, capture_output=True, text=True, timeout=TIMEOUT + 15
    ).returncode


@pytest.mark.sipp
def test_mwi_subscribe_counts_pushed_refresh_and_unsubscribe(events_service, sipp_command, tmp_path):
    remote = f"127.0.0.1:{events_service.port}"
    phone = start(
        sipp_command(
            "mwi", user="alice", remote=remote, keys=[("target", "alice"), ("event", "message-summary")]
        ),
        tmp_path,
    )
    aor = f"alice@{REALM}"
    held = events_service.wait_for_subscription(aor, "message-summary")
    assert held["subscriber"] == held["target"] == aor and held["transport"] == "UDP"
    assert 3500 < held["expires_at"] - time.time() <= 3600
    pushed = events_service.api(
        "PUT", f"/v1/accounts/{aor}", account("alice", 2, mailbox={"new": 3, "old": 1})
    )
    assert pushed["applied"] is True
    assert finish(phone) == 0, _logs(tmp_path, events_service)
    assert events_service.api("GET", f"/v1/subscriptions?aor={aor}")["subscriptions"] == []


@pytest.mark.sipp
def test_blf_shows_a_real_call_trying_early_confirmed_terminated(events_service, sipp_command, tmp_path):
    """dave's busy-lamp key watches bob (1002); alice calls 1002, bob's phone rings, answers, and
    alice hangs up: dave gets one NOTIFY per state, in order (the scenario checks each body)."""
    remote = f"127.0.0.1:{events_service.port}"
    lamp = start(
        sipp_command("blf", user="dave", remote=remote, keys=[("target", "1002"), ("event", "dialog")]),
        tmp_path,
    )
    callee = None
    try:
        watched = events_service.wait_for_subscription(f"bob@{REALM}", "dialog")
        assert watched["subscriber"] == f"dave@{REALM}"
        bob_port = free_port()
        registered = run(
            sipp_command(
                "register", user="bob", remote=remote, local_port=bob_port, directory=CALL_SCENARIOS
            ),
            tmp_path,
        )
        assert registered == 0, _logs(tmp_path, events_service)
        callee = start(
            sipp_command("callee_answer", user="bob", local_port=bob_port, directory=CALL_SCENARIOS), tmp_path
        )
        time.sleep(0.5)  # let it bind
        caller = run(
            sipp_command(
                "caller_bye", user="alice", remote=remote, keys=[("callee", "1002")], directory=CALL_SCENARIOS
            ),
            tmp_path,
        )
        assert caller == 0, _logs(tmp_path, events_service)
        assert finish(callee) == 0, _logs(tmp_path, events_service)
        assert finish(lamp) == 0, _logs(tmp_path, events_service)
    finally:
        for process in (lamp, callee):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait()


@pytest.mark.sipp
def test_another_customers_extension_is_403(events_service, sipp_command, tmp_path):
    remote = f"127.0.0.1:{events_service.port}"
    keys = [("target", "eve"), ("event", "dialog")]
    assert run(sipp_command("blf_forbidden", user="dave", remote=remote, keys=keys), tmp_path) == 0, (
        _logs(tmp_path, events_service)
    )
    events = events_service.api("GET", "/v1/events?after=0")["events"]
    refused = [e for e in events if e.get("method") == "SUBSCRIBE"]
    assert [(e["code"], e["cause"], e["account"]) for e in refused] == [
        (403, "watch_other_customer", f"dave@{REALM}")
    ]


@pytest.mark.sipp
def test_unsupported_event_is_489(events_service, sipp_command, tmp_path):
    remote = f"127.0.0.1:{events_service.port}"
    assert (
        run(sipp_command("bad_event", user="alice", remote=remote, keys=[("target", "alice")]), tmp_path) == 0
    ), _logs(tmp_path, events_service)
