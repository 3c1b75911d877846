"""The HTTP control interface: a real in-process node behind aiohttp's test server, and one real process."""

import asyncio
import hashlib
import json
import os
import select
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from decimal import Decimal
from pathlib import Path

import pytest
from aiohttp.test_utils import TestClient, TestServer

from sipsync.server import __main__ as cli
from sipsync.server.config import ServiceConfig
from sipsync.server.control import ControlSecretError, ControlServer, load_secret
from sipsync.server.documents import RATES
from sipsync.server.node import SipNode
from sipsync.server.provision import document_for_password
from sipsync.server.store import LocalStore
from tests.sipsync.server.conftest import REALM, Phone

SECRET = "test-control-secret-0123456789"
AUTH = {"Authorization": f"Bearer {SECRET}"}
ROOT = Path(__file__).resolve().parents[3]


def customer_doc(version=1, **fields):
    doc = {
        "kind": "customer", "customer": "C1234567", "version": version, "status": "active",
        "currency": "ZAR", "balance": "100.0000", "country_code": "27", "national_prefix": "0",
        "rate_plan": "Standard",
    }
    doc.update(fields)
    return doc


def rate(**fields):
    r = {
        "prefix": "27", "description": "South Africa", "price_per_minute": "0.35000",
        "connect_fee": "0.00000", "first_increment": 60, "next_increment": 60,
        "effective_from": "2026-01-01T00:00:00Z", "effective_to": None,
    }
    r.update(fields)
    return r


def plan_doc(version=1, rates=None, **fields):
    doc = {"kind": "rates", "plan": "Standard", "version": version, "currency": "ZAR",
           "rates": rates if rates is not None else [rate(), rate(prefix="2782", description="SA mobile",
                                                                  price_per_minute="0.90000")]}
    doc.update(fields)
    return doc


def drive(node, scenario):
    """``await scenario(api)`` against the node's control app; api(method, path, body) -> (status, json)."""

    async def main():
        async with TestClient(TestServer(ControlServer(node, SECRET).app)) as client:

            async def api(method, path, body=None, *, headers=AUTH, data=None, full=False):
                if body is not None:
                    data = json.dumps(body)
                async with client.request(method, path, data=data, headers=headers) as response:
                    assert response.content_type == "application/json", await response.text()
                    payload = await response.json()
                    if full:
                        return response.status, payload, response.headers
                    return response.status, payload

            return await scenario(api)

    return asyncio.run(main())


def reopen(node):
    """The node restarted on the same store (what was flushed is all that survives)."""
    node.store.close()
    return SipNode(ServiceConfig(realm=REALM, store_path=node.config.store_path))


def aor_digest(lines):
    h = hashlib.sha256()
    for line in sorted(lines):
        h.update(line.encode())
    return h.hexdigest()


# -- authentication and the secret -------------------------------------------------------------

def test_health_needs_no_token(node):
    async def scenario(api):
        return await api("GET", "/v1/health", headers={})

    assert drive(node, scenario) == (
        200, {"status": "ok", "node": "local", "accounts": 3, "bindings": 0, "customers": 0, "rate_plans": 0}
    )


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong-secret-0123456789"}, {"Authorization": f"Basic {SECRET}"},
     {"Authorization": f"Bearer {SECRET}x"}, {"Authorization": "Bearer"}],
    ids=["missing", "wrong", "not-bearer", "longer", "empty"],
)
def test_without_the_right_token_is_401_and_changes_nothing(node, headers):
    dave = document_for_password("dave", REALM, "Dave-Passw0rd")

    async def scenario(api):
        results = [
            await api("GET", "/v1/digest", headers=headers, full=True),
            await api("PUT", f"/v1/accounts/dave@{REALM}", dave, headers=headers, full=True),
            await api("GET", "/v1/no-such-thing", headers=headers, full=True),  # no route probing either
        ]
        return results

    for status, body, response_headers in drive(node, scenario):
        assert status == 401
        assert body["error"]["code"] == "unauthorized" and body["error"]["message"]
        assert response_headers["WWW-Authenticate"].startswith("Bearer")
    assert node.accounts.get("dave", REALM) is None


