"""Available credit while a call is in progress, end to end: the portal provisions a real node,
a SIPp phone calls a number through it to a SIPp trunk and holds the call up, and the portal's
collection task reads the credit the node reserves for it. Available credit (API and dashboard)
drops while the call runs and comes back when it ends; the call's cost is then rated once.

In process: the Celery tasks run eagerly (their real worker is covered by test_sync_e2e.py and
test_sync_faults.py); everything else is real.
"""

import subprocess
import time
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from accounts import api_keys
from accounts import services as account_services
from billing import services as billing_services
from billing.models import Rate, RatePlan
from sipsync import selectors as sync_selectors
from sipsync import tasks
from tests.factories import StaffFactory, customer_user
from tests.sipsync.interop.conftest import REALM, SipService, free_port
from tests.sipsync.interop.proxy.test_proxy_calls import SCENARIOS

SECRET = "credit-e2e-control-secret-0123456789"
HOLD_MS = 8000  # long enough to look at the call in progress on a busy machine
TIMEOUT = 30


@pytest.fixture
def node(tmp_path, monkeypatch, settings):
    monkeypatch.setenv("SIP_CONTROL_SECRET", SECRET)
    trunk_port, control_port = free_port(), free_port()
    workdir = tmp_path / "node"
    workdir.mkdir()
    service = SipService(
        workdir, ("--trunk", f"sip:127.0.0.1:{trunk_port}", "--control", f"127.0.0.1:{control_port}")
    )
    service.start()
    settings.SIP_NODES = [f"http://127.0.0.1:{control_port}"]
    settings.SIP_CONTROL_SECRET = SECRET
    settings.SIP_REALM = REALM
    service.trunk_port = trunk_port
    yield service
    service.stop(kill=False)


def _sipp(sipp, tmp_path, scenario, *, port, extra=()):
    name = f"sipp-{scenario}"
    return [
        sipp, "-sf", str(SCENARIOS / f"{scenario}.xml"), "-m", "1",
        "-timeout", f"{TIMEOUT}s", "-timeout_error",
        "-trace_err", "-error_file", str(tmp_path / f"{name}-errors.log"),
        "-trace_msg", "-message_file", str(tmp_path / f"{name}-messages.log"),
        "-t", "u1", "-i", "127.0.0.1", "-p", str(port), "-nostdin", "-key", "domain", REALM, *extra,
    ]  # fmt: skip


def _logs(tmp_path, node) -> str:
    files = sorted(tmp_path.glob("sipp-*"))
    sipp_logs = "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in files)
    return f"{sipp_logs}\n--- node\n{node.stderr_text()[-3000:]}"


@pytest.mark.sipp
@pytest.mark.timeout(120)
@pytest.mark.django_db
def test_available_credit_drops_while_a_call_is_in_progress_and_returns_after(node, sipp, tmp_path, client):
    staff = StaffFactory()
    plan = RatePlan.objects.create(name="Standard", is_default=True)
    Rate.objects.create(
        plan=plan, prefix="27", description="South Africa", price_per_minute=Decimal("0.60"),
        connect_fee=Decimal("0.10"), first_increment=60, next_increment=60,
        effective_from=timezone.now() - timedelta(days=1),
    )  # fmt: skip
    billing_services.rate_plan_save(plan=plan)
    customer = account_services.customer_create(name="Acme", account_number="C7200001")
    issued = account_services.sip_account_create(customer=customer, extension="1001")
    account = issued.account
    number = account_services.caller_id_request(customer=customer, number="0115550100")
    account_services.caller_id_approve(caller_id=number, by=staff)
    account_services.sip_account_update(account=account, data={"default_caller_id": number.pk})
    billing_services.credit_load(customer=customer, amount="10.00", by=staff, idempotency_key="load-1")
    assert tasks.push_outbox.apply(args=[None]).successful()
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {api_keys.api_key_create(name='ops', user=staff).plaintext}")
    client.force_login(customer_user(customer))

    def balance():
        response = api.get(f"/api/v1/customers/{customer.pk}/balance/")
        assert response.status_code == 200, response.content
        return response.json()

    before = balance()
    assert (before["balance"], before["reserved"], before["available"]) == ("10.0000", "0.0000", "10.0000")

    trunk = subprocess.Popen(
        _sipp(sipp, tmp_path, "trunk_answer", port=node.trunk_port),
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    caller = None
    try:
        time.sleep(0.5)  # let it bind
        caller = subprocess.Popen(
            _sipp(sipp, tmp_path, "caller_hold", port=free_port(), extra=(
                "-au", account.username, "-ap", issued.password, "-auth_uri", REALM,
                "-key", "user", account.username, "-key", "callee", "0115550123",
                "-d", str(HOLD_MS), f"127.0.0.1:{node.port}",
            )),
            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip

        # While the call is up: R10 at R0.60/min (60/60) plus R0.10 pays for 16 minutes, and
        # the node reserves all of it (R9.70) until the call ends.
        deadline = time.monotonic() + TIMEOUT
        while sync_selectors.credit_in_use(customer=customer).calls == 0:
            assert time.monotonic() < deadline and caller.poll() is None, _logs(tmp_path, node)
            assert tasks.collect_credit.apply().successful()
            time.sleep(0.2)
        during = balance()
        assert caller.poll() is None, "the call ended before it was looked at: raise HOLD_MS"
        assert (during["balance"], during["reserved"], during["available"]) == ("10.0000", "9.7000", "0.3000")
        assert during["calls_in_progress"] == 1 and during["reserved_reported_at"]
        page = client.get("/").content.decode()
        assert 'data-testid="available">0.30<' in page
        assert "9.70 ZAR held by 1 call in progress" in page

        assert caller.wait(timeout=TIMEOUT + 15) == 0, _logs(tmp_path, node)
        assert trunk.wait(timeout=TIMEOUT + 15) == 0, _logs(tmp_path, node)
    finally:
        for process in (caller, trunk):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait()

    # The call ended: nothing is reserved any more; the call record, once collected, is rated.
    assert tasks.collect_credit.apply().result == {node_url(): 0}
    after = balance()
    assert (after["reserved"], after["calls_in_progress"], after["available"]) == ("0.0000", 0, "10.0000")
    deadline = time.monotonic() + TIMEOUT
    while Decimal(balance()["balance"]) == Decimal(10):
        assert time.monotonic() < deadline, _logs(tmp_path, node)
        tasks.collect_records.apply()
        time.sleep(0.2)
    rated = balance()
    assert (rated["balance"], rated["available"]) == ("9.3000", "9.3000")  # R0.10 + one minute at R0.60


def node_url() -> str:
    from django.conf import settings

    return settings.SIP_NODES[0]
