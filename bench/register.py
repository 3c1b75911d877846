"""REGISTER+digest benchmark: our SIP service against Kamailio, driven by SIPp, in one run.

    .venv/bin/python bench/register.py                      # 20 s per server, 10,000 users
    .venv/bin/python bench/register.py --bindings 100000    # also: RSS with 100,000 bindings
    .venv/bin/python bench/register.py --help

For each server the same closed-loop SIPp load (REGISTER, 401, REGISTER with credentials, 200;
at most --limit registrations in flight) runs for --duration seconds, the server pinned to one
CPU and SIPp to another. Reported per server: completed registrations per second (SIPp's own
periodic counters, after a warm-up), the server's CPU time per registration (utime+stime from
/proc, summed over all of the server's processes), the server's CPU utilisation (to tell whether
the server or the load generator was the bottleneck) and latency percentiles (SIPp's per-call
response-time trace). A short open-loop run at a fixed, modest rate then gives the latency of
an unloaded server. See docs/benchmarks.md.

Everything listens on 127.0.0.1 only; every process this script starts is in its own process
group and is ended on exit, error or Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import datetime
import itertools
import json
import math
import os
import platform
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
SCENARIO = BENCH_DIR / "register-digest.xml"
KAMAILIO_CFG = BENCH_DIR / "kamailio-registrar.cfg"
HOST = "127.0.0.1"
REALM = "127.0.0.1"  # the domain SIPp puts in From/To; both servers challenge with it
FIRST_USER = 1000
CLK_TCK = os.sysconf("SC_CLK_TCK")


def say(text: str = "") -> None:
    print(text, flush=True)


# --------------------------------------------------------------------------------------------
# Tools: install what is missing when we can


def apt_install(package: str) -> bool:
    """Install a Debian package when running as root with apt-get; True when it worked."""
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        return False
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    command = ["apt-get", "install", "-y", "-q", package]
    say(f"  installing {package}: {' '.join(command)}")
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        say("  install failed; running apt-get update and trying again")
        subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True, timeout=600)
        done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        say(f"  could not install {package}: {(done.stderr or done.stdout).strip().splitlines()[-1:]}")
    return done.returncode == 0


def ensure_tool(binary: str, package: str, *, install: bool) -> str | None:
    found = shutil.which(binary) or (f"/usr/sbin/{binary}" if Path(f"/usr/sbin/{binary}").exists() else None)
    if found is None and install and apt_install(package):
        found = shutil.which(binary) or (
            f"/usr/sbin/{binary}" if Path(f"/usr/sbin/{binary}").exists() else None
        )
    return found


def tool_version(command: list[str]) -> str:
    try:
        out = subprocess.run(command, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    for line in (out.stdout + out.stderr).splitlines():
        if line.strip():
            return line.strip()
    return "?"


# --------------------------------------------------------------------------------------------
# Processes: start in their own group, read their CPU and memory from /proc, stop them


class Managed:
    """A child process in its own session/process group, stopped (group-wide) on close()."""

    registry: list[Managed] = []

    def __init__(self, name: str, argv: list[str], *, log_path: Path, cwd: Path, stdout_pipe: bool = False):
        self.name = name
        self.argv = argv
        self.log_path = log_path
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in close()
        self.proc = subprocess.Popen(
            argv,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE if stdout_pipe else self._log,
            stderr=self._log,
            start_new_session=True,
        )
        self.pgid = self.proc.pid
        Managed.registry.append(self)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def pids(self) -> list[int]:
        return group_pids(self.pgid)

    def close(self, timeout: float = 8.0) -> int | None:
        if self.alive() or group_pids(self.pgid):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pgid, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline and (self.alive() or group_pids(self.pgid)):
                time.sleep(0.05)
            if self.alive() or group_pids(self.pgid):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.pgid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self._log.close()
        if self in Managed.registry:
            Managed.registry.remove(self)
        return self.proc.returncode

    @classmethod
    def close_all(cls) -> None:
        for managed in list(reversed(cls.registry)):
            with contextlib.suppress(Exception):
                managed.close(timeout=3.0)


def _stat_fields(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the command name (field 2) may hold spaces; everything after its closing paren is fixed
    return raw[raw.rindex(")") + 2 :].split()


def group_pids(pgid: int) -> list[int]:
    """Live (non-zombie) processes of a process group."""
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        fields = _stat_fields(int(entry))
        # after the paren: state(0) ppid(1) pgrp(2)
        if fields and fields[2] == str(pgid) and fields[0] != "Z":
            pids.append(int(entry))
    return pids


def cpu_seconds(pids: list[int]) -> float:
    """utime+stime of the given processes (each covers all of its threads)."""
    total = 0
    for pid in pids:
        fields = _stat_fields(pid)
        if fields:
            total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15 of stat)
    return total / CLK_TCK


def snapshot_processes() -> dict[int, tuple[str, int, int]]:
    """pid -> (command name, parent pid, utime+stime ticks) for every process."""
    out = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            raw = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        name = raw[raw.index("(") + 1 : raw.rindex(")")]
        fields = raw[raw.rindex(")") + 2 :].split()
        out[int(entry)] = (name, int(fields[1]), int(fields[11]) + int(fields[12]))
    return out


def other_consumers(
    before: dict[int, tuple[str, int, int]],
    after: dict[int, tuple[str, int, int]],
    exclude: set[int],
    wall: float,
) -> tuple[float, float, list[tuple[str, float]]]:
    """CPU (in cores) of kernel threads and of other processes between two snapshots, and the
    biggest other consumers by name."""
    kernel = other = 0.0
    by_name: dict[str, float] = {}
    for pid, (name, ppid, ticks) in after.items():
        if pid in exclude:
            continue
        used = (ticks - before.get(pid, (name, ppid, 0))[2] if pid in before else ticks) / CLK_TCK / wall
        if used <= 0:
            continue
        if pid == 2 or ppid == 2:
            kernel += used
            name = "kernel:" + name.split("/")[0]
        else:
            other += used
        by_name[name] = by_name.get(name, 0.0) + used
    top = [item for item in sorted(by_name.items(), key=lambda item: -item[1])[:4] if item[1] >= 0.01]
    return kernel, other, top


def status_kib(pid: int, key: str) -> int | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def core_busy() -> dict[str, tuple[int, int, int]]:
    """(busy in tasks, busy in interrupts, total) jiffies per CPU from /proc/stat.

    Interrupt time (irq, softirq) is kept apart: the kernel's loopback packet processing lands
    there and is charged to no process, so it is neither the server's nor anyone else's.
    """
    out = {}
    for line in Path("/proc/stat").read_text().splitlines():
        if line.startswith("cpu") and line[3:4].isdigit():
            name, *values = line.split()
            n = [int(v) for v in values] + [0] * 8
            user, nice, system, idle, iowait, irq, softirq, steal = n[:8]
            total = user + nice + system + idle + iowait + irq + softirq + steal
            out[name] = (user + nice + system + steal, irq + softirq, total)
    return out


def udp_counters() -> dict[str, int]:
    lines = [
        line.split() for line in Path("/proc/net/snmp").read_text().splitlines() if line.startswith("Udp:")
    ]
    if len(lines) < 2:
        return {}
    return {k: int(v) for k, v in zip(lines[0][1:], lines[1][1:], strict=False)}


# --------------------------------------------------------------------------------------------
# Users


def user_names(count: int) -> list[str]:
    return [f"u{FIRST_USER + i}" for i in range(count)]


def password_of(user: str) -> str:
    return "pw" + user


def write_injection_files(users: list[str], directory: Path, parts: int, stem: str) -> list[Path]:
    """SIPp injection files: users dealt round-robin into `parts` files (one per SIPp process)."""
    paths = []
    for part in range(parts):
        path = directory / f"{stem}-{part + 1}-of-{parts}.csv"
        with open(path, "w", encoding="ascii") as handle:
            handle.write("SEQUENTIAL\n")
            for user in users[part::parts]:
                handle.write(
                    f"{user};[authentication username={user} password={password_of(user)}];{REALM}\n"
                )
        paths.append(path)
    return paths


def provision_store(store_path: Path, users: list[str]) -> float:
    """Write the accounts into our service's store (while it is stopped); returns seconds taken."""
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))
    from sipsync.server.provision import document_for_password, load_documents

    started = time.monotonic()
    applied, ignored = load_documents(
        str(store_path),
        (document_for_password(u, REALM, password_of(u), version=1, max_contacts=5) for u in users),
    )
    if applied != len(users):
        raise RuntimeError(f"provisioning applied {applied} of {len(users)} accounts ({ignored} ignored)")
    return time.monotonic() - started


