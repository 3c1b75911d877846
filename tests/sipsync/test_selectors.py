import pytest

from portal.errors import NotFound
from portal.tenancy import Tenant
from sipsync import selectors, services
from sipsync.models import OutboxEntry, ProvisioningState, ProvisioningStatus, SipEvent
from tests.factories import CustomerFactory, sip_account

pytestmark = pytest.mark.django_db

NODES = ["http://node-a:5080", "http://node-b:5080"]


@pytest.fixture
def two_tenants(settings):
    settings.SIP_NODES = NODES
    mine, theirs = CustomerFactory(), CustomerFactory()
    my_account = sip_account(mine, "1001").account
    their_account = sip_account(theirs, "1001").account
    ProvisioningStatus.objects.filter(account=my_account, node=NODES[0]).update(
        state=ProvisioningState.APPLIED, applied_version=5
    )
    services.store_events(
        "http://node-a:5080",
        [
            {"id": 1, "kind": "rejection", "code": 403, "account": f"{my_account.username}@sip.test"},
            {"id": 2, "kind": "rejection", "code": 403, "account": f"{their_account.username}@sip.test"},
            {"id": 3, "kind": "rejection", "code": 401, "account": "scanner@sip.test"},
        ],
    )
    return mine, theirs, my_account, their_account


def test_a_customer_sees_the_provisioning_of_its_own_accounts_only(two_tenants):
    mine, _, my_account, their_account = two_tenants
    tenant = Tenant.of_customer(mine)
    statuses = selectors.provisioning_status_list(tenant=tenant)
    assert {s.account_id for s in statuses} == {my_account.pk}
    assert len(statuses) == 2
    assert len(selectors.provisioning_status_list(tenant=Tenant.staff())) == 4
    assert len(selectors.provisioning_status_list(tenant=Tenant(customer_id=None))) == 0

    view = selectors.account_provisioning(tenant=tenant, account_id=my_account.pk)
    assert [(v.node, v.state, v.applied_version) for v in view] == [
        (NODES[0], ProvisioningState.APPLIED, 5),
        (NODES[1], ProvisioningState.PENDING, None),
    ]
    assert all(v.current_version and v.current_version > 5 for v in view)
    with pytest.raises(NotFound):
        selectors.account_provisioning(tenant=tenant, account_id=their_account.pk)


def test_nodes_no_longer_configured_are_not_shown(two_tenants, settings):
    mine, _, my_account, _ = two_tenants
    settings.SIP_NODES = [NODES[1]]
    assert [s.node for s in selectors.provisioning_status_list(tenant=Tenant.of_customer(mine))] == [NODES[1]]
    view = selectors.account_provisioning(tenant=Tenant.of_customer(mine), account_id=my_account.pk)
    assert [v.node for v in view] == [NODES[1]]


def test_events_are_scoped_by_tenant(two_tenants):
    mine, theirs, my_account, _ = two_tenants
    assert [e.event_id for e in selectors.sip_event_list(tenant=Tenant.of_customer(mine))] == [1]
    assert [e.event_id for e in selectors.sip_event_list(tenant=Tenant.of_customer(theirs))] == [2]
    assert SipEvent.objects.count() == 3
    assert selectors.sip_event_list(tenant=Tenant.staff()).count() == 3
    assert selectors.sip_event_list(tenant=Tenant.of_customer(theirs), account_id=my_account.pk).count() == 0


def test_the_outbox_backlog_is_for_staff_only(two_tenants):
    mine, *_ = two_tenants
    assert OutboxEntry.objects.exists()
    assert not selectors.outbox_backlog(tenant=Tenant.of_customer(mine)).exists()
    assert selectors.outbox_backlog(tenant=Tenant.staff()).count() == OutboxEntry.objects.count()
