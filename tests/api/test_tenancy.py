"""Cross-tenant refusal, for every endpoint and method of the API.

A customer's key presenting another customer's ids gets 404 (the object does not exist for it:
nothing is revealed, nothing changes); staff-only endpoints answer 403 to any customer key. A
completeness test checks the catalogue below names every route and method the API serves.
"""

import pytest
from django.urls import URLPattern, URLResolver, get_resolver

from accounts.models import ApiKey, CallerId, SipAccount
from billing.models import LedgerEntry, RatePlan
from tests.api.conftest import error_of

pytestmark = pytest.mark.django_db

# (method, path under /api/v1/, body): {c} their customer, {a} their account, {cid} their caller
# ID, {key} their key. Answer for my customer key: 404.
SCOPED = [
    ("get", "customers/{c}/", None),
    ("get", "customers/{c}/balance/", None),
    ("get", "customers/{c}/ledger/", None),
    ("get", "sip-accounts/{a}/", None),
    ("patch", "sip-accounts/{a}/", {"label": "hijacked"}),
    ("post", "sip-accounts/{a}/reset-password/", {}),
    ("get", "sip-accounts/{a}/codecs/", None),
    ("put", "sip-accounts/{a}/codecs/", {"codecs": ["PCMA"]}),
    ("get", "sip-accounts/{a}/voicemail/", None),
    ("put", "sip-accounts/{a}/voicemail/", {"new": 1, "old": 0}),
    ("get", "sip-accounts/{a}/registrations/", None),
    ("get", "sip-accounts/{a}/subscriptions/", None),
    ("get", "sip-accounts/{a}/provisioning/", None),
    ("get", "caller-ids/{cid}/", None),
    ("post", "sip-accounts/", {"customer": "{c}", "extension": "1009"}),
    ("post", "caller-ids/", {"customer": "{c}", "number": "0115550111"}),
]

# Staff only: 403 for any customer key, whosever ids it names.
STAFF_ONLY = [
    ("get", "customers/", None),
    ("post", "customers/", {"name": "Intruder"}),
    ("post", "customers/{c}/suspend/", {}),
    ("post", "customers/{c}/reinstate/", {}),
    ("post", "customers/{c}/credit-loads/", {"amount": "10"}),
    ("post", "sip-accounts/{a}/require-password-change/", {}),
    ("post", "caller-ids/{cid}/approve/", {}),
    ("post", "caller-ids/{cid}/reject/", {}),
    ("get", "rates/", None),
    ("post", "rate-plans/{plan}/import/", {"csv": "prefix,description,price_per_minute\n27,ZA,0.1\n"}),
    ("get", "api-keys/", None),
    ("post", "api-keys/", {"name": "mine now"}),
    ("post", "api-keys/{key}/revoke/", {}),
]

# Lists: scoped to my customer, also when filtered by their ids.
LISTS = [
    ("sip-accounts/", "id", "a"),
    ("caller-ids/", "id", "cid"),
    ("call-records/?account={a}", None, None),
    ("rejection-events/?account={a}", None, None),
    ("provisioning/?account={a}", None, None),
    ("call-records/", "customer", "c"),
    ("rejection-events/", "customer", "c"),
    ("provisioning/", "customer", "c"),
]

NOT_IN_SCHEMA = {"schema/", "docs/", "redoc/"}


def _ids(tenant):
    key = ApiKey.objects.get(customer=tenant.customer)
    return {
        "c": tenant.customer.pk,
        "a": tenant.account.pk,
        "cid": tenant.caller_id.pk,
        "key": key.pk,
        "plan": RatePlan.objects.get().pk,
    }


def _fill(template, ids):
    if isinstance(template, str):
        text = template.format(**ids)
        return int(text) if text.isdigit() and template.startswith("{") else text
    if isinstance(template, dict):
        return {k: _fill(v, ids) for k, v in template.items()}
    return template


def _call(client, method, path, body):
    kwargs = {"format": "json"} if body is not None else {}
    return getattr(client, method)(f"/api/v1/{path}", body, **kwargs)


def _snapshot(tenant):
    account = SipAccount.objects.get(pk=tenant.account.pk)
    return (
        account.label,
        account.ha1_md5,
        account.updated_at,
        list(account.codec_assignments.values_list("codec", flat=True)),
        SipAccount.objects.filter(customer=tenant.customer).count(),
        CallerId.objects.filter(customer=tenant.customer).count(),
        LedgerEntry.objects.filter(customer=tenant.customer).count(),
        tenant.customer.__class__.objects.get(pk=tenant.customer.pk).status,
    )


@pytest.mark.parametrize(("method", "path", "body"), SCOPED, ids=[f"{m} {p}" for m, p, _ in SCOPED])
def test_another_customers_ids_are_not_found(world, method, path, body):
    ids = _ids(world.theirs)
    before = _snapshot(world.theirs)
    response = _call(world.mine.client, method, _fill(path, ids), _fill(body, ids))
    assert response.status_code == 404, response.content
    assert error_of(response)["code"] == "not_found"
    assert _snapshot(world.theirs) == before


