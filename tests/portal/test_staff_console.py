"""Staff console gaps of issue #7: customers created, changed and suspended through the services
(pushed to the SIP service, audited), search across customers, unrateable call records shown on
the front page, API keys and rating retries in the audit log."""

import pytest
from django.test import Client
from django.urls import reverse

from accounts import api_keys
from accounts import services as account_services
from accounts.models import ApiKey, Customer
from billing.models import RatePlan
from portal.models import AuditAction, AuditLogEntry
from portal.tenancy import Tenant
from sipsync import documents
from sipsync.models import DocumentKind, OutboxEntry
from tests.billing.conftest import make_record
from tests.factories import CustomerFactory, StaffFactory, customer_user, sip_account

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff(client):
    user = StaffFactory(is_superuser=True, username="operator")
    client.force_login(user)
    return user


def _queued(kind, object_id) -> bool:
    return OutboxEntry.objects.filter(kind=kind, object_id=object_id).exists()


def test_suspending_a_customer_reaches_the_sip_service_and_the_audit_log(client, staff):
    customer = CustomerFactory()
    account = sip_account(customer, "1001").account
    OutboxEntry.objects.all().delete()
    response = client.post(
        reverse("admin:accounts_customer_changelist"),
        {"action": "suspend", "_selected_action": [customer.pk]},
        follow=True,
    )
    assert b"1 customer(s) now suspended" in response.content
    customer.refresh_from_db()
    assert customer.status == "suspended"
    assert _queued(DocumentKind.CUSTOMER, customer.pk) and _queued(DocumentKind.ACCOUNT, account.pk)
    assert documents.build_document(DocumentKind.ACCOUNT, account.pk)["enabled"] is False
    entry = AuditLogEntry.objects.get(action=AuditAction.CUSTOMER_STATUS_CHANGED)
    assert entry.actor == staff and entry.customer == customer
    assert entry.details == {"from": "active", "to": "suspended"}
    customer_client = Client()
    customer_client.force_login(customer_user(customer))
    assert "Your account is suspended." in customer_client.get(reverse("dashboard")).content.decode()
    client.post(
        reverse("admin:accounts_customer_changelist"),
        {"action": "reactivate", "_selected_action": [customer.pk]},
    )
    assert b"customer-status" not in customer_client.get(reverse("dashboard")).content
    customer.refresh_from_db()
    assert customer.status == "active"
    assert documents.build_document(DocumentKind.ACCOUNT, account.pk)["enabled"] is True


def test_the_change_form_pushes_and_audits_and_cannot_change_status_or_currency(client, staff):
    customer = CustomerFactory(name="Old name")
    plan = RatePlan.objects.create(name="Gold", currency="ZAR")
    OutboxEntry.objects.all().delete()
    url = reverse("admin:accounts_customer_change", args=[customer.pk])
    page = client.get(url).content.decode()
    assert 'name="status"' not in page and 'name="currency"' not in page
    assert reverse("billing:statement", args=[customer.pk]) in page
    response = client.post(
        url,
        {
            "name": "New name",
            "status": "closed",
            "currency": "USD",
            "country_code": "44",
            "national_prefix": "0",
            "rate_plan": plan.pk,
        },
    )
    assert response.status_code == 302
    customer.refresh_from_db()
    assert (customer.name, customer.country_code, customer.rate_plan) == ("New name", "44", plan)
    assert (customer.status, customer.currency) == ("active", "ZAR")
    assert _queued(DocumentKind.CUSTOMER, customer.pk)
    entry = AuditLogEntry.objects.get(action=AuditAction.CUSTOMER_CHANGED)
    assert entry.details["changed"]["name"] == "New name" and entry.details["changed"]["rate_plan"] == "Gold"


def test_creating_a_customer_goes_through_the_service_and_is_audited(client, staff):
    response = client.post(
        reverse("admin:accounts_customer_add"),
        {
            "name": "Fresh Ltd",
            "status": "suspended",
            "country_code": "27",
            "national_prefix": "0",
            "currency": "ZAR",
        },
    )
    assert response.status_code == 302
    customer = Customer.objects.get(name="Fresh Ltd")
    assert customer.status == "suspended" and customer.account_number.startswith("C")
    assert documents.build_document(DocumentKind.CUSTOMER, customer.pk)["status"] == "suspended"
    assert AuditLogEntry.objects.filter(action=AuditAction.CUSTOMER_CREATED, customer=customer).exists()


