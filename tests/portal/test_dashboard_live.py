"""The dashboard's recent calls and the live registration state of every account."""

import httpx
import pytest
from django.urls import reverse

from billing.choices import CallDisposition
from sipsync.client import NodeClient
from tests.billing.conftest import make_record
from tests.factories import CustomerFactory, sip_account

pytestmark = pytest.mark.django_db

DOWN = "http://node-b.test:5080"



def _nodes(monkeypatch, registered: dict[str, list[str]], asked: list):
    """Nodes answering from `registered` (node URL -> contacts of alice... per AOR); DOWN refuses."""

    def client(url):
        def handler(request: httpx.Request) -> httpx.Response:
            aors = request.url.params.get_list("aor")
            asked.append((url, aors))
            bindings = [
                {"aor": aor, "contact": contact}
                for aor in aors
                for contact in registered.get(url, {}).get(aor, [])
            ]
            return httpx.Response(200, json={"registrations": bindings, "next": None})

        if url == DOWN:
            transport = httpx.MockTransport(
                lambda request: (_ for _ in ()).throw(httpx.ConnectError("refused"))
            )
        else:
            transport = httpx.MockTransport(handler)
        return NodeClient(url, secret="s3cret", transport=transport)

    monkeypatch.setattr("sipsync.live.node_client", client)


def test_live_states_ask_each_node_once_for_every_account(client, customer, member, settings, monkeypatch):
    settings.SIP_NODES = ["http://node-a.test:5080", "http://node-c.test:5080"]
    desk = sip_account(customer, "1001").account
    spare = sip_account(customer, "1002").account
    desk_aor = f"{desk.username}@{desk.realm}"
    asked = []
    _nodes(
        monkeypatch,
        {
            "http://node-a.test:5080": {desk_aor: ["sip:a@192.0.2.1"]},
            "http://node-c.test:5080": {desk_aor: ["sip:a@192.0.2.1", "sip:b@192.0.2.2"]},
        },
        asked,
    )
    body = client.get(reverse("account-registration-states"), {"ids": f"{desk.pk},{spare.pk}"}).json()
    assert body["accounts"][str(desk.pk)] == {
        "state": "registered",
        "contacts": 2,
        "label": "Registered (2 phones)",
    }
    assert body["accounts"][str(spare.pk)]["label"] == "Not registered"
    assert len(asked) == 2 and all(
        sorted(aors) == sorted([desk_aor, f"{spare.username}@{spare.realm}"]) for _, aors in asked
    )


def test_live_states_say_when_nodes_do_not_answer(client, customer, member, settings, monkeypatch):
    account = sip_account(customer, "1001").account
    _nodes(monkeypatch, {}, [])
    settings.SIP_NODES = [DOWN]
    body = client.get(reverse("account-registration-states"), {"ids": str(account.pk)}).json()
    assert body["accounts"][str(account.pk)]["state"] == "unknown"
    settings.SIP_NODES = ["http://node-a.test:5080", DOWN]
    body = client.get(reverse("account-registration-states"), {"ids": str(account.pk)}).json()
    assert body["accounts"][str(account.pk)]["label"] == "Not registered on the 1 of 2 nodes that answered"


def test_live_states_never_name_another_customers_account(client, customer, member, settings, monkeypatch):
    theirs = sip_account(CustomerFactory(), "1001").account
    asked = []
    _nodes(monkeypatch, {}, asked)
    settings.SIP_NODES = ["http://node-a.test:5080"]
    body = client.get(reverse("account-registration-states"), {"ids": f"{theirs.pk},x,,"}).json()
    assert body == {"accounts": {}} and asked == []


def test_dashboard_has_a_live_column_and_recent_calls(client, customer, member, settings):
    account = sip_account(customer, "1001").account
    for n in range(7):
        record = make_record(customer, record_id=f"rec-{n}", answered=n % 2 == 0)
        record.sip_account = account
        record.save(update_fields=["sip_account"])
    make_record(customer, record_id="rec-refused", answered=False, disposition=CallDisposition.REJECTED)
    page = client.get(reverse("dashboard")).content.decode()
    assert f'data-registration="{account.pk}"' in page
    assert reverse("account-registration-states") in page
    assert "Recent calls" in page and page.count('data-testid="call-rec-') == 5
    assert reverse("billing:calls") in page
