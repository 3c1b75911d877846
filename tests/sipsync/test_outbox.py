from unittest import mock

import pytest
from django.db import transaction

from accounts import services as account_services
from accounts.choices import CustomerStatus
from billing import services as billing_services
from sipsync import outbox
from sipsync.models import DocumentKind, DocumentVersion, OutboxEntry, ProvisioningState, ProvisioningStatus
from tests.factories import CustomerFactory, StaffFactory, sip_account

pytestmark = pytest.mark.django_db


def _version(kind, pk):
    return DocumentVersion.objects.get(kind=kind, object_id=pk).version


def _entries():
    return set(OutboxEntry.objects.values_list("kind", "object_id"))


@pytest.fixture
def nodes(settings):
    settings.SIP_NODES = ["http://node-a:5080", "http://node-b:5080/"]


def test_a_change_writes_the_outbox_in_its_transaction_and_pushes_on_commit(
    nodes, django_capture_on_commit_callbacks
):
    customer = CustomerFactory()
    account = sip_account(customer).account
    OutboxEntry.objects.all().delete()
    before = _version(DocumentKind.ACCOUNT, account.pk)

    with (
        mock.patch("sipsync.tasks.push_outbox.delay") as delay,
        django_capture_on_commit_callbacks(execute=True) as callbacks,
    ):
        account_services.sip_account_set_password(account=account, password="N3w-Passw0rd!long")
    entry = OutboxEntry.objects.get()
    assert (entry.kind, entry.object_id) == (DocumentKind.ACCOUNT, account.pk)
    assert _version(DocumentKind.ACCOUNT, account.pk) > before
    assert len(callbacks) == 1
    delay.assert_called_once_with([entry.pk])
    statuses = ProvisioningStatus.objects.filter(account=account)
    assert {(s.node, s.state) for s in statuses} == {
        ("http://node-a:5080", ProvisioningState.PENDING),
        ("http://node-b:5080", ProvisioningState.PENDING),
    }


def test_the_outbox_rolls_back_with_the_change(django_capture_on_commit_callbacks):
    customer = CustomerFactory()
    account = sip_account(customer).account
    OutboxEntry.objects.all().delete()
    before = _version(DocumentKind.ACCOUNT, account.pk)
    old_hash = account.ha1_md5

    with (
        django_capture_on_commit_callbacks() as callbacks,
        pytest.raises(RuntimeError),
        transaction.atomic(),
    ):
        account_services.sip_account_set_password(account=account, password="N3w-Passw0rd!long")
        raise RuntimeError("the request failed after the change")
    account.refresh_from_db()
    assert account.ha1_md5 == old_hash
    assert not OutboxEntry.objects.exists()
    assert _version(DocumentKind.ACCOUNT, account.pk) == before
    assert callbacks == []


def test_entries_merge_per_object_and_versions_only_go_up():
    customer = CustomerFactory()
    account = sip_account(customer).account
    versions = [_version(DocumentKind.ACCOUNT, account.pk)]
    for _ in range(5):
        account_services.sip_account_require_password_change(account=account)
        versions.append(_version(DocumentKind.ACCOUNT, account.pk))
    assert OutboxEntry.objects.filter(kind=DocumentKind.ACCOUNT, object_id=account.pk).count() == 1
    assert versions == sorted(set(versions))  # strictly increasing


def test_versions_increase_even_when_the_clock_stands_still_or_steps_back():
    customer = CustomerFactory()
    clock = iter([5_000, 5_000, 5_000, 4_000, 1])
    with mock.patch("sipsync.outbox.clock_version", side_effect=lambda: next(clock)):
        outbox.enqueue_customer(customer)
        seen = [_version(DocumentKind.CUSTOMER, customer.pk)]
        for _ in range(4):
            outbox.enqueue_customer(customer)
            seen.append(_version(DocumentKind.CUSTOMER, customer.pk))
    assert seen == [5_000, 5_001, 5_002, 5_003, 5_004]


def test_a_floor_lifts_the_version_above_what_a_node_holds():
    customer = CustomerFactory()
    outbox.enqueue_customer(customer)
    target = _version(DocumentKind.CUSTOMER, customer.pk) + 10**9
    outbox.enqueue(DocumentKind.CUSTOMER, [customer.pk], floor=target)
    assert _version(DocumentKind.CUSTOMER, customer.pk) == target
    outbox.enqueue(DocumentKind.CUSTOMER, [customer.pk], bump=False)
    assert _version(DocumentKind.CUSTOMER, customer.pk) == target


def test_versions_are_microseconds_of_the_clock_when_it_is_ahead():
    customer = CustomerFactory()
    with mock.patch("sipsync.outbox.time.time_ns", return_value=1_800_000_000_123_456_789):
        outbox.enqueue_customer(customer)
    assert _version(DocumentKind.CUSTOMER, customer.pk) == 1_800_000_000_123_456


