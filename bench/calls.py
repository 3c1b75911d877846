"""Authenticated calls per second through the proxy: our SIP service against Kamailio, with SIPp.

    .venv/bin/python bench/calls.py                   # 20 s per server, 2 SIPp callers, 200 calls in flight
    .venv/bin/python bench/calls.py --rounds 2 --hold-ms 1000 --limit 1000
    .venv/bin/python bench/calls.py --help

One call is what a phone does: INVITE, 407, ACK, INVITE with an MD5 digest answer, (100) 180 200
relayed from the callee, ACK and BYE along the Record-Route, 200 (bench/call-auth.xml; the callee
is bench/call-uas.xml). Our service relays the call to its trunk, which is the SIPp callee, as a
paid national call: the account is authenticated, the enforcement table applied (caller ID,
permissions, funds with a reservation and a maximum duration), the call rated and its record
spooled in the SQLite store. Kamailio (bench/kamailio-proxy.cfg) authenticates, record-routes and
relays statefully (tm), with no accounting at all.

Closed loop per server: --procs SIPp caller processes share --limit calls in flight and start
calls as fast as allowed for --duration seconds; the first --warmup seconds are left out. Figures:
completed calls per second (SIPp's SuccessfulCall counters), the server's CPU time per call
(utime + stime of all its processes), its CPU share, SIPp's CPU share (caller and callee
processes), the calls in progress held (SIPp's CurrentCall, summed over the callers, mean over
the window: calls between the first INVITE and the 200 for the BYE), failed calls and
retransmissions. The server runs on --server-cpus, every SIPp on --sipp-cpus.

Accounts u1000 ... (password "pw" + user) exist on both servers (ours: provisioned into its store
with a customer document whose balance does not run out and a rate plan for +27). Ports: Kamailio
5071, ours 5073, callee 5091, callers from 5100, all on 127.0.0.1. Every process started is in its
own process group and is stopped on exit, error or Ctrl-C.
"""

from __future__ import annotations

import argparse
import datetime
import itertools
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
sys.path.insert(0, str(BENCH_DIR))
sys.path.insert(0, str(REPO_ROOT))

import register as reg  # noqa: E402 - the process, CPU and SIPp helpers of bench/register.py

CALLER_XML = BENCH_DIR / "call-auth.xml"
CALLEE_XML = BENCH_DIR / "call-uas.xml"
KAMAILIO_CFG = BENCH_DIR / "kamailio-proxy.cfg"
HOST = REALM = "127.0.0.1"
DIALLED = "0115550123"  # a national number: our service sends it to its trunk as +27115550123
KAMAILIO_PORT, OUR_PORT, CALLEE_PORT, FIRST_CALLER_PORT = 5071, 5073, 5091, 5100

CUSTOMER = {
    "kind": "customer", "customer": "C0000001", "version": 1, "status": "active", "currency": "ZAR",
    "balance": "100000000.0000", "country_code": "27", "national_prefix": "0", "rate_plan": "Bench",
}  # fmt: skip
RATES = {
    "kind": "rates", "plan": "Bench", "version": 1, "currency": "ZAR",
    "rates": [{"prefix": "27", "description": "South Africa", "price_per_minute": "0.60000",
               "connect_fee": "0.10000", "first_increment": 60, "next_increment": 60,
               "effective_from": "2026-01-01T00:00:00Z", "effective_to": None}],
}  # fmt: skip


def say(text: str = "") -> None:
    print(text, flush=True)


# --- the servers ------------------------------------------------------------------------------------


def provision(store: Path, users: list[str]) -> None:
    from sipsync.server.documents import DocumentTable
    from sipsync.server.provision import document_for_password, load_documents
    from sipsync.server.store import LocalStore

    documents = (
        document_for_password(
            user, REALM, reg.password_of(user), customer="C0000001", max_calls=0,
            permissions=["internal", "national", "mobile", "international"],
            default_caller_id="+27115550100", caller_ids=["+27115550100"],
        )
        for user in users
    )  # fmt: skip
    applied, _ = load_documents(str(store), documents)
    if applied != len(users):
        raise RuntimeError(f"provisioned {applied} of {len(users)} accounts")
    with LocalStore(store) as local:
        table = DocumentTable(local)
        table.apply("customer", CUSTOMER)
        table.apply("rates", RATES)
        local.flush()


