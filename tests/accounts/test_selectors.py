"""Tenancy: a customer's user can reach no other customer's rows through any selector."""

import pytest

from accounts import selectors, services
from billing import selectors as billing_selectors
from billing import services as billing_services
from portal.errors import NotFound, PermissionDenied
from portal.tenancy import Tenant, tenant_of
from tests.factories import CustomerFactory, StaffFactory, UserFactory, customer_user, sip_account

pytestmark = pytest.mark.django_db


@pytest.fixture
def two_customers():
    staff = StaffFactory()
    customers = []
    for number in ("0115550100", "0115550200"):
        customer = CustomerFactory()
        sip_account(customer, "1001")
        services.caller_id_request(customer=customer, number=number)
        billing_services.credit_load(
            customer=customer, amount="10", by=staff, idempotency_key=f"load-{customer.pk}"
        )
        customers.append(customer)
    return customers


def test_each_selector_shows_only_the_tenants_rows(two_customers):
    mine, theirs = two_customers
    tenant = tenant_of(customer_user(mine))
    assert tenant == Tenant.of_customer(mine)
    listings = {
        "customers": selectors.customer_list(tenant=tenant),
        "sip_accounts": selectors.sip_account_list(tenant=tenant),
        "caller_ids": selectors.caller_id_list(tenant=tenant),
        "ledger": billing_selectors.ledger_list(tenant=tenant),
    }
    for name, queryset in listings.items():
        rows = list(queryset)
        assert rows, name
        owners = {getattr(row, "customer_id", getattr(row, "pk", None)) for row in rows}
        assert owners == {mine.pk}, name


def test_getting_another_customers_row_is_not_found(two_customers):
    mine, theirs = two_customers
    tenant = Tenant.of_customer(mine)
    with pytest.raises(NotFound):
        selectors.customer_get(tenant=tenant, customer_id=theirs.pk)
    with pytest.raises(NotFound):
        selectors.sip_account_get(tenant=tenant, account_id=theirs.sip_accounts.get().pk)
    with pytest.raises(NotFound):
        selectors.caller_id_get(tenant=tenant, caller_id_id=theirs.caller_ids.get().pk)


def test_staff_see_every_customer(two_customers):
    tenant = tenant_of(StaffFactory())
    assert selectors.sip_account_list(tenant=tenant).count() == 2
    assert billing_selectors.ledger_list(tenant=tenant).count() == 2


def test_a_user_without_a_customer_has_no_tenant():
    with pytest.raises(PermissionDenied):
        tenant_of(UserFactory())


def test_search_stays_within_the_tenant(two_customers):
    mine, _ = two_customers
    assert [
        a.customer_id for a in selectors.sip_account_list(tenant=Tenant.of_customer(mine), search="10")
    ] == [mine.pk]
