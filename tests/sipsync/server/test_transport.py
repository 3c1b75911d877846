"""The asyncio transports with real sockets on 127.0.0.1."""

import asyncio
import socket

from sipsync.server.transport import Transports

OPTIONS = (
    b"OPTIONS sip:sip.test SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:5999;branch=z9hG4bK-1\r\n"
    b"From: <sip:a@sip.test>;tag=1\r\nTo: <sip:sip.test>\r\nCall-ID: t1\r\nCSeq: 1 OPTIONS\r\n"
    b"Content-Length: 0\r\n\r\n"
)


def run(coroutine):
    return asyncio.run(asyncio.wait_for(coroutine, 10))


def test_udp_socket_gets_a_large_receive_buffer():
    async def scenario():
        transports = Transports(lambda data, source, endpoint: None)
        await transports.listen("127.0.0.1", 0)
        sock = transports.udp[0]._transport.get_extra_info("socket")
        size = sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF)
        await transports.close()
        return size

    with open("/proc/sys/net/core/rmem_max") as handle:
        ceiling = int(handle.read())
    assert run(scenario()) >= min(ceiling, 4 * 1024 * 1024)  # the kernel reports double what it grants


def test_tcp_frames_split_and_coalesced_messages():
    received = []

    async def scenario():
        transports = Transports(lambda data, source, endpoint: received.append(data))
        _, (host, port) = await transports.listen("127.0.0.1", 0)
        reader, writer = await asyncio.open_connection(host, port)
        writer.write(b"\r\n\r\n" + OPTIONS[:40])  # a keepalive, then half a message
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.write(OPTIONS[40:] + OPTIONS)  # the rest, and a whole second one
        await writer.drain()
        for _ in range(100):
            if len(received) == 2:
                break
            await asyncio.sleep(0.01)
        writer.close()
        await transports.close()

    run(scenario())
    assert received == [OPTIONS, OPTIONS]


def test_tcp_framing_error_is_answered_and_the_connection_closed():
    async def scenario():
        transports = Transports(lambda data, source, endpoint: None)
        _, (host, port) = await transports.listen("127.0.0.1", 0)
        reader, writer = await asyncio.open_connection(host, port)
        # A stream message must carry Content-Length; without it the stream cannot be framed.
        writer.write(OPTIONS.replace(b"Content-Length: 0\r\n", b""))
        await writer.drain()
        answer = await reader.read()  # until the server closes
        writer.close()
        await transports.close()
        return answer

    answer = run(scenario())
    assert answer.startswith(b"SIP/2.0 400 ")
