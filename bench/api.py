"""Benchmark the REST API's SIP account list and create endpoints under gunicorn.

    .venv/bin/python bench/api.py                      # SQLite, 10,000 accounts, 15 s per run
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/ninja_bench .venv/bin/python bench/api.py
    .venv/bin/python bench/api.py --accounts 10000 --duration 20 --concurrency 1,8 --json out.json

What it does:
1. makes a fresh database (a SQLite file in a temporary folder, or the PostgreSQL database named
   by DATABASE_URL, dropped and created again), migrates it, and seeds one customer with
   `--accounts` SIP accounts (bulk inserts with real HA1 digests and two codecs each) and a
   customer API key;
2. starts gunicorn with ONE sync worker (`portal.wsgi`, pinned to core 0 with taskset when there
   are two or more cores) on 127.0.0.1;
3. drives it from this process (pinned to core 1) with an asyncio/httpx closed loop: `C`
   requests in flight, for `--duration` seconds after a 2 s warm-up, for each concurrency:
   - list:   GET /api/v1/sip-accounts/?limit=50&offset=<random page>   (the whole 10,000)
   - create: POST /api/v1/sip-accounts/ {"extension": <new>}  (201, password generated, outbox
     row written, Celery task published to the embedded broker, as in production)
4. prints requests/s, p50, p90, p99 and max latency per endpoint and concurrency, and the number
   of SQL queries per request (from a test client run in this process against the same data).

Throttling is switched off for the run (API_THROTTLE_RATE very high); DEBUG is off.
Traffic goes to 127.0.0.1 only, and every loop stops by itself.
"""

import argparse
import asyncio
import json
import os
import random
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--accounts", type=int, default=10_000)
    parser.add_argument("--duration", type=float, default=15.0, help="seconds per measured run")
    parser.add_argument("--warmup", type=float, default=2.0)
    parser.add_argument("--concurrency", default="1,8", help="comma-separated requests in flight")
    parser.add_argument("--page", type=int, default=50, help="list page size (limit)")
    parser.add_argument("--json", help="write the figures to this file")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (database, logs)")
    return parser.parse_args(argv)


# --- the database ---------------------------------------------------------------------------


def prepare_environment(workdir: Path) -> dict:
    env = dict(os.environ)
    env.update(
        {
            "PORTAL_VAR_DIR": str(workdir / "var"),
            "DJANGO_SETTINGS_MODULE": "portal.settings",
            "API_THROTTLE_RATE": "100000000/min",
            "DEBUG": "0",
            "LOG_LEVEL": "WARNING",
            "SIP_NODES": "http://127.0.0.1:9",
            "SECRET_KEY": "bench-not-secret-" + "x" * 40,
        }
    )
    env.pop("REDIS_URL", None)  # embedded broker and in-process cache: no other server involved
    url = env.get("DATABASE_URL", "")
    if url.startswith("postgres"):
        recreate_postgres(url)
    return env