def start_ours(python: str, store: Path, workdir: Path, cpus: str) -> reg.Server:
    argv = [python, "-m", "sipsync.server", "--listen", f"{HOST}:{OUR_PORT}", "--store", str(store),
            "--realm", REALM, "--log-level", "WARNING", "--digest-algorithms", "MD5",
            "--trunk", f"sip:{HOST}:{CALLEE_PORT}"]  # fmt: skip
    managed = reg.Managed("sipsync", reg.pin(cpus) + argv, log_path=workdir / "sipsync.log", cwd=REPO_ROOT)
    if reg.options_probe(OUR_PORT, 30.0) is None:
        tail = (workdir / "sipsync.log").read_text(errors="replace")[-2000:]
        managed.close()
        raise RuntimeError("our service did not answer OPTIONS:\n" + tail)
    return reg.Server("ours (sipsync)", OUR_PORT, managed, managed.proc.pid)


def start_kamailio(binary: str, workdir: Path, cpus: str) -> reg.Server:
    text = KAMAILIO_CFG.read_text().replace("127.0.0.1:5091", f"{HOST}:{CALLEE_PORT}")
    text = text.replace("listen=udp:127.0.0.1:5071", f"listen=udp:{HOST}:{KAMAILIO_PORT}")
    modules = reg.kamailio_module_dir()
    if modules:
        text = text.replace('mpath="/usr/lib/x86_64-linux-gnu/kamailio/modules/"', f'mpath="{modules}"')
    cfg = workdir / "kamailio-proxy.cfg"
    cfg.write_text(text)
    check = subprocess.run([binary, "-c", "-f", str(cfg)], capture_output=True, text=True, timeout=30)
    if check.returncode != 0:
        raise RuntimeError("kamailio rejected its config:\n" + (check.stderr or check.stdout)[-2000:])
    argv = reg.pin(cpus) + [
        binary,
        "-f",
        str(cfg),
        "-DD",
        "-E",
        # 64 MB of shared memory (the default) runs out with hundreds of transactions a second
        # in their wait state ("could not allocate shared memory from shm pool", then 500s)
        "-m",
        "512",
        "-w",
        str(workdir),
        "-P",
        str(workdir / "k.pid"),
    ]
    managed = reg.Managed("kamailio", argv, log_path=workdir / "kamailio.log", cwd=workdir)
    if reg.options_probe(KAMAILIO_PORT, 15.0) is None:
        tail = (workdir / "kamailio.log").read_text(errors="replace")[-2000:]
        managed.close()
        raise RuntimeError("kamailio did not answer OPTIONS:\n" + tail)
    return reg.Server("Kamailio", KAMAILIO_PORT, managed, managed.proc.pid)


_RUNS = itertools.count(1)


# --- one run ------------------------------------------------------------------------------------------


@dataclass
class Result:
    server: str
    calls_per_second: float
    cpu_us_per_call: float | None
    server_cpu: float  # share of one core
    sipp_cpu: float  # all SIPp processes together, share of one core
    in_progress: float  # mean calls in progress (SIPp callers' CurrentCall, summed)
    completed: int
    failed: int
    retransmissions: int
    setup_p50_ms: float | None
    setup_p99_ms: float | None
    others: float  # CPU share of unrelated processes during the window
    bottleneck: str


def injection_files(users: list[str], workdir: Path, procs: int) -> list[Path]:
    paths = []
    for part in range(procs):
        path = workdir / f"calls-{part + 1}-of-{procs}.csv"
        lines = ["SEQUENTIAL"] + [
            f"{u};[authentication username={u} password={reg.password_of(u)}];{REALM};{DIALLED}"
            for u in users[part::procs]
        ]
        path.write_text("\n".join(lines) + "\n")
        paths.append(path)
    return paths


def sipp_caller(sipp: str, cpus: str, inf: Path, port: int, target: int, limit: int, hold_ms: int,
                duration: float, prefix: Path) -> list[str]:  # fmt: skip
    return reg.pin(cpus) + [
        sipp, "-sf", str(CALLER_XML), "-inf", str(inf), "-t", "u1", "-i", HOST, "-p", str(port),
        "-r", "100000", "-l", str(limit), "-d", str(hold_ms), "-m", "100000000",
        "-timeout", f"{int(duration + 40)}s", "-nostdin", "-max_socket", "4096",
        "-trace_stat", "-stf", f"{prefix}-stat.csv", "-fd", "1",
        "-trace_rtt", "-rtt_freq", "1", "-trace_err", "-error_file", f"{prefix}-errors.log",
        "-mp", str(20000 + port * 4 % 20000), "-cp", str(8888 + port % 1000),
        f"{HOST}:{target}",
    ]  # fmt: skip