# --------------------------------------------------------------------------------------------
# Servers


def options_probe(port: int, timeout: float) -> int | None:
    """Send OPTIONS over UDP until a final response arrives; its status code, or None."""
    deadline = time.monotonic() + timeout
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((HOST, 0))
        local_port = sock.getsockname()[1]
        sock.settimeout(0.25)
        while time.monotonic() < deadline:
            call_id = uuid.uuid4().hex
            message = (
                f"OPTIONS sip:{HOST}:{port} SIP/2.0\r\n"
                f"Via: SIP/2.0/UDP {HOST}:{local_port};branch=z9hG4bK{call_id[:16]};rport\r\n"
                "Max-Forwards: 70\r\n"
                f"From: <sip:probe@{REALM}>;tag={call_id[16:24]}\r\n"
                f"To: <sip:{HOST}:{port}>\r\n"
                f"Call-ID: {call_id}\r\n"
                "CSeq: 1 OPTIONS\r\n"
                "Content-Length: 0\r\n\r\n"
            ).encode()
            with contextlib.suppress(OSError):
                sock.sendto(message, (HOST, port))
            try:
                data = sock.recv(65535)
            except (TimeoutError, ConnectionRefusedError, OSError):
                time.sleep(0.1)
                continue
            parts = data.split(b" ", 2)
            if len(parts) >= 2 and parts[0] == b"SIP/2.0" and parts[1].isdigit() and int(parts[1]) >= 200:
                return int(parts[1])
    return None


def other_load(seconds: float = 1.0) -> float:
    """CPU in use on the whole machine (in cores) over `seconds`."""
    before = core_busy()
    time.sleep(seconds)
    after = core_busy()
    used = 0.0
    for core, (busy_b, irq_b, total_b) in after.items():
        busy_a, irq_a, total_a = before.get(core, (busy_b, irq_b, total_b))
        if total_b > total_a:
            used += (busy_b - busy_a + irq_b - irq_a) / (total_b - total_a)
    return used


def wait_for_quiet(limit: float, patience: float) -> None:
    """Before a measurement: wait (up to `patience` s) until other processes use under `limit` cores."""
    deadline = time.monotonic() + patience
    used = other_load()
    if used < limit:
        return
    say(
        f"  the machine is busy ({used:.0%} of a core in use by other processes);"
        f" waiting up to {patience:g} s"
    )
    while time.monotonic() < deadline:
        used = other_load(2.0)
        if used < limit:
            say(f"  quiet now ({used:.0%})")
            return
    say(f"  still busy ({used:.0%} of a core); measuring anyway: expect disturbed figures")


def port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.bind((HOST, port))
        except OSError:
            return False
    return True


def pin(cpus: str | None) -> list[str]:
    return ["taskset", "-c", cpus] if cpus is not None else []


@dataclass
class Server:
    label: str
    port: int
    managed: Managed
    main_pid: int

    def pids(self) -> list[int]:
        return self.managed.pids()

    def cpu(self) -> float:
        return cpu_seconds(self.pids())


def kamailio_module_dir() -> str | None:
    candidates = [Path("/usr/lib/x86_64-linux-gnu/kamailio/modules")]
    candidates += sorted(Path("/usr/lib").glob("*/kamailio/modules")) + [
        Path("/usr/lib/kamailio/modules"),
        Path("/usr/local/lib64/kamailio/modules"),
        Path("/usr/local/lib/kamailio/modules"),
    ]
    for candidate in candidates:
        if (candidate / "registrar.so").exists():
            return str(candidate) + "/"
    return None


def start_kamailio(binary: str, port: int, workdir: Path, cpus: str | None, cfg_source: Path) -> Server:
    text = cfg_source.read_text()
    text = text.replace(f"listen=udp:{HOST}:5070", f"listen=udp:{HOST}:{port}")
    modules = kamailio_module_dir()
    if modules:
        text = text.replace('mpath="/usr/lib/x86_64-linux-gnu/kamailio/modules/"', f'mpath="{modules}"')
    cfg = workdir / "kamailio-registrar.cfg"
    cfg.write_text(text)
    check = subprocess.run([binary, "-c", "-f", str(cfg)], capture_output=True, text=True, timeout=30)
    if check.returncode != 0:
        raise RuntimeError("kamailio rejected its config:\n" + (check.stderr or check.stdout)[-2000:])
    # -DD: the creator process stays in the foreground (and in our process group) with its workers
    argv = pin(cpus) + [binary, "-f", str(cfg), "-DD", "-E", "-w", str(workdir), "-P", str(workdir / "k.pid")]
    managed = Managed("kamailio", argv, log_path=workdir / "kamailio.log", cwd=workdir)
    if options_probe(port, 15.0) is None or not managed.alive():
        tail = (workdir / "kamailio.log").read_text(errors="replace")[-2000:]
        managed.close()
        raise RuntimeError("kamailio did not answer OPTIONS:\n" + tail)
    return Server("Kamailio", port, managed, managed.proc.pid)


