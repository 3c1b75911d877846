"""A headless baresip (Debian package `baresip`, 1.0.x) driven over its ctrl_tcp module.

One :class:`Baresip` is one `baresip -f <dir>` process with its own config directory, a fixed
SIP port on 127.0.0.1 and a ctrl_tcp port. Nothing touches a sound card: the audio source is
`aufile` reading a generated 8 kHz tone, the player and the ringtone go to an `aubridge` device
nobody listens to. The process starts with no account; :meth:`Baresip.add_account` creates the
user agent with the `uanew` command once the control connection is up, so the REGISTERING /
REGISTER_OK / REGISTER_FAIL events it causes are all seen.

ctrl_tcp speaks netstrings (``<length>:<bytes>,``) of JSON both ways: a command is
``{"command": "dial", "params": "sip:1002@sip.test", "token": "7"}``, its response
``{"response": true, "ok": true, "data": "...", "token": "7"}``; events arrive unasked as
``{"event": true, "type": "CALL_ESTABLISHED", "class": "call", "id": <Call-ID>, "param": ...}``.
It serves one connection at a time, so each instance keeps exactly one open.

Every wait has a deadline; when it passes the test fails with what baresip printed (its log has
the SIP trace, ``-s``) and the events it sent, so a failure explains itself.
"""

from __future__ import annotations

import contextlib
import json
import math
import shutil
import socket
import struct
import subprocess
import threading
import time
import wave
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

MODULE_DIRS = ("/usr/lib/baresip/modules", "/usr/local/lib/baresip/modules", "/usr/lib64/baresip/modules")
# what the tests need from the build: the SIP account and command modules, the control socket,
# G.711 and G.722, a file source and a device-less player
REQUIRED_MODULES = ("account", "menu", "ctrl_tcp", "g711", "g722", "aufile", "aubridge")
START_TIMEOUT = 10.0
COMMAND_TIMEOUT = 10.0
EVENT_TIMEOUT = 10.0

# baresip's names for the codecs the tests offer (name/clock rate/channels, as its account
# parameter audio_codecs wants them: a name it does not know leaves the account with every codec)
CODECS = {"PCMU": "PCMU/8000/1", "PCMA": "PCMA/8000/1", "G722": "G722/16000/1"}


def find_binary() -> str | None:
    return shutil.which("baresip")


def find_modules() -> Path | None:
    """The module directory holding everything in REQUIRED_MODULES, or None."""
    for directory in map(Path, MODULE_DIRS):
        if all((directory / f"{name}.so").exists() for name in REQUIRED_MODULES):
            return directory
    return None


