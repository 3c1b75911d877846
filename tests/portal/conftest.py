"""Fixtures shared by the portal's page tests: a customer and a signed-in member of it."""

import pytest
from django.core.cache import cache

from tests.factories import CustomerFactory, customer_user


@pytest.fixture(autouse=True)
def _clean_cache():
    # Login throttling and DRF throttles count in the cache; no test inherits another's counts.
    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def customer():
    return CustomerFactory(name="Acme Ltd")


@pytest.fixture
def member(client, customer):
    user = customer_user(customer)
    client.force_login(user)
    return user
