"""Provisioning sync under faults: each case ends with nothing lost and the node converged.

Real parts throughout: a real SIP node process (`python -m sipsync.server`), a real Celery
worker process on the real broker (the embedded filesystem broker; Redis when REDIS_URL is
set) sharing the test database, real REGISTERs over UDP with digest authentication.

Liberties taken, each to keep concurrent runs apart or a test short, never to skip a step:

- The tasks travel on a queue private to the test (as in test_sync_e2e.py). The worker is
  `portal.celery.app.worker_main`, started by a three-line launcher that routes `sipsync.*` to
  that queue, so that the sweep, run *in the worker*, queues its pushes where the worker reads;
  the launcher can also shorten `sipsync.outbox.CLAIM_SECONDS` (the lease of a dead worker).
- After a node outage, the entries' back-off (10 s and up) is fast-forwarded in the database
  before the sweep instead of being waited out.
"""

import contextlib
import hashlib
import json
import os
import re
import signal
import socket
import sys
import threading
import time
import uuid
from pathlib import Path
from unittest import mock
from urllib.parse import quote, urlsplit

import httpx
import pytest
from django.db import OperationalError, connection, connections
from django.utils import timezone

from accounts import services as account_services
from accounts.models import Customer, SipAccount
from billing.models import RatePlan
from portal.celery import app as celery_app
from sipsync import documents, services, tasks
from sipsync.models import DocumentKind, DocumentVersion, OutboxEntry, ProvisioningState, ProvisioningStatus
from tests.sipsync.test_sync_e2e import REALM, SECRET, Process, _database_url

AUTH = {"Authorization": f"Bearer {SECRET}"}

# The worker: Celery's own worker_main, with the sync tasks routed to the test's private queue.
WORKER_LAUNCHER = """
import sys, django
from portal.celery import app
django.setup()
from sipsync import outbox
queue, claim_seconds = sys.argv[1], sys.argv[2]
if claim_seconds:
    outbox.CLAIM_SECONDS = float(claim_seconds)
app.conf.task_routes = {"sipsync.*": {"queue": queue}}
app.worker_main(["worker", "--pool", "solo", "--loglevel", "INFO", "-Q", queue,
                 "--hostname", queue + "@%h", "--without-mingle", "--without-gossip"])
"""


# --- a tiny SIP UA: REGISTER over UDP, answering the digest challenge ------------------------


class SipPhone:
    """REGISTERs over UDP from 127.0.0.1 like a phone, answering the MD5 digest challenge."""

    def __init__(self, server: tuple[str, int]):
        self.server = server
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(3.0)
        self.port = self.sock.getsockname()[1]

    def close(self):
        self.sock.close()

    def register(self, username: str, password: str, *, expires: int = 3600) -> int:
        """The final status of a REGISTER (401 challenge answered once)."""
        call_id = f"{uuid.uuid4().hex}@fault-test"
        first = self._transact(self._request(username, call_id, 1, expires))
        if first[0] != 401:
            return first[0]
        auth = self._authorization(first[1], username, password)
        return self._transact(self._request(username, call_id, 2, expires, auth))[0]

    def _request(self, username, call_id, cseq, expires, auth=None) -> bytes:
        lines = [
            f"REGISTER sip:{REALM} SIP/2.0",
            f"Via: SIP/2.0/UDP 127.0.0.1:{self.port};branch=z9hG4bK{uuid.uuid4().hex};rport",
            f"From: <sip:{username}@{REALM}>;tag={uuid.uuid4().hex[:8]}",
            f"To: <sip:{username}@{REALM}>",
            f"Call-ID: {call_id}",
            f"CSeq: {cseq} REGISTER",
            f"Contact: <sip:{username}@127.0.0.1:{self.port}>",
            f"Expires: {expires}",
            "Max-Forwards: 70",
            "User-Agent: FaultTestPhone/1.0",
        ]
        if auth:
            lines.append(f"Authorization: {auth}")
        return ("\r\n".join(lines) + "\r\nContent-Length: 0\r\n\r\n").encode()

    def _transact(self, data: bytes) -> tuple[int, str]:
        cseq = re.search(rb"CSeq: (\d+)", data).group(1)
        self.sock.sendto(data, self.server)
        while True:  # skip provisional answers and strays
            text = self.sock.recv(65535).decode("utf-8", "replace")
            status = re.match(r"SIP/2\.0 (\d{3})", text)
            if status and re.search(rf"(?im)^CSeq:\s*{cseq.decode()}\s", text) and status.group(1) >= "200":
                return int(status.group(1)), text

    @staticmethod
    def _authorization(challenge: str, username: str, password: str) -> str:
        header = next(
            line.split(":", 1)[1].strip()
            for line in challenge.split("\r\n")
            if line.lower().startswith("www-authenticate:") and "algorithm=MD5" in line
        )
        nonce = re.search(r'nonce="([^"]+)"', header).group(1)
        opaque = re.search(r'opaque="([^"]+)"', header)
        md5 = lambda text: hashlib.md5(text.encode()).hexdigest()  # noqa: E731, S324 - SIP digest
        ha1, ha2 = md5(f"{username}:{REALM}:{password}"), md5(f"REGISTER:sip:{REALM}")
        value = (
            f'Digest username="{username}", realm="{REALM}", nonce="{nonce}", uri="sip:{REALM}", '
            f"algorithm=MD5"
        )
        if "qop=" in header:
            cnonce = uuid.uuid4().hex[:16]
            response = md5(f"{ha1}:{nonce}:00000001:{cnonce}:auth:{ha2}")
            value += f', qop=auth, nc=00000001, cnonce="{cnonce}", response="{response}"'
        else:
            value += f', response="{md5(f"{ha1}:{nonce}:{ha2}")}"'
        if opaque:
            value += f', opaque="{opaque.group(1)}"'
        return value