def test_load_secret_from_env_or_file_and_refuses_without(tmp_path):
    assert load_secret({"SIP_CONTROL_SECRET": f"  {SECRET}\n"}) == SECRET
    path = tmp_path / "secret"
    path.write_text(SECRET + "\n")
    assert load_secret({"SIP_CONTROL_SECRET": "other-secret-but-long-enough"}, str(path)) == SECRET
    with pytest.raises(ControlSecretError, match="SIP_CONTROL_SECRET"):
        load_secret({})
    with pytest.raises(ControlSecretError, match="SIP_CONTROL_SECRET"):
        load_secret({"SIP_CONTROL_SECRET": "   "})
    with pytest.raises(ControlSecretError, match="shorter than 16"):
        load_secret({"SIP_CONTROL_SECRET": "short"})
    with pytest.raises(ControlSecretError, match="cannot read"):
        load_secret({}, str(tmp_path / "missing"))


def test_control_server_itself_refuses_an_empty_secret(node):
    with pytest.raises(ControlSecretError):
        ControlServer(node, "")


def test_the_command_refuses_to_start_the_control_interface_without_a_secret(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("SIP_CONTROL_SECRET", raising=False)
    store = tmp_path / "sip.sqlite3"
    argv = ["--listen", "127.0.0.1:0", "--control", "127.0.0.1:0", "--store", str(store), "--realm", REALM]
    assert cli.main(argv) == 2
    assert "refusing to start the control interface without a secret" in capsys.readouterr().err
    assert not store.exists()  # refused before anything was started


# -- accounts ------------------------------------------------------------------------------------

def test_put_account_applies_durably_and_the_phone_can_register(node):
    dave = document_for_password("dave", REALM, "Dave-Passw0rd", version=4)

    async def scenario(api):
        return await api("PUT", f"/v1/accounts/dave@{REALM}", dave)

    assert drive(node, scenario) == (200, {"applied": True, "version": 4, "held_version": 4})
    with LocalStore(node.config.store_path) as other:  # another connection sees it: committed
        assert any(d["username"] == "dave" for d in other.load_accounts())
    assert Phone(node, "dave", "Dave-Passw0rd").register().status == 200


def test_older_or_same_version_is_not_applied_and_not_overwritten(node):
    v5 = document_for_password("dave", REALM, "Dave-Passw0rd", version=5)
    v3 = document_for_password("dave", REALM, "Other-Passw0rd", version=3, enabled=False)

    async def scenario(api):
        return [
            await api("PUT", f"/v1/accounts/dave@{REALM}", v5),
            await api("PUT", f"/v1/accounts/dave@{REALM}", v3),
            await api("PUT", f"/v1/accounts/dave@{REALM}", v5),  # a duplicate delivery
        ]

    assert drive(node, scenario) == [
        (200, {"applied": True, "version": 5, "held_version": 5}),
        (200, {"applied": False, "version": 3, "held_version": 5}),
        (200, {"applied": False, "version": 5, "held_version": 5}),
    ]
    dave = node.accounts.get("dave", REALM)
    assert dave.version == 5 and dave.enabled and dave.ha1_md5 == v5["ha1_md5"]


def test_delete_drops_bindings_and_a_late_older_put_does_not_resurrect(node):
    assert Phone(node, "alice", "Alice-Passw0rd").register().status == 200
    assert node.location.lookup(f"alice@{REALM}")
    late = document_for_password("alice", REALM, "Alice-Passw0rd", version=1)

    async def scenario(api):
        return [
            await api("DELETE", f"/v1/accounts/alice@{REALM}?version=2"),
            await api("PUT", f"/v1/accounts/alice@{REALM}", late),
            await api("DELETE", f"/v1/accounts/alice@{REALM}?version=2"),
            await api("DELETE", f"/v1/accounts/alice@{REALM}"),
            await api("DELETE", f"/v1/accounts/alice@{REALM}?version=two"),
        ]

    deleted, late_put, again, no_version, bad_version = drive(node, scenario)
    assert deleted == (200, {"applied": True, "version": 2, "held_version": 2, "bindings_removed": 1})
    assert late_put == (200, {"applied": False, "version": 1, "held_version": 2})
    assert again == (200, {"applied": False, "version": 2, "held_version": 2, "bindings_removed": 0})
    for status, body in (no_version, bad_version):
        assert status == 400 and body["error"]["code"] == "invalid_parameter"
        assert "version" in body["error"]["message"]
    assert node.accounts.get("alice", REALM) is None
    assert node.location.lookup(f"alice@{REALM}") == []

    node = reopen(node)  # the tombstone and the binding removal were durable
    assert node.accounts.get("alice", REALM) is None
    assert node.accounts.held_version("alice", REALM) == 2
    assert node.location.lookup(f"alice@{REALM}") == []
    assert drive(node, lambda api: api("PUT", f"/v1/accounts/alice@{REALM}", late))[1]["applied"] is False
    node.store.close()


def test_a_batch_applies_every_kind_in_order_durably_and_reports_each_item(node):
    assert Phone(node, "alice", "Alice-Passw0rd").register().status == 200
    dave5 = document_for_password("dave", REALM, "Dave-Passw0rd", version=5)
    dave3 = document_for_password("dave", REALM, "Old-Passw0rd", version=3)
    erin = document_for_password("erin", REALM, "Erin-Passw0rd", version=7)
    broken = {k: v for k, v in erin.items() if k != "ha1_md5"} | {"username": "frank"}
    items = [
        dave5, dave3, broken, customer_doc(version=2), plan_doc(version=4),
        {"kind": "removal", "account": f"alice@{REALM.upper()}", "version": 9},
        {"kind": "removal", "account": "nobody", "version": 1},
        {"kind": "voicemail"}, "not an object", erin,
    ]  # fmt: skip

    status, body = drive(node, lambda api: api("POST", "/v1/batch", {"documents": items}))

    assert status == 200
    results = body["results"]
    assert results[0] == {"applied": True, "version": 5, "held_version": 5}
    assert results[1] == {"applied": False, "version": 3, "held_version": 5}
    assert results[2]["error"]["code"] == "invalid_document"
    assert "documents[2]" in results[2]["error"]["message"] and "ha1_md5" in results[2]["error"]["message"]
    assert results[3] == {"applied": True, "version": 2, "held_version": 2}
    assert results[4] == {"applied": True, "version": 4, "held_version": 4}
    assert results[5] == {"applied": True, "version": 9, "held_version": 9, "bindings_removed": 1}
    for bad in results[6:9]:
        assert bad["error"]["code"] == "invalid_document"
    assert results[9] == {"applied": True, "version": 7, "held_version": 7}
    assert len(results) == len(items)

    node = reopen(node)  # one flush made all of it durable
    assert node.accounts.held_version("dave", REALM) == 5
    assert node.accounts.held_version("erin", REALM) == 7
    assert node.accounts.get("frank", REALM) is None
    assert node.accounts.get("alice", REALM) is None and node.accounts.held_version("alice", REALM) == 9
    assert node.location.lookup(f"alice@{REALM}") == []
    assert node.documents.held_version("customer", "C1234567") == 2
    assert node.documents.held_version("rates", "Standard") == 4
    assert Phone(node, "dave", "Dave-Passw0rd").register().status == 200
    node.store.close()


def test_a_batch_that_is_not_a_list_or_too_long_is_refused_whole(node, monkeypatch):
    monkeypatch.setattr("sipsync.server.control.MAX_BATCH", 2)
    doc = document_for_password("dave", REALM, "Dave-Passw0rd", version=5)

    async def scenario(api):
        return [
            await api("POST", "/v1/batch", {"documents": {"kind": "account"}}),
            await api("POST", "/v1/batch", [doc]),
            await api("POST", "/v1/batch", {"documents": [doc, doc, doc]}),
            await api("POST", "/v1/batch", {"documents": [doc]}, headers={}),
        ]

    not_list, not_object, too_long, no_token = drive(node, scenario)
    assert not_list[0] == not_object[0] == 400 and not_list[1]["error"]["code"] == "invalid_document"
    assert too_long[0] == 413 and "at most 2" in too_long[1]["error"]["message"]
    assert no_token[0] == 401
    assert node.accounts.get("dave", REALM) is None


def test_credit_reports_what_calls_in_progress_reserve_per_customer(node):
    from decimal import Decimal

    def start(call_id, customer, reserved):
        return node.calls.start(
            call_id=call_id, caller_tag="t", account=f"alice@{REALM}", customer=customer,
            dialled="0115550123", number="27115550123", call_class="national", reserved=Decimal(reserved),
        )  # fmt: skip

    first = start("c1", "C1234567", "1.25")
    start("c2", "C1234567", "0.5")
    start("c3", "C7654321", "0")  # an internal call reserves nothing but is in progress

    async def scenario(api):
        return [
            await api("GET", "/v1/credit"),
            await api("GET", "/v1/credit?customer=C7654321"),
            await api("GET", "/v1/credit", headers={}),
        ]

    everyone, one, no_token = drive(node, scenario)
    assert everyone[0] == 200
    assert everyone[1]["customers"] == {
        "C1234567": {"reserved": "1.7500", "calls": 2},
        "C7654321": {"reserved": "0.0000", "calls": 1},
    }
    assert everyone[1]["at"].endswith("Z")
    assert one[1]["customers"] == {"C7654321": {"reserved": "0.0000", "calls": 1}}
    assert no_token[0] == 401

    node.calls.end(first, code=200)
    after = drive(node, lambda api: api("GET", "/v1/credit?customer=C1234567"))
    assert after[1]["customers"] == {"C1234567": {"reserved": "0.5000", "calls": 1}}


def test_junk_json_and_invalid_documents_are_400_naming_the_field(node):
    no_digest = document_for_password("dave", REALM, "Dave-Passw0rd")
    del no_digest["ha1_md5"]
    bad_calls = document_for_password("dave", REALM, "Dave-Passw0rd", max_calls="2")

    async def scenario(api):
        put = f"/v1/accounts/dave@{REALM}"
        return {
            "junk": await api("PUT", put, data=b"{not json"),
            "nan": await api("PUT", put, data=b'{"version": NaN}'),
            "empty": await api("PUT", put, data=b""),
            "array": await api("PUT", put, []),
            "no_digest": await api("PUT", put, no_digest),
            "bad_calls": await api("PUT", put, bad_calls),
            "balance": await api("PUT", "/v1/customers/C1234567", customer_doc(balance=100.0)),
            "places": await api("PUT", "/v1/customers/C1234567", customer_doc(balance="1.00001")),
            "status": await api("PUT", "/v1/customers/C1234567", customer_doc(status="gone")),
            "version": await api("PUT", "/v1/customers/C1234567", customer_doc(version="3")),
            "prefix": await api("PUT", "/v1/rate-plans/Standard", plan_doc(rates=[rate(prefix="+27")])),
            "period": await api("PUT", "/v1/rate-plans/Standard", plan_doc(
                rates=[rate(effective_to="2025-12-31T00:00:00Z")])),
            "increment": await api("PUT", "/v1/rate-plans/Standard", plan_doc(
                rates=[rate(), rate(prefix="28", next_increment=0)])),
            "duplicate": await api("PUT", "/v1/rate-plans/Standard", plan_doc(rates=[rate(), rate()])),
            "naive_time": await api("PUT", "/v1/rate-plans/Standard", plan_doc(
                rates=[rate(effective_from="2026-01-01T00:00:00")])),
            "ack": await api("POST", "/v1/events/ack", {"upto": -1}),
        }

    results = drive(node, scenario)
    expected = {
        "junk": ("invalid_json", "not valid JSON"),
        "nan": ("invalid_json", "NaN"),
        "empty": ("invalid_json", "not valid JSON"),
        "array": ("invalid_document", "must be an object"),
        "no_digest": ("invalid_document", "'ha1_md5' is required"),
        "bad_calls": ("invalid_document", "'max_calls' must be an integer"),
        "balance": ("invalid_document", "'balance' must be a decimal string"),
        "places": ("invalid_document", "'balance' must have at most 4 decimal places"),
        "status": ("invalid_document", "'status' must be one of active, suspended, closed"),
        "version": ("invalid_document", "'version' must be an integer"),
        "prefix": ("invalid_document", "'rates[0].prefix' must be 1-15 digits"),
        "period": ("invalid_document", "'rates[0].effective_to' must be later"),
        "increment": ("invalid_document", "'rates[1].next_increment' must be >= 1"),
        "duplicate": ("invalid_document", "'rates[1].effective_from' repeats rates[0]"),
        "naive_time": ("invalid_document", "'rates[0].effective_from' must carry a time zone"),
        "ack": ("invalid_document", "'upto'"),
    }
    for name, (code, text) in expected.items():
        status, body = results[name]
        assert (status, body["error"]["code"]) == (400, code), (name, body)
        assert text in body["error"]["message"], (name, body)
    assert node.accounts.get("dave", REALM) is None
    assert node.documents.get_customer("C1234567") is None
    assert node.documents.get_rate_plan("Standard") is None


def test_url_and_document_must_agree(node):
    dave = document_for_password("dave", REALM, "Dave-Passw0rd")

    async def scenario(api):
        return [
            await api("PUT", f"/v1/accounts/erin@{REALM}", dave),
            await api("PUT", "/v1/accounts/dave@other.test", dave),
            await api("PUT", f"/v1/accounts/Dave@{REALM}", dave),        # usernames are case-sensitive
            await api("PUT", "/v1/accounts/dave", dave),
            await api("PUT", "/v1/customers/C7654321", customer_doc()),
            await api("PUT", "/v1/rate-plans/Premium", plan_doc()),
            await api("PUT", f"/v1/accounts/dave@{REALM.upper()}", dave),  # realms are not
        ]

    *mismatches, no_realm, customer, plan, upper = drive(node, scenario)
    for status, body in [*mismatches, customer, plan]:
        assert (status, body["error"]["code"]) == (400, "document_mismatch"), body
    assert "erin@sip.test" in mismatches[0][1]["error"]["message"]
    assert no_realm[0] == 400 and "username@realm" in no_realm[1]["error"]["message"]
    assert upper == (200, {"applied": True, "version": 1, "held_version": 1})
    assert node.documents.get_customer("C7654321") is None


def test_unknown_route_and_wrong_method(node):
    async def scenario(api):
        return [
            await api("GET", "/v1/nothing-here", full=True),
            await api("POST", "/v1/digest", {}, full=True),
        ]

    (s404, b404, _), (s405, b405, h405) = drive(node, scenario)
    assert (s404, b404["error"]["code"]) == (404, "not_found")
    assert (s405, b405["error"]["code"]) == (405, "method_not_allowed")
    assert "GET" in h405["Allow"]


# -- customers and rate plans -----------------------------------------------------------------

def test_customer_and_rate_plan_documents_follow_the_version_rule(node):
    async def scenario(api):
        return [
            await api("PUT", "/v1/customers/C1234567", customer_doc(version=2, balance="-5.5000")),
            await api("PUT", "/v1/customers/C1234567", customer_doc(version=1, balance="999.0000")),
            await api("PUT", "/v1/rate-plans/Standard", plan_doc(version=7)),
            await api("PUT", "/v1/rate-plans/Standard", plan_doc(version=7, rates=[])),
            await api("PUT", "/v1/rate-plans/Standard", plan_doc(version=6, rates=[])),
            await api("PUT", "/v1/customers/C1234567", customer_doc(version=3, rate_plan=None,
                                                                    national_prefix="")),
            await api("GET", "/v1/health", headers={}),
        ]

    results = drive(node, scenario)
    assert results[:6] == [
        (200, {"applied": True, "version": 2, "held_version": 2}),
        (200, {"applied": False, "version": 1, "held_version": 2}),
        (200, {"applied": True, "version": 7, "held_version": 7}),
        (200, {"applied": False, "version": 7, "held_version": 7}),
        (200, {"applied": False, "version": 6, "held_version": 7}),
        (200, {"applied": True, "version": 3, "held_version": 3}),
    ]
    assert results[6][1]["customers"] == 1 and results[6][1]["rate_plans"] == 1
    customer = node.documents.get_customer("C1234567")
    assert customer["version"] == 3 and customer["balance"] == "100.0000" and customer["rate_plan"] is None
    assert [r["prefix"] for r in node.documents.get_rate_plan("Standard")["rates"]] == ["27", "2782"]

    node = reopen(node)  # persisted in the store's meta, loaded at start
    assert node.documents.get_customer("C1234567") == customer
    assert node.documents.get_rate_plan("Standard")["version"] == 7
    assert node.documents.get_rate_plan("Premium") is None and node.documents.load_errors == []
    node.store.close()


def test_the_rate_index_follows_the_plan_version_held(node):
    now = 1_800_000_000.0
    documents = node.documents
    assert documents.rate_index("Standard") is None
    documents.apply(RATES, plan_doc(version=1))
    assert documents.rate_index("Standard").find("27821234567", now).per_minute == Decimal("0.90000")
    dearer = rate(prefix="2782", price_per_minute="0.95000")
    documents.apply(RATES, plan_doc(version=2, rates=[rate(), dearer]))
    assert documents.rate_index("Standard").find("27821234567", now).per_minute == Decimal("0.95000")
    documents.apply(RATES, plan_doc(version=1, rates=[rate()]))  # older: ignored, and so is its index
    assert documents.rate_index("Standard").find("27821234567", now).prefix == "2782"
    node.store.close()


# -- reconcile ------------------------------------------------------------------------------------

def test_digest_changes_whenever_anything_changes(node):
    dave = document_for_password("dave", REALM, "Dave-Passw0rd", version=3)

    async def scenario(api):
        async def digest():
            status, body = await api("GET", "/v1/digest")
            assert status == 200
            return body

        seen = [await digest()]
        for method, path, body in [
            ("PUT", f"/v1/accounts/dave@{REALM}", dave),
            ("PUT", f"/v1/accounts/dave@{REALM}", dict(dave, version=2)),   # ignored: no change
            ("PUT", "/v1/customers/C1234567", customer_doc()),
            ("PUT", "/v1/rate-plans/Standard", plan_doc()),
            ("PUT", "/v1/rate-plans/Standard", plan_doc(version=2)),
            ("DELETE", f"/v1/accounts/bob@{REALM}?version=9", None),
        ]:
            assert (await api(method, path, body))[0] == 200
            seen.append(await digest())
        _, summary = await api("GET", "/v1/digest?versions=0")
        return seen, summary

    seen, summary = drive(node, scenario)
    digests = [s["digest"] for s in seen]
    assert digests[1] != digests[0] and digests[2] == digests[1]
    assert len(set(digests[2:])) == 5
    last = seen[-1]
    assert last["accounts"] == {f"alice@{REALM}": 1, f"carol@{REALM}": 1, f"dave@{REALM}": 3}
    assert last["customers"] == {"C1234567": 1} and last["rate_plans"] == {"Standard": 2}
    # The recipe the portal reproduces over what it believes it pushed.
    parts = {
        "accounts": aor_digest(f"{aor} {v}\n" for aor, v in last["accounts"].items()),
        "customers": aor_digest(["C1234567 1\n"]),
        "rate_plans": aor_digest(["Standard 2\n"]),
    }
    assert last["digests"] == parts
    combined = "".join(f"{k} {parts[k]}\n" for k in ("accounts", "customers", "rate_plans"))
    assert last["digest"] == hashlib.sha256(combined.encode()).hexdigest()
    assert summary == {"digests": parts, "digest": last["digest"]}


# -- registrations ------------------------------------------------------------------------------

def test_registrations_after_register(node):
    dave = document_for_password("dave", REALM, "Dave-Passw0rd")
    assert Phone(node, "alice", "Alice-Passw0rd").register().status == 200

    async def scenario(api):
        assert (await api("PUT", f"/v1/accounts/dave@{REALM}", dave))[0] == 200
        assert Phone(node, "dave", "Dave-Passw0rd", source=("203.0.113.9", 5070),
                     transport="TCP").register(expires=600).status == 200
        return [
            await api("GET", f"/v1/registrations?aor=alice@{REALM.upper()}"),
            await api("GET", "/v1/registrations?limit=1"),
            await api("GET", f"/v1/registrations?limit=1&after=alice@{REALM}"),
            await api("GET", "/v1/registrations?aor=nobody@sip.test"),
            await api("GET", "/v1/registrations?aor=nobody"),
            await api("GET", "/v1/registrations?limit=0"),
            await api("GET", f"/v1/registrations?aor=alice@{REALM}&aor=nobody@{REALM}&aor=dave@{REALM}"),
            await api("GET", f"/v1/registrations?aor=alice@{REALM}&aor=nobody"),
        ]

    one, page1, page2, nobody, bad_aor, bad_limit, several, bad_several = drive(node, scenario)
    assert [b["aor"] for b in several[1]["registrations"]] == [f"alice@{REALM}", f"dave@{REALM}"]
    assert several[1]["next"] is None and bad_several[0] == 400
    assert one[0] == 200 and one[1]["next"] is None
    [alice] = one[1]["registrations"]
    assert alice["aor"] == f"alice@{REALM}" and alice["contact"] == "sip:alice@10.0.0.2:5062"
    assert 3590 <= alice["expires_in"] <= 3600
    assert (alice["source_ip"], alice["source_port"], alice["transport"]) == ("198.51.100.7", 5062, "UDP")
    assert alice["user_agent"] == "TestPhone/1.0" and alice["registered_at"].endswith("Z")
    assert [b["aor"] for b in page1[1]["registrations"]] == [f"alice@{REALM}"]
    assert page1[1]["next"] == f"alice@{REALM}"
    [dave_binding] = page2[1]["registrations"]
    assert page2[1]["next"] is None
    assert (dave_binding["aor"], dave_binding["transport"], dave_binding["source_ip"]) == (
        f"dave@{REALM}", "TCP", "203.0.113.9")
    assert 590 <= dave_binding["expires_in"] <= 600
    assert nobody == (200, {"registrations": [], "next": None})
    assert bad_aor[0] == 400 and bad_limit[0] == 400


# -- events and call records ----------------------------------------------------------------------

def test_events_and_records_are_collected_and_acknowledged_across_a_restart(node):
    for _ in range(3):
        assert Phone(node, "alice", "Alice-Passw0rd").register(password="wrong").status == 403
    node.events.record("call", {"record_id": "sip1-1", "caller": "alice", "duration_seconds": 12})
    assert Phone(node, "carol", "Carol-Passw0rd").register().status == 403     # disabled
    node.events.record("call", {"record_id": "sip1-2", "caller": "alice", "duration_seconds": 0})
    # neither flushed by hand: a read makes what is queued visible

    async def first(api):
        assert (await api("GET", "/v1/events?after=1000"))[1]["events"] == []
        premature = await api("POST", "/v1/events/ack", {"upto": 1000})  # nothing served yet
        page = await api("GET", "/v1/events?limit=2")
        rest = await api("GET", f"/v1/events?after={page[1]['next']}")
        records = await api("GET", "/v1/records")
        ack = await api("POST", "/v1/events/ack", {"upto": page[1]["next"]})
        return premature, page, rest, records, ack

    premature, page, rest, records, ack = drive(node, first)
    assert premature == (200, {"acked": 0})              # clamped to what was served: nothing lost
    assert page[0] == 200 and page[1]["more"] is True
    assert [(e["kind"], e["cause"]) for e in page[1]["events"]] == [("rejection", "bad_password")] * 2
    ids = [e["id"] for e in page[1]["events"]]
    assert ids == sorted(ids) and page[1]["next"] == ids[-1]
    assert [e["cause"] for e in rest[1]["events"]] == ["bad_password", "account_disabled"]
    assert rest[1]["more"] is False
    assert [r["record_id"] for r in records[1]["records"]] == ["sip1-1", "sip1-2"]
    assert all(r["kind"] == "call" and r["node"] == "local" for r in records[1]["records"])
    assert ack == (200, {"acked": ids[-1]})

    node = reopen(node)

    async def second(api):
        again = await api("GET", "/v1/events")            # from 0: the acknowledged ones never come back
        records = await api("GET", "/v1/records")         # acking events did not drop any record
        stale = await api("POST", "/v1/events/ack", {"upto": 1})  # older ack: no-op
        return again, records, stale

    again, records_after, stale = drive(node, second)
    assert [e["cause"] for e in again[1]["events"]] == ["bad_password", "account_disabled"]
    assert [r["record_id"] for r in records_after[1]["records"]] == ["sip1-1", "sip1-2"]
    assert stale == (200, {"acked": ids[-1]})
    beyond = drive(node, lambda api: api("POST", "/v1/events/ack", {"upto": 10**12}))
    assert beyond == (200, {"acked": again[1]["next"]})  # clamped to the furthest `next` served
    assert node.store.event_count() == 6                  # records not acked: all kept
    assert node.store.event_count() == 6                  # still held for the records stream

    last_event = again[1]["events"][-1]["id"]
    last_record = records_after[1]["records"][-1]["id"]
    assert again[1]["next"] == last_record > last_event   # the events cursor walked past the last record

    async def third(api):
        await api("POST", "/v1/records/ack", {"upto": records_after[1]["next"]})
        await api("POST", "/v1/events/ack", {"upto": again[1]["next"]})  # ack `next`, not the last id
        return await api("GET", "/v1/events"), await api("GET", "/v1/records")

    events_now, records_now = drive(node, third)
    assert events_now[1]["events"] == [] and records_now[1]["records"] == []
    assert events_now[1]["next"] >= last_event
    assert node.store.event_count() == 0                  # both streams past everything: spool empty
    node = reopen(node)
    node.events.record("call", {"record_id": "sip1-3"})
    _, later = drive(node, lambda api: api("GET", "/v1/records"))
    assert [(r["record_id"], r["id"] > last_record) for r in later["records"]] == [("sip1-3", True)]
    node.store.close()


# -- the real process -----------------------------------------------------------------------------

def _read_line(proc, prefix, deadline):
    """The first line of the process's output that starts with ``prefix``. Reads the pipe itself:
    select() on it and a buffered readline() miss a line that came in one read with the line
    before (it waits in the buffer while select() sees nothing new)."""
    fd, pending = proc.stdout.fileno(), b""
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 0.1)
        if not ready:
            continue
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        *lines, pending = (pending + chunk).split(b"\n")
        for line in lines:
            if line.decode().startswith(prefix):
                return line.decode()
    stderr = proc.stderr.read() if proc.poll() is not None else "(still running)"
    raise AssertionError(f"no {prefix!r} line; stderr: {stderr}")


