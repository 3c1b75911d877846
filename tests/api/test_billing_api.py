"""Balance, ledger, idempotent credit loads, rates and call records through the API."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from billing.choices import CallDisposition
from billing.models import CallRecord, LedgerEntry
from sipsync.models import DocumentKind, OutboxEntry
from tests.api.conftest import error_of

pytestmark = pytest.mark.django_db


def test_balance_and_ledger(world):
    url = f"/api/v1/customers/{world.mine.customer.pk}"
    assert world.mine.client.get(f"{url}/balance/").json() == {
        "customer": world.mine.customer.pk,
        "balance": "100.0000",
        "reserved": "0.0000",
        "available": "100.0000",
        "calls_in_progress": 0,
        "reserved_reported_at": None,
        "currency": "ZAR",
    }
    ledger = world.mine.client.get(f"{url}/ledger/").json()
    assert ledger["count"] == 1 and ledger["results"][0]["kind"] == "credit_load"
    assert world.mine.client.get(f"{url}/ledger/?kind=adjustment").json()["count"] == 0
    bad = world.mine.client.get(f"{url}/ledger/?since=yesterday")
    assert bad.status_code == 400 and "since" in error_of(bad)["fields"]


def test_credit_load_is_idempotent(world):
    url = f"/api/v1/customers/{world.mine.customer.pk}/credit-loads/"
    body = {"amount": "250.50", "reference": "EFT-7", "note": "June"}
    first = world.staff.post(url, body, format="json", HTTP_IDEMPOTENCY_KEY="load-7")
    assert first.status_code == 201, first.content
    assert first.json()["amount"] == "250.5000" and first.json()["reference"] == "EFT-7"
    assert OutboxEntry.objects.filter(kind=DocumentKind.CUSTOMER, object_id=world.mine.customer.pk).exists()
    replay = world.staff.post(url, body, format="json", HTTP_IDEMPOTENCY_KEY="load-7")
    assert replay.status_code == 200 and replay.json() == first.json()
    for changed in ({**body, "amount": "251"}, {**body, "reference": "EFT-8"}, {**body, "note": "July"}):
        conflict = world.staff.post(url, changed, format="json", HTTP_IDEMPOTENCY_KEY="load-7")
        assert conflict.status_code == 409 and error_of(conflict)["code"] == "idempotency_conflict"
    other_customer = world.staff.post(
        f"/api/v1/customers/{world.theirs.customer.pk}/credit-loads/",
        body,
        format="json",
        HTTP_IDEMPOTENCY_KEY="load-7",
    )
    assert other_customer.status_code == 409
    assert LedgerEntry.objects.filter(idempotency_key="load-7").count() == 1
    balance = world.staff.get(f"/api/v1/customers/{world.mine.customer.pk}/balance/").json()["balance"]
    assert Decimal(balance) == Decimal("350.5")


@pytest.mark.parametrize(
    ("body", "key", "field"),
    [
        ({"amount": "10"}, None, "Idempotency-Key"),
        ({"amount": "10"}, "has space", "Idempotency-Key"),
        ({"amount": "0"}, "k1", "amount"),
        ({"amount": "-5"}, "k2", "amount"),
        ({"amount": "1.00001"}, "k3", "amount"),
        ({"amount": "abc"}, "k4", "amount"),
        ({"amount": "5000000"}, "k5", "amount"),
        ({}, "k6", "amount"),
    ],
)
def test_credit_load_validation(world, body, key, field):
    headers = {"HTTP_IDEMPOTENCY_KEY": key} if key else {}
    response = world.staff.post(
        f"/api/v1/customers/{world.mine.customer.pk}/credit-loads/", body, format="json", **headers
    )
    assert response.status_code == 400, response.content
    assert field in error_of(response)["fields"]


def test_rates_for_staff(world):
    body = world.staff.get("/api/v1/rates/").json()
    assert body["count"] == 1 and body["results"][0]["prefix"] == "2711"
    assert body["results"][0]["plan_name"] == "Standard"
    assert world.staff.get("/api/v1/rates/?prefix=27").json()["count"] == 1
    assert world.staff.get("/api/v1/rates/?prefix=44").json()["count"] == 0
    bad = world.staff.get("/api/v1/rates/?prefix=27x")
    assert bad.status_code == 400 and "prefix" in error_of(bad)["fields"]


def test_call_records_filters(world):
    now = timezone.now()
    CallRecord.objects.create(
        record_id="rec-failed",
        customer=world.mine.customer,
        sip_account=world.mine.second_account,
        caller=world.mine.second_account.username,
        dialled_number="0821234567",
        invited_at=now - timedelta(days=3),
        ended_at=now - timedelta(days=3),
        disposition=CallDisposition.FAILED,
        final_code=486,
    )
    client = world.mine.client
    assert client.get("/api/v1/call-records/").json()["count"] == 2
    assert [r["record_id"] for r in client.get("/api/v1/call-records/").json()["results"]] == [
        f"rec-{world.mine.customer.pk}",
        "rec-failed",
    ]
    by_account = client.get(f"/api/v1/call-records/?account={world.mine.second_account.pk}").json()
    assert [r["record_id"] for r in by_account["results"]] == ["rec-failed"]
    since = (now - timedelta(days=1)).isoformat().replace("+00:00", "Z")
    recent = client.get("/api/v1/call-records/", {"since": since}).json()
    assert [r["disposition"] for r in recent["results"]] == ["answered"]
    failed = client.get("/api/v1/call-records/?disposition=failed").json()
    assert [r["final_code"] for r in failed["results"]] == [486]
    bad = client.get("/api/v1/call-records/?disposition=lost")
    assert bad.status_code == 400 and "disposition" in error_of(bad)["fields"]
    backwards = client.get(
        "/api/v1/call-records/", {"since": since, "until": (now - timedelta(days=2)).isoformat()}
    )
    assert backwards.status_code == 400 and "until" in error_of(backwards)["fields"]


RATES = "prefix,description,price_per_minute,connect_fee\n2711,Johannesburg,0.30,0\n2782,Mobile,0.95,0.05\n"


def test_staff_import_a_rate_table(world):
    url = f"/api/v1/rate-plans/{world.rate.plan_id}/import/"
    response = world.staff.post(url, {"csv": RATES}, format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["plan"] == "Standard" and body["created"] == 2 and body["closed"] == 1
    assert OutboxEntry.objects.filter(kind=DocumentKind.RATE_PLAN, object_id=world.rate.plan_id).exists()
    current = world.staff.get("/api/v1/rates/?prefix=2782").json()["results"]
    assert [r["price_per_minute"] for r in current] == ["0.95000"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "csv"),
        ({"csv": "prefix,description\n27,ZA\n"}, "csv"),
        ({"csv": "prefix,description,price_per_minute\n27x,ZA,0.1\n"}, "csv"),
        ({"csv": RATES, "effective_from": "2001-01-01T00:00:00Z"}, "effective_from"),
    ],
)
def test_rate_import_validation(world, body, field):
    response = world.staff.post(f"/api/v1/rate-plans/{world.rate.plan_id}/import/", body, format="json")
    assert response.status_code == 400, response.content
    assert field in error_of(response)["fields"]
    assert world.staff.get("/api/v1/rates/").json()["count"] == 1


def test_rate_import_of_an_unknown_plan(world):
    response = world.staff.post("/api/v1/rate-plans/999999/import/", {"csv": RATES}, format="json")
    assert response.status_code == 404
