"""The node's authenticated HTTP/JSON control interface (aiohttp, on the node's own event loop).

The portal pushes provisioning documents here, reconciles by digest, reads
registrations, and collects the event spool.  Started by
``python -m sipsync.server ... --control HOST:PORT``; see :func:`load_secret` for
where the shared secret comes from.  Without a secret the interface is not
started at all (the process refuses to run).

Authentication: every endpoint except ``GET /v1/health`` needs
``Authorization: Bearer <secret>`` (compared with :func:`hmac.compare_digest`),
else 401.

Endpoints (JSON in and out; versions are integers; every push is idempotent)::

    PUT    /v1/accounts/{username}@{realm}       account document (Account.from_document)
    DELETE /v1/accounts/{username}@{realm}?version=N
        -> {"applied": bool, "version": N, "held_version": N}   (+ "bindings_removed" on DELETE)
    PUT    /v1/customers/{customer}               customer document   (sipsync.server.documents)
    PUT    /v1/rate-plans/{name}                  rate-plan document  (sipsync.server.documents)
        -> {"applied": bool, "version": N, "held_version": N}
    POST   /v1/batch {"documents": [document | removal, ...]}   at most MAX_BATCH items
        -> {"results": [{"applied": bool, "version": N, "held_version": N} | {"error": {...}}, ...]}
    GET    /v1/digest[?versions=0]
        -> {"accounts": {"user@realm": N}, "customers": {"C1234567": N}, "rate_plans": {"Standard": N},
            "digests": {"accounts": hex, "customers": hex, "rate_plans": hex}, "digest": hex}
    GET    /v1/credit[?customer=C1234567]
        -> {"customers": {"C1234567": {"reserved": "1.2500", "calls": 2}}, "at": iso}
    GET    /v1/registrations[?aor=user@realm[&aor=...] | ?after=AOR&limit=N]
        -> {"registrations": [binding, ...], "next": AOR | null}
    GET    /v1/subscriptions?aor=user@realm
        -> {"subscriptions": [subscription, ...]}   (those the account holds and those watching it)
    GET    /v1/events?after=ID&limit=N   -> {"events": [{"id": ID, ...event}], "next": ID, "more": bool}
    POST   /v1/events/ack {"upto": ID}   -> {"acked": ID}
    GET    /v1/records?after=ID&limit=N  -> {"records": [{"id": ID, ...record}], "next": ID, "more": bool}
    POST   /v1/records/ack {"upto": ID}  -> {"acked": ID}
    GET    /v1/health (no auth)          -> {"status": "ok", "node": id, "accounts": n, "bindings": n, ...}

A batch applies many documents (account, customer, rate-plan documents, told apart by their
``kind``, and account removals ``{"kind": "removal", "account": "user@realm", "version": N}``) with
one flush to the local store, which is what makes a fresh node converge in seconds: one result per
item, in order, each what the single endpoint would have answered; an invalid item gets its own
``{"error": {"code": "invalid_document", ...}}`` and does not stop the others.

A push whose version is not newer than the one held is not an error: 200 with
``"applied": false`` (and ``held_version`` says what is held).  A change is
flushed to the local store before the answer (durable); if that fails the
answer is 500 ``store_failure`` and the push should be retried.

A subscription::

    {"id": "9f2c...", "event": "dialog", "subscriber": "alice@sip.test", "target": "bob@sip.test",
     "contact": "sip:alice@10.0.0.2:5062", "source": "198.51.100.7:5062", "transport": "UDP",
     "expires_at": 1795000000.5, "expires_in": 3599}

``expires_at`` is epoch seconds.

Errors are always ``{"error": {"code": ..., "message": ...}}``: 400
``invalid_json`` / ``invalid_document`` (the message names the field) /
``document_mismatch`` (URL and document disagree) / ``invalid_parameter``,
401 ``unauthorized``, 404 ``not_found``, 405 ``method_not_allowed``, 413
``payload_too_large``, 500 ``store_failure`` / ``internal_error``.

Digest recipe (the portal computes the same over what it believes it pushed):
each part is SHA-256 hex over the sorted lines ``"<key> <version>\\n"`` of the
live entries of that kind (``username@realm`` for accounts, the customer
account number, the plan name); ``digest`` is SHA-256 hex over
``"accounts <hex>\\ncustomers <hex>\\nrate_plans <hex>\\n"``.  Removed accounts
(tombstones) are not part of it.

Events and call records: ONE spool (the store's event table), ONE id space,
TWO streams.  ``/v1/records`` serves the entries whose ``kind`` is ``"call"``
(written with ``EventRecorder.record("call", fields)``), ``/v1/events`` every
other kind (rejections, suppression summaries ...).  Ids are the spool's ids:
increasing, never reused, so a cursor stays valid across restarts.  Each stream
has its own acknowledged cursor, kept in the store's meta
(``control:acked:events`` / ``control:acked:records``); a read starts after
``max(after, acked)``, so what was acknowledged never comes back.  A spool
entry is deleted once BOTH streams have acknowledged past it (the minimum of
the two cursors), so acknowledging one stream can never lose the other's
entries.  Delivery is at-least-once: a collector acknowledges only after it has
stored what it read, and dedupes by id (call records also by their record id).
``next`` is the cursor to pass as ``after`` for the following page (it moves
past entries of the other stream too); ``more`` is false only when the spool
held nothing further.  Acknowledge up to ``next`` once the page is stored (not
merely the last id received), so entries of the other stream that the cursor
walked past do not keep the spool from shrinking.  An ``upto`` beyond the
furthest ``next`` ever served is clamped to it (the answer's ``acked`` says
where the stream stands), so a confused collector cannot acknowledge entries
it never received.  Entries queued but not yet flushed are flushed before a
read.

Credit in use: per customer with calls in progress on this node, the credit those calls
reserve (a decimal string, 4 places; see :mod:`sipsync.server.calls`) and how many they are;
customers with none are left out. It lives in memory only, as the reservations do.

Registrations are paged by address-of-record: ``limit`` AORs (default 100)
after the AOR ``after`` in sorted order, with all their bindings; ``next`` is
the last AOR of the page, null at the end.  A binding::

    {"aor": "alice@sip.test", "contact": "sip:alice@10.0.0.2:5062", "expires_in": 3599,
     "expires_at": iso, "q": null, "source_ip": "198.51.100.7", "source_port": 5062,
     "transport": "UDP", "user_agent": "...", "instance_id": null, "registered_at": iso}
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import time
from collections.abc import Awaitable, Callable, Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from aiohttp import web

from sipsync.server.accounts import Account, ProvisioningError
from sipsync.server.documents import CUSTOMER, RATES, validate_customer, validate_rate_plan
from sipsync.server.events import iso_utc
from sipsync.server.location import Binding, LocationError
from sipsync.server.subscriptions import Subscription

if TYPE_CHECKING:  # pragma: no cover
    from sipsync.server.node import SipNode

__all__ = [
    "ControlError",
    "ControlSecretError",
    "ControlServer",
    "MIN_SECRET_LENGTH",
    "RECORD_KIND",
    "SECRET_ENV",
    "load_secret",
]

log = logging.getLogger("sipsync.control")

SECRET_ENV = "SIP_CONTROL_SECRET"
MIN_SECRET_LENGTH = 16
RECORD_KIND = "call"
MAX_BODY = 32 * 1024 * 1024        # a rate plan with every prefix of the world fits
DEFAULT_PAGE = 500
MAX_PAGE = 5000
MAX_BATCH = 2000                   # items in one POST /v1/batch (the event loop applies them in one go)
REMOVAL_KIND = "removal"
DEFAULT_AOR_PAGE = 100
MAX_AOR_PAGE = 1000
SCAN_BUDGET = 20_000               # spool rows looked at per read of one stream
PUBLIC_PATHS = frozenset({"/v1/health"})
_CENT4 = Decimal("0.0001")

_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
}
# The binding removal on account deletion must never look out of order to the
# location service (which compares Call-ID and CSeq): a Call-ID no phone sends
# and a CSeq beyond SIP's 2**31 - 1.
_REMOVAL_CALL_ID = "\x00control-removal"
_REMOVAL_CSEQ = 2**32


class ControlSecretError(Exception):
    """No usable control secret: the control interface must not start."""


class ControlError(Exception):
    """Answered as ``{"error": {"code": code, "message": message}}`` with ``status``."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def load_secret(environ: Mapping[str, str] | None = None, path: str | None = None) -> str:
    """The control secret: the content of ``path`` if given, else ``$SIP_CONTROL_SECRET``.

    Never from the command line (argv is visible to every local user).  Leading
    and trailing whitespace is ignored.  Raises ControlSecretError with a message
    fit for the operator when there is none, it cannot be read, or it is shorter
    than MIN_SECRET_LENGTH characters.
    """
    if environ is None:
        environ = os.environ
    if path is not None:
        try:
            with open(path, encoding="utf-8") as handle:
                secret = handle.read().strip()
        except (OSError, UnicodeDecodeError) as exc:
            raise ControlSecretError(f"cannot read the control secret file {path}: {exc}") from exc
        source = f"the control secret file {path}"
    else:
        secret = environ.get(SECRET_ENV, "").strip()
        source = SECRET_ENV
        if not secret:
            raise ControlSecretError(
                f"refusing to start the control interface without a secret: set {SECRET_ENV} "
                "or pass --control-secret-file PATH"
            )
    if len(secret) < MIN_SECRET_LENGTH:
        raise ControlSecretError(
            f"refusing to start the control interface: {source} holds a secret shorter than "
            f"{MIN_SECRET_LENGTH} characters"
        )
    return secret