def run_load(
    server: reg.Server, sipp: str, workdir: Path, args: argparse.Namespace, infs: list[Path]
) -> Result:
    tag = "kamailio" if "Kamailio" in server.label else "ours"
    run_no = next(_RUNS)
    callee = reg.Managed(
        "sipp-callee",
        reg.pin(args.sipp_cpus) + [
            sipp, "-sf", str(CALLEE_XML), "-t", "u1", "-i", HOST, "-p", str(CALLEE_PORT), "-nostdin",
            "-timeout", f"{int(args.duration + 60)}s", "-max_socket", "4096", "-cp", "8800", "-mp", "7000",
        ],  # fmt: skip
        log_path=workdir / f"{tag}-callee.log", cwd=workdir,
    )  # fmt: skip
    time.sleep(0.5)
    callers = []
    for index, inf in enumerate(infs):
        home = workdir / f"{tag}-run{run_no}-caller{index + 1}"
        home.mkdir()  # SIPp writes its response-time trace into its working directory
        prefix = home / "caller"
        argv = sipp_caller(sipp, args.sipp_cpus, inf, FIRST_CALLER_PORT + index, server.port,
                           max(1, args.limit // len(infs)), args.hold_ms, args.duration, prefix)  # fmt: skip
        callers.append((reg.Managed(f"sipp-{index}", argv, log_path=home / "sipp.log", cwd=home), prefix))
    started = time.monotonic()
    time.sleep(args.warmup)
    cpu0, wall0 = server.cpu(), time.monotonic()
    sipp_pids = lambda: [p for m, _ in callers for p in m.pids()] + callee.pids()  # noqa: E731
    sipp0 = reg.cpu_seconds(sipp_pids())
    others0 = reg.snapshot_processes()
    time.sleep(max(0.0, args.duration - (time.monotonic() - started)))
    cpu1, wall1 = server.cpu(), time.monotonic()
    sipp1 = reg.cpu_seconds(sipp_pids())
    mine = {server.main_pid, *server.pids(), *sipp_pids(), os.getpid()}
    _, other, _ = reg.other_consumers(others0, reg.snapshot_processes(), mine, wall1 - wall0)
    for managed, _ in callers:
        if managed.alive():
            os.kill(managed.proc.pid, signal.SIGUSR1)  # finish the calls in flight, then exit
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline and any(m.alive() for m, _ in callers):
        time.sleep(0.1)
    for managed, _ in callers:
        managed.close()
    callee.close()

    window = wall1 - wall0
    completed = failed = retrans = 0
    in_progress = 0.0
    setups: list[int] = []
    for _, prefix in callers:
        rows = reg.parse_stat_file(Path(f"{prefix}-stat.csv"))
        steady = [r for r in rows if wall0 - started <= _elapsed(r, rows) <= wall1 - started]
        if len(steady) >= 2:
            completed += reg.row_int(steady[-1], "SuccessfulCall(C)") - reg.row_int(
                steady[0], "SuccessfulCall(C)"
            )
            in_progress += statistics.mean(reg.row_int(r, "CurrentCall") for r in steady)
        if rows:
            failed += reg.row_int(rows[-1], "FailedCall(C)")
            retrans += reg.row_int(rows[-1], "Retransmissions(C)")
        rtt = reg.parse_rtt_files(sorted(prefix.parent.glob("*_rtt.csv")), since_ms=args.warmup * 1000)
        setups += rtt.get(1, [])
    rate = completed / window if window > 0 else 0.0
    server_cpu = (cpu1 - cpu0) / window
    sipp_cpu = (sipp1 - sipp0) / window
    if server_cpu >= 0.9:
        bottleneck = "server (CPU-bound)"
    elif sipp_cpu >= 0.9:
        bottleneck = "SIPp (its core is full)"
    else:
        bottleneck = "neither core full: latency/in-flight bound"
    return Result(
        server=server.label, calls_per_second=rate,
        cpu_us_per_call=(cpu1 - cpu0) / completed * 1e6 if completed else None,
        server_cpu=server_cpu, sipp_cpu=sipp_cpu, in_progress=in_progress, completed=completed,
        failed=failed, retransmissions=retrans,
        setup_p50_ms=reg.percentile(setups, 50), setup_p99_ms=reg.percentile(setups, 99),
        others=other, bottleneck=bottleneck,
    )  # fmt: skip


def _elapsed(row: dict[str, str], rows: list[dict[str, str]]) -> float:
    return reg.row_time(row) - reg.row_time(rows[0])


# --- main ---------------------------------------------------------------------------------------------


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--duration", type=float, default=20.0, help="seconds of load per server (default 20)"
    )
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds left out at the start (default 3)")
    parser.add_argument("--users", type=int, default=1000, help="accounts u1000... (default 1000)")
    parser.add_argument("--procs", type=int, default=2, help="SIPp caller processes (default 2)")
    parser.add_argument("--limit", type=int, default=200, help="calls in flight, all callers (default 200)")
    parser.add_argument("--hold-ms", type=int, default=0, help="time between ACK and BYE (default 0)")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--server-cpus", default="0")
    parser.add_argument("--sipp-cpus", default="1")
    parser.add_argument("--skip-kamailio", action="store_true")
    parser.add_argument(
        "--wait-quiet",
        type=float,
        default=0.0,
        metavar="S",
        help="before each run wait up to S seconds for other processes to use under 15%% of a core",
    )
    parser.add_argument("--json", type=Path, help="write the figures here")
    parser.add_argument("--workdir", type=Path, help="keep SIPp's files and the logs here")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sipp = shutil.which("sipp")
    if sipp is None:
        say("SIPp (Debian: sip-tester) is needed")
        return 2
    kamailio = None if args.skip_kamailio else shutil.which("kamailio")
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench-calls-"))
    workdir.mkdir(parents=True, exist_ok=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    users = reg.user_names(args.users)
    infs = injection_files(users, workdir, args.procs)
    say(f"bench/calls.py {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC; {reg.code_state()}")
    say(f"{args.procs} SIPp callers + 1 callee on CPU {args.sipp_cpus}, server on CPU {args.server_cpus}; "
        f"{args.limit} calls in flight, hold {args.hold_ms} ms, {args.duration:.0f} s per run "
        f"({args.warmup:.0f} s warm-up); workdir {workdir}")  # fmt: skip
    results: list[Result] = []
    try:
        for round_no in range(1, args.rounds + 1):
            if kamailio:
                if args.wait_quiet:
                    reg.wait_for_quiet(0.15, args.wait_quiet)
                server = start_kamailio(kamailio, workdir, args.server_cpus)
                try:
                    results.append(run_load(server, sipp, workdir, args, infs))
                finally:
                    server.managed.close()
                report(results[-1], round_no)
            store = workdir / f"ours-{round_no}.sqlite3"
            for suffix in ("", "-wal", "-shm"):
                Path(f"{store}{suffix}").unlink(missing_ok=True)
            provision(store, users)
            if args.wait_quiet:
                reg.wait_for_quiet(0.15, args.wait_quiet)
            server = start_ours(sys.executable, store, workdir, args.server_cpus)
            try:
                results.append(run_load(server, sipp, workdir, args, infs))
            finally:
                server.managed.close()
            report(results[-1], round_no)
    finally:
        reg.Managed.close_all()
    ours = [r for r in results if "ours" in r.server]
    theirs = [r for r in results if r.server == "Kamailio"]
    if ours and theirs:
        rate = statistics.median(r.calls_per_second for r in ours) / statistics.median(
            r.calls_per_second for r in theirs
        )
        cpu = [r.cpu_us_per_call for r in ours if r.cpu_us_per_call]
        cpu_k = [r.cpu_us_per_call for r in theirs if r.cpu_us_per_call]
        text = f"ours / Kamailio: x{rate:.2f} the calls per second"
        if cpu and cpu_k:
            text += f", x{statistics.median(cpu) / statistics.median(cpu_k):.1f} the CPU per call"
        say(text)
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in results], indent=2))
    return 0


def report(r: Result, round_no: int) -> None:
    say(f"{r.server}, round {round_no}: {r.calls_per_second:,.0f} calls/s, "
        f"{r.cpu_us_per_call or 0:,.0f} µs CPU/call, server CPU {r.server_cpu:.0%}, "
        f"SIPp CPU {r.sipp_cpu:.0%}, "
        f"{r.in_progress:,.0f} calls in progress, set-up p50 {r.setup_p50_ms} ms p99 {r.setup_p99_ms} ms, "
        f"{r.completed:,} completed, {r.failed} failed, {r.retransmissions} retransmissions, "
        f"others {r.others:.0%}; bottleneck: {r.bottleneck}")  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
