"""Typed views of individual header values: Via, CSeq, and comma-list splitting."""

from __future__ import annotations

import re
from typing import Final

from .errors import SipParseError
from .uri import format_params, is_token, parse_params, parse_uint, split_host_port, validate_host

_WS: Final = " \t"
MAX_CSEQ: Final = 2**31 - 1  # RFC 3261 8.1.1.5: the sequence number MUST be less than 2**31


def split_header_values(value: str) -> list[str]:
    """Split a comma-separated header value, ignoring commas inside quotes or ``<...>``.

    Elements are stripped; empty elements are dropped.
    """
    if "," not in value:
        value = value.strip(_WS)
        return [value] if value else []
    if '"' not in value and "<" not in value:  # nothing can hide a comma: split at each one
        return [p for p in (part.strip(_WS) for part in value.split(",")) if p]
    parts: list[str] = []
    in_quote = in_angle = False
    start = 0
    i, n = 0, len(value)
    while i < n:
        ch = value[i]
        if in_quote:
            if ch == "\\":
                i += 1
            elif ch == '"':
                in_quote = False
        elif ch == '"':
            in_quote = True
        elif in_angle:
            if ch == ">":
                in_angle = False
        elif ch == "<":
            in_angle = True
        elif ch == ",":
            parts.append(value[start:i])
            start = i + 1
        i += 1
    parts.append(value[start:])
    return [p for p in (part.strip(_WS) for part in parts) if p]


class Via:
    """One via-parm: ``SIP/2.0/UDP host:port;branch=...;rport``."""

    __slots__ = ("transport", "host", "port", "params", "protocol")

    def __init__(
        self,
        transport: str,
        host: str,
        port: int | None = None,
        params: dict[str, str | None] | None = None,
        protocol: str = "SIP/2.0",
    ) -> None:
        self.transport = transport.upper()
        self.host = host
        self.port = port
        self.params = params if params is not None else {}
        self.protocol = protocol

    @classmethod
    def parse(cls, text: str) -> Via:
        match = _FAST_VIA(text)
        if match is not None and ".." not in match[2]:  # the common shape; the rest takes _parse
            transport, host, port_text, ptext = match.groups()
            port = None
            if port_text is not None:
                port = int(port_text)
                if port > 65535:
                    return cls._parse_wrapped(text)
            params: dict[str, str | None] = {}
            if ptext:
                for part in ptext[1:].split(";"):
                    name, eq, value = part.partition("=")
                    params[name.lower()] = value if eq else None
                if "received" in params or "rport" in params or "ttl" in params:
                    try:
                        _check_via_params(params)
                    except SipParseError:
                        return cls._parse_wrapped(text)
            return Via(transport, host.lower(), port, params)
        return cls._parse_wrapped(text)

    @classmethod
    def _parse_wrapped(cls, text: str) -> Via:
        try:
            return cls._parse(text)
        except SipParseError as exc:
            raise SipParseError(f"malformed Via ({exc})", "Via") from None

    @classmethod
    def _parse(cls, text: str) -> Via:
        text = text.strip(_WS)
        if text[:8].upper() == "SIP/2.0/":
            protocol = "SIP/2.0"
            rest = text[8:]
            sp = _find_ws(rest)
            if sp < 0:
                raise SipParseError("missing sent-by")
            transport, rest = rest[:sp], rest[sp:]
        else:  # sent-protocol with LWS around the slashes
            parts = text.split("/", 2)
            if len(parts) != 3:
                raise SipParseError("malformed sent-protocol")
            name, version = parts[0].strip(_WS), parts[1].strip(_WS)
            rest = parts[2].lstrip(_WS)
            sp = _find_ws(rest)
            if sp < 0:
                raise SipParseError("missing sent-by")
            transport, rest = rest[:sp], rest[sp:]
            if not is_token(name) or not is_token(version):
                raise SipParseError("malformed sent-protocol")
            protocol = f"{name.upper()}/{version}"
        if not is_token(transport):
            raise SipParseError("malformed transport")
        sent_by, semi, ptext = rest.partition(";")
        sent_by = sent_by.strip(_WS)
        if not sent_by:
            raise SipParseError("missing sent-by")
        host, port = split_host_port(sent_by, "sent-by")
        params = parse_params(ptext, "Via") if semi else {}
        if params:
            _check_via_params(params)
        return Via(transport, host, port, params, protocol)

    @property
    def branch(self) -> str | None:
        return self.params.get("branch")

    @property
    def received(self) -> str | None:
        return self.params.get("received")

    @property
    def has_rport(self) -> bool:
        return "rport" in self.params

    @property
    def rport(self) -> int | None:
        value = self.params.get("rport")
        return int(value) if value else None

    @property
    def maddr(self) -> str | None:
        return self.params.get("maddr")

    @property
    def sent_by(self) -> tuple[str, int | None]:
        return self.host, self.port

    def __str__(self) -> str:
        port = "" if self.port is None else f":{self.port}"
        return f"{self.protocol}/{self.transport} {self.host}{port}{format_params(self.params)}"

    def __repr__(self) -> str:
        return f"Via({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Via):
            return NotImplemented
        return str(self) == str(other)

    __hash__ = None  # type: ignore[assignment]

    def copy(self) -> Via:
        return Via(self.transport, self.host, self.port, dict(self.params), self.protocol)