def recreate_postgres(url: str) -> None:
    import psycopg

    base, _, name = url.rpartition("/")
    with psycopg.connect(f"{base}/postgres", autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')


def seed(env: dict, accounts: int) -> dict:
    """Migrate and seed in a child process (this process stays free of Django)."""
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--no-input", "-v", "0"], cwd=ROOT, env=env, check=True
    )
    out = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--seed", str(accounts)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    if out.returncode != 0:
        raise RuntimeError(f"seeding failed:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def seed_in_process(accounts: int) -> None:
    import django

    django.setup()
    from django.conf import settings
    from django.db import connection, transaction
    from django.test import Client
    from django.test.utils import CaptureQueriesContext
    from django.utils import timezone

    from accounts import api_keys, credentials
    from accounts import services as account_services
    from accounts.models import SipAccount, SipAccountCodec

    customer = account_services.customer_create(name="Bench Ltd", account_number="BENCH0001")
    realm = settings.SIP_REALM
    now = timezone.now()
    ha1 = credentials.ha1_pair("bench", realm, "Bench-password-1")
    with transaction.atomic():
        rows = [
            SipAccount(
                customer=customer,
                extension=f"{10000 + i}",
                label=f"Desk {i}",
                username=f"bench{10000 + i}",
                realm=realm,
                ha1_md5=ha1.md5,
                ha1_sha256=ha1.sha256,
                password_changed_at=now,
            )
            for i in range(accounts)
        ]
        created = SipAccount.objects.bulk_create(rows, batch_size=1000)
        if created and created[0].pk is None:  # backends without RETURNING
            created = list(SipAccount.objects.filter(customer=customer).order_by("pk"))
        SipAccountCodec.objects.bulk_create(
            [
                SipAccountCodec(account=account, codec=codec, position=position)
                for account in created
                for position, codec in enumerate(("PCMU", "G729"))
            ],
            batch_size=2000,
        )
    key = api_keys.api_key_create(name="bench", customer=customer).plaintext
    with connection.cursor() as cursor:  # statistics and visibility map, as autovacuum would leave them
        cursor.execute("VACUUM ANALYZE" if connection.vendor == "postgresql" else "ANALYZE")
    # SQL queries per request, counted in process on the same data.
    client = Client(HTTP_AUTHORIZATION=f"Bearer {key}", HTTP_HOST="127.0.0.1")
    client.get("/api/v1/sip-accounts/")  # the key's first use records last_used_at
    counts = {}
    with CaptureQueriesContext(connection) as queries:
        middle = (accounts // 2) // 50 * 50
        assert client.get(f"/api/v1/sip-accounts/?limit=50&offset={middle}").status_code == 200
    counts["list"] = len(queries)
    with CaptureQueriesContext(connection) as queries:
        response = client.post(
            "/api/v1/sip-accounts/", {"extension": "9999999"}, content_type="application/json"
        )
        assert response.status_code == 201, response.content
    counts["create"] = len(queries)
    print(json.dumps({"key": key, "queries": counts, "vendor": connection.vendor}))


# --- the server -----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_gunicorn(env: dict, port: int, log: Path) -> subprocess.Popen:
    command = [
        str(Path(sys.executable).with_name("gunicorn")),
        "portal.wsgi:application",
        "--workers",
        "1",
        "--worker-class",
        "sync",
        "--bind",
        f"127.0.0.1:{port}",
        "--backlog",
        "256",
        "--log-level",
        "warning",
    ]
    if (os.cpu_count() or 1) >= 2 and shutil.which("taskset"):
        command = ["taskset", "-c", "0", *command]
    process = subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return process
        except OSError:
            if process.poll() is not None:
                raise RuntimeError(f"gunicorn exited: {log.read_text()[-2000:]}") from None
            time.sleep(0.1)
    raise RuntimeError("gunicorn did not start")


def process_group_cpu(pgid: int) -> float:
    """CPU seconds (user + system) used so far by every process of the server's group."""
    total = 0
    tick = os.sysconf("SC_CLK_TCK")
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:  # field 5 of stat: the process group
            total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / tick


def stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


# --- the load -------------------------------------------------------------------------------


async def closed_loop(base: str, key: str, make_request, concurrency: int, warmup: float, duration: float):
    import httpx

    latencies: list[float] = []
    statuses: dict[int, int] = {}
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=base, headers=headers, limits=limits, timeout=30) as client:
        method, url, body = make_request()
        first = await client.request(method, url, json=body)  # the worker loads lazily on first use
        if first.status_code >= 400:
            raise RuntimeError(f"{method} {url}: {first.status_code} {first.text[:500]}")
        start = time.perf_counter()
        measure_from = start + warmup
        stop_at = measure_from + duration

        async def worker():
            while True:
                sent = time.perf_counter()
                if sent >= stop_at:
                    return
                method, url, body = make_request()
                response = await client.request(method, url, json=body)
                done = time.perf_counter()
                if sent >= measure_from:
                    latencies.append(done - sent)
                    statuses[response.status_code] = statuses.get(response.status_code, 0) + 1

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies, statuses


def summary(latencies: list[float], statuses: dict[int, int], duration: float) -> dict:
    ordered = sorted(latencies)

    def pct(p: float) -> float:
        return ordered[min(len(ordered) - 1, int(p * len(ordered)))] * 1000 if ordered else float("nan")

    return {
        "requests": len(ordered),
        "rps": round(len(ordered) / duration, 1),
        "p50_ms": round(pct(0.50), 2),
        "p90_ms": round(pct(0.90), 2),
        "p99_ms": round(pct(0.99), 2),
        "max_ms": round(ordered[-1] * 1000, 2) if ordered else None,
        "mean_ms": round(statistics.fmean(ordered) * 1000, 2) if ordered else None,
        "statuses": {str(k): v for k, v in sorted(statuses.items())},
    }


def main(argv=None) -> int:
    if len(sys.argv) >= 3 and sys.argv[1] == "--seed":
        seed_in_process(int(sys.argv[2]))
        return 0
    args = parse_args(argv)
    if (os.cpu_count() or 1) >= 2 and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {1})
    workdir = Path(tempfile.mkdtemp(prefix="api-bench-"))
    env = prepare_environment(workdir)
    t0 = time.monotonic()
    seeded = seed(env, args.accounts)
    print(f"seeded {args.accounts} accounts on {seeded['vendor']} in {time.monotonic() - t0:.1f} s")
    print(f"SQL queries per request: list {seeded['queries']['list']}, create {seeded['queries']['create']}")
    port = free_port()
    server = start_gunicorn(env, port, workdir / "gunicorn.log")
    base = f"http://127.0.0.1:{port}"
    results = {
        "accounts": args.accounts,
        "database": seeded["vendor"],
        "queries": seeded["queries"],
        "runs": [],
    }
    pages = max(1, args.accounts // args.page)
    extensions = iter(range(20_000_000, 99_999_999))

    def list_request():
        return (
            "GET",
            f"/api/v1/sip-accounts/?limit={args.page}&offset={random.randrange(pages) * args.page}",
            None,
        )

    def create_request():
        return "POST", "/api/v1/sip-accounts/", {"extension": str(next(extensions))}

    try:
        for concurrency in [int(c) for c in args.concurrency.split(",")]:
            for name, make in (("list", list_request), ("create", create_request)):
                cpu_before, load_before = process_group_cpu(server.pid), os.getloadavg()[0]
                wall = time.monotonic()
                latencies, statuses = asyncio.run(
                    closed_loop(base, seeded["key"], make, concurrency, args.warmup, args.duration)
                )
                cpu = process_group_cpu(server.pid) - cpu_before
                wall = time.monotonic() - wall
                row = {
                    "endpoint": name,
                    "concurrency": concurrency,
                    **summary(latencies, statuses, args.duration),
                }
                # Server CPU per request: what a request costs on a core of its own, whatever
                # else the machine runs (the warm-up's requests are counted too).
                served = sum(statuses.values()) * (wall / args.duration)
                row["server_cpu_ms_per_request"] = round(cpu * 1000 / served, 2) if served else None
                row["server_cpu_share"] = round(cpu / wall, 2)
                row["load_average"] = round(max(load_before, os.getloadavg()[0]), 2)
                results["runs"].append(row)
                print(
                    f"{name:6} c={concurrency:<3} {row['rps']:8.1f} req/s  p50 {row['p50_ms']:7.2f} ms  "
                    f"p90 {row['p90_ms']:7.2f} ms  p99 {row['p99_ms']:7.2f} ms  max {row['max_ms']:7.2f} ms  "
                    f"{row['statuses']}  server CPU {row['server_cpu_ms_per_request']} ms/req "
                    f"({row['server_cpu_share']:.0%} of a core)  load {row['load_average']}",
                    flush=True,
                )
    finally:
        stop(server)
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"kept {workdir}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
