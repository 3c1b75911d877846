"""End to end, the voicemail lamp: mailbox counts set through the portal's service reach a phone
as a NOTIFY -- the outbox, a real Celery worker process on the real broker, the push to a real
SIP node, and a SIPp phone subscribed to its message-summary there.

The push is published to a queue private to this test run, as in test_sync_e2e.py.
"""

import shutil
import subprocess
import time
from pathlib import Path
from unittest import mock

import httpx
import pytest

from accounts import services as account_services
from sipsync import tasks
from sipsync.models import DocumentKind
from tests.sipsync.interop.conftest import free_port
from tests.sipsync.test_sync_e2e import REALM, SECRET, _wait_for_version, running_node, running_worker

SCENARIO = Path(__file__).resolve().parent / "interop" / "events" / "scenarios" / "mwi.xml"
SIPP_TIMEOUT = 30


@pytest.fixture
def node(tmp_path):
    """(SIP port, control URL) of a real node."""
    with running_node(tmp_path) as node:
        yield node


@pytest.fixture
def worker(node, settings):
    with running_worker(node[1], settings, "sipsync-mwi") as worker:
        yield worker


def _subscribed(url: str, aor: str) -> bool:
    response = httpx.get(
        f"{url}/v1/subscriptions",
        params={"aor": aor},
        headers={"Authorization": f"Bearer {SECRET}"},
        timeout=5,
    )
    response.raise_for_status()
    return any(s["event"] == "message-summary" for s in response.json()["subscriptions"])


@pytest.mark.sipp
@pytest.mark.django_db(transaction=True)
def test_voicemail_counts_set_in_the_portal_light_the_phones_lamp(node, worker, tmp_path):
    sipp = shutil.which("sipp")
    if sipp is None:
        pytest.skip("SIPp not installed: install the Debian package sip-tester")
    sip_port, url = node
    queue_name, worker_process = worker
    publish = tasks.push_outbox.apply_async

    def to_private_queue(entry_ids):
        return publish((entry_ids,), queue=queue_name)

    with mock.patch.object(tasks.push_outbox, "delay", side_effect=to_private_queue):
        customer = account_services.customer_create(name="Acme", account_number="C7000002")
        issued = account_services.sip_account_create(customer=customer, extension="1001")
        account = issued.account
        aor = f"{account.username}@{REALM}"
        _wait_for_version(url, aor, DocumentKind.ACCOUNT, account.pk, worker_process)

        command = [
            sipp, "-sf", str(SCENARIO), "-m", "1", "-timeout", f"{SIPP_TIMEOUT}s", "-timeout_error",
            "-trace_err", "-error_file", str(tmp_path / "sipp-errors.log"),
            "-trace_msg", "-message_file", str(tmp_path / "sipp-messages.log"),
            "-t", "u1", "-i", "127.0.0.1", "-p", str(free_port()), "-nostdin",
            "-au", account.username, "-ap", issued.password, "-auth_uri", REALM,
            "-key", "user", account.username, "-key", "domain", REALM,
            "-key", "target", account.username, "-key", "event", "message-summary",
            f"127.0.0.1:{sip_port}",
        ]  # fmt: skip
        phone = subprocess.Popen(
            command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        try:
            deadline = time.monotonic() + SIPP_TIMEOUT
            while not _subscribed(url, aor):
                assert phone.poll() is None and time.monotonic() < deadline, phone.communicate()[0][-3000:]
                time.sleep(0.1)
            # what an external voicemail system does through the API: 3 new, 1 saved
            account_services.sip_account_set_voicemail(account=account, new=3, old=1)
            output, _ = phone.communicate(timeout=SIPP_TIMEOUT + 15)
        finally:
            if phone.poll() is None:
                phone.kill()
                phone.wait()
    logs = "".join(p.read_text(errors="replace")[-3000:] for p in sorted(tmp_path.glob("sipp-*.log")))
    assert phone.returncode == 0, f"{output[-2000:]}\n{logs}"