def _http(method, url, body=None, token=SECRET):
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, method=method, data=data)
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - a local test URL
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_the_real_process_serves_the_control_interface(tmp_path):
    store = tmp_path / "sip.sqlite3"
    argv = [sys.executable, "-m", "sipsync.server", "--listen", "127.0.0.1:0", "--control", "127.0.0.1:0",
            "--store", str(store), "--realm", REALM, "--node-id", "sip9"]
    env = {k: v for k, v in os.environ.items() if k != "SIP_CONTROL_SECRET"}

    refused = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2
    assert "refusing to start the control interface without a secret" in refused.stderr

    proc = subprocess.Popen(argv, cwd=ROOT, env={**env, "SIP_CONTROL_SECRET": SECRET},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = _read_line(proc, "sipsync: control on ", time.monotonic() + 30)
        base = line.split()[-1]
        assert _http("GET", f"{base}/v1/digest", token=None)[0] == 401
        assert _http("GET", f"{base}/v1/health", token=None)[1]["node"] == "sip9"
        dave = document_for_password("dave", REALM, "Dave-Passw0rd", version=7)
        assert _http("PUT", f"{base}/v1/accounts/dave@{REALM}", dave) == (
            200, {"applied": True, "version": 7, "held_version": 7})
        status, digest = _http("GET", f"{base}/v1/digest")
        assert status == 200 and digest["accounts"] == {f"dave@{REALM}": 7}
        assert digest["digests"]["accounts"] == aor_digest([f"dave@{REALM} 7\n"])
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.stdout.close()
            proc.stderr.close()
    assert proc.returncode == 0
    with LocalStore(store) as reopened:
        assert [d["username"] for d in reopened.load_accounts()] == ["dave"]
