"""Bytes to SIP messages: datagram parsing, error responses for bad requests, stream framing."""

from __future__ import annotations

import secrets
from typing import Final

from .errors import SipParseError, UnsupportedUriScheme, UnsupportedVersion
from .headers import Via, split_header_values
from .message import CANONICAL_NAMES, Headers, Request, Response, SipMessage, make_response, normalize_name
from .uri import TOKEN_CHARS, is_token, parse_uint

_SCHEME_CHARS: Final = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+-.")
MAX_CONTENT_LENGTH: Final = 2**31
KNOWN_KEYS: Final = frozenset(name.lower() for name in CANONICAL_NAMES.values())


def _split_head(data: bytes) -> tuple[list[str], bytes]:
    """Split off the header block; return its raw (still folded) lines and the bytes after it."""
    start = 0
    if data[:1] in (b"\r", b"\n"):  # RFC 3261 7.5: tolerate CRLFs preceding the start line
        while start < len(data) and data[start] in (13, 10):
            start += 1
    end = data.find(b"\r\n\r\n", start)
    if end >= 0:
        text = data[start:end].decode("utf-8", "surrogateescape")
        lines = text.split("\r\n")
        # fast path: every line break is a CRLF and there is no stray CR or LF
        if text.count("\n") == len(lines) - 1 and text.count("\r") == len(lines) - 1:
            return lines, data[end + 4:]
    return _split_head_lenient(data, start)


def _split_head_lenient(data: bytes, start: int) -> tuple[list[str], bytes]:
    # line breaks may be bare LFs; the header block ends at the first empty line
    pos, size = start, len(data)
    while True:
        nl = data.find(b"\n", pos)
        if nl < 0 or nl + 1 >= size:
            raise SipParseError("incomplete message: no end of headers")
        after = nl + 1
        if data[after] == 10:
            head, rest = data[start:nl], data[after + 1:]
            break
        if data.startswith(b"\r\n", after):
            head, rest = data[start:nl], data[after + 2:]
            break
        pos = after
    text = head.decode("utf-8", "surrogateescape")
    if "\r" in text:
        text = text.replace("\r\n", "\n").removesuffix("\r")
        if "\r" in text:
            raise SipParseError("bare CR in header block")
    return text.split("\n"), rest


def _parse_headers(lines: list[str]) -> tuple[list[tuple[str, str, str]], int | None]:
    """Parse header lines (after the start line) into (key, name, value) and the Content-Length."""
    items: list[tuple[str, str, str]] = []
    length_at: list[int] = []  # positions of Content-Length fields (their values may still unfold)
    for line in lines:
        name, colon, value = line.partition(":")
        kc = _valid_names.get(name)
        if kc is None:
            if line[:1] in (" ", "\t"):  # folded continuation (RFC 3261 7.3.1)
                if not items:
                    raise SipParseError("continuation line without a header")
                key, canonical, value = items.pop()
                more = line.strip(" \t")
                items.append((key, canonical, f"{value} {more}" if value and more else value or more))
                continue
            if not colon:
                raise SipParseError(f"malformed header line {line[:30]!r}")
            kc = _check_name(name)
        if kc[0] == "content-length":
            length_at.append(len(items))
        items.append((kc[0], kc[1], value.strip(" \t")))
    if not length_at:
        return items, None
    content_length = _content_length(items[length_at[0]][2])
    for index in length_at[1:]:
        if _content_length(items[index][2]) != content_length:
            raise SipParseError("conflicting Content-Length values", "Content-Length")
    return items, content_length


_valid_names: Final[dict[str, tuple[str, str]]] = {}


def _check_name(raw: str) -> tuple[str, str]:
    name = raw.rstrip(" \t")
    key, canonical = result = normalize_name(name)
    if key not in KNOWN_KEYS and not is_token(name):
        raise SipParseError(f"malformed header name {name[:30]!r}")
    if len(_valid_names) < 4096:
        _valid_names[raw] = result
    return result


def _content_length(value: str) -> int:
    if not value.isascii() or not value.isdigit() or len(value) > 10 or int(value) > MAX_CONTENT_LENGTH:
        raise SipParseError("malformed Content-Length", "Content-Length")
    return int(value)


