"""HTTP client for a SIP service node's control interface (JSON over HTTP, bearer secret).

    with NodeClient("http://127.0.0.1:5080") as node:
        node.put_account(document)

Network failures, timeouts and 5xx answers raise `NodeUnavailable` (worth retrying); other
error answers raise `NodeRejected` with the node's error code and message.
"""

import functools
import ssl
from dataclasses import dataclass
from urllib.parse import quote

import httpx
from django.conf import settings

DEFAULT_TIMEOUT = httpx.Timeout(5.0, connect=2.0)


@functools.cache
def _tls_context() -> ssl.SSLContext:
    # httpx builds a TLS context (and reads the system's CA certificates) for every client,
    # about 25 ms, even for a plain-HTTP node; one per process is enough.
    return httpx.create_ssl_context()


class NodeError(Exception):
    def __init__(self, node: str, message: str, *, status: int | None = None, code: str = "") -> None:
        super().__init__(f"{node}: {message}")
        self.node = node
        self.status = status
        self.code = code


class NodeUnavailable(NodeError):
    """The node could not be reached or failed (timeout, connection refused, 5xx)."""


class NodeRejected(NodeError):
    """The node answered with a 4xx error (a malformed document, a bad secret)."""


@dataclass(frozen=True, slots=True)
class PushResult:
    applied: bool
    version: int | None
    held_version: int | None


@dataclass(frozen=True, slots=True)
class Page:
    """A page of a node's event or record stream: acknowledge up to `next` once stored."""

    items: list[dict]
    next: int | None
    more: bool