def test_customer_update_service_refuses_bad_values_and_fixed_fields():
    from portal.errors import ApplicationError

    customer = CustomerFactory()
    with pytest.raises(ApplicationError) as bad:
        account_services.customer_update(customer=customer, data={"country_code": "0x"})
    assert "country_code" in bad.value.field_errors
    with pytest.raises(ApplicationError) as fixed:
        account_services.customer_update(customer=customer, data={"currency": "USD", "status": "closed"})
    assert set(fixed.value.field_errors) == {"currency", "status"}
    customer.refresh_from_db()
    assert customer.currency == "ZAR" and customer.status == "active"


# --- search ----------------------------------------------------------------------------------


def test_search_finds_customers_accounts_numbers_users_and_calls(client, staff):
    acme = CustomerFactory(name="Acme Plumbing")
    other = CustomerFactory(name="Zebra Corp")
    sip_account(acme, "1001", username="acmefrontdesk", label="Front desk")
    account_services.caller_id_request(customer=other, number="0115550199")
    customer_user(acme, username="alice.acme")
    make_record(other, number="+27821234567", record_id="node1-4242")
    url = reverse("staff-search")

    def found(q):
        page = client.get(url, {"q": q}).content.decode()
        return {kind for kind in ("customers", "sip-accounts", "caller-ids", "portal-users", "call-records")
                if f'data-testid="found-{kind}"' in page}, page  # fmt: skip

    kinds, page = found("acme")
    assert kinds == {"customers", "sip-accounts", "portal-users"} and "Zebra" not in page
    assert found(acme.account_number)[0] == {"customers"}
    assert found("011 555 0199")[0] == {"caller-ids"}
    assert found("node1-4242")[0] == {"call-records"}
    assert found("82123")[0] == {"call-records"}
    assert "Nothing matches" in found("no-such-thing")[1]
    assert "at least 2 characters" in client.get(url, {"q": "a"}).content.decode()


def test_search_is_for_staff_only(client):
    customer = CustomerFactory()
    client.force_login(customer_user(customer))
    response = client.get(reverse("staff-search"), {"q": "x"})
    assert response.status_code == 302 and reverse("admin:login") in response["Location"]


def test_search_queries_do_not_grow_with_matches(client, staff, django_assert_max_num_queries):
    def grow(n):
        for i in range(n):
            customer = CustomerFactory(name=f"Grow {i} {CustomerFactory._meta.model.objects.count()}")
            sip_account(customer, "1001", label="grow desk")
            customer_user(customer, username=f"grow-{customer.pk}")

    grow(3)
    with django_assert_max_num_queries(20) as baseline:
        client.get(reverse("staff-search"), {"q": "grow"})
    grow(12)
    with django_assert_max_num_queries(len(baseline.captured_queries)):
        client.get(reverse("staff-search"), {"q": "grow"})


# --- front page, audit of keys and rating ----------------------------------------------------


def test_front_page_has_the_search_box_and_counts_unrateable_records(client, staff):
    customer = CustomerFactory()
    record = make_record(customer)
    record.rating_error = "No rate for +27115550100"
    record.save(update_fields=["rating_error"])
    page = client.get(reverse("admin:index")).content.decode()
    assert reverse("staff-search") in page
    assert "1 call record could not be rated" in page and "?rating=error" in page


def test_rating_retries_are_audited(client, staff):
    customer = CustomerFactory()
    record = make_record(customer)
    client.post(
        reverse("admin:billing_callrecord_changelist"),
        {"action": "retry_rating", "_selected_action": [record.pk]},
    )
    entry = AuditLogEntry.objects.get(action=AuditAction.CALL_RATING_RETRIED)
    assert entry.actor == staff and entry.details["records"] == 1


def test_staff_api_keys_created_and_revoked_are_audited(client, staff):
    customer = CustomerFactory()
    client.post(reverse("admin:accounts_apikey_add"), {"name": "billing sync", "customer": customer.pk})
    key = ApiKey.objects.get()
    created = AuditLogEntry.objects.get(action=AuditAction.API_KEY_CREATED)
    assert created.customer == customer and created.details["prefix"] == key.prefix
    for _ in range(2):
        client.post(
            reverse("admin:accounts_apikey_changelist"), {"action": "revoke", "_selected_action": [key.pk]}
        )
    assert AuditLogEntry.objects.filter(action=AuditAction.API_KEY_REVOKED).count() == 1
    assert api_keys.api_key_get(tenant=Tenant.staff(), key_id=key.pk).revoked_at is not None
