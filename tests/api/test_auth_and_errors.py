"""API keys and sessions, the one error shape, throttling."""

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from accounts import api_keys
from accounts.models import ApiKey
from tests.api.conftest import client_for, error_of
from tests.factories import customer_user

pytestmark = pytest.mark.django_db


def test_keys_are_stored_hashed_and_shown_once(world):
    response = world.staff.post(
        "/api/v1/api-keys/", {"name": "billing robot", "customer": world.mine.customer.pk}, format="json"
    )
    assert response.status_code == 201
    body = response.json()
    plaintext = body["key"]
    key = ApiKey.objects.get(pk=body["api_key"]["id"])
    assert plaintext.startswith(f"pbx_{key.prefix}_") and len(plaintext) > 50
    assert key.key_hash == api_keys.hash_key(plaintext) and plaintext not in key.key_hash
    assert body["api_key"]["customer"] == world.mine.customer.pk and body["api_key"]["is_staff"] is False
    listed = world.staff.get("/api/v1/api-keys/").json()["results"]
    assert all("key" not in row and "key_hash" not in row for row in listed)
    assert client_for(plaintext).get("/api/v1/sip-accounts/").status_code == 200


def test_a_staff_key_acts_as_its_creator(world):
    body = world.staff.post("/api/v1/api-keys/", {"name": "ops 2"}, format="json").json()
    assert body["api_key"]["is_staff"] is True and body["api_key"]["user"] == world.staff_user.pk
    assert client_for(body["key"]).get("/api/v1/customers/").status_code == 200


def test_both_schemes_and_last_used(world):
    key = ApiKey.objects.get(customer=world.mine.customer)
    assert key.last_used_at is None
    assert client_for(world.mine.key, "Api-Key").get("/api/v1/sip-accounts/").status_code == 200
    assert client_for(world.mine.key, "bearer").get("/api/v1/sip-accounts/").status_code == 200
    key.refresh_from_db()
    assert key.last_used_at is not None and (timezone.now() - key.last_used_at).total_seconds() < 5


@pytest.mark.parametrize(
    "header",
    ["Bearer nonsense", "Bearer pbx_0000000000_wrong", "Api-Key", "Bearer a b", "Token pbx_x_y", None],
)
def test_missing_or_bad_credentials_are_401(world, header):
    client = APIClient()
    if header:
        client.credentials(HTTP_AUTHORIZATION=header)
    response = client.get("/api/v1/sip-accounts/")
    assert response.status_code == 401
    assert error_of(response)["code"] in {"not_authenticated", "authentication_failed"}
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_a_revoked_key_stops_working(world):
    key = ApiKey.objects.get(customer=world.mine.customer)
    response = world.staff.post(f"/api/v1/api-keys/{key.pk}/revoke/")
    assert response.status_code == 200 and response.json()["revoked_at"]
    assert world.mine.client.get("/api/v1/sip-accounts/").status_code == 401
    missing = world.staff.post("/api/v1/api-keys/999999/revoke/")
    assert missing.status_code == 404


def test_a_staff_key_of_a_demoted_user_stops_working(world):
    world.staff_user.is_staff = False
    world.staff_user.save()
    assert world.staff.get("/api/v1/customers/").status_code == 401


def test_api_key_create_validation(world):
    response = world.staff.post("/api/v1/api-keys/", {"name": ""}, format="json")
    assert response.status_code == 400 and "name" in error_of(response)["fields"]
    response = world.staff.post("/api/v1/api-keys/", {"name": "x", "customer": 999999}, format="json")
    assert response.status_code == 404


def test_session_auth_needs_csrf_for_writes(world):
    user = customer_user(world.mine.customer)
    client = APIClient(enforce_csrf_checks=True)
    client.force_login(user)
    listed = client.get("/api/v1/sip-accounts/")
    assert listed.status_code == 200 and listed.json()["count"] == 2
    refused = client.post("/api/v1/caller-ids/", {"number": "0115550177"}, format="json")
    assert refused.status_code == 403 and "CSRF" in error_of(refused)["message"]
    client.get("/login/")  # sets the CSRF cookie
    token = client.cookies["csrftoken"].value
    accepted = client.post(
        "/api/v1/caller-ids/", {"number": "0115550177"}, format="json", HTTP_X_CSRFTOKEN=token
    )
    assert accepted.status_code == 201


def test_a_session_user_of_no_customer_is_refused(world):
    from tests.factories import UserFactory

    client = APIClient()
    client.force_login(UserFactory())
    response = client.get("/api/v1/sip-accounts/")
    assert response.status_code == 403 and error_of(response)["code"] == "permission_denied"


def test_unknown_paths_and_methods(world):
    response = world.mine.client.get("/api/v1/nothing-here/")
    assert response.status_code == 404 and error_of(response)["code"] == "not_found"
    response = world.mine.client.get("/api/v1/customers/J%0A0./ledger/")  # a newline in the path
    assert response.status_code == 404 and error_of(response)["code"] == "not_found"
    response = world.mine.client.get("/api/v1/customers/J%C2%BF%0A0/ledger/")  # a newline, found by fuzzing
    assert response.status_code == 404 and error_of(response)["code"] == "not_found"
    response = world.mine.client.delete(f"/api/v1/sip-accounts/{world.mine.account.pk}/")
    assert response.status_code == 405 and error_of(response)["code"] == "method_not_allowed"


def test_malformed_json_and_wrong_media_type(world):
    response = world.mine.client.post("/api/v1/caller-ids/", "{not json", content_type="application/json")
    assert response.status_code == 400 and error_of(response)["code"] == "parse_error"
    response = world.mine.client.post("/api/v1/caller-ids/", "number=1", content_type="text/plain")
    assert response.status_code == 415 and error_of(response)["code"] == "unsupported_media_type"
    response = world.mine.client.post("/api/v1/caller-ids/", [1, 2], format="json")
    assert response.status_code == 400 and error_of(response)["code"] == "invalid"


def test_throttled_per_key_with_retry_after(world, settings):
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {"api": "3/min"}}
    for _ in range(3):
        assert world.mine.client.get("/api/v1/sip-accounts/").status_code == 200
    response = world.mine.client.get("/api/v1/sip-accounts/")
    assert response.status_code == 429 and error_of(response)["code"] == "throttled"
    assert 0 < int(response["Retry-After"]) <= 60
    # another key has its own budget
    assert world.theirs.client.get("/api/v1/sip-accounts/").status_code == 200


def test_ids_too_large_for_the_database_are_not_found_or_invalid(world):
    huge = "9" * 25
    response = world.mine.client.get(f"/api/v1/sip-accounts/{huge}/")
    assert response.status_code == 404 and error_of(response)["code"] == "not_found"
    response = world.mine.client.get(f"/api/v1/call-records/?account={huge}")
    assert response.status_code == 400 and "account" in error_of(response)["fields"]
    response = world.mine.client.post(f"/api/v1/{huge}/", {}, format="json")  # the catch-all needs no CSRF
    assert response.status_code == 404
