"""Customers, SIP accounts, codecs and caller IDs through the API: happy paths and validation."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from accounts.choices import CallerIdStatus, CustomerStatus
from accounts.models import Customer, SipAccount
from sipsync.models import DocumentKind, OutboxEntry
from tests.api.conftest import error_of

pytestmark = pytest.mark.django_db

SECRET_FIELDS = {"password", "ha1_md5", "ha1_sha256", "ha1"}


def _no_secrets(payload):
    if isinstance(payload, dict):
        assert not SECRET_FIELDS & set(payload), payload
        for value in payload.values():
            _no_secrets(value)
    elif isinstance(payload, list):
        for value in payload:
            _no_secrets(value)


# --- customers ------------------------------------------------------------------------------


def test_staff_list_search_and_order_customers(world):
    body = world.staff.get("/api/v1/customers/").json()
    assert body["count"] == 2 and {c["name"] for c in body["results"]} == {"Mine", "Theirs"}
    found = world.staff.get("/api/v1/customers/?search=thei").json()["results"]
    assert [c["name"] for c in found] == ["Theirs"]
    desc = world.staff.get("/api/v1/customers/?ordering=-name").json()["results"]
    assert [c["name"] for c in desc] == ["Theirs", "Mine"]
    bad = world.staff.get("/api/v1/customers/?ordering=password")
    assert bad.status_code == 400 and "ordering" in error_of(bad)["fields"]


def test_staff_create_customer(world):
    response = world.staff.post("/api/v1/customers/", {"name": "Acme", "currency": "usd"}, format="json")
    assert response.status_code == 201
    body = response.json()
    assert body["name"] == "Acme" and body["currency"] == "USD" and body["status"] == "active"
    assert Customer.objects.filter(pk=body["id"]).exists()
    assert OutboxEntry.objects.filter(kind=DocumentKind.CUSTOMER, object_id=body["id"]).exists()


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({}, "name"),
        ({"name": "   "}, "name"),
        ({"name": "X", "country_code": "0"}, "country_code"),
        ({"name": "X", "currency": "rand"}, "currency"),
        ({"name": "X", "colour": "blue"}, "colour"),
    ],
)
def test_customer_create_validation(world, body, field):
    response = world.staff.post("/api/v1/customers/", body, format="json")
    assert response.status_code == 400
    assert field in error_of(response)["fields"]


def test_duplicate_account_number_is_a_conflict(world):
    number = world.mine.customer.account_number
    response = world.staff.post(
        "/api/v1/customers/", {"name": "Dup", "account_number": number}, format="json"
    )
    assert response.status_code == 409 and error_of(response)["code"] == "conflict"


def test_a_customer_key_reads_its_own_customer(world):
    response = world.mine.client.get(f"/api/v1/customers/{world.mine.customer.pk}/")
    assert response.status_code == 200 and response.json()["name"] == "Mine"
    assert response["ETag"]


def test_suspend_and_reinstate(world):
    url = f"/api/v1/customers/{world.theirs.customer.pk}"
    response = world.staff.post(f"{url}/suspend/")
    assert response.status_code == 200 and response.json()["status"] == CustomerStatus.SUSPENDED
    assert OutboxEntry.objects.filter(kind=DocumentKind.ACCOUNT, object_id=world.theirs.account.pk).exists()
    # a suspended customer cannot add accounts (the service's rule, mapped to 403)
    refused = world.theirs.client.post("/api/v1/sip-accounts/", {"extension": "1010"}, format="json")
    assert refused.status_code == 403
    assert world.staff.post(f"{url}/reinstate/").json()["status"] == CustomerStatus.ACTIVE


def test_suspend_with_a_stale_etag_is_refused(world):
    url = f"/api/v1/customers/{world.theirs.customer.pk}"
    etag = world.staff.get(f"{url}/")["ETag"]
    Customer.objects.filter(pk=world.theirs.customer.pk).update(name="Renamed")  # touches updated_at
    Customer.objects.get(pk=world.theirs.customer.pk).save()
    response = world.staff.post(f"{url}/suspend/", HTTP_IF_MATCH=etag)
    assert response.status_code == 412 and error_of(response)["code"] == "precondition_failed"


# --- SIP accounts ---------------------------------------------------------------------------


def test_list_sip_accounts_with_search_filter_and_order(world):
    client = world.mine.client
    body = client.get("/api/v1/sip-accounts/").json()
    assert body["count"] == 2 and [a["extension"] for a in body["results"]] == ["1001", "1002"]
    _no_secrets(body)
    assert body["results"][0]["codecs"] == ["PCMU", "G729"]
    assert [a["label"] for a in client.get("/api/v1/sip-accounts/?search=sal").json()["results"]] == ["Sales"]
    assert [a["extension"] for a in client.get("/api/v1/sip-accounts/?search=1002").json()["results"]] == [
        "1002"
    ]
    assert [
        a["extension"] for a in client.get("/api/v1/sip-accounts/?ordering=-extension").json()["results"]
    ] == [
        "1002",
        "1001",
    ]
    page = client.get("/api/v1/sip-accounts/?limit=1&offset=1").json()
    assert page["count"] == 2 and len(page["results"]) == 1 and page["previous"] and not page["next"]
    assert client.get("/api/v1/sip-accounts/?enabled=false").json()["count"] == 0


def test_create_sip_account_returns_the_password_once(world):
    response = world.mine.client.post(
        "/api/v1/sip-accounts/",
        {"extension": "1003", "label": "Boss", "codecs": ["G722", "PCMA"]},
        format="json",
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert len(body["password"]) == 20 and body["codecs"] == ["G722", "PCMA"]
    assert body["customer"] == world.mine.customer.pk
    assert not {"ha1_md5", "ha1_sha256"} & set(body)
    account = SipAccount.objects.get(pk=body["id"])
    assert body["password"] not in (account.ha1_md5, account.ha1_sha256)
    assert OutboxEntry.objects.filter(kind=DocumentKind.ACCOUNT, object_id=account.pk).exists()
    again = world.mine.client.get(f"/api/v1/sip-accounts/{account.pk}/").json()
    assert "password" not in again and again["label"] == "Boss"
    _no_secrets(again)


def test_staff_create_needs_a_customer(world):
    response = world.staff.post("/api/v1/sip-accounts/", {"extension": "1003"}, format="json")
    assert response.status_code == 400 and "customer" in error_of(response)["fields"]
    response = world.staff.post(
        "/api/v1/sip-accounts/", {"extension": "1003", "customer": world.theirs.customer.pk}, format="json"
    )
    assert response.status_code == 201 and response.json()["customer"] == world.theirs.customer.pk


@pytest.mark.parametrize(
    ("body", "field", "status"),
    [
        ({"extension": "1"}, "extension", 400),
        ({"extension": "12a4"}, "extension", 400),
        # the extension and its default username both exist: either may be named (backend order)
        ({"extension": "1001"}, ("extension", "username"), 409),
        ({"extension": "1003", "password": "short"}, "password", 400),
        ({"extension": "1003", "password": "with a space 123ABC"}, "password", 400),
        ({"extension": "1003", "username": "has space"}, "username", 400),
        ({"extension": "1003", "codecs": []}, "codecs", 400),
        ({"extension": "1003", "codecs": ["SPEEX"]}, "codecs.0", 400),
        ({"extension": "1003", "max_concurrent_calls": 0}, "max_concurrent_calls", 400),
        ({"extension": "1003", "ha1_md5": "0" * 32}, "ha1_md5", 400),
    ],
)
def test_create_sip_account_validation(world, body, field, status):
    response = world.mine.client.post("/api/v1/sip-accounts/", body, format="json")
    assert response.status_code == status, response.content
    fields = error_of(response)["fields"]
    assert any(name in fields for name in (field if isinstance(field, tuple) else (field,))), fields


def test_update_sip_account(world):
    url = f"/api/v1/sip-accounts/{world.mine.account.pk}/"
    etag = world.mine.client.get(url)["ETag"]
    response = world.mine.client.patch(
        url,
        {
            "label": "Front desk",
            "max_concurrent_calls": 4,
            "forward_all_to": "1002",
            "do_not_disturb": True,
            "call_classes": ["internal", "international"],
            "default_caller_id": world.mine.approved_caller_id.pk,
        },
        format="json",
        HTTP_IF_MATCH=etag,
    )
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["label"] == "Front desk" and body["max_concurrent_calls"] == 4
    assert body["forward_all_to"] == "1002" and body["do_not_disturb"] is True
    assert body["call_classes"] == ["internal", "international"]
    assert body["default_caller_id_number"] == "+27115550199"
    assert response["ETag"] != etag
    # the old ETag is stale now
    stale = world.mine.client.patch(url, {"label": "x"}, format="json", HTTP_IF_MATCH=etag)
    assert stale.status_code == 412
    assert SipAccount.objects.get(pk=world.mine.account.pk).label == "Front desk"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"max_contacts": 21}, "max_contacts"),
        ({"forward_all_to": "1001"}, "forward_all_to"),
        ({"forward_all_to": "not a number"}, "forward_all_to"),
        ({"call_classes": ["space"]}, "call_classes.0"),
        ({"default_caller_id": "x"}, "default_caller_id"),
        ({"enabled": "maybe"}, "enabled"),
        ({"username": "renamed"}, "username"),
    ],
)
def test_update_sip_account_validation(world, body, field):
    response = world.mine.client.patch(f"/api/v1/sip-accounts/{world.mine.account.pk}/", body, format="json")
    assert response.status_code == 400, response.content
    assert field in error_of(response)["fields"]


def test_a_pending_caller_id_cannot_be_the_default(world):
    response = world.mine.client.patch(
        f"/api/v1/sip-accounts/{world.mine.account.pk}/",
        {"default_caller_id": world.mine.caller_id.pk},
        format="json",
    )
    assert response.status_code == 400 and "default_caller_id" in error_of(response)["fields"]


def test_reset_password_returns_a_new_one_once(world):
    old = SipAccount.objects.get(pk=world.mine.account.pk).ha1_md5
    SipAccount.objects.filter(pk=world.mine.account.pk).update(password_change_required=True)
    response = world.mine.client.post(f"/api/v1/sip-accounts/{world.mine.account.pk}/reset-password/")
    assert response.status_code == 200
    body = response.json()
    assert len(body["password"]) == 20 and body["password_change_required"] is False
    assert SipAccount.objects.get(pk=world.mine.account.pk).ha1_md5 != old


def test_staff_require_a_password_change(world):
    url = f"/api/v1/sip-accounts/{world.theirs.account.pk}/require-password-change/"
    assert world.staff.post(url).json()["password_change_required"] is True
    assert (
        world.staff.post(url, {"required": False}, format="json").json()["password_change_required"] is False
    )
    bad = world.staff.post(url, {"required": "perhaps"}, format="json")
    assert bad.status_code == 400 and "required" in error_of(bad)["fields"]


def test_codecs_read_and_replace(world):
    url = f"/api/v1/sip-accounts/{world.mine.account.pk}/codecs/"
    first = world.mine.client.get(url)
    assert first.json() == {"codecs": ["PCMU", "G729"]}
    response = world.mine.client.put(
        url, {"codecs": ["OPUS", "PCMA"]}, format="json", HTTP_IF_MATCH=first["ETag"]
    )
    assert response.status_code == 200 and response.json() == {"codecs": ["OPUS", "PCMA"]}
    assert world.mine.client.get(url).json() == {"codecs": ["OPUS", "PCMA"]}
    stale = world.mine.client.put(url, {"codecs": ["PCMU"]}, format="json", HTTP_IF_MATCH=first["ETag"])
    assert stale.status_code == 412


def test_voicemail_counts_read_and_replace(world):
    url = f"/api/v1/sip-accounts/{world.mine.account.pk}/voicemail/"
    first = world.mine.client.get(url)
    assert first.status_code == 200 and first.json() == {"new": 0, "old": 0}
    response = world.mine.client.put(url, {"new": 2, "old": 9}, format="json", HTTP_IF_MATCH=first["ETag"])
    assert response.status_code == 200 and response.json() == {"new": 2, "old": 9}
    account = world.mine.client.get(f"/api/v1/sip-accounts/{world.mine.account.pk}/").json()
    assert (account["voicemail_new"], account["voicemail_old"]) == (2, 9)
    stale = world.mine.client.put(url, {"new": 0, "old": 0}, format="json", HTTP_IF_MATCH=first["ETag"])
    assert stale.status_code == 412
    refused = (({"new": -1, "old": 0}, "new"), ({"new": 1}, "old"), ({"new": 1, "old": 10_000}, "old"))
    for body, field in refused:
        bad = world.mine.client.put(url, body, format="json")
        assert bad.status_code == 400 and field in error_of(bad)["fields"]
    assert world.mine.client.get(url).json() == {"new": 2, "old": 9}


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"codecs": []}, "codecs"),
        ({"codecs": ["PCMU", "PCMU"]}, "codecs"),
        ({"codecs": ["X"]}, "codecs.0"),
        ({}, "codecs"),
    ],
)
def test_codecs_validation(world, body, field):
    response = world.mine.client.put(
        f"/api/v1/sip-accounts/{world.mine.account.pk}/codecs/", body, format="json"
    )
    assert response.status_code == 400 and field in error_of(response)["fields"]


# --- caller IDs -----------------------------------------------------------------------------


def test_request_list_approve_and_reject_caller_ids(world):
    response = world.mine.client.post("/api/v1/caller-ids/", {"number": "011 555 0142"}, format="json")
    assert response.status_code == 201, response.content
    caller_id = response.json()
    assert caller_id["number"] == "+27115550142" and caller_id["status"] == CallerIdStatus.PENDING
    pending = world.mine.client.get("/api/v1/caller-ids/?status=pending").json()["results"]
    assert {c["number"] for c in pending} == {"+27115550100", "+27115550142"}
    approved = world.staff.post(f"/api/v1/caller-ids/{caller_id['id']}/approve/")
    assert approved.status_code == 200 and approved.json()["status"] == CallerIdStatus.APPROVED
    rejected = world.staff.post(
        f"/api/v1/caller-ids/{world.mine.caller_id.pk}/reject/", {"note": "not yours"}, format="json"
    )
    assert (
        rejected.json()["status"] == CallerIdStatus.REJECTED
        and rejected.json()["decision_note"] == "not yours"
    )
    one = world.mine.client.get(f"/api/v1/caller-ids/{caller_id['id']}/")
    assert one.json()["status"] == CallerIdStatus.APPROVED


@pytest.mark.parametrize(
    ("body", "field", "status"),
    [({"number": "12"}, "number", 400), ({}, "number", 400), ({"number": "0115550100"}, "number", 409)],
)
def test_caller_id_request_validation(world, body, field, status):
    response = world.mine.client.post("/api/v1/caller-ids/", body, format="json")
    assert response.status_code == status and field in error_of(response)["fields"]


def test_sip_account_detail_query_count_is_small(world):
    with CaptureQueriesContext(connection) as queries:
        assert world.mine.client.get(f"/api/v1/sip-accounts/{world.mine.account.pk}/").status_code == 200
    assert len(queries) <= 4
