from datetime import UTC, datetime
from decimal import Decimal

import pytest

from accounts import services as account_services
from accounts.choices import CustomerStatus
from billing import services as billing_services
from billing.models import Rate, RatePlan
from sipsync import documents
from sipsync.models import DocumentKind
from sipsync.server.accounts import Account
from sipsync.server.documents import validate_customer, validate_rate_plan
from sipsync.sip.digest import compute_ha1
from tests.factories import CustomerFactory, StaffFactory, sip_account

pytestmark = pytest.mark.django_db

ACCOUNT_FIELDS = {
    "kind", "version", "username", "realm", "customer", "extension", "ha1_md5", "ha1_sha256", "enabled",
    "password_change_required", "codecs", "caller_ids", "default_caller_id", "permissions", "max_calls",
    "max_contacts", "forward_all", "dnd", "mailbox",
}  # fmt: skip


def _walk(value):
    if isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from _walk(item)
    elif isinstance(value, list):
        for item in value:
            yield from _walk(item)
    else:
        yield value


def test_account_document_is_what_the_node_accepts_and_carries_no_password():
    customer = CustomerFactory(account_number="C7654321")
    issued = sip_account(customer, "1001", password="Tr1cky-Passw0rd!x")
    doc = documents.build_document(DocumentKind.ACCOUNT, issued.account.pk)

    assert set(doc) == ACCOUNT_FIELDS
    assert issued.password not in list(_walk(doc))
    assert not any("password" in str(k) and k != "password_change_required" for k in doc)
    account = Account.from_document(doc)
    assert account.username == "c76543211001"
    assert account.customer == "C7654321"
    assert account.extension == "1001"
    assert account.ha1_md5 == compute_ha1(account.username, "sip.test", issued.password, "MD5")
    assert account.ha1_sha256 == compute_ha1(account.username, "sip.test", issued.password, "SHA-256")
    assert account.enabled is True
    assert account.codecs == ("PCMU", "G729")
    assert account.permissions == frozenset({"internal", "national", "mobile"})
    assert (account.max_calls, account.max_contacts, account.forward_all, account.dnd) == (2, 5, None, False)
    assert doc["version"] > 0
    assert doc["mailbox"] == {"new": 0, "old": 0}


def test_mailbox_counts_reach_the_document_with_a_new_version():
    account = sip_account(CustomerFactory(), "1001").account
    before = documents.build_document(DocumentKind.ACCOUNT, account.pk)

    account_services.sip_account_set_voicemail(account=account, new=3, old=12)
    after = documents.build_document(DocumentKind.ACCOUNT, account.pk)

    assert after["mailbox"] == {"new": 3, "old": 12}
    assert after["version"] > before["version"]


def test_account_document_follows_the_portal_rows():
    staff = StaffFactory()
    customer = CustomerFactory(country_code="27", national_prefix="0")
    account = sip_account(customer, "1001").account
    sip_account(customer, "1002")
    approved = account_services.caller_id_request(customer=customer, number="0115550100")
    account_services.caller_id_request(customer=customer, number="0115550199")  # still pending
    account_services.caller_id_approve(caller_id=approved, by=staff)
    account_services.sip_account_set_codecs(account=account, codecs=["G722", "PCMA"])
    account_services.sip_account_update(
        account=account,
        data={
            "call_classes": ["internal", "international"],
            "default_caller_id": approved.pk,
            "forward_all_to": "1002",
            "do_not_disturb": True,
            "max_concurrent_calls": 7,
            "max_contacts": 3,
        },
    )
    account_services.sip_account_require_password_change(account=account)

    doc = documents.build_document(DocumentKind.ACCOUNT, account.pk)
    parsed = Account.from_document(doc)
    assert doc["codecs"] == ["G722", "PCMA"]
    assert doc["caller_ids"] == ["+27115550100"]
    assert doc["default_caller_id"] == "+27115550100"
    assert set(doc["permissions"]) == {"internal", "international"}
    assert (doc["forward_all"], doc["dnd"], doc["max_calls"], doc["max_contacts"]) == ("1002", True, 7, 3)
    assert parsed.password_change_required is True

    account_services.customer_set_status(customer=customer, status=CustomerStatus.SUSPENDED)
    doc = documents.build_document(DocumentKind.ACCOUNT, account.pk)
    assert doc["enabled"] is False  # the account itself is enabled; its customer is not active


