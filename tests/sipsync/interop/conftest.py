"""Fixtures that run the real SIP service (`python -m sipsync.server`) and drive it with SIPp.

Every test gets its own service process on a free port with its own store, preloaded with:

    alice / Secret-Passw0rd   enabled
    bob   / pw                password_change_required
    carol / pw2               disabled

SIPp and digest algorithms: SIPp 3.6.1 (Debian's sip-tester) reads only the first WWW-Authenticate
header of a 401 and can compute MD5 (and AKAv1-MD5) only ("createAuthHeader: authentication must use
MD5 or AKAv1-MD5" on a SHA-256-first challenge), as do many deployed phones, and Debian 12's baresip
refuses a 401 that names SHA-256 at all; that is why the service offers MD5 alone by default.
`sha256_first_service` is started with `--digest-algorithms SHA-256,MD5` to check that SHA-256
can be offered, and in the configured order.
"""

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import NamedTuple

import pytest

REPO_ROOT = Path(__file__).resolve().parents[3]
SCENARIOS = Path(__file__).resolve().parent / "scenarios"
REALM = "sip.test"
READY_PREFIX = "sipsync: listening"
READY_TIMEOUT = 15.0
SIPP_TIMEOUT = 15  # SIPp's own global timeout (seconds); subprocess.run gets a margin over it

ACCOUNTS = {
    "alice": ("Secret-Passw0rd", {}),
    "bob": ("pw", {"password_change_required": True}),
    "carol": ("pw2", {"enabled": False}),
}


def free_port() -> int:
    """A port free for both UDP and TCP on 127.0.0.1 (SIP listens on both)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind(("127.0.0.1", 0))
            port = udp.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return port
    raise RuntimeError("no port free for both UDP and TCP")


class SipService:
    """One `python -m sipsync.server` process; stdout and stderr go to files beside the store."""

    def __init__(self, workdir: Path, extra_args: tuple[str, ...] = ()) -> None:
        self.workdir = workdir
        self.port = free_port()
        self.store = str(workdir / "sip.sqlite3")
        self.realm = REALM
        self.extra_args = tuple(extra_args)
        self.process: subprocess.Popen | None = None
        self._runs = 0
        self._stdout_path: Path | None = None
        self._stderr_paths: list[Path] = []

    @property
    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "sipsync.server",
            "--listen",
            f"127.0.0.1:{self.port}",
            "--store",
            self.store,
            "--realm",
            self.realm,
            "--min-expires",
            "60",
            "--max-expires",
            "3600",
            "--log-level",
            "INFO",
            *self.extra_args,
        ]

    def preload(self) -> None:
        from sipsync.server.provision import document_for_password, load_documents

        documents = [
            document_for_password(user, REALM, password, version=1, **fields)
            for user, (password, fields) in ACCOUNTS.items()
        ]
        load_documents(self.store, documents)

    def start(self) -> None:
        self._runs += 1
        self._stdout_path = self.workdir / f"service-{self._runs}.stdout"
        stderr_path = self.workdir / f"service-{self._runs}.stderr"
        self._stderr_paths.append(stderr_path)
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        with open(self._stdout_path, "wb") as out, open(stderr_path, "wb") as err:
            self.process = subprocess.Popen(
                self.command, cwd=REPO_ROOT, stdout=out, stderr=err, stdin=subprocess.DEVNULL, env=env
            )
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            if self._stdout_path.read_text(errors="replace").startswith(READY_PREFIX):
                return
            if self.process.poll() is not None:
                break
            time.sleep(0.05)
        code = self.process.poll()
        self.stop(kill=True)
        pytest.fail(
            f"the SIP service did not print {READY_PREFIX!r} within {READY_TIMEOUT:.0f}s "
            f"(exit code {code})\ncommand: {' '.join(self.command)}\n"
            f"stdout:\n{self._stdout_path.read_text(errors='replace')}\nstderr:\n{self.stderr_text()}"
        )

    def stop(self, *, kill: bool = False) -> int | None:
        """SIGTERM (clean stop, store flushed) or SIGKILL; returns the exit code."""
        process, self.process = self.process, None
        if process is None:
            return None
        if process.poll() is None:
            process.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
        return process.returncode

    def restart(self, *, kill: bool = True) -> None:
        """Stop the service (SIGKILL by default: it must lose nothing it acknowledged) and start
        it again on the same port and store."""
        self.stop(kill=kill)
        self.start()

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stderr_text(self) -> str:
        """Everything the service logged, over all its runs."""
        return "".join(path.read_text(errors="replace") for path in self._stderr_paths if path.exists())


@pytest.fixture
def sipp() -> str:
    path = shutil.which("sipp")
    if path is None:
        pytest.skip("SIPp not installed: install the Debian package sip-tester")
    return path


@pytest.fixture
def pick_port():
    """The free-port picker (UDP and TCP), for a test that must know SIPp's local port."""
    return free_port


