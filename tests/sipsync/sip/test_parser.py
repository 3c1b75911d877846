"""parse_message, validate_message, try_error_response, and a fuzz test."""

from __future__ import annotations

import contextlib
import random
from pathlib import Path

import pytest

from sipsync.sip.errors import SipParseError, UnsupportedVersion
from sipsync.sip.message import Request, Response
from sipsync.sip.parser import parse_message, try_error_response, validate_message
from sipsync.sip.sdp import SessionDescription, filter_codecs, offered_codecs

REGISTER = (
    b"REGISTER sip:example.com SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK776asdhds;rport\r\n"
    b"Max-Forwards: 70\r\n"
    b'To: "Alice" <sip:alice@example.com>\r\n'
    b'From: "Alice" <sip:alice@example.com>;tag=456248\r\n'
    b"Call-ID: 843817637684230@998sdasdh09\r\n"
    b"CSeq: 1826 REGISTER\r\n"
    b"Contact: <sip:alice@192.0.2.10:5060;transport=udp>;expires=3600\r\n"
    b"Expires: 3600\r\n"
    b"Content-Length: 0\r\n"
    b"\r\n"
)
RESPONSE = (
    b"SIP/2.0 401 Unauthorized\r\n"
    b"Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK776asdhds;rport=5060;received=198.51.100.7\r\n"
    b"To: <sip:alice@example.com>;tag=srv1\r\n"
    b"From: <sip:alice@example.com>;tag=456248\r\n"
    b"Call-ID: 843817637684230@998sdasdh09\r\n"
    b"CSeq: 1826 REGISTER\r\n"
    b'WWW-Authenticate: Digest realm="example.com", nonce="abc", qop="auth"\r\n'
    b"Content-Length: 0\r\n"
    b"\r\n"
)


def test_parse_request() -> None:
    msg = parse_message(REGISTER)
    assert isinstance(msg, Request)
    assert msg.method == "REGISTER" and msg.raw_uri == "sip:example.com"
    assert msg.via.branch == "z9hG4bK776asdhds" and msg.via.has_rport
    assert msg.cseq.seq == 1826 and msg.call_id == "843817637684230@998sdasdh09"
    assert msg.contacts[0].params["expires"] == "3600" and msg.expires == 3600
    validate_message(msg)


def test_parse_response() -> None:
    msg = parse_message(RESPONSE)
    assert isinstance(msg, Response)
    assert (msg.status, msg.reason) == (401, "Unauthorized")
    assert msg.via.rport == 5060 and msg.via.received == "198.51.100.7"
    assert msg.headers.get_all("WWW-Authenticate") == ['Digest realm="example.com", nonce="abc", qop="auth"']
    validate_message(msg)


def test_accepts_bytearray_and_memoryview() -> None:
    assert parse_message(bytearray(REGISTER)).method == "REGISTER"  # type: ignore[union-attr]
    assert parse_message(memoryview(REGISTER)).method == "REGISTER"  # type: ignore[union-attr]


def test_folding_and_compact_forms() -> None:
    data = (
        b"OPTIONS sip:x@example.com SIP/2.0\r\n"
        b"v: SIP/2.0/UDP h1;branch=z9hG4bK1,\r\n  SIP/2.0/UDP h2;branch=z9hG4bK2\r\n"
        b"t:\r\n\t<sip:x@example.com>\r\nf: <sip:y@example.com>;tag=1\r\ni: cid\r\n"
        b"CSeq: 1\r\n OPTIONS\r\nk: path\r\nl: 0\r\n\r\n"
    )
    msg = parse_message(data)
    assert [v.host for v in msg.vias] == ["h1", "h2"]
    assert msg.headers.get("To") == "<sip:x@example.com>"
    assert msg.headers.get("Supported") == "path" and msg.cseq.method == "OPTIONS"
    validate_message(msg)


def test_bare_lf_line_ends_and_leading_crlf() -> None:
    data = b"\r\n\r\n" + REGISTER.replace(b"\r\n", b"\n") + b"extra"
    msg = parse_message(data)
    assert msg.call_id == "843817637684230@998sdasdh09" and msg.body == b""


