"""UDP and TCP transports on asyncio (RFC 3261 section 18).

A transport hands every received message to `handler(data, source, endpoint)`: `source` is the
(ip, port) the bytes came from, `endpoint` the object to answer through (`endpoint.send(data,
address)`, `endpoint.name`). For UDP the endpoint is the listening socket; for TCP it is the
connection, so answers go back over the connection the request arrived on. TLS would be one
more endpoint class beside these (the seam is `Endpoint`).
"""

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable
from typing import Any, Protocol

from sipsync.sip.errors import SipParseError
from sipsync.sip.parser import StreamFramer, try_error_response

log = logging.getLogger("sipsync.transport")

Address = tuple[str, int]
MAX_DATAGRAM = 65535
# A burst of requests must wait in the kernel while the loop works, not be dropped: the default
# (about 208 KiB) held fewer datagrams than 200 registrations in flight and cost SIPp's 500 ms
# retransmissions at p99. The kernel caps this at net.core.rmem_max.
UDP_RECEIVE_BUFFER = 4 * 1024 * 1024


class Endpoint(Protocol):
    name: str
    reliable: bool

    def send(self, data: bytes, address: Address) -> None: ...

    def close(self) -> None: ...


Handler = Callable[[bytes, Address, Endpoint], None]


class UdpEndpoint(asyncio.DatagramProtocol):
    name = "UDP"
    reliable = False

    def __init__(self, handler: Handler) -> None:
        self._handler = handler
        self._transport: asyncio.DatagramTransport | None = None
        self.local: Address = ("", 0)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        host, port = transport.get_extra_info("sockname")[:2]
        self.local = (host, port)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, UDP_RECEIVE_BUFFER)

    def datagram_received(self, data: bytes, address: Address) -> None:
        self._handler(data, address[:2], self)

    def error_received(self, exc: Exception) -> None:  # ICMP errors: the peer is gone, nothing to do
        log.debug("udp error on %s: %s", self.local, exc)

    def send(self, data: bytes, address: Address) -> None:
        if self._transport is not None:
            self._transport.sendto(data, address)

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()


class TcpConnection(asyncio.Protocol):
    """One accepted TCP connection; frames the byte stream by Content-Length."""

    name = "TCP"
    reliable = True

    def __init__(self, handler: Handler, registry: dict[Address, Endpoint], max_message: int) -> None:
        self._handler = handler
        self._registry = registry
        self._framer = StreamFramer(max_message_size=max_message)
        self._transport: asyncio.Transport | None = None
        self.peer: Address = ("", 0)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        host, port = transport.get_extra_info("peername")[:2]
        self.peer = (host, port)
        self._registry[self.peer] = self

    def data_received(self, data: bytes) -> None:
        try:
            messages = self._framer.feed(data)
        except SipParseError as error:
            # The stream cannot be re-synchronised after a framing error: answer if we can, then close.
            response = try_error_response(data, error)
            if response is not None:
                self.send(response.to_bytes(), self.peer)
            log.info("closing tcp connection from %s:%s: %s", *self.peer, error)
            if self._transport is not None:
                self._transport.close()
            return
        for message in messages:
            self._handler(message, self.peer, self)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._registry.get(self.peer) is self:
            del self._registry[self.peer]
        self._transport = None

    def send(self, data: bytes, address: Address) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.write(data)

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()


def response_address(via, source: Address, endpoint: Endpoint) -> Address:
    """Where a response to a request with top Via ``via`` goes (RFC 3261 18.2.2, RFC 3581): back
    over the stream it came on, to its source when rport asks for it, else to the Via's port."""
    if endpoint.reliable or via.has_rport:
        return source
    return source[0], via.port or 5060


class Transports:
    """Every listening socket of a node, and its open TCP connections."""

    def __init__(self, handler: Handler, *, max_message: int = MAX_DATAGRAM) -> None:
        self._handler = handler
        self._max_message = max_message
        self.udp: list[Endpoint] = []  # UdpEndpoints (a test may add a stand-in network)
        self.tcp_servers: list[asyncio.Server] = []
        self.tcp_connections: dict[Address, Endpoint] = {}  # TcpConnections (or a test's stand-in)

    async def listen(self, host: str, port: int) -> tuple[Address, Address]:
        """UDP and TCP on the same port. Port 0 asks the kernel for a free UDP port, which may be
        taken for TCP; then another is tried."""
        loop = asyncio.get_running_loop()
        attempts = 20 if port == 0 else 1
        for attempt in range(attempts):
            _, udp = await loop.create_datagram_endpoint(
                lambda: UdpEndpoint(self._handler), local_addr=(host, port)
            )
            try:
                server = await loop.create_server(
                    lambda: TcpConnection(self._handler, self.tcp_connections, self._max_message),
                    host=host,
                    port=udp.local[1],
                    reuse_address=True,
                )
            except OSError:
                udp.close()
                if attempt + 1 == attempts:
                    raise
                continue
            self.udp.append(udp)
            self.tcp_servers.append(server)
            # a list under uvloop, a tuple under asyncio: read untyped, or compiled code would insist
            sockets: Any = getattr(server, "sockets")  # noqa: B009
            tcp_host, tcp_port = sockets[0].getsockname()[:2]
            return udp.local, (tcp_host, tcp_port)
        raise AssertionError("unreachable")

    async def close(self) -> None:
        for endpoint in self.udp:
            endpoint.close()
        for server in self.tcp_servers:
            server.close()
        for connection in list(self.tcp_connections.values()):
            connection.close()
        for server in self.tcp_servers:
            await server.wait_closed()