def _drain(pipe, path: Path, already: bytes) -> None:
    os.set_blocking(pipe.fileno(), True)
    with contextlib.suppress(OSError, ValueError), open(path, "wb") as out:
        out.write(already)
        for chunk in iter(lambda: pipe.read1(65536), b""):
            out.write(chunk)
            out.flush()


_OUR_STARTS = itertools.count(1)


def start_ours(python: str, port: int, store: Path, workdir: Path, cpus: str | None, digest: str) -> Server:
    if not (REPO_ROOT / "sipsync" / "server" / "__main__.py").exists():
        raise RuntimeError("sipsync/server/__main__.py does not exist yet")
    argv = [python, "-m", "sipsync.server", "--listen", f"{HOST}:{port}", "--store", str(store)]
    argv += ["--realm", REALM, "--log-level", "WARNING"]
    help_text = subprocess.run(
        [python, "-m", "sipsync.server", "--help"], capture_output=True, text=True, cwd=REPO_ROOT, timeout=60
    ).stdout
    if digest and "--digest-algorithms" in help_text:
        argv += ["--digest-algorithms", digest]
    start_no = next(_OUR_STARTS)
    log_path = workdir / f"sipsync-{start_no}.log"
    managed = Managed("sipsync", pin(cpus) + argv, log_path=log_path, cwd=REPO_ROOT, stdout_pipe=True)
    # The contract: a line starting with "sipsync: listening" on stdout once the sockets are bound.
    os.set_blocking(managed.proc.stdout.fileno(), False)
    seen = b""
    deadline = time.monotonic() + 60.0
    while time.monotonic() < deadline and b"sipsync: listening" not in seen and managed.alive():
        with contextlib.suppress(BlockingIOError, TypeError):
            seen += managed.proc.stdout.read() or b""
        time.sleep(0.05)
    if b"sipsync: listening" not in seen or options_probe(port, 15.0) is None:
        tail = log_path.read_text(errors="replace")[-2000:]
        managed.close()
        raise RuntimeError(f"our service did not come up (stdout {seen[-500:]!r}):\n{tail}")
    # Keep draining its stdout (into sipsync.stdout) so that a later print never blocks or breaks.
    threading.Thread(
        target=_drain, args=(managed.proc.stdout, workdir / f"sipsync-{start_no}.stdout", seen), daemon=True
    ).start()
    return Server("ours (sipsync)", port, managed, managed.proc.pid)


# --------------------------------------------------------------------------------------------
# SIPp runs and their results


@dataclass
class SippOutcome:
    stats_rows: list[dict[str, str]]
    rtt_ms: dict[int, list[int]]  # rtd number -> response times (ms)
    returncode: int | None
    screen_tail: str
    errors_tail: str
    stderr_tail: str


def parse_stat_file(path: Path) -> list[dict[str, str]]:
    if not path.exists():
        return []
    with open(path, newline="", encoding="latin-1") as handle:
        return list(csv.DictReader(handle, delimiter=";"))


def row_time(row: dict[str, str]) -> float:
    # "2026-11-24\t08:16:45.589171\t1795508205.589171": the last tab-separated part is epoch seconds
    return float(row["CurrentTime"].split("\t")[-1])


def row_int(row: dict[str, str], key: str) -> int:
    try:
        return int(row.get(key) or 0)
    except ValueError:
        return 0


def parse_rtt_files(paths: list[Path], since_ms: float = 0.0) -> dict[int, list[int]]:
    """Response times by rtd number, from SIPp's -trace_rtt files, left out before `since_ms`.

    A line is "Date_ms;response_time_ms;rtd_no": when the response came (ms since SIPp started),
    the time it measured (whole milliseconds) and which counter.
    """
    out: dict[int, list[int]] = {}
    for path in paths:
        with open(path, encoding="latin-1") as handle:
            next(handle, None)  # header: Date_ms;response_time_ms;rtd_no
            for line in handle:
                parts = line.strip().split(";")
                if len(parts) < 3 or not parts[1].lstrip("-").isdigit() or not parts[2].isdigit():
                    continue
                with contextlib.suppress(ValueError):
                    if float(parts[0]) < since_ms:
                        continue
                    out.setdefault(int(parts[2]), []).append(int(parts[1]))
    return out


def tail_of(path: Path, chars: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-chars:]
    except OSError:
        return ""


