from decimal import Decimal
from unittest import mock

import pytest

from accounts import services as account_services
from accounts.models import SipAccount
from billing import services as billing_services
from billing.models import CallRecord, RatePlan
from sipsync import outbox, services, tasks
from sipsync import selectors as sync_selectors
from sipsync.client import NodeUnavailable
from sipsync.models import (
    DocumentKind,
    DocumentVersion,
    OutboxEntry,
    ProvisioningState,
    ProvisioningStatus,
    SipEvent,
)
from sipsync.server.provision import document_for_password
from tests.factories import CustomerFactory, StaffFactory, sip_account

pytestmark = pytest.mark.django_db


def _version(kind, pk):
    return DocumentVersion.objects.get(kind=kind, object_id=pk).version


def _aor(account):
    return f"{account.username}@{account.realm}"


def _status(account, node):
    return ProvisioningStatus.objects.get(account=account, node=node.url)


def test_tasks_are_named_and_retry_a_bounded_number_of_times_with_backoff_and_jitter():
    for task in (tasks.push_outbox, tasks.reconcile, tasks.collect_events, tasks.collect_records):
        assert task.name.startswith("sipsync.")
        assert task.max_retries is not None and task.max_retries <= 5
        assert task.retry_backoff and task.retry_jitter
        assert tasks.SyncIncomplete in task.autoretry_for
    assert tasks.push_outbox.name == "sipsync.push_outbox"


def test_push_sends_documents_to_every_node_and_empties_the_outbox(
    sync_settings, fake_node, second_fake_node
):
    sync_settings.SIP_NODES = [fake_node.url, second_fake_node.url]
    customer = CustomerFactory()
    account = sip_account(customer).account
    billing_services.credit_load(customer=customer, amount="20", by=StaffFactory(), idempotency_key="k")
    version = _version(DocumentKind.ACCOUNT, account.pk)

    result = tasks.push_outbox.apply(args=[list(OutboxEntry.objects.values_list("pk", flat=True))])

    assert result.successful(), result.traceback
    assert not OutboxEntry.objects.exists()
    for node in (fake_node, second_fake_node):
        assert node.version_of(_aor(account)) == version
        assert node.customers[customer.account_number]["balance"] == "20.0000"
        status = _status(account, node)
        assert (status.state, status.applied_version, status.error) == (
            ProvisioningState.APPLIED,
            version,
            "",
        )


def test_push_is_idempotent(sync_settings, fake_node):
    account = sip_account(CustomerFactory()).account
    [entry_id] = OutboxEntry.objects.filter(kind=DocumentKind.ACCOUNT).values_list("pk", flat=True)
    tasks.push_outbox.apply(args=[[entry_id]])
    tasks.push_outbox.apply(args=[[entry_id]])  # the entry is gone: nothing to do
    outbox.enqueue(DocumentKind.ACCOUNT, [account.pk], bump=False)
    assert tasks.push_outbox.apply(args=[None]).successful()  # the same version again: ignored, fine
    assert len(fake_node.calls("POST", "/v1/batch")) == 2
    assert not OutboxEntry.objects.exists()


def test_a_failing_node_is_retried_until_it_answers(sync_settings, fake_node):
    account = sip_account(CustomerFactory()).account
    fake_node.fail_next = 2
    result = tasks.push_outbox.apply(args=[[OutboxEntry.objects.get().pk]])
    assert result.successful(), result.traceback
    assert len(fake_node.calls("POST", "/v1/batch")) == 3
    assert fake_node.version_of(_aor(account)) == _version(DocumentKind.ACCOUNT, account.pk)
    assert _status(account, fake_node).state == ProvisioningState.APPLIED


def test_retries_are_bounded_and_the_entry_is_kept_for_the_sweeper(sync_settings, fake_node):
    account = sip_account(CustomerFactory()).account
    fake_node.fail_next = 100
    result = tasks.push_outbox.apply(args=[[OutboxEntry.objects.get().pk]])
    assert result.failed()
    assert isinstance(result.result, tasks.SyncIncomplete)
    assert len(fake_node.calls("POST", "/v1/batch")) == tasks.push_outbox.max_retries + 1
    entry = OutboxEntry.objects.get()
    assert entry.attempts == tasks.push_outbox.max_retries + 1
    assert "503" in entry.last_error
    status = _status(account, fake_node)
    assert status.state == ProvisioningState.FAILING and "injected failure" in status.error