def test_every_enforcement_change_is_enqueued():
    staff = StaffFactory()
    customer = account_services.customer_create(name="Acme", account_number="ACME0001")
    assert _entries() == {(DocumentKind.CUSTOMER, customer.pk)}
    first = sip_account(customer, "1001").account
    second = sip_account(customer, "1002").account
    other = sip_account(CustomerFactory(), "1001").account
    accounts = {(DocumentKind.ACCOUNT, first.pk), (DocumentKind.ACCOUNT, second.pk)}

    def changed(action):
        OutboxEntry.objects.all().delete()
        action()
        return _entries()

    assert changed(lambda: account_services.sip_account_update(account=first, data={"enabled": False})) == {
        (DocumentKind.ACCOUNT, first.pk)
    }
    assert changed(lambda: account_services.sip_account_set_codecs(account=first, codecs=["PCMA"])) == {
        (DocumentKind.ACCOUNT, first.pk)
    }
    assert changed(lambda: account_services.sip_account_set_password(account=second)) == {
        (DocumentKind.ACCOUNT, second.pk)
    }
    caller_id = None

    def request():
        nonlocal caller_id
        caller_id = account_services.caller_id_request(customer=customer, number="0115550100")

    assert changed(request) == accounts
    assert changed(lambda: account_services.caller_id_approve(caller_id=caller_id, by=staff)) == accounts
    assert changed(lambda: account_services.caller_id_reject(caller_id=caller_id, by=staff)) == accounts
    assert changed(
        lambda: account_services.customer_set_status(customer=customer, status=CustomerStatus.SUSPENDED)
    ) == accounts | {(DocumentKind.CUSTOMER, customer.pk)}

    load = None

    def credit():
        nonlocal load
        load = billing_services.credit_load(customer=customer, amount="50", by=staff, idempotency_key="k1")

    assert changed(credit) == {(DocumentKind.CUSTOMER, customer.pk)}
    assert changed(
        lambda: billing_services.ledger_adjust(
            customer=customer, amount="-5", by=staff, idempotency_key="k2", note="fix"
        )
    ) == {(DocumentKind.CUSTOMER, customer.pk)}
    assert changed(lambda: billing_services.ledger_reverse(entry=load, by=staff)) == {
        (DocumentKind.CUSTOMER, customer.pk)
    }
    # A replayed load (same idempotency key) changes nothing and enqueues nothing.
    assert (
        changed(
            lambda: billing_services.credit_load(
                customer=customer, amount="50", by=staff, idempotency_key="k1"
            )
        )
        == set()
    )
    assert (DocumentKind.ACCOUNT, other.pk) not in _entries()


def test_claims_lease_entries_and_skip_those_claimed():
    customer = CustomerFactory()
    outbox.enqueue_customer(customer)
    entry = OutboxEntry.objects.get()
    claimed = outbox.claim()
    assert [e.pk for e in claimed] == [entry.pk]
    assert outbox.claim() == []  # leased to the first claimer
    assert outbox.claim([entry.pk]) == []


def test_complete_deletes_only_when_no_newer_change_came_meanwhile(django_capture_on_commit_callbacks):
    customer = CustomerFactory()
    outbox.enqueue_customer(customer)
    [entry] = outbox.claim()
    pushed = _version(DocumentKind.CUSTOMER, customer.pk)
    outbox.enqueue_customer(customer)  # a change while the push was under way
    with django_capture_on_commit_callbacks() as callbacks:
        assert outbox.complete(entry, pushed_version=pushed) is False
    assert len(callbacks) == 1  # pushed again after commit
    entry.refresh_from_db()
    assert entry.claimed_until is None
    [entry] = outbox.claim()
    assert outbox.complete(entry, pushed_version=_version(DocumentKind.CUSTOMER, customer.pk)) is True
    assert not OutboxEntry.objects.exists()


def test_complete_many_deletes_what_was_pushed_and_releases_what_changed_since(
    django_capture_on_commit_callbacks,
):
    steady, changed, gone = CustomerFactory(), CustomerFactory(), CustomerFactory()
    for customer in (steady, changed, gone):
        outbox.enqueue_customer(customer)
    entries = {entry.object_id: entry for entry in outbox.claim()}
    pushed = {pk: _version(DocumentKind.CUSTOMER, pk) for pk in entries}
    outbox.enqueue_customer(changed)  # a change while the batch was under way

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        deleted = outbox.complete_many(
            [
                (entries[steady.pk], pushed[steady.pk]),
                (entries[changed.pk], pushed[changed.pk]),
                (entries[gone.pk], None),  # the object is gone
            ]
        )

    assert deleted == 2
    [left] = OutboxEntry.objects.all()
    assert (left.object_id, left.claimed_until, left.claim_token) == (changed.pk, None, "")
    assert len(callbacks) == 1  # the newer change is pushed again after commit


def test_a_failed_push_backs_off_and_the_sweeper_waits_for_it():
    customer = CustomerFactory()
    outbox.enqueue_customer(customer)
    [entry] = outbox.claim()
    outbox.fail(entry, error="node down")
    entry.refresh_from_db()
    assert (entry.attempts, entry.last_error, entry.claimed_until) == (1, "node down", None)
    assert outbox.due_entry_ids() == []
    assert [e.pk for e in outbox.claim([entry.pk])] == [entry.pk]  # an explicit retry goes ahead
