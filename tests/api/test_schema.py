"""The OpenAPI schema, the offline docs, and a schema-driven fuzz run against the WSGI app.

The fuzz run (schemathesis, through its pytest integration) sends generated requests, valid and
invalid, for every operation in the schema, in process through WSGI (no network), with a staff
key, and checks: no 5xx, status codes, content types, headers and bodies as documented.
"""

import pytest
import schemathesis
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from portal.wsgi import application

pytestmark = pytest.mark.django_db

FUZZ_EXAMPLES = 12  # per operation


def test_schema_is_openapi_3_and_public(client):
    response = client.get("/api/v1/schema/", HTTP_ACCEPT="application/json")
    assert response.status_code == 200
    schema = response.json()
    assert schema["openapi"].startswith("3.")
    assert "/api/v1/sip-accounts/" in schema["paths"]
    assert schema["components"]["securitySchemes"]["apiKey"]["scheme"] == "bearer"
    listing = schema["paths"]["/api/v1/sip-accounts/"]["get"]
    assert {p["name"] for p in listing["parameters"]} >= {"limit", "offset", "search", "ordering"}
    assert listing["responses"]["404"]["content"]["application/json"]["schema"]["$ref"].endswith("/Error")
    created = schema["paths"]["/api/v1/sip-accounts/"]["post"]["responses"]["201"]
    assert created["content"]["application/json"]["schema"]["$ref"].endswith("/SipAccountWithPassword")
    assert "password" in schema["components"]["schemas"]["SipAccountWithPassword"]["properties"]
    read = schema["components"]["schemas"]["SipAccountOutput"]["properties"]
    assert not {"password", "ha1_md5", "ha1_sha256"} & set(read)


@pytest.mark.parametrize("path", ["/api/v1/docs/", "/api/v1/redoc/"])
def test_docs_are_served_without_a_cdn(client, path):
    response = client.get(path)
    assert response.status_code == 200
    html = response.content.decode()
    assert "/static/drf_spectacular_sidecar/" in html
    assert "cdn" not in html.lower() and "unpkg" not in html.lower()


def test_the_docs_assets_are_served(client):
    html = client.get("/api/v1/docs/").content.decode()
    asset = "/static/drf_spectacular_sidecar/swagger-ui-dist/swagger-ui-bundle.js"
    assert asset in html
    response = client.get(asset)
    assert response.status_code == 200


# Loaded at collection, through WSGI (the schema view needs no database). schemathesis's
# `from_fixture` loader is not used: it reads a private attribute pytest 9 no longer has.
schema = schemathesis.openapi.from_wsgi("/api/v1/schema/?format=json", application)


@pytest.fixture
def fuzz_settings(settings):
    settings.SIP_NODES = ["http://127.0.0.1:9"]  # the discard port: registrations report the node down
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {"api": "100000/min"}}
    # As Django's test client does: the WSGI handler would otherwise close the test's connection
    # (and its transaction) at the end of every request.
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@schema.parametrize()
@settings(
    max_examples=FUZZ_EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize=True,
    database=None,
)
def test_fuzz_the_api(case, world, fuzz_settings):
    headers = {"Authorization": f"Bearer {world.staff_key}"}
    if case.operation.path.endswith("/credit-loads/"):
        # A generated case may carry other headers but not this one (requests refuses a None value).
        headers["Idempotency-Key"] = (case.headers or {}).get("Idempotency-Key") or "fuzz"
    case.call_and_validate(
        headers=headers,
        checks=[
            not_a_server_error,
            status_code_conformance,
            content_type_conformance,
            response_headers_conformance,
            response_schema_conformance,
        ],
    )
