"""Fixtures for the REST API tests: two customers with data, a key for each side, clients."""

from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.cache import cache
from django.utils import timezone
from rest_framework.test import APIClient

from accounts import api_keys
from accounts import services as account_services
from accounts.models import CallerId, Customer, SipAccount
from billing import services as billing_services
from billing.choices import CallDisposition
from billing.models import CallRecord, LedgerEntry, Rate, RatePlan
from sipsync import services as sync_services
from sipsync.models import SipEvent
from tests.factories import CustomerFactory, StaffFactory, sip_account

NODE = "http://node-a.test:5080"


@pytest.fixture(autouse=True)
def _api_settings(settings):
    """A fresh throttle budget per test, nodes that are not contacted unless a test says so."""
    settings.SIP_NODES = [NODE]
    cache.clear()
    yield
    cache.clear()


def client_for(key: str | None = None, scheme: str = "Bearer") -> APIClient:
    client = APIClient()
    if key:
        client.credentials(HTTP_AUTHORIZATION=f"{scheme} {key}")
    return client


@dataclass
class Tenant:
    customer: Customer
    account: SipAccount
    second_account: SipAccount
    caller_id: CallerId
    approved_caller_id: CallerId
    entry: LedgerEntry
    call: CallRecord
    event: SipEvent
    key: str
    client: APIClient


def _tenant(staff, name: str) -> Tenant:
    customer = CustomerFactory(name=name)
    account = sip_account(customer, "1001", label="Reception").account
    second = sip_account(customer, "1002", label="Sales").account
    caller_id = account_services.caller_id_request(customer=customer, number="0115550100")
    approved = account_services.caller_id_request(customer=customer, number="0115550199")
    account_services.caller_id_approve(caller_id=approved, by=staff)
    entry = billing_services.credit_load(
        customer=customer, amount="100", by=staff, idempotency_key=f"seed-{customer.pk}"
    )
    now = timezone.now()
    call = CallRecord.objects.create(
        record_id=f"rec-{customer.pk}",
        customer=customer,
        sip_account=account,
        caller=account.username,
        dialled_number="0115550123",
        invited_at=now - timedelta(minutes=5),
        answered_at=now - timedelta(minutes=5),
        ended_at=now - timedelta(minutes=3),
        duration_seconds=120,
        disposition=CallDisposition.ANSWERED,
        final_code=200,
    )
    sync_services.store_events(
        NODE,
        [
            {
                "id": customer.pk * 10,
                "kind": "rejection",
                "code": 403,
                "cause": "wrong_password",
                "time": now.isoformat(),
                "account": f"{account.username}@{account.realm}",
            }
        ],
    )
    event = SipEvent.objects.get(node=NODE, event_id=customer.pk * 10)
    issued = api_keys.api_key_create(name=f"{name} key", customer=customer)
    return Tenant(
        customer,
        account,
        second,
        caller_id,
        approved,
        entry,
        call,
        event,
        issued.plaintext,
        client_for(issued.plaintext),
    )


@dataclass
class World:
    staff_user: object
    staff_key: str
    staff: APIClient
    mine: Tenant
    theirs: Tenant
    rate: Rate


@pytest.fixture
def world(db) -> World:
    staff_user = StaffFactory(username="operator")
    mine = _tenant(staff_user, "Mine")
    theirs = _tenant(staff_user, "Theirs")
    plan = RatePlan.objects.create(name="Standard", is_default=True)
    rate = Rate.objects.create(
        plan=plan,
        prefix="2711",
        description="Johannesburg",
        price_per_minute=Decimal("0.35"),
        effective_from=timezone.now() - timedelta(days=1),
    )
    staff_key = api_keys.api_key_create(name="ops", user=staff_user).plaintext
    return World(staff_user, staff_key, client_for(staff_key), mine, theirs, rate)


def error_of(response) -> dict:
    """The error object of an answer, after checking the shape every error has."""
    body = response.json()
    assert set(body) == {"error"}, body
    assert set(body["error"]) == {"code", "message", "fields"}, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    return body["error"]
