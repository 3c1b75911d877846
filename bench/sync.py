"""Provisioning-sync benchmark: how fast a portal change is enforced by a SIP node, and how fast
a fresh node converges. Not a test: it prints figures (see docs/sync.md).

    .venv/bin/python bench/sync.py                                  # embedded broker, then Redis
    .venv/bin/python bench/sync.py --broker redis://127.0.0.1:6379/0 # one broker only
    .venv/bin/python bench/sync.py --changes 200 --accounts 10000 --help

Each broker is measured in a process of its own (Django and Celery are set up once per
process); a table of all of them ends the run.

1. Change latency: `accounts.services.sip_account_set_password` in this process (the portal),
   then the real path: on-commit publish -> broker -> a real Celery worker process -> the node's
   control interface. Measured per change, from just before the service call: "applied" when
   the node's /v1/digest shows the new version (polled every --poll-ms), "enforced" when a real
   REGISTER over UDP with the old password then gets 403 and one with the new password 200.
   Reference: the same change as a document PUT straight to the node by this process.
2. Convergence: --accounts accounts written straight into the portal database (valid HA1s and
   document versions, bulk-created for speed), an empty node started, `sipsync.reconcile` run by
   the worker; measured until the node's digest equals the portal's versions. The beat's sweep
   is emulated every --sweep-interval seconds meanwhile (production runs the beat).
   Reference: the same documents built here and pushed straight to another fresh node.

Everything is throwaway: a temporary folder holds the portal's SQLite database, its var dir
(the filesystem broker's folders), the nodes' stores; the tasks travel on a private queue (a
shared Redis is not disturbed); every process started is ended and the folder removed.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import hashlib
import json
import logging
import os
import platform
import queue
import re
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
REALM = "sip.bench"

WORKER = """
import sys, django
from portal.celery import app
django.setup()
queue, polling = sys.argv[1], sys.argv[2]
app.conf.task_routes = {"sipsync.*": {"queue": queue}}
if polling:
    app.conf.broker_transport_options = {**(app.conf.broker_transport_options or {}),
                                         "polling_interval": float(polling)}
app.worker_main(["worker", "--pool", "solo", "--loglevel", "INFO", "-Q", queue,
                 "--hostname", queue + "@%h", "--without-mingle", "--without-gossip"])