def test_an_unreachable_node_is_a_failure_not_a_crash(sync_settings, fake_node):
    account = sip_account(CustomerFactory()).account
    sync_settings.SIP_NODES = [fake_node.url, "http://127.0.0.1:9"]
    tasks.push_outbox.apply(args=[[OutboxEntry.objects.get().pk]])
    assert fake_node.version_of(_aor(account)) is not None
    assert _status(account, fake_node).state == ProvisioningState.APPLIED
    assert ProvisioningStatus.objects.get(account=account, node="http://127.0.0.1:9").state == "failing"
    assert OutboxEntry.objects.exists()


def test_a_node_ahead_of_the_portal_is_overtaken(sync_settings, fake_node):
    account = sip_account(CustomerFactory()).account
    aor = _aor(account)
    fake_node.accounts[aor] = document_for_password(account.username, account.realm, "x", version=10**16)
    tasks.push_outbox.apply(args=[[OutboxEntry.objects.get().pk]])
    assert _version(DocumentKind.ACCOUNT, account.pk) == 10**16 + 1
    tasks.push_outbox.apply(args=[None])  # the push queued after the bump
    assert fake_node.version_of(aor) == 10**16 + 1
    assert fake_node.accounts[aor]["ha1_md5"] == account.ha1_md5
    assert not OutboxEntry.objects.exists()


def test_the_sweeper_queues_what_is_due(sync_settings, fake_node):
    sip_account(CustomerFactory())
    with mock.patch.object(tasks.push_outbox, "delay") as delay:
        assert tasks.sweep_outbox.apply().result == {"queued": 1}
    delay.assert_called_once_with([OutboxEntry.objects.get().pk])


def test_reconcile_heals_a_node_that_lost_or_never_had_documents(sync_settings, fake_node):
    staff = StaffFactory()
    plan = RatePlan.objects.create(name="Standard", is_default=True)
    customer = CustomerFactory()
    kept = sip_account(customer, "1001").account
    lost = sip_account(customer, "1002").account
    billing_services.credit_load(customer=customer, amount="5", by=staff, idempotency_key="k")
    tasks.push_outbox.apply(args=[None])
    assert not OutboxEntry.objects.exists()
    # The node lost one account (a restored store), and holds one the portal does not have.
    del fake_node.accounts[_aor(lost)]
    fake_node.accounts["ghost@sip.test"] = document_for_password("ghost", "sip.test", "pw", version=7)
    # An account written around the services (a data migration) has no version yet.
    legacy = SipAccount.objects.create(
        customer=customer, extension="1003", username="legacy1003", realm="sip.test",
        ha1_md5="0" * 32, ha1_sha256="0" * 64, password_changed_at=kept.password_changed_at,
    )  # fmt: skip

    result = tasks.reconcile.apply()
    assert result.successful(), result.traceback
    report = result.result[fake_node.url]
    assert report["removed"] == 1
    assert "ghost@sip.test" not in fake_node.accounts
    assert fake_node.tombstones["ghost@sip.test"] > 7
    # lost: straight to the node; legacy and the plan (made around the services) get a version first
    assert (report["pushed"], report["queued"]) == (1, 2)
    assert fake_node.version_of(_aor(lost)) == _version(DocumentKind.ACCOUNT, lost.pk)
    assert _status(lost, fake_node).state == ProvisioningState.APPLIED
    assert _status(kept, fake_node).state == ProvisioningState.APPLIED
    assert fake_node.version_of(_aor(legacy)) is None
    assert set(OutboxEntry.objects.values_list("object_id", flat=True)) >= {legacy.pk}

    tasks.push_outbox.apply(args=[None])
    for account in (kept, lost, legacy):
        assert fake_node.version_of(_aor(account)) == _version(DocumentKind.ACCOUNT, account.pk)
        assert _status(account, fake_node).state == ProvisioningState.APPLIED
    assert fake_node.rate_plans["Standard"]["version"] == _version(DocumentKind.RATE_PLAN, plan.pk)
    assert fake_node.customers[customer.account_number]["balance"] == "5.0000"

    again = tasks.reconcile.apply().result[fake_node.url]
    assert again == {"pushed": 0, "queued": 0, "removed": 0, "in_sync": 5}  # 3 accounts, a customer, a plan
    assert not OutboxEntry.objects.exists()


def test_a_new_node_converges_through_reconcile(sync_settings, fake_node, second_fake_node):
    account = sip_account(CustomerFactory()).account
    tasks.push_outbox.apply(args=[None])
    sync_settings.SIP_NODES = [fake_node.url, second_fake_node.url]
    tasks.reconcile.apply()
    tasks.push_outbox.apply(args=[None])
    assert second_fake_node.version_of(_aor(account)) == fake_node.version_of(_aor(account))
    assert _status(account, second_fake_node).state == ProvisioningState.APPLIED


