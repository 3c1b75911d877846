"""The customer's API keys page: create (shown once), list with last use, revoke; audited."""

import re

import pytest
from django.test import Client
from django.urls import reverse

from accounts import api_keys
from accounts import services as account_services
from accounts.choices import MemberRole
from accounts.models import ApiKey
from portal.models import AuditAction, AuditLogEntry
from tests.factories import CustomerFactory, customer_user

pytestmark = pytest.mark.django_db



def test_a_new_key_is_shown_once_works_and_is_audited(client, customer, member):
    response = client.post(reverse("api-keys"), {"name": "CRM integration"})
    key = ApiKey.objects.get(customer=customer)
    assert response["Location"] == reverse("api-key-once", args=[key.pk])
    page = client.get(response["Location"]).content.decode()
    plaintext = re.search(r'data-testid="one-time-key">([^<]+)<', page).group(1)
    assert "Copy key" in page and plaintext.startswith(f"pbx_{key.prefix}_")
    assert api_keys.api_key_authenticate(plaintext) == key
    again = client.get(response["Location"]).content.decode()
    assert plaintext not in again and "no longer available" in again
    listing = client.get(reverse("api-keys")).content.decode()
    assert "CRM integration" in listing and plaintext not in listing and "never" in listing
    entry = AuditLogEntry.objects.get(action=AuditAction.API_KEY_CREATED)
    assert entry.actor == member and entry.customer == customer and entry.details["name"] == "CRM integration"


def test_the_key_answers_the_api_and_last_use_is_shown(client, customer, member):
    issued = api_keys.api_key_create(name="Script", customer=customer, user=member)
    api = Client()
    response = api.get("/api/v1/sip-accounts/", headers={"authorization": f"Bearer {issued.plaintext}"})
    assert response.status_code == 200
    row = (
        client.get(reverse("api-keys"))
        .content.decode()
        .split(f'data-testid="api-key-{issued.key.prefix}"')[1]
    )
    assert "never" not in row.split("</tr>")[0]


def test_an_empty_name_is_refused_and_nothing_is_created(client, customer, member):
    response = client.post(reverse("api-keys"), {"name": "   "})
    assert response.status_code == 200 and b"errorlist" in response.content
    too_long = client.post(reverse("api-keys"), {"name": "x" * 101})
    assert b"at most 100 characters" in too_long.content and ("x" * 101).encode() in too_long.content
    assert not ApiKey.objects.exists()


def test_revoke_refuses_the_key_and_is_audited_once(client, customer, member):
    issued = api_keys.api_key_create(name="Old script", customer=customer, user=member)
    url = reverse("api-key-revoke", args=[issued.key.pk])
    assert client.get(url).status_code == 405
    response = client.post(url)
    assert response["Location"] == reverse("api-keys")
    assert api_keys.api_key_authenticate(issued.plaintext) is None
    client.post(url)
    assert AuditLogEntry.objects.filter(action=AuditAction.API_KEY_REVOKED).count() == 1
    assert "Revoked" in client.get(reverse("api-keys")).content.decode()


def test_another_customers_keys_are_invisible_and_404(client, customer, member):
    other = CustomerFactory()
    theirs = api_keys.api_key_create(name="Their secret integration", customer=other)
    assert b"Their secret integration" not in client.get(reverse("api-keys")).content
    assert client.post(reverse("api-key-revoke", args=[theirs.key.pk])).status_code == 404
    assert client.get(reverse("api-key-once", args=[theirs.key.pk])).status_code == 404
    theirs.key.refresh_from_db()
    assert theirs.key.revoked_at is None


def test_viewers_see_keys_but_cannot_create_or_revoke(client, customer):
    viewer = account_services.customer_user_create(
        customer=customer, username="viewer", email="v@example.com", password="x", role=MemberRole.VIEWER
    )
    issued = api_keys.api_key_create(name="Existing", customer=customer)
    client.force_login(viewer)
    page = client.get(reverse("api-keys")).content.decode()
    assert "Existing" in page and "Create key" not in page and "Revoke" not in page
    assert client.post(reverse("api-keys"), {"name": "Mine"}).status_code == 403
    assert client.post(reverse("api-key-revoke", args=[issued.key.pk])).status_code == 403
    assert ApiKey.objects.count() == 1


def test_api_key_forms_need_csrf(customer):
    csrf_client = Client(enforce_csrf_checks=True)
    user = customer_user(customer)
    csrf_client.force_login(user)
    issued = api_keys.api_key_create(name="Existing", customer=customer)
    assert csrf_client.post(reverse("api-keys"), {"name": "x"}).status_code == 403
    assert csrf_client.post(reverse("api-key-revoke", args=[issued.key.pk])).status_code == 403
    assert b"csrfmiddlewaretoken" in csrf_client.get(reverse("api-keys")).content


def test_the_keys_page_keeps_a_constant_number_of_queries(
    client, customer, member, django_assert_max_num_queries
):
    api_keys.api_key_create(name="first", customer=customer, user=member)
    with django_assert_max_num_queries(10) as baseline:
        assert client.get(reverse("api-keys")).status_code == 200
    for n in range(10):
        api_keys.api_key_create(name=f"key {n}", customer=customer, user=member if n % 2 else None)
    with django_assert_max_num_queries(len(baseline.captured_queries)):
        assert client.get(reverse("api-keys")).status_code == 200