"""


def say(text: str = "") -> None:
    print(text, flush=True)


class Child:
    """A child process in its own process group; its output is kept and can be waited for."""

    def __init__(self, argv: list[str], env: dict[str, str]):
        self.proc = subprocess.Popen(
            argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            start_new_session=True,
        )  # fmt: skip
        self.lines: queue.Queue[str] = queue.Queue()
        self.output: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            self.output.append(line)
            self.lines.put(line)

    def wait_for(self, pattern: str, timeout: float = 60.0) -> re.Match:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.2)
            except queue.Empty:
                if self.proc.poll() is not None:
                    break
                continue
            if match := re.search(pattern, line):
                return match
        raise RuntimeError(f"never saw {pattern!r}:\n{''.join(self.output)[-3000:]}")

    def stop(self, sig=signal.SIGTERM, grace: float = 10.0):
        if self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, sig)
        try:
            self.proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


class Node:
    def __init__(self, store: Path, env: dict[str, str]):
        for attempt in range(3):  # port 0: the UDP port's number may be taken for TCP; try again
            try:
                self._start(store, env)
                return
            except RuntimeError:
                self.child.stop()
                if attempt == 2 or "address already in use" not in "".join(self.child.output):
                    raise

    def _start(self, store: Path, env: dict[str, str]) -> None:
        self.child = Child(
            [
                sys.executable, "-m", "sipsync.server", "--listen", "127.0.0.1:0", "--control", "127.0.0.1:0",
                "--store", str(store), "--realm", REALM, "--log-level", "WARNING",
            ],
            env,
        )  # fmt: skip
        listening = self.child.wait_for(r"sipsync: listening on udp:([\d.]+):(\d+)", 30)
        self.sip = (listening.group(1), int(listening.group(2)))
        self.url = self.child.wait_for(r"sipsync: control on (http://\S+)", 30).group(1)


class Phone:
    """REGISTER over UDP from 127.0.0.1, answering the MD5 digest challenge."""

    def __init__(self, server: tuple[str, int]):
        self.server = server
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(3.0)
        self.port = self.sock.getsockname()[1]
        self.call_id = f"{uuid.uuid4().hex}@bench"
        self.cseq = 0

    def register(self, username: str, password: str) -> int:
        status, text = self._send(username, None)
        if status != 401:
            return status
        return self._send(username, self._authorization(text, username, password))[0]

    def _send(self, username: str, auth: str | None) -> tuple[int, str]:
        self.cseq += 1
        lines = [
            f"REGISTER sip:{REALM} SIP/2.0",
            f"Via: SIP/2.0/UDP 127.0.0.1:{self.port};branch=z9hG4bK{uuid.uuid4().hex};rport",
            f"From: <sip:{username}@{REALM}>;tag={uuid.uuid4().hex[:8]}",
            f"To: <sip:{username}@{REALM}>",
            f"Call-ID: {self.call_id}",
            f"CSeq: {self.cseq} REGISTER",
            f"Contact: <sip:{username}@127.0.0.1:{self.port}>",
            "Expires: 600",
            "Max-Forwards: 70",
        ]
        if auth:
            lines.append(f"Authorization: {auth}")
        self.sock.sendto(("\r\n".join(lines) + "\r\nContent-Length: 0\r\n\r\n").encode(), self.server)
        while True:
            text = self.sock.recv(65535).decode("utf-8", "replace")
            match = re.match(r"SIP/2\.0 (\d{3})", text)
            if match and int(match.group(1)) >= 200 and re.search(rf"(?im)^CSeq:\s*{self.cseq}\s", text):
                return int(match.group(1)), text

    @staticmethod
    def _authorization(challenge: str, username: str, password: str) -> str:
        header = next(
            line
            for line in challenge.split("\r\n")
            if line.lower().startswith("www-authenticate:") and "MD5" in line
        )
        nonce = re.search(r'nonce="([^"]+)"', header).group(1)

        def md5(text: str) -> str:
            return hashlib.md5(text.encode()).hexdigest()  # noqa: S324 - SIP digest is MD5

        ha1, ha2, cnonce = (
            md5(f"{username}:{REALM}:{password}"),
            md5(f"REGISTER:sip:{REALM}"),
            uuid.uuid4().hex[:16],
        )
        response = md5(f"{ha1}:{nonce}:00000001:{cnonce}:auth:{ha2}")
        opaque = re.search(r'opaque="([^"]+)"', header)
        return (
            f'Digest username="{username}", realm="{REALM}", nonce="{nonce}", uri="sip:{REALM}", '
            f'algorithm=MD5, qop=auth, nc=00000001, cnonce="{cnonce}", response="{response}"'
            + (f', opaque="{opaque.group(1)}"' if opaque else "")
        )


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))]


def figures(name: str, values: list[float]) -> str:
    ms = [v * 1000 for v in values]
    return (
        f"{name}: n={len(ms)} p50={percentile(ms, 50):.1f} ms p90={percentile(ms, 90):.1f} ms "
        f"p99={percentile(ms, 99):.1f} ms max={max(ms):.1f} ms mean={statistics.fmean(ms):.1f} ms"
    )


# --------------------------------------------------------------------------------------------


def run(args, tmp: Path, children: list[Child], result: dict) -> None:
    secret = secrets.token_hex(16)
    queue_name = args.queue_name
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "CELERY_BROKER_URL")}
    env.update(
        PORTAL_VAR_DIR=str(tmp / "var"), DJANGO_SETTINGS_MODULE="portal.settings", SIP_CONTROL_SECRET=secret,
        SIP_REALM=REALM, CELERY_TASK_ALWAYS_EAGER="false", PYTHONPATH=str(ROOT),
    )  # fmt: skip
    if args.broker.startswith("redis"):
        env["REDIS_URL"] = args.broker
    node = Node(tmp / "node1.sqlite3", env)
    children.append(node.child)
    env["SIP_NODES"] = node.url
    os.environ.clear()
    os.environ.update(env)
    sys.path.insert(0, str(ROOT))

    import django

    django.setup()
    import httpx
    from django.conf import settings
    from django.core.management import call_command

    from accounts import credentials
    from accounts import services as account_services
    from accounts.models import SipAccount
    from portal.celery import app
    from sipsync import documents, tasks
    from sipsync.client import NodeClient
    from sipsync.models import DocumentKind, DocumentVersion, OutboxEntry
    from sipsync.outbox import clock_version
    from sipsync.server.provision import document_for_password

    call_command("migrate", verbosity=0)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    app.conf.task_routes = {"sipsync.*": {"queue": queue_name}}
    polling = "" if args.polling_interval is None else str(args.polling_interval)

    def start_worker() -> Child:
        worker = Child([sys.executable, "-c", WORKER, queue_name, polling], dict(os.environ))
        children.append(worker)
        worker.wait_for(r"ready\.", 60)
        return worker

    say(f"# bench/sync.py  {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC")
    say(f"# broker: {settings.CELERY_BROKER_URL}  (worker: 1 process, --pool solo)  database: SQLite")
    say(f"# python {platform.python_version()}, {os.cpu_count()} CPUs, {platform.platform()}")
    if polling:
        say(f"# filesystem transport polling_interval overridden: {polling} s")

    worker = start_worker()
    http = httpx.Client(base_url=node.url, headers={"Authorization": f"Bearer {secret}"}, timeout=5)

    def held(aor: str) -> int | None:
        return http.get("/v1/digest").json()["accounts"].get(aor)

    # --- 1. change latency -------------------------------------------------------------------
    customer = account_services.customer_create(name="Bench", account_number="CBENCH01")
    password = "Bench-Start-Passw0rd!"
    account = account_services.sip_account_create(
        customer=customer, extension="1001", password=password
    ).account
    aor = f"{account.username}@{account.realm}"
    deadline = time.monotonic() + 30
    while held(aor) is None and time.monotonic() < deadline:
        time.sleep(0.01)
    if held(aor) is None:
        raise RuntimeError("the first push never arrived:\n" + "".join(worker.output)[-3000:])
    phone = Phone(node.sip)
    applied, enforced = [], []
    poll = args.poll_ms / 1000
    for i in range(args.changes):
        new = f"Bench-Passw0rd-{i}-{secrets.token_hex(4)}"
        started = time.perf_counter()
        account_services.sip_account_set_password(account=account, password=new)
        version = DocumentVersion.objects.get(kind=DocumentKind.ACCOUNT, object_id=account.pk).version
        limit = time.monotonic() + 30
        while (held(aor) or 0) < version:
            if time.monotonic() > limit:
                raise RuntimeError(f"change {i} never applied:\n" + "".join(worker.output)[-3000:])
            time.sleep(poll)
        applied.append(time.perf_counter() - started)
        old_status, new_status = (
            phone.register(account.username, password),
            phone.register(account.username, new),
        )
        enforced.append(time.perf_counter() - started)
        if (old_status, new_status) != (403, 200):
            raise RuntimeError(f"change {i}: old password {old_status}, new {new_status} (expected 403, 200)")
        password = new
    say(figures("change -> applied on the node (digest shows the version)", applied))
    say(figures("change -> enforced (old password 403, new 200 over UDP)", enforced))
    say(f"aim: p99 < 500 ms -> {'met' if percentile(enforced, 99) * 1000 < 500 else 'MISSED'}")

    # Reference: the same change as a document PUT straight to the node by this process (no
    # database, broker or worker): the floor the portal's path is compared with.
    direct = []
    ref_user, ref_password = "bench-direct", "Bench-Direct-Passw0rd!"
    http.put(
        f"/v1/accounts/{ref_user}@{REALM}",
        json=document_for_password(ref_user, REALM, ref_password, version=1),
    ).raise_for_status()
    for i in range(args.changes):
        new = f"Bench-Direct-{i}-{secrets.token_hex(4)}"
        started = time.perf_counter()
        http.put(
            f"/v1/accounts/{ref_user}@{REALM}",
            json=document_for_password(ref_user, REALM, new, version=i + 2),
        ).raise_for_status()
        statuses = phone.register(ref_user, ref_password), phone.register(ref_user, new)
        direct.append(time.perf_counter() - started)
        if statuses != (403, 200):
            raise RuntimeError(f"direct change {i}: old password, new: {statuses} (expected 403, 200)")
        ref_password = new
    say(figures("reference: PUT straight to the node -> enforced", direct))
    say(f"ratio enforced p99 / reference p99: {percentile(enforced, 99) / percentile(direct, 99):.1f}x")
    result.update(
        enforced_p50=percentile(enforced, 50) * 1000, enforced_p99=percentile(enforced, 99) * 1000,
        direct_p99=percentile(direct, 99) * 1000,
    )  # fmt: skip
    http.delete(f"/v1/accounts/{ref_user}@{REALM}", params={"version": args.changes + 2}).raise_for_status()

    # --- 2. convergence of a fresh node ---------------------------------------------------------
    n = args.accounts
    if n <= 0:
        return
    started = time.perf_counter()
    now = datetime.datetime.now(datetime.UTC)
    rows = []
    for i in range(n):
        username = f"bench{i:06d}"
        ha1 = credentials.ha1_pair(username, REALM, f"pw-{username}")
        rows.append(
            SipAccount(
                customer=customer, extension=str(20000 + i), username=username, realm=REALM,
                ha1_md5=ha1.md5, ha1_sha256=ha1.sha256, password_changed_at=now,
            )
        )  # fmt: skip
    created = SipAccount.objects.bulk_create(rows, batch_size=2000)
    version = clock_version()
    DocumentVersion.objects.bulk_create(
        [
            DocumentVersion(kind=DocumentKind.ACCOUNT, object_id=a.pk, version=version + i)
            for i, a in enumerate(created)
        ],
        batch_size=2000,
    )
    say(f"\n{n} accounts written to the portal database in {time.perf_counter() - started:.1f} s")

    worker.stop(signal.SIGTERM, 30)
    node.child.stop()
    fresh = Node(tmp / "node2.sqlite3", dict(os.environ))
    children.append(fresh.child)
    os.environ["SIP_NODES"] = fresh.url
    settings.SIP_NODES = [fresh.url]
    http.close()
    http = httpx.Client(base_url=fresh.url, headers={"Authorization": f"Bearer {secret}"}, timeout=30)
    worker = start_worker()

    versions = dict(
        DocumentVersion.objects.filter(kind=DocumentKind.ACCOUNT).values_list("object_id", "version")
    )
    accounts_by_pk = {
        pk: f"{username}@{realm.lower()}"
        for pk, username, realm in SipAccount.objects.values_list("pk", "username", "realm")
    }
    accounts = {aor: versions[pk] for pk, aor in accounts_by_pk.items()}
    started = time.perf_counter()
    tasks.reconcile.apply_async(queue=queue_name)
    next_sweep = started + args.sweep_interval
    progress, converged_at = [], None
    while time.perf_counter() - started < args.converge_timeout:
        digest = http.get("/v1/digest").json()["accounts"]
        matching = sum(1 for key, v in accounts.items() if digest.get(key) == v)
        progress.append((time.perf_counter() - started, matching))
        if digest == accounts:
            converged_at = time.perf_counter() - started
            break
        if time.perf_counter() >= next_sweep:
            tasks.sweep_outbox.apply_async(queue=queue_name)
            next_sweep += args.sweep_interval
        time.sleep(0.1)
    total = len(accounts)
    for t, count in progress[:: max(1, len(progress) // 10)]:
        say(f"  t={t:6.1f} s  {count}/{total} accounts at the portal's version")
    if converged_at is None:
        say(f"fresh node: NOT converged after {args.converge_timeout:.0f} s ({progress[-1][1]}/{total})")
    else:
        say(f"fresh node: {total} accounts converged {converged_at:.2f} s after reconcile was queued")
        say(f"aim: < 10 s -> {'met' if converged_at < 10 else 'MISSED'}")
    say(f"outbox entries left: {OutboxEntry.objects.count()}")
    http.close()
    if converged_at is None:
        return
    result["converge_s"] = converged_at

    # Reference: the same documents built in this process and pushed straight to another fresh
    # node in batches of 500 (no outbox, broker, worker or status bookkeeping).
    worker.stop(signal.SIGTERM, 30)
    reference = Node(tmp / "node3.sqlite3", dict(os.environ))
    children.append(reference.child)
    ids = list(accounts_by_pk)
    started = time.perf_counter()
    with NodeClient(reference.url, secret=secret, timeout=30) as client:
        for start in range(0, len(ids), 500):
            built = documents.build_documents(DocumentKind.ACCOUNT, ids[start : start + 500])
            client.push_batch([doc for doc in built.values() if doc is not None])
        if client.digest()["accounts"] != accounts:
            raise RuntimeError("the reference node did not converge")
    direct_s = time.perf_counter() - started
    say(f"reference: the same documents pushed straight to a fresh node: {direct_s:.2f} s")
    say(f"ratio convergence / reference: {converged_at / direct_s:.1f}x")
    result["converge_direct_s"] = direct_s


DEFAULT_BROKERS = ["filesystem://", "redis://127.0.0.1:6379/0"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/sync.py", description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--broker", action="append",
        help="filesystem:// (embedded) or redis://HOST:PORT/DB; repeat for several, each measured in "
        f"turn (default: {' and '.join(DEFAULT_BROKERS)}, Redis skipped when it does not answer)",
    )  # fmt: skip
    parser.add_argument("--changes", type=int, default=200, help="password changes timed (default 200)")
    parser.add_argument(
        "--accounts", type=int, default=10_000, help="accounts a fresh node converges (0: skip)"
    )
    parser.add_argument("--poll-ms", type=float, default=2.0, help="digest polling interval (default 2 ms)")
    parser.add_argument(
        "--sweep-interval", type=float, default=30.0, help="emulated beat sweep (default 30 s)"
    )
    parser.add_argument("--converge-timeout", type=float, default=600.0)
    parser.add_argument(
        "--polling-interval", type=float, default=None,
        help="what-if: the embedded broker's polling interval in the worker (default: as configured, "
        "50 ms; portal/broker.py)",
    )  # fmt: skip
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    parser.add_argument("--result-file", help=argparse.SUPPRESS)  # one broker's figures, as JSON
    args = parser.parse_args(argv)
    brokers = args.broker or DEFAULT_BROKERS
    if len(brokers) > 1:
        return _each_broker(brokers, argv if argv is not None else sys.argv[1:])
    args.broker = brokers[0]
    args.queue_name = f"sipsync-bench-{uuid.uuid4().hex[:10]}"
    tmp = Path(tempfile.mkdtemp(prefix="sync-bench-"))
    children: list[Child] = []
    result: dict = {"broker": args.broker}
    try:
        run(args, tmp, children, result)
    finally:
        for child in reversed(children):
            child.stop()
        if args.broker.startswith("redis"):  # nothing of the private queue stays on a shared Redis
            with contextlib.suppress(Exception):
                import redis

                redis.Redis.from_url(args.broker).delete(args.queue_name)
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
        if args.result_file:
            Path(args.result_file).write_text(json.dumps(result))
    return 0


def _each_broker(brokers: list[str], argv: list[str]) -> int:
    """Measure each broker in a process of its own (Django and Celery are set up once per
    process), then print the figures side by side."""
    rest = [a for i, a in enumerate(argv) if a != "--broker" and (i == 0 or argv[i - 1] != "--broker")]
    rest = [a for a in rest if not a.startswith("--broker=")]
    results, code = [], 0
    for broker in brokers:
        if broker.startswith("redis") and not _answers(broker):
            say(f"# {broker}: not answering, skipped")
            continue
        with tempfile.NamedTemporaryFile(suffix=".json") as out:
            say(f"\n## broker {broker}")
            done = subprocess.run(
                [sys.executable, __file__, "--broker", broker, "--result-file", out.name, *rest], cwd=ROOT
            )
            code = code or done.returncode
            text = Path(out.name).read_text()
            results.append(json.loads(text) if text else {"broker": broker})
    say("\n## summary (ms; s for convergence)")
    say("| broker | enforced p50 | enforced p99 | reference p99 | 10,000 accounts | reference |")
    say("|---|---|---|---|---|---|")
    columns = [("enforced_p50", ".0f"), ("enforced_p99", ".0f"), ("direct_p99", ".0f")]
    columns += [("converge_s", ".2f"), ("converge_direct_s", ".2f")]
    for r in results:
        cells = [format(r[key], fmt) if key in r else "-" for key, fmt in columns]
        say(f"| {r['broker']} | {' | '.join(cells)} |")
    return code


def _answers(url: str) -> bool:
    try:
        import redis

        return bool(redis.Redis.from_url(url, socket_connect_timeout=1).ping())
    except Exception:  # noqa: BLE001 - whatever the reason, there is no Redis to measure
        return False


if __name__ == "__main__":
    sys.exit(main())