def test_a_node_failing_during_reconcile_leaves_the_rest_to_the_outbox(sync_settings, fake_node, monkeypatch):
    customer = CustomerFactory()
    accounts = [sip_account(customer, str(1001 + i)).account for i in range(7)]
    OutboxEntry.objects.all().delete()  # never pushed: the node lacks everything
    monkeypatch.setattr(services, "PUSH_BATCH", 2)
    fake_node.batches_before_failing = 2  # then the node fails

    with pytest.raises(NodeUnavailable):
        services.reconcile_node(fake_node.url)

    on_node = {a.pk for a in accounts if fake_node.version_of(_aor(a)) is not None}
    queued = set(OutboxEntry.objects.filter(kind=DocumentKind.ACCOUNT).values_list("object_id", flat=True))
    assert 0 < len(on_node) <= 4 and on_node.isdisjoint(queued)
    assert on_node | queued == {a.pk for a in accounts}  # each one pushed or left to the outbox
    for account in accounts:
        expected = ProvisioningState.APPLIED if account.pk in on_node else ProvisioningState.PENDING
        assert _status(account, fake_node).state == expected

    fake_node.batches_before_failing = None
    assert tasks.push_outbox.apply(args=[None]).successful()
    for account in accounts:
        assert fake_node.version_of(_aor(account)) == _version(DocumentKind.ACCOUNT, account.pk)
        assert _status(account, fake_node).state == ProvisioningState.APPLIED


def test_a_document_the_node_refuses_during_reconcile_goes_to_the_outbox(sync_settings, fake_node):
    account = sip_account(CustomerFactory()).account
    tasks.push_outbox.apply(args=[None])
    del fake_node.accounts[_aor(account)]
    fake_node.refused.add(_aor(account))

    report = services.reconcile_node(fake_node.url)

    assert report.pushed == 0
    assert fake_node.version_of(_aor(account)) is None
    assert OutboxEntry.objects.get(kind=DocumentKind.ACCOUNT).object_id == account.pk
    tasks.push_outbox.apply(args=[None])  # refused again, now with the reason on record
    assert OutboxEntry.objects.get(kind=DocumentKind.ACCOUNT).attempts >= 1
    status = _status(account, fake_node)
    assert status.state == ProvisioningState.FAILING and "refused by the test" in status.error


def test_reconcile_of_an_unreachable_node_is_retried_and_spares_the_others(sync_settings, fake_node):
    sip_account(CustomerFactory())
    sync_settings.SIP_NODES = ["http://127.0.0.1:9", fake_node.url]
    result = tasks.reconcile.apply()
    assert result.failed() and isinstance(result.result, tasks.SyncIncomplete)
    assert len(fake_node.calls("GET", "/v1/digest")) == tasks.reconcile.max_retries + 1


def test_collect_stores_events_once_resolves_the_account_and_acknowledges(sync_settings, fake_node):
    customer = CustomerFactory()
    account = sip_account(customer, "1001").account
    fake_node.add_event(
        time="2026-11-24T08:00:00.123Z", node="sip1", method="REGISTER", code=403,
        reason_phrase="Forbidden", cause="account_disabled", account=f"{account.username}@SIP.TEST",
        source_ip="198.51.100.7", source_port=5060, user_agent="Yealink", call_id="abc", detail={"x": 1},
    )  # fmt: skip
    for _ in range(4):
        fake_node.add_event(method="INVITE", code=404, cause="no_route", account="nobody@sip.test")

    result = tasks.collect_events.apply()
    assert result.result == {fake_node.url: 5}
    assert fake_node.acked == 5
    event = SipEvent.objects.get(event_id=1)
    assert (event.account, event.customer, event.code, event.cause) == (
        account,
        customer,
        403,
        "account_disabled",
    )
    assert event.time.isoformat() == "2026-11-24T08:00:00.123000+00:00"
    assert (event.source_ip, event.source_port, event.detail) == ("198.51.100.7", 5060, {"x": 1})
    assert SipEvent.objects.filter(account__isnull=True, customer__isnull=True).count() == 4

    fake_node.acked = 0  # the node forgot the acknowledgement: the events come again
    assert tasks.collect_events.apply().result == {fake_node.url: 0}
    assert SipEvent.objects.count() == 5


def test_collect_pages_through_a_long_spool(sync_settings, fake_node):
    from sipsync import services

    for _ in range(25):
        fake_node.add_event(code=403)
    assert services.collect_events(fake_node.url, limit=10) == 25
    assert fake_node.acked == 25
    assert len(fake_node.calls("GET", "/v1/events")) == 3