def test_body_truncated_to_content_length_and_missing_length_takes_rest() -> None:
    msg = parse_message(REGISTER.replace(b"Content-Length: 0", b"Content-Length: 3") + b"abcdef")
    assert msg.body == b"abc"
    msg = parse_message(REGISTER.replace(b"Content-Length: 0\r\n", b"") + b"abcdef")
    assert msg.body == b"abcdef"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "no end of headers"),
        (b"INVITE sip:a@b SIP/2.0\r\nVia: x\r\n", "no end of headers"),
        (REGISTER.replace(b"Content-Length: 0", b"Content-Length: 10"), "shorter than Content-Length"),
        (REGISTER.replace(b"Content-Length: 0", b"Content-Length: x"), "Content-Length"),
        (REGISTER + b"", None),
        (REGISTER.replace(b"Max-Forwards: 70", b"Max-Forwards 70"), "malformed header line"),
        (REGISTER.replace(b"Max-Forwards", b"Max Forwards"), "malformed header name"),
        (REGISTER.replace(b"REGISTER sip", b"REGISTER  sip"), "request line"),
        (REGISTER.replace(b"SIP/2.0\r\nVia", b"SIP/2.0 \r\nVia"), "request line"),
        (REGISTER.replace(b"REGISTER sip:example.com", b"REGISTER <sip:example.com>"), "Request-URI"),
        (REGISTER.replace(b"REGISTER sip", b"REG\x00STER sip"), "method"),
        (b"SIP/2.0 20 OK\r\n\r\n", "status code"),
        (b"SIP/2.0 2000 OK\r\n\r\n", "status code"),
        (b"SIP/2.0 700 Odd\r\n\r\n", "status code"),
        (b"SIP/2.0 099 Odd\r\n\r\n", "status code"),
        (b"SIP/2.0 200 O\x01K\r\n\r\n", "reason"),
        (b"SIP/2.0\r\n\r\n", "status line"),
        (b"HTTP/1.1 200 OK\r\n\r\n", "method"),
        (b" INVITE sip:a@b SIP/2.0\r\n\r\n", None),
        (REGISTER.replace(b"Call-ID", b"Content-Length: 1\r\nCall-ID"), "conflicting"),
        (REGISTER.replace(b"\r\nVia", b"\rVia"), None),
    ],
)
def test_parse_errors(data: bytes, message: str | None) -> None:
    if data == REGISTER:
        parse_message(data)
        return
    with pytest.raises(SipParseError) as info:
        parse_message(data)
    if message:
        assert message in str(info.value)


def test_unsupported_version() -> None:
    with pytest.raises(UnsupportedVersion):
        parse_message(REGISTER.replace(b"SIP/2.0\r\nVia", b"SIP/3.0\r\nVia"))
    with pytest.raises(UnsupportedVersion):
        parse_message(b"SIP/1.0 200 OK\r\n\r\n")


def test_lowercase_version_is_accepted() -> None:
    assert parse_message(REGISTER.replace(b"SIP/2.0\r\nVia", b"sip/2.0\r\nVia")).version == "SIP/2.0"


def test_validate_message_checks_cseq_method_and_contact_expires() -> None:
    msg = parse_message(REGISTER.replace(b"CSeq: 1826 REGISTER", b"CSeq: 1826 INVITE"))
    with pytest.raises(SipParseError, match="CSeq method"):
        validate_message(msg)
    msg = parse_message(REGISTER.replace(b"expires=3600", b"expires=99999999999"))
    with pytest.raises(SipParseError):
        validate_message(msg)


def test_try_error_response_names_the_problem() -> None:
    data = REGISTER.replace(b"To: \"Alice\" <sip:alice@example.com>", b"To: \"Alice <sip:alice@example.com>")
    msg = parse_message(data)
    with pytest.raises(SipParseError) as info:
        validate_message(msg)
    response = try_error_response(data, info.value)
    assert response is not None and response.status == 400
    assert response.reason.startswith("Bad Request - malformed To")
    assert response.headers.get("Call-ID") == "843817637684230@998sdasdh09"
    assert response.headers.get("Via") == "SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK776asdhds;rport"
    assert ";tag=" in (response.headers.get("To") or "")
    assert isinstance(parse_message(response.to_bytes()), Response)