def _parse_start_line(line: str) -> tuple[str, str] | tuple[int, str]:
    """A request line as (method, Request-URI) or a status line as (status, reason phrase)."""
    parts = line.split(" ")
    if len(parts) == 3 and parts[2] == "SIP/2.0":  # fast path for requests
        method, uri, _ = parts
        colon = uri.find(":")
        if (
            TOKEN_CHARS.issuperset(method)
            and method
            and colon > 0
            and _SCHEME_CHARS.issuperset(uri[:colon])
            and uri[0].isalpha()
            and "\t" not in uri
        ):
            return method, uri
    if line[:4].upper() == "SIP/":
        if len(parts) < 2:
            raise SipParseError("malformed status line")
        version, code = parts[0], parts[1]
        if version.upper() != "SIP/2.0":
            raise UnsupportedVersion(f"unsupported SIP version {version[:20]!r}")
        if len(code) != 3 or not code.isascii() or not code.isdigit() or not "1" <= code[0] <= "6":
            raise SipParseError("malformed status code")
        reason = line[len(version) + len(code) + 2:]
        if any(ord(c) < 32 and c != "\t" for c in reason):
            raise SipParseError("malformed reason phrase")
        return int(code), reason
    if len(parts) != 3:
        raise SipParseError("malformed request line")
    method, uri, version = parts
    if not method or not TOKEN_CHARS.issuperset(method):
        raise SipParseError("malformed method")
    if version.upper() != "SIP/2.0":
        if version[:4].upper() == "SIP/":
            raise UnsupportedVersion(f"unsupported SIP version {version[:20]!r}")
        raise SipParseError("malformed request line")
    colon = uri.find(":")
    if colon <= 0 or not uri[0].isalpha() or not _SCHEME_CHARS.issuperset(uri[:colon]) or "\t" in uri:
        raise SipParseError("malformed Request-URI")
    return method, uri


def parse_message(data: bytes | bytearray | memoryview) -> Request | Response:
    """Parse one complete message (a datagram, or a frame cut by ``StreamFramer``).

    Only the framing is checked here; individual headers are parsed when accessed.
    A body longer than Content-Length is truncated to it; a shorter one is an error.
    """
    if type(data) is not bytes:
        data = bytes(data)
    lines, rest = _split_head(data)
    start = lines[0]
    if not start:
        raise SipParseError("empty message")
    first, second = _parse_start_line(start)
    items, length = _parse_headers(lines[1:])
    if length is None:
        body = rest  # datagram without Content-Length: the body runs to the end (RFC 3261 18.3)
    elif length > len(rest):
        raise SipParseError("body shorter than Content-Length", "Content-Length")
    else:
        body = rest[:length]
    headers = Headers((), items)
    if isinstance(first, int):
        return Response(first, second, headers, body, "SIP/2.0")
    return Request(first, second, headers, body, "SIP/2.0")


def validate_message(msg: SipMessage) -> None:
    """Eagerly check what a proxy/registrar relies on; raise ``SipParseError`` naming the problem.

    Checks the mandatory headers of RFC 3261 8.1.1 (except Max-Forwards, which may be absent),
    every Via, the Request-URI, Contact and the CSeq method of a request.
    """
    msg.vias  # noqa: B018 - accessors validate
    msg.from_  # noqa: B018
    msg.to  # noqa: B018
    msg.call_id  # noqa: B018
    cseq = msg.cseq
    msg.max_forwards  # noqa: B018
    msg.expires  # noqa: B018
    msg.contacts  # noqa: B018
    if isinstance(msg, Request):
        msg.uri  # noqa: B018
        if cseq.method != msg.method:
            raise SipParseError("CSeq method does not match the request method", "CSeq")
        for contact in msg.contacts:
            expires = contact.params.get("expires")
            if expires is not None:
                parse_uint(expires, "Contact expires", 2**32 - 1, "Contact")


