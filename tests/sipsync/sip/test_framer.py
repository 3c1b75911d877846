"""StreamFramer: Content-Length framing of TCP/TLS streams."""

from __future__ import annotations

import pytest

from sipsync.sip.errors import SipParseError
from sipsync.sip.parser import StreamFramer, parse_message

MSG = (
    b"OPTIONS sip:a@example.com SIP/2.0\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK1\r\n"
    b"Call-ID: c1\r\nContent-Length: 5\r\n\r\nhello"
)
MSG2 = b"SIP/2.0 200 OK\r\nVia: SIP/2.0/TCP h;branch=z9hG4bK1\r\nl: 0\r\n\r\n"


def test_whole_messages_in_one_chunk() -> None:
    framer = StreamFramer()
    assert framer.feed(MSG + MSG2) == [MSG, MSG2]
    assert framer.buffered == 0
    assert parse_message(MSG).body == b"hello"


def test_byte_by_byte() -> None:
    framer = StreamFramer()
    out: list[bytes] = []
    for i in range(len(MSG + MSG2)):
        out += framer.feed((MSG + MSG2)[i:i + 1])
    assert out == [MSG, MSG2]


def test_partial_body_kept_between_calls() -> None:
    framer = StreamFramer()
    assert framer.feed(MSG[:-2]) == []
    assert framer.buffered == len(MSG) - 2
    assert framer.feed(MSG[-2:] + MSG2[:10]) == [MSG]
    assert framer.feed(MSG2[10:]) == [MSG2]


def test_keepalives_are_skipped() -> None:
    framer = StreamFramer()
    assert framer.feed(b"\r\n\r\n") == []
    assert framer.buffered == 0
    assert framer.feed(b"\r\n\r\n" + MSG + b"\r\n\r\n" + MSG2 + b"\r\n") == [MSG, MSG2]


def test_compact_and_spaced_content_length_and_bare_lf() -> None:
    framer = StreamFramer()
    msg = b"OPTIONS sip:a@b SIP/2.0\nl : 2\n\nhi"
    assert framer.feed(msg) == [msg]


def test_missing_content_length_is_an_error() -> None:
    with pytest.raises(SipParseError, match="Content-Length"):
        StreamFramer().feed(b"OPTIONS sip:a@b SIP/2.0\r\nVia: x\r\n\r\n")


@pytest.mark.parametrize("value", [b"-1", b"abc", b"99999999999"])
def test_bad_content_length(value: bytes) -> None:
    with pytest.raises(SipParseError):
        StreamFramer().feed(b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: " + value + b"\r\n\r\n")


def test_conflicting_content_length() -> None:
    with pytest.raises(SipParseError):
        StreamFramer().feed(b"OPTIONS sip:a@b SIP/2.0\r\nl: 1\r\nContent-Length: 2\r\n\r\nab")


def test_size_limits() -> None:
    with pytest.raises(SipParseError, match="size"):
        StreamFramer(max_message_size=100).feed(b"OPTIONS sip:a@b SIP/2.0\r\nX: " + b"a" * 200)
    with pytest.raises(SipParseError, match="size"):
        StreamFramer(max_message_size=100).feed(b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 500\r\n\r\n")
    assert StreamFramer(max_message_size=len(MSG)).feed(MSG) == [MSG]
