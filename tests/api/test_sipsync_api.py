"""Live registrations (from the nodes), provisioning status and rejection events through the API."""

import httpx
import pytest

from sipsync.client import NodeClient
from sipsync.models import ProvisioningState, ProvisioningStatus
from tests.api.conftest import NODE, error_of

pytestmark = pytest.mark.django_db

DOWN = "http://node-b.test:5080"


def _nodes(monkeypatch, seen):
    def handler(request: httpx.Request) -> httpx.Response:
        seen.append((request.url.host, request.url.params.get("aor"), request.headers.get("authorization")))
        aor = request.url.params["aor"]
        return httpx.Response(
            200,
            json={
                "registrations": [
                    {
                        "aor": aor,
                        "contact": "sip:1001@192.0.2.10:5060",
                        "expires_in": 3540,
                        "expires_at": "2026-11-24T10:00:00Z",
                        "q": None,
                        "source_ip": "192.0.2.10",
                        "source_port": 5060,
                        "transport": "udp",
                        "user_agent": "Yealink T46U",
                        "instance_id": None,
                        "registered_at": "2026-11-24T09:00:00Z",
                    }
                ],
                "next": None,
            },
        )

    def client(url):
        if url == DOWN:
            transport = httpx.MockTransport(
                lambda request: (_ for _ in ()).throw(httpx.ConnectError("refused"))
            )
        else:
            transport = httpx.MockTransport(handler)
        return NodeClient(url, secret="s3cret", transport=transport)

    monkeypatch.setattr("sipsync.live.node_client", client)


def test_registrations_from_every_node_with_a_node_down(world, settings, monkeypatch):
    settings.SIP_NODES = [NODE, DOWN]
    seen = []
    _nodes(monkeypatch, seen)
    account = world.mine.account
    response = world.mine.client.get(f"/api/v1/sip-accounts/{account.pk}/registrations/")
    assert response.status_code == 200
    body = response.json()
    aor = f"{account.username}@{account.realm}"
    assert body["aor"] == aor and body["account"] == account.pk
    up, down = body["nodes"]
    assert up["node"] == NODE and up["ok"] is True and up["error"] == ""
    assert up["registrations"][0]["user_agent"] == "Yealink T46U"
    assert down["node"] == DOWN and down["ok"] is False and "ConnectError" in down["error"]
    assert down["registrations"] == []
    assert seen == [("node-a.test", aor, "Bearer s3cret")]


def test_subscriptions_from_every_node_with_a_node_down(world, settings, monkeypatch):
    settings.SIP_NODES = [NODE, DOWN]
    account = world.mine.account
    aor = f"{account.username}@{account.realm}"
    watched = {
        "id": "s1",
        "event": "dialog",
        "subscriber": aor,
        "target": "boss@sip.test",
        "contact": "sip:1001@192.0.2.10:5060",
        "source": "192.0.2.10:5060",
        "transport": "udp",
        "expires_at": 1795000000.5,
    }

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/v1/subscriptions" and request.url.params["aor"] == aor
        return httpx.Response(200, json={"subscriptions": [watched]})

    def client(url):
        if url == DOWN:
            return NodeClient(url, transport=httpx.MockTransport(lambda request: httpx.Response(503)))
        return NodeClient(url, secret="s3cret", transport=httpx.MockTransport(handler))

    monkeypatch.setattr("sipsync.live.node_client", client)
    body = world.mine.client.get(f"/api/v1/sip-accounts/{account.pk}/subscriptions/").json()
    assert body["aor"] == aor
    up, down = body["nodes"]
    assert up == {"node": NODE, "ok": True, "error": "", "subscriptions": [watched]}
    assert down["ok"] is False and "503" in down["error"] and down["subscriptions"] == []


def test_provisioning_per_account_and_list(world, settings):
    settings.SIP_NODES = [NODE]
    ProvisioningStatus.objects.filter(account=world.mine.account, node=NODE).update(
        state=ProvisioningState.FAILING, error="node said no"
    )
    nodes = world.mine.client.get(f"/api/v1/sip-accounts/{world.mine.account.pk}/provisioning/").json()
    assert [n["node"] for n in nodes] == [NODE] and nodes[0]["state"] == "failing"
    assert nodes[0]["error"] == "node said no" and nodes[0]["current_version"]
    failing = world.mine.client.get("/api/v1/provisioning/?state=failing").json()
    assert [(r["account"], r["extension"]) for r in failing["results"]] == [(world.mine.account.pk, "1001")]
    everything = world.staff.get("/api/v1/provisioning/").json()
    assert everything["count"] == 4
    bad = world.mine.client.get("/api/v1/provisioning/?state=lost")
    assert bad.status_code == 400 and "state" in error_of(bad)["fields"]


def test_rejection_events(world):
    body = world.mine.client.get("/api/v1/rejection-events/").json()
    assert body["count"] == 1
    event = body["results"][0]
    assert event["code"] == 403 and event["cause"] == "wrong_password"
    assert event["account"] == world.mine.account.pk and event["customer"] == world.mine.customer.pk
    assert world.mine.client.get("/api/v1/rejection-events/?code=401").json()["count"] == 0
    assert world.staff.get("/api/v1/rejection-events/").json()["count"] == 2
    bad = world.mine.client.get("/api/v1/rejection-events/?code=9000")
    assert bad.status_code == 400 and "code" in error_of(bad)["fields"]