class NodeClient:
    def __init__(
        self,
        base_url: str,
        *,
        secret: str | None = None,
        timeout: httpx.Timeout | float = DEFAULT_TIMEOUT,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        secret = settings.SIP_CONTROL_SECRET if secret is None else secret
        self._http = httpx.Client(
            base_url=self.base_url,
            headers={"Authorization": f"Bearer {secret}", "Accept": "application/json"},
            timeout=timeout,
            transport=transport,
            verify=_tls_context(),
        )

    def __enter__(self) -> "NodeClient":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    # --- provisioning ----------------------------------------------------------------------

    def put_account(self, document: dict) -> PushResult:
        aor = f"{document['username']}@{document['realm']}"
        return _push_result(self._request("PUT", f"/v1/accounts/{_path(aor)}", json=document))

    def delete_account(self, aor: str, *, version: int) -> PushResult:
        return _push_result(
            self._request("DELETE", f"/v1/accounts/{_path(aor)}", params={"version": version})
        )

    def put_customer(self, document: dict) -> PushResult:
        return _push_result(
            self._request("PUT", f"/v1/customers/{_path(document['customer'])}", json=document)
        )

    def put_rate_plan(self, document: dict) -> PushResult:
        return _push_result(self._request("PUT", f"/v1/rate-plans/{_path(document['plan'])}", json=document))

    def push(self, document: dict) -> PushResult:
        kind = document.get("kind")
        if kind == "account":
            return self.put_account(document)
        if kind == "customer":
            return self.put_customer(document)
        if kind == "rates":
            return self.put_rate_plan(document)
        raise ValueError(f"cannot push a document of kind {kind!r}")

    def push_batch(self, documents: list[dict]) -> list["PushResult | NodeRejected"]:
        """Push many documents (and account removals) in one request; one result per document,
        in order: a `PushResult`, or a `NodeRejected` for a document the node refused. The whole
        request failing raises as any other request does."""
        if not documents:
            return []
        body = self._request("POST", "/v1/batch", json={"documents": documents})
        results = body.get("results")
        if not isinstance(results, list) or len(results) != len(documents):
            raise NodeUnavailable(self.base_url, "POST /v1/batch: the answer has not one result per document")
        out: list[PushResult | NodeRejected] = []
        for result in results:
            error = result.get("error") if isinstance(result, dict) else {"message": "not an object"}
            if error:
                code, message = str(error.get("code", "")), str(error.get("message", ""))
                out.append(NodeRejected(self.base_url, f"{code}: {message}", status=400, code=code))
            else:
                out.append(_push_result(result))
        return out

    def digest(self) -> dict:
        body = self._request("GET", "/v1/digest")
        return {
            "accounts": dict(body.get("accounts") or {}),
            "customers": dict(body.get("customers") or {}),
            "rate_plans": dict(body.get("rate_plans") or {}),
            "digest": body.get("digest", ""),
        }

    # --- diagnostics -----------------------------------------------------------------------

    def credit(self) -> dict:
        """Credit held by calls in progress: {"customers": {account number: {"reserved", "calls"}},
        "at": iso time}."""
        return self._request("GET", "/v1/credit")

    def registrations(self, aor: str) -> list[dict]:
        return list(self._request("GET", "/v1/registrations", params={"aor": aor}).get("registrations") or [])

    def registrations_of(self, aors: list[str]) -> list[dict]:
        """The bindings of several accounts in one request (each binding names its "aor")."""
        if not aors:
            return []
        params = [("aor", aor) for aor in aors]
        return list(self._request("GET", "/v1/registrations", params=params).get("registrations") or [])

    def subscriptions(self, aor: str) -> list[dict]:
        """Subscriptions (MWI, BLF) the account holds and those watching it."""
        return list(self._request("GET", "/v1/subscriptions", params={"aor": aor}).get("subscriptions") or [])

    def events(self, *, after: int = 0, limit: int = 500) -> "Page":
        return _page(
            self._request("GET", "/v1/events", params={"after": after, "limit": limit}), "events", limit
        )

    def ack_events(self, *, upto: int) -> None:
        self._request("POST", "/v1/events/ack", json={"upto": upto})

    def records(self, *, after: int = 0, limit: int = 500) -> "Page":
        return _page(
            self._request("GET", "/v1/records", params={"after": after, "limit": limit}), "records", limit
        )

    def ack_records(self, *, upto: int) -> None:
        self._request("POST", "/v1/records/ack", json={"upto": upto})

    def health(self) -> dict:
        return self._request("GET", "/v1/health")

    # --- internals -------------------------------------------------------------------------

    def _request(self, method: str, path: str, **kwargs) -> dict:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise NodeUnavailable(self.base_url, f"{method} {path}: {type(exc).__name__}: {exc}") from exc
        if response.status_code >= 400:
            code, message = _error(response)
            error = NodeUnavailable if response.status_code >= 500 else NodeRejected
            raise error(
                self.base_url,
                f"{method} {path}: {response.status_code} {code}: {message}",
                status=response.status_code,
                code=code,
            )
        if not response.content:
            return {}
        try:
            body = response.json()
        except ValueError as exc:
            raise NodeUnavailable(self.base_url, f"{method} {path}: the answer is not JSON") from exc
        if not isinstance(body, dict):
            raise NodeUnavailable(self.base_url, f"{method} {path}: the answer is not a JSON object")
        return body


def _path(text: str) -> str:
    return quote(text, safe="@")


def _push_result(body: dict) -> PushResult:
    return PushResult(
        applied=bool(body.get("applied")),
        version=_int_or_none(body.get("version")),
        held_version=_int_or_none(body.get("held_version")),
    )


def _page(body: dict, key: str, limit: int) -> Page:
    items = [item for item in body.get(key) or [] if isinstance(item, dict)]
    more = body.get("more")
    return Page(
        items=items,
        next=_int_or_none(body.get("next")),
        more=bool(more) if isinstance(more, bool) else len(items) >= limit,
    )


def _int_or_none(value) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _error(response: httpx.Response) -> tuple[str, str]:
    try:
        error = response.json().get("error") or {}
        return str(error.get("code", "")), str(error.get("message", ""))
    except (ValueError, AttributeError):
        return "", response.text[:200]