_T = r"A-Za-z0-9\-.!%*_+`'~"
_FAST_VIA: Final = re.compile(
    rf"[ \t]*SIP/2\.0/([{_T}]+) ([A-Za-z0-9][A-Za-z0-9\-.]*)(?::([0-9]{{1,5}}))?"
    rf"((?:;[{_T}]+(?:=[{_T}]+)?)*)[ \t]*\Z"
).match
_METHODS: Final = frozenset(
    ("INVITE", "ACK", "BYE", "CANCEL", "REGISTER", "OPTIONS", "SUBSCRIBE", "NOTIFY", "REFER", "INFO",
     "UPDATE", "PRACK", "MESSAGE", "PUBLISH")
)  # fmt: skip
_FAST_CSEQ: Final = re.compile(rf"[ \t]*([0-9]{{1,10}})[ \t]+([{_T}]+)[ \t]*\Z").match


def _find_ws(text: str) -> int:
    sp = text.find(" ")
    tab = text.find("\t")
    if tab >= 0 and (sp < 0 or tab < sp):
        return tab
    return sp


def _check_via_params(params: dict[str, str | None]) -> None:
    received = params.get("received")
    if received is not None:
        # RFC 3261 says IPv6address without brackets; RFC 5118 4.5 asks parsers to accept both.
        addr = received if received.startswith("[") or ":" not in received else f"[{received}]"
        validate_host(addr)
    rport = params.get("rport")
    if rport is not None:
        parse_uint(rport, "rport", 65535)
    ttl = params.get("ttl")
    if ttl is not None:
        parse_uint(ttl, "ttl", 255)
    if "branch" in params and not params["branch"]:
        raise SipParseError("empty branch")


class CSeq:
    __slots__ = ("seq", "method")

    def __init__(self, seq: int, method: str) -> None:
        self.seq = seq
        self.method = method

    @classmethod
    def parse(cls, text: str) -> CSeq:
        number, _, method = text.partition(" ")  # the shape every phone sends: "2 INVITE"
        if method in _METHODS and number.isdigit() and number.isascii() and len(number) <= 10:
            seq = int(number)
            if seq <= MAX_CSEQ:
                return CSeq(seq, method)
        match = _FAST_CSEQ(text)
        if match is not None:
            seq = int(match[1])
            if seq <= MAX_CSEQ:
                return CSeq(seq, match[2])
        return cls._parse(text)

    @classmethod
    def _parse(cls, text: str) -> CSeq:
        parts = text.split()
        if len(parts) != 2 or not is_token(parts[1]):
            raise SipParseError("malformed CSeq", "CSeq")
        return cls(parse_uint(parts[0], "CSeq number", MAX_CSEQ, "CSeq"), parts[1])

    def __str__(self) -> str:
        return f"{self.seq} {self.method}"

    def __repr__(self) -> str:
        return f"CSeq({self.seq}, {self.method!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CSeq):
            return NotImplemented
        return (self.seq, self.method) == (other.seq, other.method)

    def __hash__(self) -> int:
        return hash((self.seq, self.method))