# --- the parts: nodes, workers, a proxy that holds a push ------------------------------------


class Node:
    """A real SIP node process; `restart` brings it back on the same store and ports."""

    def __init__(self, store: Path, *, sip_port: int = 0, control_port: int = 0):
        self.store = store
        env = {**os.environ, "SIP_CONTROL_SECRET": SECRET}
        self.process = Process(
            [
                sys.executable, "-m", "sipsync.server", "--listen", f"127.0.0.1:{sip_port}",
                "--control", f"127.0.0.1:{control_port}", "--store", str(store), "--realm", REALM,
            ],
            env,
        )  # fmt: skip
        listening = self.process.wait_for(r"sipsync: listening on udp:([\d.]+):(\d+)", timeout=30)
        self.sip = (listening.group(1), int(listening.group(2)))
        self.url = self.process.wait_for(r"sipsync: control on (http://\S+)", timeout=30).group(1)
        self.control_port = urlsplit(self.url).port

    def kill(self):
        self.process.proc.kill()
        self.process.proc.wait(timeout=10)

    def restart(self) -> "Node":
        return Node(self.store, sip_port=self.sip[1], control_port=self.control_port)

    def stop(self):
        self.process.stop()

    def get(self, path: str, **params) -> dict:
        response = httpx.get(f"{self.url}{path}", params=params, headers=AUTH, timeout=5)
        response.raise_for_status()
        return response.json()

    def put_account(self, document: dict) -> dict:
        aor = quote(f"{document['username']}@{document['realm']}", safe="@")
        response = httpx.put(f"{self.url}/v1/accounts/{aor}", json=document, headers=AUTH, timeout=5)
        response.raise_for_status()
        return response.json()


