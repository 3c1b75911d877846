"""The SIP service's request dispatcher: bytes in from a transport, responses out.

Parsing errors become 400 where a response can be formed (and are dropped otherwise); any other
exception is logged and answered 500, so no input can stop the service. Replies that depend on a
state change (a new binding) wait for the local store's next group commit: every reply queued
while the loop handled a burst of datagrams is sent after one SQLite transaction.
"""

import asyncio
import logging
import time
import zlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Final

from sipsync.server.causes import Cause, Reply, record_rejection, reject, warning_values
from sipsync.server.config import ServiceConfig
from sipsync.server.events import EventRecorder
from sipsync.server.packages import ALLOW_EVENTS
from sipsync.server.registrar import Registrar
from sipsync.server.store import LocalStore
from sipsync.server.transport import Address, Endpoint, response_address
from sipsync.sip.errors import SipParseError
from sipsync.sip.headers import Via
from sipsync.sip.message import Request, Response, render_response
from sipsync.sip.parser import parse_message, try_error_response
from sipsync.sip.uri import format_params

if TYPE_CHECKING:  # pragma: no cover
    from sipsync.server.proxy import Proxy

log = logging.getLogger("sipsync.core")

SUPPORTED_METHODS: Final = ("REGISTER", "OPTIONS", "ACK")