@pytest.fixture
def service_factory(tmp_path):
    """Start services with extra command-line arguments; all are stopped at teardown."""
    started: list[SipService] = []

    def start(*extra_args: str, name: str = "service") -> SipService:
        workdir = tmp_path / f"{name}-{len(started)}"
        workdir.mkdir()
        service = SipService(workdir, extra_args)
        service.preload()
        started.append(service)
        service.start()
        return service

    yield start
    for service in started:
        service.stop(kill=False)


@pytest.fixture
def sip_service(service_factory) -> SipService:
    """The service started with the documented command line only (MD5 challenge first)."""
    return service_factory()


@pytest.fixture
def sha256_first_service(service_factory) -> SipService:
    """The service configured to offer SHA-256 before MD5."""
    return service_factory("--digest-algorithms", "SHA-256,MD5")


class ScenarioResult(NamedTuple):
    returncode: int
    log: str  # SIPp's error file, then its message trace and screen output on failure


@pytest.fixture
def run_scenario(sipp, tmp_path):
    """run_scenario(name, port, *, transport='u1', keys={}, inf=None, extra=(), local_port=None)
    -> (returncode, log).

    One call (`-m 1`) of scenarios/<name>.xml against 127.0.0.1:port from `local_port` (a fresh
    free port by default); fails on SIPp's global timeout. `keys` become `-key name value`
    ([name] in the scenario); user/domain/line default to alice/sip.test/sipp, and the digest uri
    is set to sip:<domain>, the scenarios' Request-URI. `extra` is passed to SIPp as is (e.g.
    `-au`, `-ap`).
    """
    runs = 0

    def run(
        name: str,
        port: int,
        *,
        transport: str = "u1",
        keys: dict | None = None,
        inf: str | os.PathLike | None = None,
        extra: tuple | list = (),
        local_port: int | None = None,
    ) -> ScenarioResult:
        nonlocal runs
        runs += 1
        scenario = SCENARIOS / (name if name.endswith(".xml") else f"{name}.xml")
        stem = f"sipp-{runs}-{scenario.stem}"
        error_file = tmp_path / f"{stem}-errors.log"
        message_file = tmp_path / f"{stem}-messages.log"
        command = [
            sipp,
            "-sf", str(scenario),
            "-m", "1",
            "-timeout", f"{SIPP_TIMEOUT}s",
            "-timeout_error",
            "-trace_err", "-error_file", str(error_file),
            "-trace_msg", "-message_file", str(message_file),
            "-t", transport,
            "-i", "127.0.0.1",
            "-p", str(local_port or free_port()),
            "-nostdin",
        ]  # fmt: skip
        keys = {"user": "alice", "domain": REALM, "line": "sipp", **(keys or {})}
        for key, value in keys.items():
            command += ["-key", key, str(value)]
        # Digest uri = the Request-URI (sip:[domain] in every scenario), as a phone computes it;
        # SIPp's default would be sip:<remote ip>:<remote port>.
        command += ["-auth_uri", str(keys["domain"])]  # SIPp prefixes "sip:"
        if inf is not None:
            command += ["-inf", str(inf)]
        command += [*map(str, extra), f"127.0.0.1:{port}"]
        try:
            completed = subprocess.run(
                command, cwd=tmp_path, capture_output=True, text=True, timeout=SIPP_TIMEOUT + 15
            )
        except subprocess.TimeoutExpired as error:
            return ScenarioResult(-1, f"SIPp did not exit: {error}\n{_read(message_file)}")
        log = _read(error_file)
        if completed.returncode != 0:
            log += (
                f"\n--- command\n{' '.join(command)}"
                f"\n--- messages\n{_read(message_file)}"
                f"\n--- sipp output\n{completed.stdout[-3000:]}{completed.stderr[-3000:]}"
            )
        return ScenarioResult(completed.returncode, log)

    return run


def _read(path: Path) -> str:
    with contextlib.suppress(OSError):
        return path.read_text(errors="replace")
    return ""