class HoldingProxy:
    """A TCP proxy in front of a node's control port. Armed with `hold_next()`, it reads the
    next connection's request and keeps it (the push is in flight, unanswered) until
    `deliver_held()` hands it to the node late; every other connection passes straight through."""

    def __init__(self, target_port: int):
        self.target = ("127.0.0.1", target_port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self._arm = False
        self.held = threading.Event()
        self.held_request = b""
        self.late_answer = b""
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def hold_next(self):
        self._arm = True

    def close(self):
        self._closed = True
        self.listener.close()

    def _accept(self):
        while not self._closed:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if self._arm:
                self._arm = False
                threading.Thread(target=self._hold, args=(client,), daemon=True).start()
            else:
                upstream = socket.create_connection(self.target)
                for a, b in ((client, upstream), (upstream, client)):
                    threading.Thread(target=_pump, args=(a, b), daemon=True).start()

    def _hold(self, client):
        self.held_request = _read_http_message(client)
        self.held.set()

    def deliver_held(self) -> dict:
        """Send the held request to the node now; returns the node's JSON answer."""
        with socket.create_connection(self.target, timeout=5) as upstream:
            upstream.sendall(self.held_request)
            self.late_answer = _read_http_message(upstream)
        head, _, body = self.late_answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200"), self.late_answer
        return json.loads(body)


def _pump(source, sink):
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass
    finally:
        for sock in (source, sink):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


def _read_http_message(sock) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            return data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = re.search(rb"(?i)content-length:\s*(\d+)", head)
    wanted = int(length.group(1)) if length else 0
    while len(body) < wanted:
        chunk = sock.recv(65536)
        if not chunk:
            break
        body += chunk
    return head + b"\r\n\r\n" + body


class Rig:
    """The processes of one test, its private queue, and what the portal publishes."""

    def __init__(self, tmp_path: Path, settings):
        self.tmp_path = tmp_path
        self.settings = settings
        self.queue = f"sipsync-faults-{uuid.uuid4().hex[:12]}"
        self.processes: list[Process] = []
        self.publish_errors: list[Exception] = []
        self.published = 0
        settings.SIP_CONTROL_SECRET = SECRET

    def node(self, name: str = "node") -> Node:
        for attempt in range(3):
            try:
                node = Node(self.tmp_path / f"{name}.sqlite3")
                break
            except AssertionError as exc:
                # Port 0: the node binds UDP, then TCP on the same number, which may be taken.
                if attempt == 2 or "address already in use" not in str(exc):
                    raise
        self.processes.append(node.process)
        return node

    def restart(self, node: Node) -> Node:
        again = node.restart()
        self.processes.append(again.process)
        return again

    def worker(self, node_urls: list[str], *, claim_seconds: float | None = None) -> Process:
        """A Celery worker process on the real broker, the test database and these nodes."""
        self.settings.SIP_NODES = list(node_urls)
        env = {
            **os.environ,
            "DATABASE_URL": _database_url(),
            "SIP_NODES": ",".join(node_urls),
            "SIP_CONTROL_SECRET": SECRET,
            "SIP_REALM": REALM,
            "CELERY_TASK_ALWAYS_EAGER": "false",
        }
        argv = [
            sys.executable,
            "-c",
            WORKER_LAUNCHER,
            self.queue,
            "" if claim_seconds is None else str(claim_seconds),
        ]
        worker = Process(argv, env)
        self.processes.append(worker)
        worker.wait_for(r"ready\.", timeout=40)
        return worker

    def publish_push(self, entry_ids):
        """`push_outbox.delay` of the portal, onto the private queue (errors are the broker's)."""
        self.published += 1
        try:
            return tasks.push_outbox.apply_async((entry_ids,), queue=self.queue)
        except Exception as exc:
            self.publish_errors.append(exc)
            raise

    def sweep(self):
        """The beat's sweep, run by the worker."""
        tasks.sweep_outbox.apply_async(queue=self.queue)

    def close(self):
        for process in reversed(self.processes):
            process.stop(
                *(
                    (signal.SIGQUIT, 1.0)
                    if "worker_main" in " ".join(process.proc.args)
                    else (signal.SIGTERM, 5.0)
                )
            )
        _forget_queue(self.queue)


@pytest.fixture
def rig(tmp_path, settings):
    rig = Rig(tmp_path, settings)
    try:
        with mock.patch.object(tasks.push_outbox, "delay", side_effect=rig.publish_push):
            yield rig
    finally:
        rig.close()


def _forget_queue(queue_name: str):
    """Leave nothing of a private queue on a shared Redis (an unacknowledged message of a killed
    worker would otherwise come back to the queue after the visibility timeout)."""
    url = celery_app.conf.broker_url or ""
    if not url.startswith("redis"):
        folder = Path((celery_app.conf.broker_transport_options or {}).get("data_folder_in") or ".")
        for leftover in folder.glob(f"*.{queue_name}.msg"):
            leftover.unlink(missing_ok=True)
        return
    import redis

    client = redis.Redis.from_url(url)
    try:
        client.delete(queue_name)
        for tag, payload in client.hscan_iter("unacked"):
            if queue_name.encode() in payload:
                client.hdel("unacked", tag)
                client.zrem("unacked_index", tag)
    finally:
        client.close()


# --- faults the test injects -----------------------------------------------------------------


@contextlib.contextmanager
def broker_unreachable(tmp_path: Path):
    """The portal publishes to a broker that is not there: Redis on a dead port, or the
    filesystem broker's queue folder pointed at a folder that does not exist."""
    conf = celery_app.conf
    saved = dict(conf.broker_transport_options or {}), conf.get("broker_write_url")
    if (conf.broker_url or "").startswith("redis"):
        conf.broker_write_url = "redis://127.0.0.1:1/0"
    else:
        conf.broker_transport_options = {**saved[0], "data_folder_out": str(tmp_path / "no-such-folder")}
    _drop_broker_pools()
    try:
        yield
    finally:
        conf.broker_transport_options, conf.broker_write_url = saved
        _drop_broker_pools()


def _drop_broker_pools():
    celery_app._pool = None
    celery_app.amqp._producer_pool = None


@contextlib.contextmanager
def database_unavailable():
    """The portal's database goes away for every process: on SQLite the file is moved aside
    (whoever opens the path finds no tables), on PostgreSQL the database stops accepting
    connections and its sessions are ended."""
    connections.close_all()
    db = connection.settings_dict
    if db["ENGINE"] == "django.db.backends.sqlite3":
        path = str(db["NAME"])
        files = [suffix for suffix in ("", "-wal", "-shm") if os.path.exists(path + suffix)]
        for suffix in files:
            os.rename(path + suffix, f"{path}.away{suffix}")
        try:
            yield
        finally:
            connections.close_all()
            for suffix in ("", "-wal", "-shm"):  # what a process created at the path meanwhile
                with contextlib.suppress(FileNotFoundError):
                    os.remove(path + suffix)
            for suffix in files:
                os.rename(f"{path}.away{suffix}", path + suffix)
        return
    import psycopg

    admin = psycopg.connect(
        host=db.get("HOST") or "localhost", port=db.get("PORT") or 5432, user=db.get("USER") or None,
        password=db.get("PASSWORD") or None, dbname="postgres", autocommit=True,
    )  # fmt: skip
    name = db["NAME"]
    try:
        admin.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS false')
        admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
            " WHERE datname = %s AND pid <> pg_backend_pid()",
            [name],
        )
        yield
    finally:
        admin.execute(f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS true')
        admin.close()
        connections.close_all()


# --- what "converged" means ------------------------------------------------------------------


def _portal_view(node_key: str):
    versions = {
        (kind, pk): v for kind, pk, v in DocumentVersion.objects.values_list("kind", "object_id", "version")
    }
    accounts = {
        f"{username}@{realm.lower()}": versions[DocumentKind.ACCOUNT, pk]
        for pk, username, realm in SipAccount.objects.values_list("pk", "username", "realm")
    }
    customers = {
        number: versions[DocumentKind.CUSTOMER, pk]
        for pk, number in Customer.objects.values_list("pk", "account_number")
    }
    plans = {
        name: versions[DocumentKind.RATE_PLAN, pk] for pk, name in RatePlan.objects.values_list("pk", "name")
    }
    statuses = {
        f"{s.account.username}@{s.account.realm.lower()}": (s.state, s.applied_version)
        for s in ProvisioningStatus.objects.filter(node=node_key).select_related("account")
    }
    return accounts, customers, plans, statuses


def wait_converged(node: Node, *, node_key: str | None = None, timeout: float = 30.0, worker=None):
    """Until the node holds exactly the portal's versions, every account is APPLIED at its
    version on the node, and the outbox is empty; returns the portal's account versions."""
    node_key = node_key or node.url
    deadline = time.monotonic() + timeout
    while True:
        accounts, customers, plans, statuses = _portal_view(node_key)
        digest = node.get("/v1/digest")
        expected_statuses = {aor: (ProvisioningState.APPLIED, v) for aor, v in accounts.items()}
        held = (digest["accounts"], digest["customers"], digest["rate_plans"])
        backlog = list(OutboxEntry.objects.values_list("kind", "object_id", "attempts", "last_error"))
        if held == (accounts, customers, plans) and statuses == expected_statuses and not backlog:
            return accounts
        if time.monotonic() > deadline:
            output = "".join(worker.seen)[-3000:] if worker is not None else ""
            assert held == (accounts, customers, plans), output
            assert statuses == expected_statuses, output
            assert backlog == [], output
        time.sleep(0.1)


def _aor(account) -> str:
    return f"{account.username}@{account.realm}"


def _version(account) -> int:
    return DocumentVersion.objects.get(kind=DocumentKind.ACCOUNT, object_id=account.pk).version


def _make_accounts(customer, count: int) -> list:
    """`count` accounts through the services; each with its password known."""
    made = []
    for i in range(count):
        password = f"Initial-Passw0rd-{i}!"
        account = account_services.sip_account_create(
            customer=customer, extension=f"{1001 + i}", password=password
        ).account
        made.append((account, password))
    return made


# --- 1. the broker is down while changes are made ---------------------------------------------


@pytest.mark.timeout(60)
@pytest.mark.django_db(transaction=True)
def test_changes_made_while_the_broker_is_down_are_kept_and_swept_to_the_node(rig, tmp_path):
    node = rig.node()
    worker = rig.worker([node.url])
    customer = account_services.customer_create(name="Acme", account_number="C7100001")
    [(first, _)] = _make_accounts(customer, 1)
    wait_converged(node, worker=worker)
    published_before = rig.published

    with broker_unreachable(tmp_path):
        issued = account_services.sip_account_set_password(account=first, password="Changed-Passw0rd-1!")
        second = account_services.sip_account_create(
            customer=customer, extension="2001", password="Second-Passw0rd-2!"
        ).account
    # Each change committed although its publish failed (the on-commit publish is robust)...
    assert rig.published - published_before == 2
    assert len(rig.publish_errors) == 2, rig.publish_errors
    assert SipAccount.objects.get(pk=first.pk).ha1_md5 == issued.account.ha1_md5
    assert SipAccount.objects.filter(pk=second.pk).exists()
    # ... and its outbox row is there; the node has not heard of either.
    assert set(OutboxEntry.objects.values_list("object_id", flat=True)) == {first.pk, second.pk}
    held = node.get("/v1/digest")["accounts"]
    assert _aor(second) not in held and held[_aor(first)] < _version(first)

    rig.sweep()  # the broker is back: the beat's sweep, run by the worker, pushes the rest
    versions = wait_converged(node, worker=worker)
    assert versions[_aor(first)] == _version(first)
    phone = SipPhone(node.sip)
    try:
        assert phone.register(first.username, "Changed-Passw0rd-1!") == 200
        assert phone.register(second.username, "Second-Passw0rd-2!") == 200
        assert phone.register(first.username, "Initial-Passw0rd-0!") == 403
    finally:
        phone.close()


# --- 2. the SIP service is killed and restarted while pushes are queued ----------------------


@pytest.mark.timeout(60)
@pytest.mark.django_db(transaction=True)
def test_a_killed_node_restarted_on_its_store_converges_and_keeps_its_bindings(rig):
    node = rig.node()
    worker = rig.worker([node.url])
    customer = account_services.customer_create(name="Acme", account_number="C7100002")
    made = _make_accounts(customer, 3)
    wait_converged(node, worker=worker)
    phone = SipPhone(node.sip)
    try:
        assert phone.register(made[0][0].username, made[0][1]) == 200
        [binding] = node.get("/v1/registrations", aor=_aor(made[0][0]))["registrations"]

        node.kill()  # SIGKILL: no shutdown, no last flush
        new_passwords = {}
        for account, _ in made:
            new_passwords[account.pk] = f"After-Kill-Passw0rd-{account.pk}!"
            account_services.sip_account_set_password(account=account, password=new_passwords[account.pk])
        # The worker's pushes fail and back off; nothing is lost meanwhile.
        deadline = time.monotonic() + 20
        failing = ProvisioningStatus.objects.filter(node=node.url, state=ProvisioningState.FAILING)
        while failing.count() < 3 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert failing.count() == 3, "".join(worker.seen)[-3000:]
        assert OutboxEntry.objects.filter(attempts__gte=1).count() == 3

        restarted = rig.restart(node)
        assert restarted.url == node.url and restarted.sip == node.sip
        # The back-off of the entries elapses (fast-forwarded), the beat's sweep pushes them.
        OutboxEntry.objects.update(next_attempt_at=timezone.now())
        rig.sweep()
        wait_converged(restarted, worker=worker)

        [again] = restarted.get("/v1/registrations", aor=_aor(made[0][0]))["registrations"]
        assert (again["contact"], again["registered_at"]) == (binding["contact"], binding["registered_at"])
        for account, old_password in made:
            assert phone.register(account.username, old_password) == 403
            assert phone.register(account.username, new_passwords[account.pk]) == 200
    finally:
        phone.close()


# --- 3. the worker is killed in the middle of a push ------------------------------------------


@pytest.mark.timeout(60)
@pytest.mark.django_db(transaction=True)
def test_a_worker_killed_mid_push_is_taken_over_after_its_lease_without_regressing(rig):
    node = rig.node()
    proxy = HoldingProxy(node.control_port)  # the portal reaches the node through it
    try:
        worker = rig.worker([proxy.url], claim_seconds=5)
        customer = account_services.customer_create(name="Acme", account_number="C7100003")
        [(account, first_password)] = _make_accounts(customer, 1)
        wait_converged(node, node_key=proxy.url, worker=worker)

        proxy.hold_next()
        account_services.sip_account_set_password(account=account, password="Held-Passw0rd-1!")
        held_version = _version(account)
        assert proxy.held.wait(15), "".join(worker.seen)[-3000:]
        assert f'"version": {held_version}'.encode() in proxy.held_request.replace(b'":', b'": ')
        entry = OutboxEntry.objects.get(object_id=account.pk)
        assert entry.claim_token and entry.claimed_until > timezone.now()  # leased to the worker

        worker.proc.kill()  # SIGKILL in the middle of the push
        worker.proc.wait(timeout=10)
        account_services.sip_account_set_password(account=account, password="Final-Passw0rd-2!")
        final_version = _version(account)
        assert final_version > held_version

        worker = rig.worker([proxy.url], claim_seconds=5)
        while OutboxEntry.objects.filter(claimed_until__gt=timezone.now()).exists():
            time.sleep(0.2)  # the dead worker's lease runs out
        rig.sweep()
        assert wait_converged(node, node_key=proxy.url, worker=worker)[_aor(account)] == final_version

        # The dead worker's push reaches the node only now: it must not take the node back.
        [late] = proxy.deliver_held()["results"]  # the held push: a batch of this one account
        assert (late["applied"], late["version"], late["held_version"]) == (
            False,
            held_version,
            final_version,
        )
        wait_converged(node, node_key=proxy.url, worker=worker)
        phone = SipPhone(node.sip)
        try:
            assert phone.register(account.username, "Held-Passw0rd-1!") == 403
            assert phone.register(account.username, first_password) == 403
            assert phone.register(account.username, "Final-Passw0rd-2!") == 200
        finally:
            phone.close()
    finally:
        proxy.close()


# --- 4. two pushes of one account delivered out of order --------------------------------------


@pytest.mark.timeout(60)
@pytest.mark.django_db(transaction=True)
def test_pushes_delivered_out_of_order_leave_the_newer_one_enforced(rig):
    with mock.patch.object(tasks.push_outbox, "delay"):  # no worker here: the test pushes by hand
        _out_of_order(rig)


def _out_of_order(rig):
    node = rig.node()
    rig.settings.SIP_NODES = [node.url]
    customer = account_services.customer_create(name="Acme", account_number="C7100004")
    [(account, _)] = _make_accounts(customer, 1)
    account_services.sip_account_set_password(account=account, password="Older-Passw0rd-1!")
    older = documents.build_document(DocumentKind.ACCOUNT, account.pk)
    account_services.sip_account_set_password(account=account, password="Newer-Passw0rd-2!")
    newer = documents.build_document(DocumentKind.ACCOUNT, account.pk)
    assert newer["version"] > older["version"]

    assert node.put_account(newer) == {
        "applied": True, "version": newer["version"], "held_version": newer["version"]
    }  # fmt: skip
    assert node.put_account(older) == {
        "applied": False, "version": older["version"], "held_version": newer["version"]
    }  # fmt: skip
    assert node.get("/v1/digest")["accounts"] == {_aor(account): newer["version"]}
    phone = SipPhone(node.sip)
    try:
        assert phone.register(account.username, "Older-Passw0rd-1!") == 403
        assert phone.register(account.username, "Newer-Passw0rd-2!") == 200
    finally:
        phone.close()

    # The portal agrees: the customer still goes out, the account is already in sync.
    report = services.reconcile_node(node.url)
    assert (report.in_sync, report.pushed, report.removed) == (1, 1, [])
    assert tasks.push_outbox.apply(args=[None]).successful()
    wait_converged(node)


# --- 5. the portal's database is down; the node keeps enforcing -------------------------------


@pytest.mark.timeout(60)
@pytest.mark.django_db(transaction=True)
def test_the_node_keeps_enforcing_from_its_own_state_while_the_database_is_down(rig):
    node = rig.node()
    worker = rig.worker([node.url])
    customer = account_services.customer_create(name="Acme", account_number="C7100005")
    made = _make_accounts(customer, 2)
    versions = wait_converged(node, worker=worker)
    (account, password), (other, other_password) = made
    phone = SipPhone(node.sip)
    try:
        assert phone.register(account.username, password) == 200
        while not worker.lines.empty():  # only what the worker says from now on counts
            worker.seen.append(worker.lines.get())

        with database_unavailable():
            with pytest.raises(OperationalError):
                SipAccount.objects.count()
            tasks.reconcile.apply_async(queue=rig.queue)  # the worker cannot read the portal
            worker.wait_for(r"OperationalError", timeout=20)
            # The node answers from what it holds: the right password in, the wrong one out.
            assert phone.register(account.username, password) == 200
            assert phone.register(other.username, other_password) == 200
            assert phone.register(account.username, "Not-The-Passw0rd!") == 403
            health = httpx.get(f"{node.url}/v1/health", timeout=5).json()
            assert (health["status"], health["accounts"], health["bindings"]) == ("ok", 2, 2)
            assert node.get("/v1/digest")["accounts"] == versions
            assert len(node.get("/v1/registrations", aor=_aor(account))["registrations"]) == 1

        assert SipAccount.objects.count() == 2  # the database is back, as it was
        tasks.reconcile.apply_async(queue=rig.queue)
        wait_converged(node, worker=worker)
        assert phone.register(other.username, other_password) == 200
    finally:
        phone.close()


# --- the fixes these faults called for (in process, against the fake node) --------------------


@pytest.mark.timeout(30)
@pytest.mark.django_db
def test_a_push_of_more_entries_than_one_batch_pushes_every_one(sync_settings, fake_node):
    """A reconcile of a fresh node queues all its entries in one task: none may wait for the
    sweep (which would take one beat interval per thousand entries)."""
    customer = account_services.customer_create(name="Acme", account_number="C7100006")
    made = _make_accounts(customer, 4)
    ids = list(OutboxEntry.objects.values_list("pk", flat=True))
    assert len(ids) == 5

    report = services.push_entries(ids, limit=2)

    assert (report.done, report.failed) == (5, [])
    assert not OutboxEntry.objects.exists()
    for account, _ in made:
        assert fake_node.version_of(_aor(account)) == _version(account)


@pytest.mark.timeout(30)
@pytest.mark.django_db
def test_a_push_in_batches_stops_after_a_batch_a_node_failed(sync_settings, fake_node):
    """A node that fails is not tried for every one of thousands of entries in one task."""
    customer = account_services.customer_create(name="Acme", account_number="C7100008")
    _make_accounts(customer, 4)
    ids = list(OutboxEntry.objects.values_list("pk", flat=True))
    fake_node.fail_next = 100

    report = services.push_entries(ids, limit=2)

    assert (report.done, len(report.failed)) == (0, 2)
    assert len(fake_node.calls("POST", "/v1/batch")) == 1  # the first batch, one request
    assert sorted(OutboxEntry.objects.values_list("attempts", flat=True)) == [0, 0, 0, 1, 1]
    assert not OutboxEntry.objects.filter(claimed_until__isnull=False).exists()  # none left leased


@pytest.mark.timeout(30)
@pytest.mark.django_db
def test_a_database_error_mid_push_gives_the_entries_back_for_the_retry(sync_settings, fake_node):
    """An error after the claim (SQLite's "database is locked" when a web request writes while
    the worker records a push) must not leave the entry leased to a task that is being retried:
    the retry would find it taken and the change would wait for the lease and the sweep."""
    account = account_services.sip_account_create(
        customer=account_services.customer_create(name="Acme", account_number="C7100007"), extension="1001"
    ).account
    OutboxEntry.objects.filter(kind=DocumentKind.CUSTOMER).delete()
    [entry_id] = OutboxEntry.objects.values_list("pk", flat=True)
    record = services._record_push
    calls = []

    def locked_once(*args, **kwargs):
        calls.append(args)
        if len(calls) == 1:
            raise OperationalError("database is locked")
        return record(*args, **kwargs)

    with mock.patch.object(services, "_record_push", side_effect=locked_once):
        result = tasks.push_outbox.apply(args=[[entry_id]])  # eager: the retry runs at once

    assert result.successful(), result.traceback
    assert result.result == {"pushed": 1}
    assert len(calls) == 2
    assert not OutboxEntry.objects.exists()
    status = ProvisioningStatus.objects.get(account=account, node=fake_node.url)
    assert (status.state, status.applied_version) == (ProvisioningState.APPLIED, _version(account))
