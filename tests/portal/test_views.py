import pytest
from django.urls import reverse

from tests.factories import CustomerFactory, StaffFactory, customer_user, sip_account

pytestmark = pytest.mark.django_db


def test_dashboard_needs_sign_in(client):
    response = client.get(reverse("dashboard"))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("login"))


def test_login_page_renders_with_csrf(client):
    response = client.get(reverse("login"))
    assert response.status_code == 200
    assert b"csrfmiddlewaretoken" in response.content


def test_customer_sees_only_their_own_accounts(client):
    mine, theirs = CustomerFactory(name="Mine Ltd"), CustomerFactory(name="Theirs Ltd")
    sip_account(mine, "1001", username="minefrontdesk")
    sip_account(theirs, "1001", username="theirsfrontdesk")
    client.force_login(customer_user(mine))
    response = client.get(reverse("dashboard"))
    assert response.status_code == 200
    assert b"minefrontdesk" in response.content
    assert b"theirsfrontdesk" not in response.content
    assert b"Theirs Ltd" not in response.content


def test_staff_land_on_the_console(client):
    client.force_login(StaffFactory())
    response = client.get(reverse("dashboard"))
    assert response.status_code == 302 and response["Location"] == reverse("admin:index")


def test_health_endpoint(client):
    assert client.get(reverse("healthz")).json() == {"status": "ok"}


def test_dashboard_queries_do_not_grow_with_accounts(client, django_assert_max_num_queries):
    customer = CustomerFactory()
    client.force_login(customer_user(customer))
    sip_account(customer, "1001")
    with django_assert_max_num_queries(11) as few:
        client.get(reverse("dashboard"))
    for extension in range(1002, 1012):
        sip_account(customer, str(extension))
    with django_assert_max_num_queries(len(few.captured_queries)):
        client.get(reverse("dashboard"))