def try_error_response(data: bytes, error: SipParseError) -> Response | None:
    """Best-effort ``400``/``416``/``505`` answer for a malformed request, or ``None`` to drop it.

    ``error`` is what ``parse_message``, an accessor or ``validate_message`` raised. A response
    needs a usable top Via (to route it) and the raw From, To, Call-ID and CSeq to copy.
    """
    try:
        lines, _ = _split_head(bytes(data))
    except SipParseError:
        return None
    parts = lines[0].split()
    if not parts or parts[0][:4].upper() == "SIP/" or len(parts) < 2:
        return None  # responses are never answered
    items: list[tuple[str, str]] = []
    for line in lines[1:]:
        if line[:1] in (" ", "\t"):
            if items:
                items[-1] = (items[-1][0], items[-1][1] + " " + line.strip())
            continue
        name, colon, value = line.partition(":")
        if colon:
            items.append((normalize_name(name.strip())[0], value.strip()))
    found: dict[str, str] = {}
    for key, value in items:
        if key in ("via", "from", "to", "call-id", "cseq") and key not in found and value:
            found[key] = value
    if len(found) < 5:
        return None
    via_values = [value for key, value in items if key == "via"]
    if _recover_via(via_values[0]) is None:
        return None
    cseq_parts = found["cseq"].split()
    if len(cseq_parts) != 2 or not cseq_parts[0].isascii() or not cseq_parts[0].isdigit():
        return None
    method = parts[0] if is_token(parts[0]) else cseq_parts[1]
    if method == "ACK":
        return None  # never answer an ACK
    request = Request(method, "sip:invalid", Headers())
    for key, value in items:
        if key == "via":
            request.headers.add(key, value)
        elif key in found:  # single-valued: the first one only
            request.headers.add(key, found.pop(key))
    to_tag = secrets.token_hex(5)  # used only when To has no tag
    if isinstance(error, UnsupportedVersion):
        return make_response(request, 505, to_tag=to_tag)
    if isinstance(error, UnsupportedUriScheme) and error.header == "Request-URI":
        return make_response(request, 416, to_tag=to_tag)  # RFC 3261 8.2.2.1
    reason = "Bad Request - " + _describe(error)
    return make_response(request, 400, reason, to_tag=to_tag)


def _recover_via(value: str) -> Via | None:
    first = split_header_values(value)
    if not first:
        return None
    try:
        return Via.parse(first[0])
    except SipParseError:
        pass
    # keep only sent-protocol and sent-by, dropping broken parameters
    try:
        return Via.parse(first[0].split(";", 1)[0])
    except SipParseError:
        return None


def _describe(error: SipParseError) -> str:
    text = str(error)
    if error.header and error.header.lower() not in text.lower():
        text = f"{text} ({error.header})"
    text = "".join(ch if " " <= ch < "\x7f" else "?" for ch in text)
    return text[:80]


class StreamFramer:
    """Cut a TCP/TLS byte stream into messages using Content-Length (RFC 3261 18.3)."""

    def __init__(self, max_message_size: int = 65535) -> None:
        self.max_message_size = max_message_size
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        buf = self._buffer
        buf += data
        messages: list[bytes] = []
        while True:
            skip = 0
            while skip < len(buf) and buf[skip] in (13, 10):  # CRLF keepalives
                skip += 1
            if skip:
                del buf[:skip]
            if not buf:
                break
            end = buf.find(b"\r\n\r\n")
            sep = 4
            lf_end = buf.find(b"\n\n", 0, end if end >= 0 else len(buf))
            if lf_end >= 0 and (end < 0 or lf_end < end):
                end, sep = lf_end, 2
            if end < 0:
                if len(buf) > self.max_message_size:
                    raise SipParseError("header block exceeds the size limit")
                break
            length = _stream_content_length(bytes(buf[:end]))
            total = end + sep + length
            if total > self.max_message_size:
                raise SipParseError("message exceeds the size limit")
            if len(buf) < total:
                break
            messages.append(bytes(buf[:total]))
            del buf[:total]
        return messages

    @property
    def buffered(self) -> int:
        return len(self._buffer)


def _stream_content_length(head: bytes) -> int:
    found: int | None = None
    for line in head.split(b"\n"):
        if line[:1] in (b" ", b"\t"):
            continue
        name, colon, value = line.partition(b":")
        if not colon:
            continue
        name = name.strip().lower()
        if name == b"content-length" or name == b"l":
            value = value.strip()
            if not value.isdigit() or len(value) > 10:
                raise SipParseError("malformed Content-Length", "Content-Length")
            if found is not None and found != int(value):
                raise SipParseError("conflicting Content-Length values", "Content-Length")
            found = int(value)
    if found is None:
        raise SipParseError("missing Content-Length on a stream", "Content-Length")
    return found