def _error(status: int, code: str, message: str, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.json_response(
        {"error": {"code": code, "message": message}}, status=status, headers=headers
    )


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


async def _json_body(request: web.Request) -> Any:
    raw = await request.read()
    try:
        return json.loads(raw, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        raise ControlError(400, "invalid_json", f"the request body is not valid JSON: {exc}") from exc


def _int_param(request: web.Request, name: str, *, default: int | None = None, minimum: int = 0,
               maximum: int | None = None) -> int:
    text = request.query.get(name)
    if text is None:
        if default is None:
            raise ControlError(400, "invalid_parameter", f"query parameter {name!r} is required")
        return default
    if not text.isascii() or not text.isdigit():
        raise ControlError(400, "invalid_parameter", f"query parameter {name!r} must be an integer >= 0")
    value = int(text)
    if value < minimum or (maximum is not None and value > maximum):
        bound = f" and <= {maximum}" if maximum is not None else ""
        raise ControlError(400, "invalid_parameter", f"query parameter {name!r} must be >= {minimum}{bound}")
    return value


def _split_aor(text: str, what: str) -> tuple[str, str]:
    username, at, realm = text.rpartition("@")
    if not at or not username or not realm:
        raise ControlError(400, "invalid_parameter", f"{what} must be username@realm, not {text!r}")
    return username, realm.lower()


def _binding_json(b: Binding, now: float) -> dict[str, Any]:
    return {
        "aor": b.aor,
        "contact": b.contact_uri,
        "expires_in": b.expires_in(now),
        "expires_at": iso_utc(b.expires_at),
        "q": b.q,
        "source_ip": b.source[0],
        "source_port": b.source[1],
        "transport": b.transport,
        "user_agent": b.user_agent,
        "instance_id": b.instance_id,
        "registered_at": iso_utc(b.registered_at),
    }


def _subscription_json(s: Subscription, now: float) -> dict[str, Any]:
    return {
        "id": s.id,
        "event": s.event,
        "subscriber": s.subscriber,
        "target": s.target,
        "contact": s.contact,
        "source": f"{s.source[0]}:{s.source[1]}",
        "transport": s.transport,
        "expires_at": s.expires_at,
        "expires_in": s.expires_in(now),
    }


def _combined_digest(digests: Mapping[str, str]) -> str:
    text = "".join(f"{part} {digests[part]}\n" for part in ("accounts", "customers", "rate_plans"))
    return hashlib.sha256(text.encode()).hexdigest()


_Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class ControlServer:
    """The control interface of one node; ``app`` is the aiohttp application."""

    STREAMS: dict[str, Callable[[Any], bool]] = {
        "events": lambda kind: kind != RECORD_KIND,
        "records": lambda kind: kind == RECORD_KIND,
    }

    def __init__(self, node: SipNode, secret: str, *, clock: Callable[[], float] = time.time) -> None:
        if not isinstance(secret, str) or len(secret.strip()) < MIN_SECRET_LENGTH:
            raise ControlSecretError(
                f"the control interface needs a secret of at least {MIN_SECRET_LENGTH} characters"
            )
        self._node = node
        self._secret = secret.strip().encode()
        self._clock = clock
        self._runner: web.AppRunner | None = None
        meta = node.store.get_meta
        self._acked = {stream: int(meta(self._ack_key(stream)) or 0) for stream in self.STREAMS}
        # The furthest `next` each stream has handed out: an ack can never go beyond it.
        self._served = {
            stream: max(int(meta(f"control:served:{stream}") or 0), self._acked[stream])
            for stream in self.STREAMS
        }
        self.app = self._make_app()

    # -- lifecycle ------------------------------------------------------------------
    def _make_app(self) -> web.Application:
        app = web.Application(middlewares=[self._errors, self._auth], client_max_size=MAX_BODY)
        r = app.router
        r.add_get("/v1/health", self.health)
        r.add_put("/v1/accounts/{account}", self.put_account)
        r.add_delete("/v1/accounts/{account}", self.delete_account)
        r.add_put("/v1/customers/{key}", self.put_customer)
        r.add_put("/v1/rate-plans/{key}", self.put_rate_plan)
        r.add_post("/v1/batch", self.batch)
        r.add_get("/v1/digest", self.digest)
        r.add_get("/v1/credit", self.credit)
        r.add_get("/v1/registrations", self.registrations)
        r.add_get("/v1/subscriptions", self.subscriptions)
        r.add_get("/v1/events", self.read_events)
        r.add_post("/v1/events/ack", self.ack_events)
        r.add_get("/v1/records", self.read_records)
        r.add_post("/v1/records/ack", self.ack_records)
        return app

    async def start(self, host: str, port: int) -> tuple[str, int]:
        """Listen on host:port (port 0: any free port); returns the bound address."""
        runner = web.AppRunner(self.app, access_log=logging.getLogger("sipsync.control.access"),
                               shutdown_timeout=5.0)
        await runner.setup()
        try:
            site = web.TCPSite(runner, host, port)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        bound = runner.addresses[0]
        log.info("control interface on http://%s:%s", bound[0], bound[1])
        return bound[0], bound[1]

    async def stop(self) -> None:
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    # -- middlewares ----------------------------------------------------------------
    @web.middleware
    async def _errors(self, request: web.Request, handler: _Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except ControlError as exc:
            headers = {"WWW-Authenticate": 'Bearer realm="sipsync-control"'} if exc.status == 401 else None
            return _error(exc.status, exc.code, exc.message, headers)
        except ProvisioningError as exc:
            return _error(400, "invalid_document", str(exc))
        except web.HTTPException as exc:
            if exc.status < 400:
                raise
            headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
            if exc.status == 404:
                message = f"no such endpoint: {request.method} {request.path}"
            elif exc.status == 405:
                message = f"{request.method} is not allowed on {request.path}"
            else:
                message = exc.text or exc.reason
            return _error(exc.status, _HTTP_CODES.get(exc.status, "http_error"), message, headers)
        except Exception:
            log.exception("control: %s %s failed", request.method, request.path)
            return _error(500, "internal_error", "internal error (see the node's log)")

    @web.middleware
    async def _auth(self, request: web.Request, handler: _Handler) -> web.StreamResponse:
        if request.path not in PUBLIC_PATHS:
            scheme, _, token = request.headers.get("Authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode(), self._secret):
                raise ControlError(401, "unauthorized", "missing or wrong bearer token")
        return await handler(request)

    # -- helpers ----------------------------------------------------------------------
    async def _durable(self) -> None:
        """Flush everything queued (group commit with whatever else is pending)."""
        try:
            await self._node.store.flush_soon()
        except Exception as exc:
            log.exception("control: local store flush failed")
            raise ControlError(
                500, "store_failure", "the change could not be made durable; retry the request"
            ) from exc

    @staticmethod
    def _ack_key(stream: str) -> str:
        return f"control:acked:{stream}"

    # -- accounts ---------------------------------------------------------------------
    async def put_account(self, request: web.Request) -> web.Response:
        username, realm = _split_aor(request.match_info["account"], "the account in the URL")
        doc = await _json_body(request)
        account = Account.from_document(doc)           # ProvisioningError -> 400 naming the field
        if (account.username, account.realm) != (username, realm):
            raise ControlError(
                400, "document_mismatch",
                f"the URL names {username}@{realm} but the document is {account.username}@{account.realm}",
            )
        table = self._node.accounts
        applied = table.apply(doc)
        await self._durable()
        held = table.held_version(username, realm)
        return web.json_response({"applied": applied, "version": account.version, "held_version": held})

    async def delete_account(self, request: web.Request) -> web.Response:
        username, realm = _split_aor(request.match_info["account"], "the account in the URL")
        version = _int_param(request, "version")
        result = self._remove_account(username, realm, version)
        await self._durable()
        return web.json_response(result)

    def _remove_account(self, username: str, realm: str, version: int) -> dict[str, Any]:
        table = self._node.accounts
        applied = table.remove(username, realm, version)
        removed = 0
        if applied:
            try:
                removed = self._node.location.remove_all(
                    f"{username}@{realm}", call_id=_REMOVAL_CALL_ID, cseq=_REMOVAL_CSEQ
                )
            except LocationError:  # pragma: no cover - the Call-ID/CSeq above cannot be out of order
                log.exception("control: could not drop the bindings of %s@%s", username, realm)
        return {
            "applied": applied,
            "version": version,
            "held_version": table.held_version(username, realm),
            "bindings_removed": removed,
        }

    # -- many documents at once ------------------------------------------------------------
    async def batch(self, request: web.Request) -> web.Response:
        body = await _json_body(request)
        items = body.get("documents") if isinstance(body, dict) else None
        if not isinstance(items, list):
            raise ControlError(400, "invalid_document", "field 'documents' must be a list")
        if len(items) > MAX_BATCH:
            raise ControlError(
                413, "payload_too_large", f"a batch holds at most {MAX_BATCH} documents, not {len(items)}"
            )
        results = []
        for index, item in enumerate(items):
            try:
                results.append(self._apply_item(item))
            except ProvisioningError as exc:
                message = f"documents[{index}]: {exc}"
                results.append({"error": {"code": "invalid_document", "message": message}})
        await self._durable()
        return web.json_response({"results": results})

    def _apply_item(self, item: Any) -> dict[str, Any]:
        kind = item.get("kind") if isinstance(item, dict) else None
        if kind == "account":
            table = self._node.accounts
            applied = table.apply(item)
            held = table.held_version(item["username"], str(item["realm"]))
            return {"applied": applied, "version": item["version"], "held_version": held}
        if kind in (CUSTOMER, RATES):
            key, version, _ = (validate_customer if kind == CUSTOMER else validate_rate_plan)(item)
            _, applied = self._node.documents.apply(kind, item)
            held = self._node.documents.held_version(kind, key)
            return {"applied": applied, "version": version, "held_version": held}
        if kind == REMOVAL_KIND:
            account, version = item.get("account"), item.get("version")
            if not isinstance(account, str):
                raise ProvisioningError("removal: field 'account' must be username@realm")
            username, _, realm = account.rpartition("@")
            if not username or not realm:
                raise ProvisioningError(f"removal: field 'account' must be username@realm, not {account!r}")
            if isinstance(version, bool) or not isinstance(version, int) or version < 0:
                raise ProvisioningError(f"removal of {account}: field 'version' must be an integer >= 0")
            return self._remove_account(username, realm.lower(), version)
        raise ProvisioningError(
            f"field 'kind' must be one of account, {CUSTOMER}, {RATES}, {REMOVAL_KIND}, not {kind!r}"
        )

    # -- customers and rate plans --------------------------------------------------------
    async def _put_document(self, request: web.Request, kind: str) -> web.Response:
        key = request.match_info["key"]
        doc = await _json_body(request)
        validate = validate_customer if kind == CUSTOMER else validate_rate_plan
        doc_key, version, _ = validate(doc)
        if doc_key != key:
            what = "customer" if kind == CUSTOMER else "plan"
            raise ControlError(
                400, "document_mismatch", f"the URL names {what} {key!r} but the document is {doc_key!r}"
            )
        table = self._node.documents
        _, applied = table.apply(kind, doc)
        await self._durable()
        return web.json_response(
            {"applied": applied, "version": version, "held_version": table.held_version(kind, key)}
        )

    async def put_customer(self, request: web.Request) -> web.Response:
        return await self._put_document(request, CUSTOMER)

    async def put_rate_plan(self, request: web.Request) -> web.Response:
        return await self._put_document(request, RATES)

    # -- reconcile ------------------------------------------------------------------------
    async def digest(self, request: web.Request) -> web.Response:
        accounts, documents = self._node.accounts, self._node.documents
        digests = {
            "accounts": accounts.digest(),
            "customers": documents.digest(CUSTOMER),
            "rate_plans": documents.digest(RATES),
        }
        body: dict[str, Any] = {}
        if request.query.get("versions", "1") != "0":
            body = {
                "accounts": accounts.versions(),
                "customers": documents.versions(CUSTOMER),
                "rate_plans": documents.versions(RATES),
            }
        body["digests"] = digests
        body["digest"] = _combined_digest(digests)
        return web.json_response(body)

    # -- credit held by calls in progress ----------------------------------------------------------
    async def credit(self, request: web.Request) -> web.Response:
        wanted = request.query.get("customer")
        in_use = self._node.calls.credit_in_use()
        customers = {
            customer: {"reserved": f"{reserved.quantize(_CENT4)}", "calls": calls}
            for customer, (reserved, calls) in sorted(in_use.items())
            if wanted is None or customer == wanted
        }
        return web.json_response({"customers": customers, "at": iso_utc(self._clock())})

    # -- registrations ------------------------------------------------------------------------
    async def registrations(self, request: web.Request) -> web.Response:
        location = self._node.location
        now = self._clock()
        wanted = request.query.getall("aor", [])
        if wanted:
            if len(wanted) > MAX_AOR_PAGE:
                raise ControlError(400, "invalid_parameter", f"at most {MAX_AOR_PAGE} 'aor' parameters")
            out: list[dict[str, Any]] = []
            for aor in wanted:
                username, realm = _split_aor(aor, "query parameter 'aor'")
                out.extend(_binding_json(b, now) for b in location.lookup(f"{username}@{realm}", now))
            return web.json_response({"registrations": out, "next": None})
        limit = _int_param(request, "limit", default=DEFAULT_AOR_PAGE, minimum=1, maximum=MAX_AOR_PAGE)
        after = request.query.get("after", "")
        aors = sorted(a for a in location.aors() if a > after)
        page, rest = aors[:limit], aors[limit:]
        out = [_binding_json(b, now) for a in page for b in location.lookup(a, now)]
        return web.json_response({"registrations": out, "next": page[-1] if rest else None})

    # -- subscriptions ----------------------------------------------------------------------------
    async def subscriptions(self, request: web.Request) -> web.Response:
        aor = request.query.get("aor")
        if aor is None:
            raise ControlError(400, "invalid_parameter", "query parameter 'aor' is required")
        username, realm = _split_aor(aor, "query parameter 'aor'")
        now = self._clock()
        found = self._node.notifier.involving(f"{username}@{realm}")
        return web.json_response({"subscriptions": [_subscription_json(s, now) for s in found]})

    # -- events and call records -----------------------------------------------------------------
    async def _read(self, request: web.Request, stream: str) -> web.Response:
        after = _int_param(request, "after", default=0)
        limit = _int_param(request, "limit", default=DEFAULT_PAGE, minimum=1, maximum=MAX_PAGE)
        await self._durable()                         # what is queued becomes visible (and gets its id)
        wanted = self.STREAMS[stream]
        store = self._node.store
        cursor = max(after, self._acked[stream])
        scanned = 0                                   # the last spool id actually looked at
        out: list[dict[str, Any]] = []
        budget = SCAN_BUDGET
        more = False
        while True:
            size = min(max(limit, DEFAULT_PAGE), budget)
            batch = store.events_after(cursor, size)
            for event_id, event in batch:
                cursor = scanned = event_id
                if wanted(event.get("kind")):
                    out.append({**event, "id": event_id})
                    if len(out) >= limit:
                        break
            budget -= len(batch)
            if len(out) >= limit or (len(batch) == size and budget <= 0):
                more = True
                break
            if len(batch) < size:
                break
        if scanned > self._served[stream]:           # not a client's `after`: only ids that exist
            self._served[stream] = scanned
            store.set_meta(f"control:served:{stream}", str(scanned))  # flushed with the next commit
        return web.json_response({stream: out, "next": cursor, "more": more})

    async def _ack(self, request: web.Request, stream: str) -> web.Response:
        body = await _json_body(request)
        upto = body.get("upto") if isinstance(body, dict) else None
        if isinstance(upto, bool) or not isinstance(upto, int) or upto < 0:
            raise ControlError(400, "invalid_document", "field 'upto' must be an integer >= 0")
        upto = min(upto, self._served[stream])  # what was never served cannot have been stored
        if upto > self._acked[stream]:
            self._acked[stream] = upto
            self._node.store.set_meta(self._ack_key(stream), str(upto))
            # An entry goes once every stream is past it, so one stream's ack never drops the other's.
            spool_upto = min(self._acked.values())
            if spool_upto > 0:
                self._node.store.ack_events(spool_upto)
        await self._durable()
        return web.json_response({"acked": self._acked[stream]})

    async def read_events(self, request: web.Request) -> web.Response:
        return await self._read(request, "events")

    async def ack_events(self, request: web.Request) -> web.Response:
        return await self._ack(request, "events")

    async def read_records(self, request: web.Request) -> web.Response:
        return await self._read(request, "records")

    async def ack_records(self, request: web.Request) -> web.Response:
        return await self._ack(request, "records")

    # -- monitoring ---------------------------------------------------------------------------------
    async def health(self, request: web.Request) -> web.Response:
        node = self._node
        return web.json_response({
            "status": "ok",
            "node": node.config.node_id,
            "accounts": len(node.accounts),
            "bindings": node.location.count(),
            "customers": node.documents.count(CUSTOMER),
            "rate_plans": node.documents.count(RATES),
        })