class SipService:
    def __init__(
        self,
        *,
        config: ServiceConfig,
        store: LocalStore,
        registrar: Registrar,
        events: EventRecorder,
        clock: Callable[[], float] = time.time,
        proxy: "Proxy | None" = None,
    ) -> None:
        self._config = config
        self.proxy = proxy  # every request but REGISTER and OPTIONS, and every response, go here
        self._store = store
        self._registrar = registrar
        self._events = events
        self._clock = clock
        self._awaiting_flush: list[tuple[Request, Reply, Address, Endpoint]] = []
        self._flush_scheduled = False
        self._allow = proxy.allow if proxy is not None else ", ".join(SUPPORTED_METHODS)
        self._server_header = ("Server", config.server_header)

    def attach_proxy(self, proxy: "Proxy") -> None:
        """Relay calls through ``proxy`` (the node builds it after the transports, which need us)."""
        self.proxy = proxy
        self._allow = proxy.allow

    # --- entry point from the transports ---------------------------------------------------

    def handle(self, data: bytes, source: Address, endpoint: Endpoint) -> None:
        try:
            message = parse_message(data)
        except SipParseError as error:
            self._answer_unparseable(data, error, source, endpoint)
            return
        if isinstance(message, Response):
            if self.proxy is not None:
                try:
                    self.proxy.on_response(message, source, endpoint)
                except SipParseError as error:
                    log.info("dropped malformed response from %s:%s: %s", source[0], source[1], error)
                except Exception:
                    log.exception("error relaying a response from %s:%s", *source)
            return  # without a proxy a stray response is dropped (RFC 3261 18.1.2)
        try:
            reply = self._dispatch(message, source, endpoint)
        except SipParseError as error:
            reply = reject(Cause.MALFORMED_REQUEST, detail={"error": str(error)})
            reply.reason = f"Bad Request - {error}"[:120]
        except Exception:
            log.exception("error handling %s from %s:%s", message.method, *source)
            reply = Reply(500, "Server Internal Error")
        if reply is None:
            return
        if reply.durable:
            self._awaiting_flush.append((message, reply, source, endpoint))
            self._schedule_flush()
        else:
            self._send_reply(message, reply, source, endpoint)

    def _dispatch(self, request: Request, source: Address, endpoint: Endpoint) -> Reply | None:
        method = request.method
        # Headers every request needs before it can be answered (RFC 3261 8.1.1).
        request.via  # noqa: B018
        request.call_id  # noqa: B018
        if request.cseq.method != method:
            raise SipParseError("CSeq method does not match the request method")
        if method == "REGISTER":
            return self._registrar.register(request, source, endpoint.name)
        if method == "OPTIONS":
            headers = [("Allow", self._allow), ("Accept", "application/sdp")]
            if self.proxy is not None and self.proxy.notifier is not None:
                headers.append(("Allow-Events", ALLOW_EVENTS))  # RFC 6665 4.4.4
            return Reply(200, headers=headers)
        if self.proxy is not None:
            return self.proxy.on_request(request, source, endpoint)  # a Reply only when stateless
        if method == "ACK":
            return None  # an ACK is never answered
        return reject(Cause.NOT_IMPLEMENTED, headers=[("Allow", self._allow)], detail={"method": method})

    # --- durability: answer after the group commit -----------------------------------------

    def _schedule_flush(self) -> None:
        if self._flush_scheduled:
            return
        self._flush_scheduled = True
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no event loop (tools, tests): commit at once
            self.flush()
            return
        loop.call_soon(self.flush)

    def flush(self) -> None:
        """Commit everything queued in the store, then send the replies that waited for it."""
        self._flush_scheduled = False
        waiting, self._awaiting_flush = self._awaiting_flush, []
        try:
            self._store.flush()
        except Exception:
            log.exception("local store flush failed; answering 500 to %d request(s)", len(waiting))
            waiting = [(r, reject(Cause.STORE_FAILURE), s, e) for r, _, s, e in waiting]
        for request, reply, source, endpoint in waiting:
            self._send_reply(request, reply, source, endpoint)

    # --- responses -------------------------------------------------------------------------

    def _send_reply(self, request: Request, reply: Reply, source: Address, endpoint: Endpoint) -> None:
        if reply.cause is not None:
            self._record_rejection(request, reply, source)
            warnings = warning_values(reply, self._config.realm)
            headers = [*reply.headers, *(("Warning", v) for v in warnings), self._server_header]
        else:
            headers = [*reply.headers, self._server_header]
        try:
            via = request.via
            data = render_response(
                request,
                reply.status,
                reply.reason,
                to_tag=_to_tag(request),
                top_via=_received_via(via, source),
                extra_headers=headers,
            )
        except SipParseError:
            return  # From/To too broken to answer (a 400 needs them)
        if endpoint.reliable or via.has_rport:  # response_address(), inlined: every reply goes here
            endpoint.send(data, source)
        else:
            endpoint.send(data, (source[0], via.port or 5060))

    def _answer_unparseable(
        self, data: bytes, error: SipParseError, source: Address, endpoint: Endpoint
    ) -> None:
        response = try_error_response(data, error)
        if response is None:
            log.info("dropped unparseable message from %s:%s: %s", source[0], source[1], error)
            return
        self._events.rejection(
            method=data.split(b" ", 1)[0][:16].decode("ascii", "replace"),
            code=response.status,
            cause=Cause.MALFORMED_REQUEST,
            reason_phrase=response.reason,
            account=None,
            source=source,
            user_agent=None,
            call_id=response.headers.get("Call-ID"),
            detail={"error": str(error)},
        )
        try:
            via = Via.parse(response.headers.get_first_value("Via") or "")
        except SipParseError:
            return
        endpoint.send(response.to_bytes(), response_address(via, source, endpoint))

    def _record_rejection(self, request: Request, reply: Reply, source: Address) -> None:
        record_rejection(self._events, request, reply, source)
        if not self._flush_scheduled and self._store.pending > 1000:
            self._schedule_flush()


def _to_tag(request: Request) -> str:
    # Stateless: the same request (and its retransmissions) always gets the same tag. Raw header
    # text is enough for that, and saves parsing From on the hot path.
    seed = f"{request.call_id}|{request.headers.get('From')}|{request.cseq.seq}".encode()
    return format(zlib.crc32(seed), "08x")


def _received_via(via: Via, source: Address) -> str | None:
    """The top Via with received/rport filled in (RFC 3261 18.2.1, RFC 3581); None if unchanged."""
    params = via.params
    has_rport = "rport" in params
    same_host = via.host == source[0] or via.host.strip("[]") == source[0]
    if same_host and not has_rport:
        return None
    if not same_host:
        params = {**params, "received": source[0]}
    if has_rport:
        params = {**params, "rport": str(source[1])}
    port = "" if via.port is None else f":{via.port}"
    return f"{via.protocol}/{via.transport} {via.host}{port}{format_params(params)}"
