"""The number of queries a request makes does not grow with the data (no N+1)."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from accounts import services as account_services
from tests.factories import sip_account

pytestmark = pytest.mark.django_db

LISTS = [
    "/api/v1/sip-accounts/?limit=100",
    "/api/v1/caller-ids/?limit=100",
    "/api/v1/provisioning/?limit=100",
    "/api/v1/rejection-events/?limit=100",
    "/api/v1/call-records/?limit=100",
]
# authenticate the key (1), count (1), the page's keys (1), the page's rows (1), codecs prefetch
# (1, on the account list); recording the key's last use adds one, once a minute
MAX_QUERIES = 5


@pytest.fixture(autouse=True)
def _last_use_recorded_once(monkeypatch):
    # The key's last use is written at most once a minute; a slow machine could cross that minute
    # between two measured requests and count one query more. Only the first request writes here.
    from datetime import timedelta

    from accounts import api_keys

    monkeypatch.setattr(api_keys, "LAST_USED_PRECISION", timedelta(days=1))


def _grow(world, n):
    customer = world.mine.customer
    start = 2000 + customer.sip_accounts.count()
    for i in range(n):
        sip_account(customer, str(start + i))
        if i % 3 == 0:
            account_services.caller_id_request(customer=customer, number=f"01155{start + i:05d}")


def _count(client, url):
    with CaptureQueriesContext(connection) as queries:
        response = client.get(url)
    assert response.status_code == 200, response.content
    return len(queries)


@pytest.mark.parametrize("url", LISTS)
def test_list_queries_are_constant(world, url, django_assert_max_num_queries):
    world.mine.client.get(url)  # the key's first use records last_used_at (once a minute)
    world.staff.get(url)
    small = _count(world.mine.client, url)
    _grow(world, 30)
    with django_assert_max_num_queries(MAX_QUERIES):
        world.mine.client.get(url)
    assert _count(world.mine.client, url) == small
    assert _count(world.staff, url) <= MAX_QUERIES


def test_create_queries_do_not_grow_with_the_account_count(world):
    def create(extension):
        with CaptureQueriesContext(connection) as queries:
            response = world.mine.client.post(
                "/api/v1/sip-accounts/", {"extension": extension}, format="json"
            )
        assert response.status_code == 201
        return len(queries)

    world.mine.client.get("/api/v1/sip-accounts/")  # the key's first use records last_used_at
    first = create("3001")
    _grow(world, 30)
    assert create("3002") == first