def percentile(values: list[int] | list[float], pct: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    rank = max(0, math.ceil(pct / 100.0 * len(ordered)) - 1)
    return float(ordered[rank])


@dataclass
class RunResult:
    server: str
    label: str
    registrations: int = 0
    failed: int = 0
    retransmissions: int = 0
    rate: float = 0.0  # completed registrations/s in the steady window
    window: float = 0.0
    server_cpu_window: float = 0.0
    server_util: float = 0.0
    cpu_us_per_reg: float | None = None
    sipp_util: float = 0.0
    kernel_thread_util: float = 0.0  # kernel threads (ksoftirqd: deferred packet handling), cores
    top_others: list[tuple[str, float]] = field(default_factory=list)
    irq_util: float = 0.0  # interrupt/softirq time, all CPUs (cores): mostly loopback packet handling
    other_util: float = 0.0  # CPU used by processes that are neither the server nor SIPp (cores)
    core_util: dict[str, float] = field(default_factory=dict)
    latency_ms: dict[str, float | None] = field(default_factory=dict)
    udp_rcvbuf_errors: int = 0
    notes: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def sipp_argv(
    sipp: str,
    port: int,
    users_file: Path,
    local_port: int,
    *,
    rate: float,
    limit: int,
    max_calls: int,
    hard_timeout: float,
    prefix: str,
) -> list[str]:
    return [
        sipp,
        "-sf", str(SCENARIO),
        "-inf", str(users_file),
        f"{HOST}:{port}",
        "-i", HOST, "-bind_local", "-p", str(local_port), "-t", "u1",
        "-ci", HOST, "-mi", HOST,  # SIPp's control and media sockets: loopback only too
        "-r", f"{rate:g}", "-l", str(limit), "-m", str(max_calls),
        "-nostdin", "-timeout", f"{int(math.ceil(hard_timeout))}s",
        "-buff_size", str(4 * 1024 * 1024),
        "-max_recv_loops", "5000", "-max_sched_loops", "5000",
        "-trace_stat", "-stf", f"{prefix}-stat.csv", "-fd", "1",
        "-trace_rtt", "-rtt_freq", "500",
        "-trace_screen", "-screen_file", f"{prefix}-screen.log",
        "-trace_err", "-error_file", f"{prefix}-errors.log",
    ]  # fmt: skip


def free_udp_ports(count: int, start: int) -> list[int]:
    ports, candidate = [], start
    while len(ports) < count and candidate < 65000:
        if port_free(candidate):
            ports.append(candidate)
        candidate += 1
    return ports


def run_sipp_load(
    *,
    sipp: str,
    server: Server,
    users_files: list[Path],
    workdir: Path,
    tag: str,
    rate: float,
    limit: int,
    max_calls: int,
    duration: float | None,
    warmup: float,
    sipp_cpus: str | None,
    drain_timeout: float = 15.0,
) -> tuple[RunResult, list[SippOutcome]]:
    """Run SIPp (one process per users file) against `server`; measure the server meanwhile.

    With `duration`, SIPp is asked to stop (SIGUSR1: finish the calls in flight, then exit) after
    that many seconds; without it, each process stops by itself after `max_calls` registrations.
    """
    procs = len(users_files)
    result = RunResult(server=server.label, label=tag)
    local_ports = free_udp_ports(procs, 5090)
    hard_timeout = (duration if duration is not None else 600.0) + drain_timeout + 10.0
    runs = []
    udp_before = udp_counters()
    for index, users_file in enumerate(users_files):
        prefix = str(workdir / f"{tag}-sipp{index + 1}")
        argv = sipp_argv(
            sipp,
            server.port,
            users_file,
            local_ports[index],
            rate=rate / procs,
            limit=max(1, limit // procs),
            max_calls=max(1, max_calls // procs),
            hard_timeout=hard_timeout,
            prefix=prefix,
        )
        runs.append(
            (
                Managed(
                    f"sipp{index + 1}", pin(sipp_cpus) + argv, log_path=Path(prefix + ".out"), cwd=workdir
                ),
                prefix,
            )
        )
    started = time.monotonic()
    # The steady window starts after the warm-up and ends when SIPp is told to stop (or at the
    # last sample while every SIPp still runs).
    time.sleep(min(warmup, duration or warmup))
    # Process lists are taken once: re-scanning /proc ten times a second would itself cost CPU.
    server_pids = server.pids()
    sipp_pids = [pid for managed, _ in runs for pid in managed.pids()]
    cpu_a, wall_a, cores_a = cpu_seconds(server_pids), time.monotonic(), core_busy()
    sipp_cpu_a = cpu_seconds(sipp_pids)
    procs_a = snapshot_processes()
    procs_b, wall_procs_b = procs_a, wall_a
    cpu_b, wall_b, cores_b, sipp_cpu_b = cpu_a, wall_a, cores_a, sipp_cpu_a
    end_at = started + duration if duration is not None else started + hard_timeout
    while time.monotonic() < end_at and all(m.alive() for m, _ in runs):
        time.sleep(0.2)
        if all(m.alive() for m, _ in runs):
            cpu_b, wall_b, cores_b = cpu_seconds(server_pids), time.monotonic(), core_busy()
            sipp_cpu_b = cpu_seconds(sipp_pids)
            if time.monotonic() - wall_procs_b >= 1.0:
                procs_b, wall_procs_b = snapshot_processes(), time.monotonic()
    stop_wall = time.time()
    ours = set(server.pids()) | {os.getpid()}
    for managed, _ in runs:
        ours |= set(managed.pids())
    if wall_procs_b > wall_a:
        kernel, _, top = other_consumers(procs_a, procs_b, ours, wall_procs_b - wall_a)
        result.kernel_thread_util = kernel
        result.top_others = [(name, round(used, 3)) for name, used in top]
    if duration is not None:
        for managed, _ in runs:
            if managed.alive():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(managed.proc.pid, signal.SIGUSR1)
    deadline = time.monotonic() + drain_timeout + 10.0
    while time.monotonic() < deadline and any(m.alive() for m, _ in runs):
        time.sleep(0.1)
    if any(m.alive() for m, _ in runs):
        result.problems.append("SIPp did not exit in time after being asked to stop; it was killed")
    outcomes = []
    for managed, prefix in runs:
        returncode = managed.close(timeout=3.0)
        rtt_files = sorted(workdir.glob(f"{Path(SCENARIO).stem}_*_rtt.csv"))
        # SIPp names the rtt trace after the scenario and its pid: claim this run's file
        mine = [p for p in rtt_files if f"_{managed.proc.pid}_" in p.name]
        claimed = []
        for path in mine:
            target = Path(f"{prefix}-rtt.csv")
            path.rename(target)
            claimed.append(target)
        outcomes.append(
            SippOutcome(
                stats_rows=parse_stat_file(Path(f"{prefix}-stat.csv")),
                rtt_ms=parse_rtt_files(claimed, since_ms=warmup * 1000.0),
                returncode=returncode,
                screen_tail=tail_of(Path(f"{prefix}-screen.log"), 6000),
                errors_tail=tail_of(Path(f"{prefix}-errors.log"), 3000),
                stderr_tail=tail_of(Path(f"{prefix}.out"), 2000),
            )
        )
    udp_after = udp_counters()
    result.udp_rcvbuf_errors = udp_after.get("RcvbufErrors", 0) - udp_before.get("RcvbufErrors", 0)

    # Throughput from SIPp's 1-second rows: successful registrations between the first row at or
    # after the warm-up and the last row written before the stop signal, summed over processes.
    rate_sum, windows = 0.0, []
    for outcome in outcomes:
        rows = outcome.stats_rows
        if not rows:
            result.problems.append("SIPp wrote no statistics rows")
            continue
        last = rows[-1]
        result.registrations += row_int(last, "SuccessfulCall(C)")
        result.failed += row_int(last, "FailedCall(C)")
        result.retransmissions += row_int(last, "Retransmissions(C)")
        t0 = row_time(rows[0])
        steady = [r for r in rows if row_time(r) - t0 >= warmup - 0.05 and row_time(r) <= stop_wall + 0.05]
        if duration is None or len(steady) < 2:
            steady = [r for r in rows if row_time(r) - t0 >= warmup - 0.05] or rows
            if len(steady) < 2:
                steady = [rows[0], rows[-1]]
        first, final = steady[0], steady[-1]
        span = row_time(final) - row_time(first)
        done = row_int(final, "SuccessfulCall(C)") - row_int(first, "SuccessfulCall(C)")
        if span > 0:
            rate_sum += done / span
            windows.append(span)
    result.rate = rate_sum
    result.window = min(windows) if windows else 0.0
    wall = wall_b - wall_a
    result.server_cpu_window = cpu_b - cpu_a
    if wall > 0:
        result.server_util = (cpu_b - cpu_a) / wall
        result.sipp_util = (sipp_cpu_b - sipp_cpu_a) / wall
        task_busy = 0.0
        for core, (busy_b, irq_b, total_b) in cores_b.items():
            busy_a, irq_a, total_a = cores_a.get(core, (busy_b, irq_b, total_b))
            if total_b > total_a:
                span = total_b - total_a
                result.core_util[core] = (busy_b - busy_a + irq_b - irq_a) / span
                result.irq_util += (irq_b - irq_a) / span
                task_busy += (busy_b - busy_a) / span
        result.other_util = max(
            0.0, task_busy - result.server_util - result.sipp_util - result.kernel_thread_util
        )
    if result.rate > 0 and wall > 0:
        result.cpu_us_per_reg = result.server_util / result.rate * 1e6
    merged: dict[int, list[int]] = {}
    for outcome in outcomes:
        for rtd, values in outcome.rtt_ms.items():
            merged.setdefault(rtd, []).extend(values)
    whole, second = merged.get(1, []), merged.get(2, [])
    result.latency_ms = {
        "p50": percentile(whole, 50),
        "p99": percentile(whole, 99),
        "max": float(max(whole)) if whole else None,
        "auth_p99": percentile(second, 99),
        "samples": float(len(whole)),
    }
    if result.failed:
        result.problems.append(f"{result.failed} registrations failed (see the SIPp screens below)")
    if result.registrations == 0:
        result.problems.append("no registration completed")
    return result, outcomes


def describe_failures(result: RunResult, outcomes: list[SippOutcome]) -> str:
    """What SIPp saw, for a run with failures: its failure counters, final screen and error log."""
    lines = []
    for index, outcome in enumerate(outcomes, 1):
        last = outcome.stats_rows[-1] if outcome.stats_rows else {}
        counters = {
            k.removesuffix("(C)"): v
            for k, v in last.items()
            if k and k.startswith("Failed") and k.endswith("(C)") and v not in ("0", "", None)
        }
        lines.append(f"  SIPp {index}: exit {outcome.returncode}; failure counters {counters or 'none'}")
        if outcome.screen_tail:
            screen = outcome.screen_tail
            # the scenario screen (message counts, timeouts, unexpected) is the most telling part
            start = screen.rfind("Messages  Retrans")
            excerpt = screen[start : start + 2500] if start >= 0 else screen[-2500:]
            lines += ["    " + line for line in excerpt.splitlines() if line.strip()][:30]
        if outcome.errors_tail.strip():
            lines.append("    last unexpected messages (SIPp -trace_err):")
            lines += ["      " + line for line in outcome.errors_tail.strip().splitlines()[-25:]]
        if outcome.stderr_tail.strip():
            lines.append("    SIPp stderr/stdout tail:")
            lines += ["      " + line for line in outcome.stderr_tail.strip().splitlines()[-8:]]
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# Reporting


def cpu_list(cpus: str) -> list[int]:
    """taskset's CPU list syntax ("1", "0,2", "1-3") as numbers."""
    out = []
    for part in cpus.split(","):
        low, _, high = part.partition("-")
        out += list(range(int(low), int(high) + 1)) if high else [int(low)]
    return out


def sipp_core_count(cpus: str | None) -> int:
    return len(cpu_list(cpus)) if cpus else (os.cpu_count() or 1)


def mib(kib: int | None) -> str:
    return "?" if not kib else f"{kib / 1024:.1f}"


def fmt(value: float | None, spec: str) -> str:
    """format(value, spec), or a dash padded to the same width when there is no value."""
    width = int("".join(ch for ch in spec.split(".")[0] if ch.isdigit()) or 0)
    return "-".rjust(width) if value is None else format(value, spec)


def judge_bottleneck(result: RunResult, procs: int, sipp_cpus: str | None, server_cpus: str | None) -> str:
    """Which side ran out of CPU: the server (on its pinned core) or SIPp (on its core(s))."""
    sipp_capacity = max(1, min(procs, sipp_core_count(sipp_cpus)))
    busy = (
        f"; other processes used {result.other_util:.0%} of a core meanwhile, so the figures are disturbed"
        if disturbed(result)
        else ""
    )
    # The server's own core counts as saturated when it was (nearly) never idle, whoever else ran
    # on it: with other work there, the server's share is what it could get.
    server_core = result.core_util.get(f"cpu{server_cpus}") if server_cpus and server_cpus.isdigit() else None
    if result.server_util >= 0.85 or (
        server_core is not None and server_core >= 0.95 and result.server_util >= 0.5
    ):
        core = f", its core {server_core:.0%} busy" if server_core is not None else ""
        return f"server-bound (server CPU {result.server_util:.0%} of a core{core}){busy}"
    sipp_cores = [result.core_util.get(f"cpu{c}") for c in cpu_list(sipp_cpus)] if sipp_cpus else []
    sipp_core_busy = (
        sum(v for v in sipp_cores if v is not None) / len(sipp_cores)
        if sipp_cores and None not in sipp_cores
        else None
    )
    if sipp_core_busy is not None and sipp_core_busy >= 0.9 and result.sipp_util < 0.85 * sipp_capacity:
        hint = "" if procs > 1 else " (--sipp-procs 2 adds no core here)"
        return (
            f"LOAD-GENERATOR-side-bound: SIPp's core was {sipp_core_busy:.0%} busy"
            f" (SIPp {result.sipp_util:.0%}, the rest the kernel's packet work and other processes)"
            f" while the server used {result.server_util:.0%} of its core{hint};"
            f" the server's rate is a lower bound{busy}"
        )
    if result.sipp_util >= 0.85 * sipp_capacity:
        hint = " (try --sipp-procs 2)" if procs == 1 else ""
        return (
            f"LOAD-GENERATOR-bound: the server used only {result.server_util:.0%} of its core"
            f" while SIPp used {result.sipp_util:.0%} of {sipp_capacity} core(s){hint};"
            f" the server's rate is a lower bound{busy}"
        )
    return (
        f"neither side saturated (server {result.server_util:.0%}, SIPp {result.sipp_util:.0%}):"
        " bound by the in-flight limit (-l) and round-trip time, or by lost datagrams"
        f" (see retransmissions){busy}"
    )


def print_table(results: dict[str, list[RunResult]], procs: int) -> list[str]:
    lines = []
    header = (
        f"{'server':<16} {'reg/s':>9} {'CPU µs/reg':>11} {'srv CPU':>8} {'SIPp CPU':>9} {'p50 ms':>7}"
        f" {'p99 ms':>7} {'auth p99':>9} {'failed':>7} {'retrans':>8} {'others':>7}"
    )
    lines.append(header)
    lines.append("-" * len(header))
    disturbed_seen = False
    for name, runs in results.items():
        for run in runs:
            mark = "*" if disturbed(run) else " "
            disturbed_seen = disturbed_seen or disturbed(run)
            lines.append(
                f"{name:<16} {run.rate:>9,.0f} {fmt(run.cpu_us_per_reg, '>11.1f')} "
                f"{run.server_util:>8.0%} {run.sipp_util:>9.0%} {fmt(run.latency_ms.get('p50'), '>7.0f')} "
                f"{fmt(run.latency_ms.get('p99'), '>7.0f')} {fmt(run.latency_ms.get('auth_p99'), '>9.0f')} "
                f"{run.failed:>7} {run.retransmissions:>8} {run.other_util:>6.0%}{mark}"
            )
    if disturbed_seen:
        lines.append(
            f"* other processes used {DISTURBED:.0%} of a core or more during the run: disturbed,"
            " left out of the ratio when an undisturbed run of the same server exists"
        )
    return lines


DISTURBED = 0.15


def disturbed(run: RunResult) -> bool:
    return run.other_util >= DISTURBED


def undisturbed_or_all(runs: list[RunResult]) -> list[RunResult]:
    clean = [r for r in runs if not disturbed(r)]
    return clean or runs


def median_or_none(values: list[float]) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


# --------------------------------------------------------------------------------------------
# Main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument(
        "--duration", type=float, default=20.0, help="seconds of closed-loop load per server (default 20)"
    )
    p.add_argument(
        "--warmup", type=float, default=2.0, help="seconds left out of the rate at the start (default 2)"
    )
    p.add_argument("--users", type=int, default=10_000, help="accounts registering in turn (default 10,000)")
    p.add_argument(
        "--rate",
        type=float,
        default=100_000,
        help="SIPp -r: new registrations/s it may start; high = closed loop (default 100000)",
    )
    p.add_argument("--limit", type=int, default=200, help="SIPp -l: registrations in flight (default 200)")
    p.add_argument(
        "--max-calls", type=int, default=2_000_000, help="SIPp -m cap per server run (default 2,000,000)"
    )
    p.add_argument(
        "--rounds", type=int, default=1, help="alternate Kamailio and ours this many times (default 1)"
    )
    p.add_argument(
        "--sipp-procs", type=int, default=1, help="SIPp processes sharing the load (split users, own ports)"
    )
    p.add_argument(
        "--latency-rate",
        type=float,
        default=1000,
        help="open-loop rate for the unloaded-latency run; 0 skips (default 1000/s)",
    )
    p.add_argument(
        "--latency-duration", type=float, default=8.0, help="seconds of the unloaded-latency run (default 8)"
    )
    p.add_argument(
        "--bindings",
        type=int,
        default=0,
        help="also measure our RSS with this many accounts and distinct bindings (e.g. 100000)",
    )
    p.add_argument("--bindings-only", action="store_true", help="run only the --bindings memory measurement")
    p.add_argument("--skip-kamailio", action="store_true", help="measure our service only")
    p.add_argument("--skip-ours", action="store_true", help="measure Kamailio only")
    p.add_argument("--kamailio-port", type=int, default=5070)
    p.add_argument("--our-port", type=int, default=5072)
    p.add_argument("--server-cpus", default="0", help="taskset CPU list for the server (default 0)")
    p.add_argument(
        "--sipp-cpus", default=None, help="taskset CPU list for SIPp (default: 1, or all other CPUs)"
    )
    p.add_argument("--no-pin", action="store_true", help="do not use taskset")
    p.add_argument(
        "--digest", default="MD5", help="our --digest-algorithms for the run (SIPp 3.6 answers MD5 only)"
    )
    p.add_argument(
        "--use-shared-cfg",
        action="store_true",
        help="run Kamailio with the reference kamailio-registrar.cfg from --shared instead of bench/'s",
    )
    p.add_argument(
        "--shared",
        default=None,
        help="the shared/bench folder (default ../shared/bench), for the reference notes",
    )
    p.add_argument(
        "--python", default=None, help="interpreter for our service (default: the one running this)"
    )
    p.add_argument(
        "--workdir", default=None, help="where logs, traces and stores go (default: a new temp dir)"
    )
    p.add_argument("--keep", action="store_true", help="keep the work directory")
    p.add_argument("--json", default=None, help="also write the figures to this JSON file")
    p.add_argument("--no-install", action="store_true", help="do not apt-get missing tools")
    p.add_argument(
        "--wait-quiet",
        type=float,
        default=0.0,
        help="before each server run, wait up to this many seconds for other processes to go idle"
        " (default 0: only warn)",
    )
    args = p.parse_args(argv)
    if args.duration <= args.warmup + 1:
        p.error("--duration must exceed --warmup by more than a second")
    if args.users < 1 or args.sipp_procs < 1 or args.limit < 1:
        p.error("--users, --limit and --sipp-procs must be positive")
    return args


def code_state() -> str:
    """The commit measured and whether the service's code had uncommitted changes (read-only git)."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO_ROOT, capture_output=True, text=True, timeout=10
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "sipsync"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.split("\n")
    except (OSError, subprocess.TimeoutExpired):
        return "unknown (no git)"
    from sipsync import native  # the service started from here makes the same choice

    changed = [line[3:] for line in dirty if line.strip()]
    if not head:
        return f"unknown (not a git checkout), {native.state}"
    changes = f" plus uncommitted changes in {', '.join(changed)}" if changed else ""
    return f"commit {head}{changes}, {native.state}"


def shared_dir(args: argparse.Namespace) -> Path:
    return Path(args.shared) if args.shared else REPO_ROOT.parent / "shared" / "bench"


def kamailio_cfg(args: argparse.Namespace) -> Path:
    """bench/'s own Kamailio config, or with --use-shared-cfg the reference one beside the repo."""
    if args.use_shared_cfg:
        shared = shared_dir(args) / "kamailio-registrar.cfg"
        if shared.exists():
            return shared
    return KAMAILIO_CFG


def shared_notes(args: argparse.Namespace) -> str:
    path = shared_dir(args)
    if (path / "README.md").exists():
        used = "its kamailio-registrar.cfg" if args.use_shared_cfg else "bench/'s own scenario and config"
        return f"reference material found at {path}; the run uses {used}"
    if args.use_shared_cfg:
        return f"no reference material at {path}: --use-shared-cfg falls back to bench/'s own config"
    return f"no reference material at {path}; not needed (bench/ has its own scenario and config)"


def _stop_on_signal(signum: int, _frame: object) -> None:
    say(f"\nstopped by {signal.Signals(signum).name}; stopping everything")
    sys.exit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # Ctrl-C and SIGTERM/SIGHUP unwind through the finally below, which stops every child process
    # (SIGINT is installed explicitly: a shell that starts us in the background may have ignored it).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for signum in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(signum, _stop_on_signal)
    workdir = Path(args.workdir) if args.workdir else Path(tempfile.mkdtemp(prefix="sipsync-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        return run(args, workdir)
    except KeyboardInterrupt:
        say("\ninterrupted; stopping everything")
        return 130
    finally:
        Managed.close_all()
        if not args.keep and not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            say(f"work directory kept: {workdir}")


def run(args: argparse.Namespace, workdir: Path) -> int:
    cpus = os.cpu_count() or 1
    say(f"register benchmark, {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC")
    say(f"  host: {platform.node()} {platform.machine()}, {cpus} CPUs, Linux {platform.release()}")
    say(f"  command: {' '.join([Path(sys.executable).name, *sys.argv])}")
    say(f"  {shared_notes(args)}")
    say(f"  code: {code_state()}")
    install = not args.no_install
    sipp = ensure_tool("sipp", "sip-tester", install=install)
    if sipp is None:
        say("SIPp (Debian package sip-tester) is missing and could not be installed; nothing to measure")
        return 2
    kamailio = None
    if not args.skip_kamailio and not args.bindings_only:
        kamailio = ensure_tool("kamailio", "kamailio", install=install)
        if kamailio is None:
            say("  Kamailio (Debian package kamailio) is missing and could not be installed:")
            say("  reporting our figures only, without a ratio")
    have_taskset = shutil.which("taskset") is not None and not args.no_pin
    server_cpus = args.server_cpus if have_taskset else None
    sipp_cpus = None
    if have_taskset:
        sipp_cpus = args.sipp_cpus or (
            ",".join(str(c) for c in range(cpus) if str(c) != args.server_cpus) or None
        )
        if cpus < 2:
            server_cpus = sipp_cpus = None
    say(f"  SIPp: {tool_version([sipp, '-v'])} at {sipp}")
    if kamailio:
        say(f"  Kamailio: {tool_version([kamailio, '-v'])}")
    say(
        f"  pinning: server on CPU {server_cpus or '(not pinned)'}, SIPp on CPU {sipp_cpus or '(not pinned)'}"
    )
    if not args.bindings_only:
        say(
            f"  load: {args.sipp_procs} SIPp process(es), -r {args.rate:g} -l {args.limit},"
            f" {args.duration:g} s per run, "
            f"{args.users} users, warm-up {args.warmup:g} s left out"
        )
    say(f"  work directory: {workdir}")
    loadavg = Path("/proc/loadavg").read_text().split()[:3]
    say(f"  load average before: {' '.join(loadavg)}")

    python = args.python or sys.executable
    status = 0
    results: dict[str, list[RunResult]] = {}
    report: dict[str, object] = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "command": sys.argv,
        "code": code_state(),
        "cpus": cpus,
    }
    if not args.bindings_only:
        latency: dict[str, RunResult] = {}
        status = throughput(args, workdir, sipp, kamailio, python, server_cpus, sipp_cpus, results, latency)
        report["closed_loop"] = {name: [asdict(r) for r in runs] for name, runs in results.items()}
        report["open_loop"] = {name: asdict(r) for name, r in latency.items()}
    if args.bindings:
        memory_figures: dict[str, object] = {}
        status = max(status, memory(args, workdir, sipp, python, server_cpus, sipp_cpus, memory_figures))
        report["memory"] = memory_figures
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=2, default=str) + "\n")
        say(f"figures written to {args.json}")
    return status


def throughput(args, workdir, sipp, kamailio, python, server_cpus, sipp_cpus, results, latency) -> int:
    users = user_names(args.users)
    files = write_injection_files(users, workdir, args.sipp_procs, "users")
    servers = []
    if kamailio:
        servers.append("Kamailio")
    if not args.skip_ours:
        servers.append("ours")
    if not servers:
        say("nothing to measure")
        return 2
    store = workdir / "sip-store.sqlite3"
    if "ours" in servers:
        if not (REPO_ROOT / "sipsync" / "server" / "__main__.py").exists():
            say("our service (sipsync/server/__main__.py) does not exist yet; measuring Kamailio only")
            servers.remove("ours")
        else:
            took = provision_store(store, users)
            say(f"  provisioned {len(users)} accounts into {store.name} in {took:.1f} s")
    status = 0
    failures: list[str] = []
    for round_no in range(1, args.rounds + 1):
        for name in servers:
            say(f"\n[{name}] round {round_no}: starting the server")
            wait_for_quiet(0.15, args.wait_quiet)
            try:
                if name == "Kamailio":
                    if not port_free(args.kamailio_port):
                        raise RuntimeError(f"UDP {HOST}:{args.kamailio_port} is in use")
                    server = start_kamailio(
                        kamailio, args.kamailio_port, workdir, server_cpus, kamailio_cfg(args)
                    )
                else:
                    if not port_free(args.our_port):
                        raise RuntimeError(f"UDP {HOST}:{args.our_port} is in use")
                    server = start_ours(python, args.our_port, store, workdir, server_cpus, args.digest)
            except RuntimeError as error:
                say(f"[{name}] could not start: {error}")
                status = 1
                continue
            try:
                say(f"[{name}] up: pids {server.pids()}; closed loop for {args.duration:g} s")
                result, outcomes = run_sipp_load(
                    sipp=sipp,
                    server=server,
                    users_files=files,
                    workdir=workdir,
                    tag=f"{name.lower()}-r{round_no}",
                    rate=args.rate,
                    limit=args.limit,
                    max_calls=args.max_calls,
                    duration=args.duration,
                    warmup=args.warmup,
                    sipp_cpus=sipp_cpus,
                )
                say(
                    f"[{name}] {result.registrations:,} registrations ({result.failed} failed, "
                    f"{result.retransmissions} retransmissions), {result.rate:,.0f}/s"
                    f" over {result.window:.0f} s; server CPU {result.server_util:.0%},"
                    f" SIPp CPU {result.sipp_util:.0%}, kernel irq {result.irq_util:.0%}"
                    f" + threads {result.kernel_thread_util:.0%}, other processes {result.other_util:.0%}, "
                    f"cores {', '.join(f'{k} {v:.0%}' for k, v in sorted(result.core_util.items()))}; "
                    f"UDP receive-buffer drops {result.udp_rcvbuf_errors}"
                )
                say(f"[{name}] {judge_bottleneck(result, args.sipp_procs, sipp_cpus, server_cpus)}")
                if disturbed(result) and result.top_others:
                    others = ", ".join(f"{n} {u:.0%}" for n, u in result.top_others)
                    say(f"[{name}] biggest other CPU users still running at the end: {others}")
                if result.problems:
                    status = 1
                    text = f"[{name}] problems: {'; '.join(result.problems)}\n" + describe_failures(
                        result, outcomes
                    )
                    say(text)
                    failures.append(text)
                results.setdefault(name, []).append(result)
                if args.latency_rate > 0 and round_no == args.rounds:
                    say(
                        f"[{name}] open loop at {args.latency_rate:g}/s for {args.latency_duration:g} s"
                        " (latency of an unloaded server)"
                    )
                    lat, lat_outcomes = run_sipp_load(
                        sipp=sipp,
                        server=server,
                        users_files=files,
                        workdir=workdir,
                        tag=f"{name.lower()}-latency",
                        rate=args.latency_rate,
                        limit=max(1000, int(args.latency_rate)),
                        max_calls=args.max_calls,
                        duration=args.latency_duration,
                        warmup=min(1.0, args.latency_duration / 4),
                        sipp_cpus=sipp_cpus,
                    )
                    latency[name] = lat
                    say(
                        f"[{name}] {lat.registrations:,} registrations ({lat.failed} failed),"
                        f" {lat.rate:,.0f}/s, p50 {fmt(lat.latency_ms.get('p50'), '.0f')} ms,"
                        f" p99 {fmt(lat.latency_ms.get('p99'), '.0f')} ms, "
                        f"server CPU {lat.server_util:.0%}, {fmt(lat.cpu_us_per_reg, '.0f')} µs/registration"
                    )
                    if lat.problems:
                        status = 1
                        text = (
                            f"[{name}] latency run problems: {'; '.join(lat.problems)}\n"
                            + describe_failures(lat, lat_outcomes)
                        )
                        say(text)
                        failures.append(text)
            finally:
                code = server.managed.close()
                if name == "ours":
                    log_tail = tail_of(server.managed.log_path, 3000).strip()
                    if log_tail:
                        say(
                            f"[{name}] server log tail (exit {code}):\n"
                            + "\n".join("  " + line for line in log_tail.splitlines()[-15:])
                        )
                    with contextlib.suppress(sqlite3.Error):
                        db = sqlite3.connect(f"file:{store}?mode=ro", uri=True)
                        count = db.execute("SELECT count(*) FROM bindings").fetchone()[0]
                        db.close()
                        say(f"[{name}] bindings persisted in the store: {count:,}")

    say(
        "\n== closed loop: REGISTER + digest, "
        + f"{args.users} users, {args.limit} in flight, {args.sipp_procs} SIPp =="
    )
    for line in print_table(results, args.sipp_procs):
        say(line)
    if latency:
        say(f"\n== open loop at {args.latency_rate:g}/s (latency of an unloaded server) ==")
        for line in print_table({k: [v] for k, v in latency.items()}, args.sipp_procs):
            say(line)
    kam = undisturbed_or_all(results.get("Kamailio", []))
    ours = undisturbed_or_all(results.get("ours", []))
    if kam and ours:
        rate_ratio = median_or_none([r.rate for r in ours]) / max(1e-9, median_or_none([r.rate for r in kam]))
        kam_cpu = median_or_none([r.cpu_us_per_reg for r in kam])
        our_cpu = median_or_none([r.cpu_us_per_reg for r in ours])
        say(
            f"\nours / Kamailio (median of {len(ours)} and {len(kam)} run(s)):"
            f" registrations/s x{rate_ratio:.2f} ({median_or_none([r.rate for r in ours]):,.0f}"
            f" vs {median_or_none([r.rate for r in kam]):,.0f});"
            f" CPU per registration x{fmt(our_cpu / kam_cpu if kam_cpu and our_cpu else None, '.1f')}"
            f" ({fmt(our_cpu, '.0f')} vs {fmt(kam_cpu, '.0f')} µs)"
        )
        if any(r.server_util < 0.85 for r in kam):
            say(
                "  note: Kamailio did not saturate its core, so its rate (and the rate ratio) was limited by"
                " something else (see the bottleneck lines above); the CPU-per-registration ratio is"
                " the fairer comparison"
            )
    elif ours and not kam:
        say("\n(no Kamailio figures: no ratio)")
    if failures:
        say("\n== what SIPp saw in runs with failures ==")
        for text in failures:
            say(text)
    return status


def memory(args, workdir, sipp, python, server_cpus, sipp_cpus, figures: dict) -> int:
    count = args.bindings
    say(f"\n[memory] {count:,} accounts, then {count:,} distinct bindings (one per account)")
    if not (REPO_ROOT / "sipsync" / "server" / "__main__.py").exists():
        say("[memory] our service does not exist yet; skipped")
        return 1
    if not port_free(args.our_port):
        say(f"[memory] UDP {HOST}:{args.our_port} is in use")
        return 1
    # The interpreter and the service's code alone, for reference: an empty store.
    try:
        empty = start_ours(
            python, args.our_port, workdir / "sip-store-empty.sqlite3", workdir, server_cpus, args.digest
        )
    except RuntimeError as error:
        say(f"[memory] could not start our service: {error}")
        return 1
    try:
        time.sleep(0.5)
        rss_empty = status_kib(empty.main_pid, "VmRSS")
    finally:
        empty.managed.close()
    say(f"[memory] RSS with an empty store (interpreter and code): {mib(rss_empty)} MiB")
    users = user_names(count)
    store = workdir / "sip-store-memory.sqlite3"
    took = provision_store(store, users)
    say(f"[memory] provisioned {count:,} accounts in {took:.1f} s")
    files = write_injection_files(users, workdir, args.sipp_procs, "bindings")
    if not port_free(args.our_port):
        say(f"[memory] UDP {HOST}:{args.our_port} is in use")
        return 1
    try:
        server = start_ours(python, args.our_port, store, workdir, server_cpus, args.digest)
    except RuntimeError as error:
        say(f"[memory] could not start our service: {error}")
        return 1
    status = 0
    try:
        time.sleep(1.0)
        rss_accounts = status_kib(server.main_pid, "VmRSS")
        say(f"[memory] RSS with {count:,} accounts, no bindings: {mib(rss_accounts)} MiB")
        result, outcomes = run_sipp_load(
            sipp=sipp,
            server=server,
            users_files=files,
            workdir=workdir,
            tag="memory",
            rate=args.rate,
            limit=args.limit,
            max_calls=count,
            duration=None,
            warmup=1.0,
            sipp_cpus=sipp_cpus,
        )
        time.sleep(1.0)  # let housekeeping flush whatever is pending
        rss = status_kib(server.main_pid, "VmRSS")
        hwm = status_kib(server.main_pid, "VmHWM")
        figures.update(
            accounts=count,
            bindings=result.registrations,
            failed=result.failed,
            rate=result.rate,
            rss_empty_kib=rss_empty,
            rss_accounts_kib=rss_accounts,
            rss_bindings_kib=rss,
            peak_kib=hwm,
        )
        say(f"[memory] {result.registrations:,} registered ({result.failed} failed) at {result.rate:,.0f}/s")
        say(
            f"[memory] RSS with {count:,} accounts and {result.registrations:,} bindings: "
            f"{mib(rss)} MiB (peak {mib(hwm)} MiB)"
        )
        if rss and rss_accounts and result.registrations:
            say(
                f"[memory] growth with the bindings: {(rss - rss_accounts) / 1024:.1f} MiB, "
                f"{(rss - rss_accounts) * 1024 / result.registrations:,.0f} bytes per binding"
                " (a lower bound: memory freed after loading the accounts is reused first)"
            )
        if rss_accounts and rss_empty:
            say(
                f"[memory] accounts: {(rss_accounts - rss_empty) * 1024 / count:,.0f} bytes per account"
                " above the empty process"
            )
        if result.problems:
            status = 1
            say(f"[memory] problems: {'; '.join(result.problems)}\n" + describe_failures(result, outcomes))
    finally:
        server.managed.close()
        with contextlib.suppress(sqlite3.Error):
            db = sqlite3.connect(f"file:{store}?mode=ro", uri=True)
            persisted = db.execute("SELECT count(*) FROM bindings").fetchone()[0]
            db.close()
            say(f"[memory] bindings persisted in the store: {persisted:,}")
    return status


if __name__ == "__main__":
    sys.exit(main())
