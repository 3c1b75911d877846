import re

import pytest
from django.urls import reverse

from accounts.api_keys import api_key_authenticate
from accounts.models import ApiKey
from tests.factories import CustomerFactory, StaffFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_client(client):
    staff = StaffFactory(is_superuser=True)
    client.force_login(staff)
    return client, staff


def test_staff_create_a_customer_key_and_see_it_once(staff_client):
    client, _ = staff_client
    customer = CustomerFactory()
    response = client.post(
        reverse("admin:accounts_apikey_add"), {"name": "billing sync", "customer": customer.pk}, follow=True
    )
    assert response.status_code == 200
    shown = re.search(r"(pbx_[0-9a-f]{10}_[A-Za-z0-9_-]+)", response.content.decode()).group(1)
    key = ApiKey.objects.get()
    assert key.customer == customer and key.key_hash != shown and shown not in str(vars(key))
    assert api_key_authenticate(shown) == key
    detail = client.get(reverse("admin:accounts_apikey_change", args=[key.pk]))
    assert shown not in detail.content.decode()


def test_a_key_without_customer_acts_as_the_staff_member(staff_client):
    client, staff = staff_client
    client.post(reverse("admin:accounts_apikey_add"), {"name": "ops", "customer": ""})
    key = ApiKey.objects.get()
    assert key.customer is None and key.user == staff


def test_revoked_keys_stop_working(staff_client):
    client, _ = staff_client
    response = client.post(
        reverse("admin:accounts_apikey_add"), {"name": "k", "customer": CustomerFactory().pk}, follow=True
    )
    shown = re.search(r"(pbx_[0-9a-f]{10}_[A-Za-z0-9_-]+)", response.content.decode()).group(1)
    key = ApiKey.objects.get()
    client.post(
        reverse("admin:accounts_apikey_changelist"), {"action": "revoke", "_selected_action": [key.pk]}
    )
    assert api_key_authenticate(shown) is None