@pytest.mark.parametrize(("method", "path", "body"), SCOPED, ids=[f"{m} {p}" for m, p, _ in SCOPED])
def test_the_same_requests_work_on_my_own_ids(world, method, path, body, monkeypatch):
    monkeypatch.setattr("sipsync.live.node_client", _offline_node)
    ids = _ids(world.mine)
    response = _call(world.mine.client, method, _fill(path, ids), _fill(body, ids))
    assert response.status_code in (200, 201), response.content


@pytest.mark.parametrize(("method", "path", "body"), STAFF_ONLY, ids=[f"{m} {p}" for m, p, _ in STAFF_ONLY])
@pytest.mark.parametrize("whose", ["mine", "theirs"])
def test_staff_endpoints_refuse_customer_keys(world, method, path, body, whose):
    ids = _ids(getattr(world, whose))
    before = (_snapshot(world.mine), _snapshot(world.theirs), ApiKey.objects.filter(revoked_at=None).count())
    response = _call(world.mine.client, method, _fill(path, ids), _fill(body, ids))
    assert response.status_code == 403, response.content
    assert error_of(response)["code"] == "permission_denied"
    assert (
        _snapshot(world.mine),
        _snapshot(world.theirs),
        ApiKey.objects.filter(revoked_at=None).count(),
    ) == before


@pytest.mark.parametrize(("path", "field", "their"), LISTS, ids=[p for p, _, _ in LISTS])
def test_lists_hold_only_my_customers_rows(world, path, field, their):
    theirs, mine = _ids(world.theirs), _ids(world.mine)
    response = world.mine.client.get(f"/api/v1/{_fill(path, theirs)}")
    assert response.status_code == 200
    results = response.json()["results"]
    if field is None:  # filtered by their account: nothing
        assert results == []
    else:
        values = {row[field] for row in results}
        assert values and theirs[their] not in values
        if field == "customer":
            assert values == {mine["c"]}


def test_my_account_cannot_take_their_caller_id(world):
    response = world.mine.client.patch(
        f"/api/v1/sip-accounts/{world.mine.account.pk}/",
        {"default_caller_id": world.theirs.approved_caller_id.pk},
        format="json",
    )
    assert response.status_code == 400
    assert "default_caller_id" in error_of(response)["fields"]


def test_staff_keys_reach_every_customer(world):
    for tenant in (world.mine, world.theirs):
        assert world.staff.get(f"/api/v1/sip-accounts/{tenant.account.pk}/").status_code == 200
        assert world.staff.get(f"/api/v1/customers/{tenant.customer.pk}/ledger/").status_code == 200
    listed = {row["customer"] for row in world.staff.get("/api/v1/sip-accounts/").json()["results"]}
    assert listed == {world.mine.customer.pk, world.theirs.customer.pk}


def _api_routes():
    """(path, method) for every route the API serves (its schema, docs and catch-all aside)."""
    resolver = get_resolver("portal.api_urls")
    routes = set()

    def walk(patterns, prefix):
        for pattern in patterns:
            if isinstance(pattern, URLResolver):
                walk(pattern.url_patterns, prefix + str(pattern.pattern))
            elif isinstance(pattern, URLPattern):
                cls = getattr(pattern.callback, "cls", None)
                path = prefix + str(pattern.pattern)
                if cls is None or not path.startswith("v1/"):
                    continue
                path = path.removeprefix("v1/")
                if path in NOT_IN_SCHEMA:
                    continue
                for method in ("get", "post", "put", "patch", "delete"):
                    if hasattr(cls, method):
                        routes.add((_normalise(path), method))

    walk(resolver.url_patterns, "")
    return routes


def _normalise(path: str) -> str:
    for converter in (
        "<id:customer_id>",
        "<id:account_id>",
        "<id:caller_id_id>",
        "<id:key_id>",
        "<id:plan_id>",
    ):
        path = path.replace(converter, "{id}")
    return path


def _catalogued(entries):
    result = set()
    for method, path, _ in entries:
        path = path.split("?")[0]
        for name in ("{c}", "{a}", "{cid}", "{key}", "{plan}"):
            path = path.replace(name, "{id}")
        result.add((path, method))
    return result


def test_every_route_and_method_is_in_the_catalogue():
    lists = {(p.split("?")[0], "get") for p, _, _ in LISTS}
    covered = _catalogued(SCOPED) | _catalogued(STAFF_ONLY) | lists
    assert _api_routes() - covered == set()


def _offline_node(url):
    import httpx

    from sipsync.client import NodeClient

    return NodeClient(url, transport=httpx.MockTransport(lambda request: httpx.Response(503)))
