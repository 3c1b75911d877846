"""Fixtures for the softphone tests: the real node (`python -m sipsync.server`, default digest
settings, control interface on) and headless baresip phones registered through it.

The node holds three extensions of one customer:

    alice 1001   codecs PCMU, G729 (the default assignment)
    bob   1002   max_calls 1 (a second call to him is 486)
    carol 1003

Call records are read over the control interface (``GET /v1/records``), as the portal reads them.
"""

from __future__ import annotations

import secrets
import socket
import time
from pathlib import Path

import httpx
import pytest

from sipsync.server.documents import DocumentTable
from sipsync.server.provision import document_for_password, load_documents
from sipsync.server.store import LocalStore
from tests.sipsync.interop.conftest import REALM, SipService, free_port
from tests.sipsync.interop.softphone.baresip import (
    Baresip,
    PortTaken,
    find_binary,
    find_modules,
    write_tone,
)

PASSWORDS = {"alice": "Alice-Passw0rd", "bob": "Bob-Passw0rd", "carol": "Carol-Passw0rd"}
EXTENSIONS = {"alice": "1001", "bob": "1002", "carol": "1003"}
CUSTOMER = {
    "kind": "customer", "customer": "C0000001", "version": 1, "status": "active", "currency": "ZAR",
    "balance": "10.0000", "country_code": "27", "national_prefix": "0", "rate_plan": None,
}  # fmt: skip
CONTROL_TIMEOUT = 15.0


class SoftphoneNode(SipService):
    """The node with alice, bob and carol, the customer's document and the control interface."""

    def __init__(self, workdir: Path, extra_args: tuple[str, ...] = ()) -> None:
        self.control_port = free_port()
        self.secret = secrets.token_urlsafe(24)
        secret_file = workdir / "control.secret"
        secret_file.write_text(self.secret)
        super().__init__(
            workdir,
            (
                "--control", f"127.0.0.1:{self.control_port}", "--control-secret-file", str(secret_file),
                *extra_args,
            ),
        )  # fmt: skip

    def preload(self) -> None:
        documents = [
            document_for_password(
                user, REALM, PASSWORDS[user], extension=EXTENSIONS[user],
                **({"max_calls": 1} if user == "bob" else {}),
            )
            for user in PASSWORDS
        ]  # fmt: skip
        load_documents(self.store, documents)
        with LocalStore(self.store) as store:
            DocumentTable(store).apply("customer", CUSTOMER)
            store.flush()

    def start(self) -> None:
        super().start()
        deadline = time.monotonic() + CONTROL_TIMEOUT
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.control_port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.05)
        pytest.fail(f"the control interface did not listen on {self.control_port}\n{self.stderr_text()}")

    @property
    def proxy(self) -> str:
        return f"127.0.0.1:{self.port}"

    def records(self, *, expected: int = 1, timeout: float = 5.0) -> list[dict]:
        """Call records from ``GET /v1/records`` (not acknowledged); waits until there are
        ``expected`` of them (the node writes a record when the call ends)."""
        deadline = time.monotonic() + timeout
        while True:
            response = httpx.get(
                f"http://127.0.0.1:{self.control_port}/v1/records",
                params={"after": 0, "limit": 100},
                headers={"Authorization": f"Bearer {self.secret}"},
                timeout=5.0,
            )
            response.raise_for_status()
            records = response.json()["records"]
            if len(records) >= expected or time.monotonic() > deadline:
                return records
            time.sleep(0.1)


@pytest.fixture(scope="session")
def baresip_binary() -> tuple[str, Path]:
    binary, modules = find_binary(), find_modules()
    if binary is None:
        pytest.skip("baresip not installed: install the Debian package baresip (baresip-core is enough)")
    if modules is None:
        pytest.skip("baresip's modules (account, menu, ctrl_tcp, g711, g722, aufile, aubridge) not found: "
                    "install the Debian package baresip")  # fmt: skip
    return binary, modules


@pytest.fixture
def node(tmp_path) -> SoftphoneNode:
    workdir = tmp_path / "node"
    workdir.mkdir()
    service = SoftphoneNode(workdir)
    service.preload()
    service.start()
    yield service
    service.stop(kill=False)


def phone_ports() -> tuple[int, int]:
    """A SIP port (UDP and TCP) whose next port is free for TCP too (baresip binds TLS there),
    and a control port apart from both."""
    for _ in range(50):
        sip = free_port()
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tls:
            try:
                tls.bind(("127.0.0.1", sip + 1))
            except OSError:
                continue
        ctrl = free_port()
        if ctrl not in (sip, sip + 1):
            return sip, ctrl
    raise RuntimeError("no free ports for a phone")


@pytest.fixture
def phone(baresip_binary, node, tmp_path):
    """phone(name, ports=None, **extra_config) -> a started Baresip with no account yet, on
    ``ports`` ((SIP, ctrl), else free ones); all are stopped at teardown, before the node (so
    their de-registrations are answered). A test module may override ``node``."""
    binary, modules = baresip_binary
    tone = write_tone(tmp_path / "tone.wav")
    started: list[Baresip] = []

    def start(name: str, ports: tuple[int, int] | None = None, **extra_config: str) -> Baresip:
        for attempt in range(1, 4):
            sip_port, ctrl_port = ports or phone_ports()
            instance = Baresip(
                binary, modules, tmp_path / f"phone-{name}-{attempt}", name=name, sip_port=sip_port,
                ctrl_port=ctrl_port, tone=tone, extra_config=extra_config,
            )  # fmt: skip
            started.append(instance)
            try:
                instance.start()
            except PortTaken:
                if ports is not None or attempt == 3:
                    instance.fail(f"a port of {sip_port}, {sip_port + 1} (TLS), {ctrl_port} is taken")
                continue
            return instance
        raise AssertionError("unreachable")

    yield start
    for instance in reversed(started):
        instance.stop()


@pytest.fixture
def registered(node, phone):
    """registered(user, config={...}, **account options) -> a phone registered as ``user``
    through the node; ``config`` adds baresip config lines (e.g. call_max_calls)."""

    def start(user: str, *, config: dict[str, str] | None = None, **options) -> Baresip:
        instance = phone(user, **(config or {}))
        outcome = instance.register(user, PASSWORDS[user], proxy=node.proxy, realm=REALM, **options)
        if outcome["type"] != "REGISTER_OK":
            instance.fail(f"{user} did not register: {outcome}\n--- node log\n{node.stderr_text()[-4000:]}")
        return instance

    return start
