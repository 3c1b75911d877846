"""End to end: a password change in the portal reaches a real SIP node through a real Celery
worker process and the real broker (the embedded filesystem broker; Redis when REDIS_URL is set).

The only liberty taken: the push is published to a queue private to this test run (the worker
consumes only that queue), so that concurrent test runs sharing the broker cannot take each
other's messages.
"""

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from unittest import mock
from urllib.parse import quote

import httpx
import pytest
from django.db import connection

from accounts import services as account_services
from sipsync import tasks
from sipsync.models import DocumentKind, DocumentVersion, OutboxEntry, ProvisioningState, ProvisioningStatus

ROOT = Path(__file__).resolve().parents[2]
SECRET = "e2e-control-secret-0123456789"
REALM = "sip.test"


class Process:
    """A child process whose output lines are read on a thread, to wait for a line."""

    def __init__(self, argv, env):
        self.proc = subprocess.Popen(
            argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.put(line)

    def wait_for(self, pattern, timeout=60.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.2)
            except queue.Empty:
                if self.proc.poll() is not None:
                    break
                continue
            self.seen.append(line)
            match = re.search(pattern, line)
            if match:
                return match
        raise AssertionError(f"never saw {pattern!r}; output:\n{''.join(self.seen)[-4000:]}")

    def stop(self, sig=signal.SIGTERM, grace=15.0):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _database_url() -> str:
    """The test database, as a URL the worker's settings understand."""
    db = connection.settings_dict
    if db["ENGINE"] == "django.db.backends.sqlite3":
        name = str(db["NAME"])
        assert os.path.isabs(name), f"the SQLite test database must be a file, not {name!r}"
        return f"sqlite:///{name}"
    user = quote(db.get("USER") or "", safe="")
    password = quote(db.get("PASSWORD") or "", safe="")
    credentials = f"{user}:{password}@" if password else (f"{user}@" if user else "")
    port = f":{db['PORT']}" if db.get("PORT") else ""
    return f"postgres://{credentials}{db.get('HOST') or 'localhost'}{port}/{db['NAME']}"


@contextmanager
def running_node(tmp_path):
    """A real node process: yields (its SIP UDP port, its control URL)."""
    env = {**os.environ, "SIP_CONTROL_SECRET": SECRET}
    node = Process(
        [
            sys.executable, "-m", "sipsync.server", "--listen", "127.0.0.1:0", "--control", "127.0.0.1:0",
            "--store", str(tmp_path / "node.sqlite3"), "--realm", REALM,
        ],
        env,
    )  # fmt: skip
    try:
        sip_port = int(node.wait_for(r"sipsync: listening on udp:127\.0\.0\.1:(\d+)", timeout=30).group(1))
        url = node.wait_for(r"sipsync: control on (http://\S+)", timeout=30).group(1)
        yield sip_port, url
    finally:
        node.stop()


@contextmanager
def running_worker(node_url, settings, queue_prefix):
    """A real Celery worker pushing to `node_url`, consuming a queue private to this test:
    yields (the queue's name, the worker's Process)."""
    queue_name = f"{queue_prefix}-{uuid.uuid4().hex[:12]}"
    settings.SIP_NODES = [node_url]
    settings.SIP_CONTROL_SECRET = SECRET
    env = {
        **os.environ,
        "DATABASE_URL": _database_url(),
        "SIP_NODES": node_url,
        "SIP_CONTROL_SECRET": SECRET,
        "SIP_REALM": REALM,
        "CELERY_TASK_ALWAYS_EAGER": "false",
    }
    worker = Process(
        [
            sys.executable, "-m", "celery", "-A", "portal", "worker", "--pool", "solo", "--loglevel", "INFO",
            "-Q", queue_name, "--hostname", f"{queue_name}@%h", "--without-mingle", "--without-gossip",
        ],
        env,
    )  # fmt: skip
    try:
        worker.wait_for(r"ready\.", timeout=60)
        yield queue_name, worker
    finally:
        worker.stop(signal.SIGQUIT, grace=1.0)  # cold shutdown, then kill: nothing is left to do


@pytest.fixture
def sip_node(tmp_path):
    with running_node(tmp_path) as (_, url):
        yield url


@pytest.fixture
def celery_worker(sip_node, settings):
    with running_worker(sip_node, settings, "sipsync-e2e") as worker:
        yield worker


def _digest(node_url):
    response = httpx.get(f"{node_url}/v1/digest", headers={"Authorization": f"Bearer {SECRET}"}, timeout=5)
    response.raise_for_status()
    return response.json()


@pytest.mark.django_db(transaction=True)
def test_a_password_change_reaches_the_node_through_a_real_worker(celery_worker, sip_node):
    queue_name, worker = celery_worker
    publish = tasks.push_outbox.apply_async

    def to_private_queue(entry_ids):
        return publish((entry_ids,), queue=queue_name)

    with mock.patch.object(tasks.push_outbox, "delay", side_effect=to_private_queue) as delay:
        customer = account_services.customer_create(name="Acme", account_number="C7000001")
        account = account_services.sip_account_create(customer=customer, extension="1001").account
        aor = f"{account.username}@{REALM}"
        _wait_for_version(sip_node, aor, DocumentKind.ACCOUNT, account.pk, worker)

        issued = account_services.sip_account_set_password(account=account, password="Brand-New-Passw0rd!")
        version = _wait_for_version(sip_node, aor, DocumentKind.ACCOUNT, account.pk, worker)
    assert delay.call_count == 3  # the customer, the account, the password
    customer_version = DocumentVersion.objects.get(kind=DocumentKind.CUSTOMER, object_id=customer.pk).version
    assert _digest(sip_node)["customers"] == {"C7000001": customer_version}

    assert issued.account.ha1_md5 == account.ha1_md5
    # The worker records the outcome right after the node answered: give it a moment.
    applied = ProvisioningStatus.objects.filter(
        account=account, node=sip_node, state=ProvisioningState.APPLIED, applied_version=version
    )
    deadline = time.monotonic() + 10
    while (OutboxEntry.objects.exists() or not applied.exists()) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert applied.exists()
    assert not OutboxEntry.objects.exists()


def _wait_for_version(node_url, aor, kind, pk, worker, timeout=15.0):
    version = DocumentVersion.objects.get(kind=kind, object_id=pk).version
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _digest(node_url)["accounts"].get(aor) == version:
            return version
        time.sleep(0.1)
    output = "".join(worker.seen)
    while not worker.lines.empty():
        output += worker.lines.get()
    raise AssertionError(f"{aor} never reached v{version} on the node; worker output:\n{output[-4000:]}")


@pytest.mark.django_db(transaction=True)
def test_reconcile_and_collection_against_a_real_node(sip_node, settings):
    """In process (no worker): the real node's digest, removal, events and records streams."""
    settings.SIP_NODES = [sip_node]
    settings.SIP_CONTROL_SECRET = SECRET
    customer = account_services.customer_create(name="Acme", account_number="C7000002")
    account = account_services.sip_account_create(customer=customer, extension="1001").account
    assert tasks.push_outbox.apply(args=[None]).successful()
    assert tasks.reconcile.apply().result == {
        sip_node: {"pushed": 0, "queued": 0, "removed": 0, "in_sync": 2}
    }
    assert tasks.collect_events.apply().result == {sip_node: 0}
    assert tasks.collect_records.apply().result == {sip_node: 0}

    account.delete()  # gone from the portal (no service deletes accounts yet): the node follows
    assert tasks.reconcile.apply().result == {
        sip_node: {"pushed": 0, "queued": 0, "removed": 1, "in_sync": 1}
    }
    assert _digest(sip_node)["accounts"] == {}
