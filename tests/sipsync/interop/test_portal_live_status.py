"""The portal's live registration state read from a real node: SIPp registers alice, the
dashboard's live column (one control request for every account) says so."""

import secrets

import pytest
from django.urls import reverse

from tests.factories import CustomerFactory, customer_user, sip_account

from .conftest import free_port

ALICE = ("-au", "alice", "-ap", "Secret-Passw0rd")

pytestmark = [pytest.mark.sipp, pytest.mark.django_db]


def test_dashboard_live_states_from_a_real_node(service_factory, run_scenario, client, settings, tmp_path):
    secret = secrets.token_urlsafe(24)
    secret_file = tmp_path / "control-secret"
    secret_file.write_text(secret)
    control = free_port()
    service = service_factory("--control", f"127.0.0.1:{control}", "--control-secret-file", str(secret_file))
    settings.SIP_NODES, settings.SIP_CONTROL_SECRET = [f"http://127.0.0.1:{control}"], secret
    returncode, log = run_scenario("register_ok", service.port, extra=ALICE)
    assert returncode == 0, log

    customer = CustomerFactory()
    # The portal's accounts named as the node's preloaded ones (no push needed for this check).
    alice = sip_account(customer, "1001", username="alice").account
    bob = sip_account(customer, "1002", username="bob").account
    client.force_login(customer_user(customer))
    body = client.get(reverse("account-registration-states"), {"ids": f"{alice.pk},{bob.pk}"}).json()
    assert body["accounts"][str(alice.pk)] == {
        "state": "registered",
        "contacts": 1,
        "label": "Registered (1 phone)",
    }
    assert body["accounts"][str(bob.pk)]["state"] == "unregistered"

    service.stop()
    body = client.get(reverse("account-registration-states"), {"ids": str(alice.pk)}).json()
    assert body["accounts"][str(alice.pk)]["state"] == "unknown"