def write_tone(path: Path, seconds: int = 60) -> Path:
    """An 8 kHz mono 16-bit WAV of a 440 Hz tone: what the phones 'say' (G.711's own rate)."""
    rate = 8000
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        period = [int(6000 * math.sin(2 * math.pi * 440 * i / rate)) for i in range(rate // 40)]
        one_second = struct.pack(f"<{len(period)}h", *period) * 40
        out.writeframes(one_second * seconds)
    return path


class BaresipError(AssertionError):
    """A command answered ``ok: false``."""


class PortTaken(Exception):
    """baresip could not bind one of its ports (taken since they were picked): try others."""


class Baresip:
    def __init__(
        self,
        binary: str,
        modules: Path,
        workdir: Path,
        *,
        name: str,
        sip_port: int,
        ctrl_port: int,
        tone: Path,
        extra_config: dict[str, str] | None = None,
    ) -> None:
        self.binary = binary
        self.modules = modules
        self.name = name
        self.dir = workdir
        self.sip_port = sip_port
        self.ctrl_port = ctrl_port
        self.tone = tone
        self.extra_config = dict(extra_config or {})
        self.log_path = workdir / "baresip.log"
        self.process: subprocess.Popen | None = None
        self.events: list[dict[str, Any]] = []
        self._responses: dict[str, dict[str, Any]] = {}
        self._changed = threading.Condition()
        self._sock: socket.socket | None = None
        self._reader: threading.Thread | None = None
        self._tokens = iter(range(1, 1_000_000))
        self._closed = False

    # --- process ----------------------------------------------------------------------------

    def config_text(self) -> str:
        settings = {
            "poll_method": "epoll",
            "sip_listen": f"127.0.0.1:{self.sip_port}",  # baresip also binds TCP sip_port + 1 (TLS)
            "net_interface": "127.0.0.1",  # SDP and Contact on loopback, whatever the host's interfaces
            "audio_player": "aubridge,nowhere",
            "audio_alert": "aubridge,nowhere",
            "audio_source": f"aufile,{self.tone}",
            "rtp_timeout": "0",
            "module_path": str(self.modules),
            "ctrl_tcp_listen": f"127.0.0.1:{self.ctrl_port}",
            **self.extra_config,
        }
        lines = [f"{key}\t{value}" for key, value in settings.items()]
        lines += [f"module\t{name}.so" for name in ("g711", "g722", "aufile", "aubridge", "account")]
        lines += ["module_app\tmenu.so", "module_app\tctrl_tcp.so"]
        return "\n".join(lines) + "\n"

    def start(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "config").write_text(self.config_text())
        (self.dir / "accounts").write_text("")  # user agents come from add_account
        with open(self.log_path, "wb") as log:
            self.process = subprocess.Popen(
                [self.binary, "-f", str(self.dir), "-s"],  # -s: SIP trace in the log
                cwd=self.dir, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            )  # fmt: skip
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self.process.poll() is not None:
                if "Address already in use" in self.log():
                    raise PortTaken(self.log()[-2000:])
                self.fail(f"baresip exited with code {self.process.returncode} while starting")
            try:
                self._sock = socket.create_connection(("127.0.0.1", self.ctrl_port), timeout=1.0)
                break
            except OSError:
                if time.monotonic() > deadline:
                    self.fail(f"ctrl_tcp did not accept a connection on port {self.ctrl_port}")
                time.sleep(0.05)
        self._sock.settimeout(None)
        self._reader = threading.Thread(target=self._read, name=f"baresip-{self.name}", daemon=True)
        self._reader.start()
        # what answered may be another program on a port taken meanwhile (baresip carries on
        # without ctrl_tcp when it cannot listen): only baresip answers a command
        token = self._send("reginfo", "")
        if self._wait(lambda: self._responses.pop(token, None), START_TIMEOUT) is None:
            if "Address already in use" in self.log():
                raise PortTaken(self.log()[-2000:])
            self.fail(f"no answer to a command on ctrl_tcp port {self.ctrl_port}")

    def stop(self) -> None:
        """`quit`, then SIGTERM, then SIGKILL: whatever it takes, within a few seconds."""
        process = self.process
        if process is None:
            return
        if process.poll() is None:
            with contextlib.suppress(OSError, AssertionError):
                self._send("quit", "")
            try:
                process.wait(timeout=3)
            except subprocess.TimeoutExpired:
                process.terminate()
                try:
                    process.wait(timeout=3)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait(timeout=5)
        self._closed = True
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()
        if self._reader is not None:
            self._reader.join(timeout=2)

    def log(self) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")
        return ""

    def fail(self, message: str) -> None:
        events = "\n".join(json.dumps(e)[:400] for e in self.events[-40:])
        pytest.fail(
            f"[{self.name}] {message}\n--- events from {self.name}\n{events}\n"
            f"--- log of {self.name} ({self.log_path})\n{self.log()[-12000:]}",
            pytrace=False,
        )

    # --- the control connection -------------------------------------------------------------

    def _read(self) -> None:
        buffer = b""
        sock = self._sock
        assert sock is not None
        while True:
            try:
                data = sock.recv(65536)
            except OSError:
                data = b""
            if not data:
                with self._changed:
                    self._closed = True
                    self._changed.notify_all()
                return
            buffer += data
            while True:
                length, colon, rest = buffer.partition(b":")
                if not colon or not length.isdigit() or len(rest) < int(length) + 1:
                    break
                size = int(length)
                payload, buffer = rest[:size], rest[size + 1 :]
                try:
                    message = json.loads(payload)
                except ValueError:
                    continue
                with self._changed:
                    if message.get("response"):
                        self._responses[str(message.get("token"))] = message
                    elif message.get("event"):
                        self.events.append(message)
                    self._changed.notify_all()

    def _send(self, command: str, params: str) -> str:
        token = str(next(self._tokens))
        data = json.dumps({"command": command, "params": params, "token": token}).encode()
        assert self._sock is not None
        self._sock.sendall(str(len(data)).encode() + b":" + data + b",")
        return token

    def command(self, command: str, params: str = "", *, timeout: float = COMMAND_TIMEOUT) -> str:
        """Run a menu command; returns what it printed (``data``)."""
        token = self._send(command, params)
        response = self._wait(lambda: self._responses.pop(token, None), timeout)
        if response is None:
            self.fail(f"no response to {command} {params!r} within {timeout:.0f}s")
        if not response.get("ok"):
            raise BaresipError(f"[{self.name}] {command} {params!r} failed: {response.get('data')!r}")
        return str(response.get("data") or "")

    def wait_event(
        self,
        kind: str,
        *,
        timeout: float = EVENT_TIMEOUT,
        after: int = 0,
        where: Callable[[dict[str, Any]], bool] = lambda event: True,
    ) -> dict[str, Any]:
        """The first event of type ``kind`` (among events[after:]) that ``where`` accepts."""

        def find() -> dict[str, Any] | None:
            return next(
                (e for e in self.events[after:] if e.get("type") == kind and where(e)),
                None,
            )

        event = self._wait(find, timeout)
        if event is None:
            self.fail(f"no {kind} event within {timeout:.0f}s")
        return event  # type: ignore[return-value]

    def mark(self) -> int:
        """A position in the event list, for waits that must ignore what came before."""
        with self._changed:
            return len(self.events)

    def _wait(self, probe: Callable[[], Any], timeout: float) -> Any:
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                found = probe()
                if found is not None:
                    return found
                left = deadline - time.monotonic()
                if left <= 0 or self._closed:
                    return probe()
                if self.process is not None and self.process.poll() is not None:
                    self.fail(f"baresip exited with code {self.process.returncode}")
                self._changed.wait(min(left, 0.2))

    # --- phone actions ----------------------------------------------------------------------

    def add_account(
        self,
        user: str,
        password: str | None = None,
        *,
        proxy: str | None,
        realm: str,
        transport: str = "udp",
        codecs: tuple[str, ...] = ("PCMU",),
        answermode: str = "manual",
    ) -> str:
        """Create the user agent, which registers at once through ``proxy`` (host:port; None: a
        user agent that does not register, e.g. a trunk's); returns its AOR. ``codecs`` are the
        only ones it offers and accepts."""
        aor = f"sip:{user}@{realm}"
        line = f"<{aor}>;answermode={answermode};audio_codecs={','.join(CODECS[c] for c in codecs)}"
        if proxy is None:
            line += ";regint=0"
        else:
            outbound = f"sip:{proxy}" + (f";transport={transport}" if transport != "udp" else "")
            line += f';auth_pass={password};outbound="{outbound}";regint=600'
        self.command("uanew", line)
        return aor

    def register(self, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """:meth:`add_account` and wait for the outcome: the REGISTER_OK or REGISTER_FAIL event."""
        start = self.mark()
        self.add_account(*args, **kwargs)
        return self._wait_register(start)

    def _wait_register(self, start: int) -> dict[str, Any]:
        def outcome() -> dict[str, Any] | None:
            return next(
                (e for e in self.events[start:] if e.get("type") in ("REGISTER_OK", "REGISTER_FAIL")),
                None,
            )

        event = self._wait(outcome, EVENT_TIMEOUT)
        if event is None:
            self.fail(f"neither REGISTER_OK nor REGISTER_FAIL within {EVENT_TIMEOUT:.0f}s")
        return event

    def dial(self, target: str) -> int:
        """Dial ``target`` (a SIP URI); returns the event mark to wait from."""
        start = self.mark()
        self.command("dial", target)
        return start

    def call_event(self, kind: str, *, after: int = 0, timeout: float = EVENT_TIMEOUT) -> dict[str, Any]:
        return self.wait_event(kind, after=after, timeout=timeout)

    def closed(self, *, after: int = 0, call: str | None = None, timeout: float = EVENT_TIMEOUT) -> str:
        """Wait for CALL_CLOSED (of the call with Call-ID ``call``, if given); returns its reason
        (e.g. ``488 Not Acceptable Here``)."""
        event = self.wait_event(
            "CALL_CLOSED", after=after, timeout=timeout, where=lambda e: call is None or e.get("id") == call
        )
        return str(event.get("param") or "")

    def audio_codecs(self) -> tuple[str | None, str | None]:
        """The (encoder, decoder) the current call's audio stream runs, from ``audio_debug``."""
        text = self.command("audio_debug")
        encode = decode = None
        for line in text.splitlines():
            words = line.split()
            if "encode:" in words and len(words) > words.index("encode:") + 1:
                encode = words[words.index("encode:") + 1]
            if "decode:" in words and len(words) > words.index("decode:") + 1:
                decode = words[words.index("decode:") + 1]
        return encode, decode