def test_customer_document_carries_the_balance_and_is_what_the_node_accepts():
    plan = RatePlan.objects.create(name="Standard", is_default=True)
    customer = CustomerFactory(account_number="C1234567")
    billing_services.credit_load(
        customer=customer, amount="100.00", by=StaffFactory(), idempotency_key="load-1"
    )
    doc = documents.build_document(DocumentKind.CUSTOMER, customer.pk)
    assert doc == {
        "kind": "customer",
        "customer": "C1234567",
        "version": doc["version"],
        "status": "active",
        "currency": "ZAR",
        "balance": "100.0000",
        "country_code": "27",
        "national_prefix": "0",
        "rate_plan": plan.name,
        "daily_spend_cap": None,
        "spent_today": "0.0000",
        "spend_day_ends": doc["spend_day_ends"],
    }
    assert validate_customer(doc)[:2] == ("C1234567", doc["version"])


def test_customer_document_carries_the_daily_cap_and_todays_spend():
    customer = CustomerFactory()
    billing_services.billing_profile_update(customer=customer, by=StaffFactory(), daily_spend_cap="25.00")
    doc = documents.build_document(DocumentKind.CUSTOMER, customer.pk)
    assert (doc["daily_spend_cap"], doc["spent_today"]) == ("25.0000", "0.0000")
    assert validate_customer(doc)[:2] == (customer.account_number, doc["version"])


def test_rate_plan_document_leaves_expired_rates_out_and_is_what_the_node_accepts():
    plan = RatePlan.objects.create(name="Standard")
    start = datetime(2026, 1, 1, tzinfo=UTC)
    Rate.objects.create(
        plan=plan, prefix="27", description="South Africa", price_per_minute=Decimal("0.35"),
        effective_from=start,
    )  # fmt: skip
    Rate.objects.create(
        plan=plan, prefix="44", description="UK (old)", price_per_minute=Decimal("1.2"),
        effective_from=datetime(2020, 1, 1, tzinfo=UTC), effective_to=datetime(2021, 1, 1, tzinfo=UTC),
    )  # fmt: skip
    doc = documents.rate_plan_document(plan, version=3)
    assert doc == {
        "kind": "rates",
        "plan": "Standard",
        "version": 3,
        "currency": "ZAR",
        "rates": [
            {
                "prefix": "27",
                "description": "South Africa",
                "price_per_minute": "0.35000",
                "connect_fee": "0.00000",
                "first_increment": 60,
                "next_increment": 60,
                "effective_from": "2026-01-01T00:00:00Z",
                "effective_to": None,
            }
        ],
    }
    assert validate_rate_plan(doc)[:2] == ("Standard", 3)


def test_an_object_without_a_version_or_a_row_has_no_document():
    customer = CustomerFactory()
    assert documents.build_document(DocumentKind.CUSTOMER, customer.pk) is None  # never enqueued
    assert documents.build_document(DocumentKind.ACCOUNT, 987654) is None


def test_documents_built_in_bulk_are_the_ones_built_one_by_one_in_a_handful_of_queries(
    django_assert_max_num_queries,
):
    staff = StaffFactory()
    first, second = CustomerFactory(country_code="27", national_prefix="0"), CustomerFactory()
    accounts = [sip_account(first, ext).account for ext in ("1001", "1002", "1003")]
    accounts.append(sip_account(second, "2001").account)
    approved = account_services.caller_id_request(customer=first, number="0115550100")
    account_services.caller_id_approve(caller_id=approved, by=staff)
    account_services.sip_account_set_codecs(account=accounts[1], codecs=["G722", "PCMA"])
    account_services.sip_account_update(account=accounts[0], data={"default_caller_id": approved.pk})
    ids = [a.pk for a in accounts] + [987654]

    with django_assert_max_num_queries(5):
        built = documents.build_documents(DocumentKind.ACCOUNT, ids)

    assert built == {pk: documents.build_document(DocumentKind.ACCOUNT, pk) for pk in ids}
    assert built[987654] is None
    assert built[accounts[0].pk]["default_caller_id"] == "+27115550100"
    assert built[accounts[3].pk]["caller_ids"] == []