def test_a_wrong_secret_is_reported_not_retried_forever(sync_settings, fake_node):
    account = sip_account(CustomerFactory()).account
    sync_settings.SIP_CONTROL_SECRET = "not-the-secret-at-all"
    result = tasks.push_outbox.apply(args=[[OutboxEntry.objects.get().pk]])
    assert result.failed()
    assert "401" in _status(account, fake_node).error


def test_caller_id_approval_reaches_every_account_of_the_customer(sync_settings, fake_node):
    customer = CustomerFactory()
    accounts = [sip_account(customer, ext).account for ext in ("1001", "1002")]
    caller_id = account_services.caller_id_request(customer=customer, number="0115550100")
    account_services.caller_id_approve(caller_id=caller_id, by=StaffFactory())
    tasks.push_outbox.apply(args=[None])
    for account in accounts:
        assert fake_node.accounts[_aor(account)]["caller_ids"] == ["+27115550100"]


def test_collect_stores_call_records_once_unrated_and_acknowledges(sync_settings, fake_node):
    customer = CustomerFactory()
    account = sip_account(customer, "1001").account
    common = {"customer": customer.account_number, "account": f"{account.username}@sip.test", "cause": None}
    fake_node.add_record(
        record_id="r-answered", call_id="c1", dialled="0115550100", number="+27115550100",
        invited_at="2026-11-24T08:00:00.000Z", answered_at="2026-11-24T08:00:02.000Z",
        ended_at="2026-11-24T08:01:03.000Z", duration=61, final_code=200, cost="0.7000", **common,
    )  # fmt: skip
    fake_node.add_record(
        record_id="r-refused", dialled="0900", number=None, invited_at="2026-11-24T08:02:00.000Z",
        answered_at=None, ended_at="2026-11-24T08:02:00.000Z", duration=0, final_code=404,
        **{**common, "cause": "not_in_dial_plan"},
    )  # fmt: skip
    fake_node.add_record(
        record_id="r-stranger", customer="C9999999", account="x@sip.test", final_code=200,
        invited_at="2026-11-24T08:03:00.000Z", ended_at="2026-11-24T08:03:00.000Z",
    )  # fmt: skip

    assert tasks.collect_records.apply().result == {fake_node.url: 2}
    assert fake_node.acked_records == 3
    answered = CallRecord.objects.get(record_id="r-answered")
    assert (answered.customer, answered.sip_account, answered.caller) == (customer, account, account.username)
    assert (answered.disposition, answered.duration_seconds, answered.final_code) == ("answered", 61, 200)
    assert (answered.normalised_number, answered.rated, answered.cost) == ("+27115550100", False, None)
    refused = CallRecord.objects.get(record_id="r-refused")
    assert (refused.disposition, refused.cause, refused.normalised_number) == (
        "rejected",
        "not_in_dial_plan",
        "",
    )

    fake_node.acked_records = 0  # delivered again: stored once
    assert tasks.collect_records.apply().result == {fake_node.url: 0}
    assert CallRecord.objects.count() == 2


def test_credit_in_use_is_collected_per_node_and_replaced_by_each_report(
    sync_settings, fake_node, second_fake_node
):
    sync_settings.SIP_NODES = [fake_node.url, second_fake_node.url]
    busy, idle = CustomerFactory(account_number="C1000001"), CustomerFactory(account_number="C1000002")
    fake_node.credit = {
        "C1000001": {"reserved": "1.2500", "calls": 2},
        "C9999999": {"reserved": "5.0000", "calls": 1},  # not the portal's: left out
        "C1000002": {"reserved": "-1", "calls": 1},  # nonsense: left out
    }
    second_fake_node.credit = {"C1000001": {"reserved": "0.5000", "calls": 1}}

    assert tasks.collect_credit.apply().result == {fake_node.url: 1, second_fake_node.url: 1}

    in_use = sync_selectors.credit_in_use(customer=busy)
    assert (in_use.reserved, in_use.calls) == (Decimal("1.7500"), 3)
    assert in_use.reported_at is not None
    assert sync_selectors.credit_in_use(customer=idle).reserved == Decimal(0)

    fake_node.credit = {}  # the calls ended
    tasks.collect_credit.apply()
    assert sync_selectors.credit_in_use(customer=busy).reserved == Decimal("0.5000")
    sync_settings.SIP_NODES = [fake_node.url]  # a node no longer configured does not count
    assert sync_selectors.credit_in_use(customer=busy) == sync_selectors.CreditInUse(Decimal(0), 0, None)
