"""A fake SIP node control interface for the portal's sync tests: a tiny threaded HTTP server.

It follows the control contract (sipsync/server/control.py) closely enough for the portal:
account documents are validated with the node's own `Account.from_document`, batches
(`POST /v1/batch`) are answered item by item, customer and
rate-plan documents with the node's validators, versions only move forward, removals leave
tombstones, events are served in pages and acknowledged. `fail_next` makes the next requests
fail with 503; `reject_next` with 400.
"""

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote, urlsplit

from sipsync.server.accounts import Account, ProvisioningError
from sipsync.server.documents import validate_customer, validate_rate_plan

SECRET = "fake-node-secret-0123456789"


class FakeNode:
    def __init__(self, secret: str = SECRET):
        self.secret = secret
        self.lock = threading.Lock()
        self.accounts: dict[str, dict] = {}
        self.tombstones: dict[str, int] = {}
        self.customers: dict[str, dict] = {}
        self.rate_plans: dict[str, dict] = {}
        self.events: list[dict] = []
        self.acked = 0
        self.records: list[dict] = []
        self.acked_records = 0
        self.requests: list[tuple[str, str]] = []
        self.fail_next = 0
        self.reject_next = 0
        self.batches_before_failing: int | None = None  # then every POST /v1/batch fails with 503
        self.refused: set[str] = set()  # account AORs whose documents a batch answers as invalid
        self.credit: dict[str, dict] = {}  # what GET /v1/credit reports: customer -> {reserved, calls}
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()

    # --- helpers for tests --------------------------------------------------------------

    def version_of(self, aor: str) -> int | None:
        doc = self.accounts.get(aor)
        return doc["version"] if doc else None

    def add_event(self, **fields) -> dict:
        with self.lock:
            event = {"id": len(self.events) + 1, "kind": "rejection", **fields}
            self.events.append(event)
            return event

    def add_record(self, **fields) -> dict:
        """A call record; events and records share one id space, as on the node."""
        with self.lock:
            record = {"id": len(self.events) + len(self.records) + 1, "kind": "call", **fields}
            self.records.append(record)
            return record

    def calls(self, method: str, prefix: str = "") -> list[str]:
        return [path for m, path in self.requests if m == method and path.startswith(prefix)]

    # --- the control interface ------------------------------------------------------------

    def handle(self, method: str, path: str, query: dict, body, authorised: bool):
        self.requests.append((method, path))
        if path == "/v1/health":
            return 200, {"status": "ok", "accounts": len(self.accounts)}
        if not authorised:
            return 401, _error("unauthorized", "missing or wrong bearer token")
        if self.fail_next:
            self.fail_next -= 1
            return 503, _error("unavailable", "injected failure")
        if self.reject_next:
            self.reject_next -= 1
            return 400, _error("invalid_document", "injected rejection")
        with self.lock:
            if path == "/v1/batch" and method == "POST":
                if self.batches_before_failing is not None:
                    if self.batches_before_failing <= 0:
                        return 503, _error("unavailable", "injected failure")
                    self.batches_before_failing -= 1
                return 200, {"results": [self._batch_item(item) for item in body["documents"]]}
            if path.startswith("/v1/accounts/"):
                aor = unquote(path.removeprefix("/v1/accounts/"))
                user, _, realm = aor.rpartition("@")
                aor = f"{user}@{realm.lower()}"
                if method == "PUT":
                    try:
                        account = Account.from_document(body)
                    except ProvisioningError as exc:
                        return 400, _error("invalid_document", str(exc))
                    if account.aor != aor:
                        return 400, _error("document_mismatch", f"{aor} != {account.aor}")
                    return 200, self._apply(self.accounts, aor, body, account.version)
                if method == "DELETE":
                    return 200, self._remove(aor, int(query["version"][0]))
            if path.startswith("/v1/customers/") and method == "PUT":
                key, version, _ = validate_customer(body)
                return 200, self._apply(self.customers, key, body, version)
            if path.startswith("/v1/rate-plans/") and method == "PUT":
                key, version, _ = validate_rate_plan(body)
                return 200, self._apply(self.rate_plans, key, body, version)
            if path == "/v1/credit":
                return 200, {"customers": self.credit, "at": "2026-11-24T12:00:00.000Z"}
            if path == "/v1/digest":
                return 200, {
                    "accounts": {aor: doc["version"] for aor, doc in self.accounts.items()},
                    "customers": {key: doc["version"] for key, doc in self.customers.items()},
                    "rate_plans": {key: doc["version"] for key, doc in self.rate_plans.items()},
                    "digest": "fake",
                }
            for stream, items, cursor_name in (
                ("events", self.events, "acked"),
                ("records", self.records, "acked_records"),
            ):
                if path == f"/v1/{stream}":
                    after = max(int(query.get("after", ["0"])[0]), getattr(self, cursor_name))
                    limit = int(query.get("limit", ["500"])[0])
                    rest = [e for e in items if e["id"] > after]
                    page = rest[:limit]
                    cursor = page[-1]["id"] if page else after
                    return 200, {stream: page, "next": cursor, "more": len(rest) > limit}
                if path == f"/v1/{stream}/ack" and method == "POST":
                    setattr(self, cursor_name, max(getattr(self, cursor_name), body["upto"]))
                    return 200, {"acked": getattr(self, cursor_name)}
        return 404, _error("not_found", f"no such endpoint: {method} {path}")

    def _batch_item(self, item):
        kind = item.get("kind")
        try:
            if kind == "account":
                account = Account.from_document(item)
                if account.aor in self.refused:
                    return _error("invalid_document", f"{account.aor}: refused by the test")
                return self._apply(self.accounts, account.aor, item, account.version)
            if kind == "customer":
                key, version, _ = validate_customer(item)
                return self._apply(self.customers, key, item, version)
            if kind == "rates":
                key, version, _ = validate_rate_plan(item)
                return self._apply(self.rate_plans, key, item, version)
            if kind == "removal":
                user, _, realm = item["account"].rpartition("@")
                return self._remove(f"{user}@{realm.lower()}", item["version"])
        except ProvisioningError as exc:
            return _error("invalid_document", str(exc))
        return _error("invalid_document", f"unknown kind {kind!r}")

    def _remove(self, aor, version):
        held = self._held(aor)
        applied = held is None or version > held
        if applied:
            self.accounts.pop(aor, None)
            self.tombstones[aor] = version
        return {"applied": applied, "version": version, "held_version": self._held(aor)}

    def _held(self, aor):
        doc = self.accounts.get(aor)
        return doc["version"] if doc else self.tombstones.get(aor)

    def _apply(self, table, key, doc, version):
        held = (
            self._held(key) if table is self.accounts else (table[key]["version"] if key in table else None)
        )
        applied = held is None or version > held
        if applied:
            table[key] = doc
            if table is self.accounts:
                self.tombstones.pop(key, None)
        return {"applied": applied, "version": version, "held_version": max(version, held or 0)}

    def _handler(self):
        node = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self):
                url = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                body = json.loads(raw) if raw else None
                authorised = self.headers.get("Authorization") == f"Bearer {node.secret}"
                status, answer = node.handle(self.command, url.path, parse_qs(url.query), body, authorised)
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_PUT = do_POST = do_DELETE = _serve

            def log_message(self, *args):
                pass

        return Handler


def _error(code, message):
    return {"error": {"code": code, "message": message}}