def test_try_error_response_505_and_none_cases() -> None:
    data = REGISTER.replace(b"SIP/2.0\r\nVia", b"SIP/3.0\r\nVia")
    with pytest.raises(SipParseError) as info:
        parse_message(data)
    response = try_error_response(data, info.value)
    assert response is not None and response.status == 505
    error = SipParseError("x")
    assert try_error_response(RESPONSE, error) is None
    assert try_error_response(b"garbage", error) is None
    assert try_error_response(REGISTER.replace(b"Call-ID", b"X-Call-ID"), error) is None
    no_via = REGISTER.replace(b"Via: SIP/2.0/UDP 192.0.2.10:5060", b"Via: junk")
    assert try_error_response(no_via, error) is None
    ack = REGISTER.replace(b"REGISTER sip", b"ACK sip").replace(b"1826 REGISTER", b"1826 ACK")
    assert try_error_response(ack, error) is None


def test_error_reason_is_sanitised() -> None:
    response = try_error_response(REGISTER, SipParseError("bad\r\nInjected: \x00header"))
    assert response is not None
    assert "\r" not in response.reason and "\n" not in response.reason and "\x00" not in response.reason


# --- fuzzing ---------------------------------------------------------------------------------

TORTURE = Path(__file__).parent / "torture"
SEEDS = [REGISTER, RESPONSE] + [p.read_bytes() for p in sorted(TORTURE.glob("*.sip"))]
ALPHABET = b' \t\r\n:;,<>"\\@[]=%/?!0123456789abcSIPVia\x00\xff\xc3'


def _mutate(rng: random.Random, data: bytes) -> bytes:
    buf = bytearray(data)
    for _ in range(rng.randint(1, 8)):
        op = rng.random()
        pos = rng.randrange(len(buf) + 1)
        if op < 0.3 and buf:
            del buf[pos:pos + rng.randint(1, 20)]
        elif op < 0.6:
            buf[pos:pos] = bytes(rng.choice(ALPHABET) for _ in range(rng.randint(1, 6)))
        elif op < 0.8 and buf:
            buf[min(pos, len(buf) - 1)] = rng.randrange(256)
        else:  # splice a chunk from another message
            other = rng.choice(SEEDS)
            start = rng.randrange(len(other))
            buf[pos:pos] = other[start:start + rng.randint(1, 60)]
    return bytes(buf)


def _exercise(data: bytes) -> None:
    try:
        msg = parse_message(data)
    except SipParseError as exc:
        try_error_response(data, exc)
        return
    for name in ("vias", "via", "call_id", "cseq", "from_", "to", "contacts", "contact_star",
                 "max_forwards", "expires", "content_type"):
        with contextlib.suppress(SipParseError):
            getattr(msg, name)
    if isinstance(msg, Request):
        with contextlib.suppress(SipParseError):
            msg.uri  # noqa: B018
    try:
        validate_message(msg)
    except SipParseError as exc:
        try_error_response(data, exc)
    for name, _ in list(msg.headers):
        msg.headers.get_all(name)
    wire = msg.to_bytes()
    again = parse_message(wire)  # what we serialise must parse again
    assert again.body == msg.body
    try:
        sdp = SessionDescription.parse(msg.body)
        offered_codecs(sdp)
        filter_codecs(sdp, ["PCMU"]).to_bytes()
    except SipParseError:
        pass


def test_fuzz_only_sip_parse_error_escapes() -> None:
    rng = random.Random(4475)
    for i in range(3000):
        seed = SEEDS[i % len(SEEDS)]
        data = _mutate(rng, seed) if i % 10 else bytes(rng.randrange(256) for _ in range(rng.randint(0, 300)))
        try:
            _exercise(data)
        except SipParseError:
            raise
        except Exception as exc:  # pragma: no cover - the failure report
            raise AssertionError(f"{type(exc).__name__}: {exc} for input {data!r}") from exc
