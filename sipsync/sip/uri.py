"""SIP/SIPS/tel URIs (RFC 3261 19.1, RFC 3966) and name-addr values (RFC 3261 20.10).

Also home of the small lexical helpers shared by the other modules of this package.
"""

from __future__ import annotations

import contextlib
import ipaddress
import re
import string
from typing import Final
from urllib.parse import unquote_to_bytes

from .errors import SipParseError, UnsupportedUriScheme

# --- lexical helpers ---------------------------------------------------------------------------

_ALNUM: Final = frozenset(string.ascii_letters + string.digits)
TOKEN_CHARS: Final = _ALNUM | frozenset("-.!%*_+`'~")
_UNRESERVED: Final = _ALNUM | frozenset("-_.!~*'()")
_USER_OK: Final = _UNRESERVED | frozenset("&=+$,;?/")
_PASSWORD_OK: Final = _UNRESERVED | frozenset("&=+$,")
_PARAM_OK: Final = _UNRESERVED | frozenset("[]/:&+$")
_HEADER_OK: Final = _UNRESERVED | frozenset("[]/?:+$")
_HOST_CHARS: Final = _ALNUM | frozenset("-.")
_SCHEME_CHARS: Final = _ALNUM | frozenset("+-.")
_IPV6_CHARS: Final = frozenset(string.hexdigits + ":.")
_BAD_ESCAPE: Final = re.compile(r"%(?![0-9A-Fa-f]{2})")
_WS: Final = " \t"


def is_token(text: str) -> bool:
    return bool(text) and TOKEN_CHARS.issuperset(text)


def parse_uint(text: str, what: str, limit: int = 2**32 - 1, header: str | None = None) -> int:
    """Parse an unsigned decimal (ASCII digits only, unlike ``int()``) bounded by ``limit``."""
    if not text or not text.isascii() or not text.isdigit():
        raise SipParseError(f"malformed {what}", header)
    if len(text) > 12 or int(text) > limit:
        raise SipParseError(f"{what} out of range", header)
    return int(text)


def unescape(text: str) -> str:
    if "%" not in text:
        return text
    if _BAD_ESCAPE.search(text):
        raise SipParseError("bad %-escape in URI")
    return unquote_to_bytes(text.encode("utf-8", "surrogateescape")).decode("utf-8", "surrogateescape")


def escape(text: str, allowed: frozenset[str]) -> str:
    if allowed.issuperset(text):
        return text
    out = []
    for ch in text:
        if ch in allowed:
            out.append(ch)
        else:
            out.extend(f"%{b:02X}" for b in ch.encode("utf-8", "surrogateescape"))
    return "".join(out)


def validate_host(host: str) -> str:
    """Return ``host`` lowercased if it is a hostname, IPv4 address or bracketed IPv6 reference."""
    if not host:
        raise SipParseError("missing host")
    if host[0] == "[":
        inner = host[1:-1] if host[-1] == "]" else ""
        if ":::" in inner and "." in inner:
            # RFC 3261's ABNF allowed "::" plus ":" before an embedded IPv4 address; RFC 5118 4.10
            # asks parsers to tolerate that form. Normalise it to the correct two colons.
            inner = inner.replace(":::", "::", 1)
        if not _is_ipv6(inner):
            raise SipParseError("malformed IPv6 reference")
        return f"[{inner.lower()}]"
    if not host.isascii() or not _HOST_CHARS.issuperset(host) or ".." in host or host[0] in "-.":
        raise SipParseError("malformed host")
    return host.lower()


def _is_ipv6(text: str) -> bool:
    if "%" in text or not text.isascii():  # no zone ids in SIP
        return False
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True


def split_host_port(text: str, what: str = "host") -> tuple[str, int | None]:
    """Split ``host[:port]`` (IPv6 references in brackets); validates both parts."""
    if text.startswith("["):
        end = text.find("]")
        if end < 0:
            raise SipParseError(f"malformed {what}: unterminated IPv6 reference")
        host, rest = text[: end + 1], text[end + 1:].strip(_WS)
        if rest:
            if rest[0] != ":":
                raise SipParseError(f"malformed {what}")
            port: int | None = parse_uint(rest[1:].strip(_WS), "port", 65535)
        else:
            port = None
    else:
        host, colon, port_text = text.partition(":")
        host = host.strip(_WS)
        port = parse_uint(port_text.strip(_WS), "port", 65535) if colon else None
    try:
        return validate_host(host), port
    except SipParseError as exc:
        raise SipParseError(f"{exc} in {what}") from None


def find_unquoted(text: str, chars: str, start: int = 0) -> int:
    """Index of the first char of ``chars`` outside a quoted string (``-1`` if none)."""
    in_quote = False
    i, n = start, len(text)
    while i < n:
        ch = text[i]
        if in_quote:
            if ch == "\\":
                i += 1
            elif ch == '"':
                in_quote = False
        elif ch == '"':
            in_quote = True
        elif ch in chars:
            return i
        i += 1
    if in_quote:
        raise SipParseError("unterminated quoted string")
    return -1


def split_unquoted(text: str, sep: str) -> list[str]:
    if '"' not in text:
        return text.split(sep)
    parts = []
    start = 0
    while True:
        i = find_unquoted(text, sep, start)
        if i < 0:
            parts.append(text[start:])
            return parts
        parts.append(text[start:i])
        start = i + 1


def parse_params(text: str, what: str, header: str | None = None) -> dict[str, str | None]:
    """Parse ``;name[=value]`` generic parameters (text starts after the first ``;``).

    Names are lowercased; values are kept verbatim (quoted strings keep their quotes).
    """
    params: dict[str, str | None] = {}
    token = TOKEN_CHARS.issuperset
    for part in split_unquoted(text, ";") if '"' in text else text.split(";"):
        name, eq, value = part.partition("=")
        if not token(name) or not name:
            name = name.strip(_WS)
            if not name or not token(name):
                raise SipParseError(f"bad {what} parameter", header)
        if eq:
            if not value or not token(value):
                value = value.strip(_WS)
                if not value or (value[0] != '"' and not _param_value_ok(value)):
                    raise SipParseError(f"bad {what} parameter", header)
            params[name.lower()] = value
        else:
            params[name.lower()] = None
    return params


def _param_value_ok(value: str) -> bool:
    # token, or an IPv6 address with or without brackets (Via received, RFC 5118 4.5)
    if TOKEN_CHARS.issuperset(value):
        return True
    if value[0] == "[" and value[-1] == "]":
        value = value[1:-1]
    return ":" in value and _IPV6_CHARS.issuperset(value)


def format_params(params: dict[str, str | None]) -> str:
    return "".join(f";{k}" if v is None else f";{k}={v}" for k, v in params.items())


def parse_quoted(text: str, start: int = 0) -> tuple[str, int]:
    """Unescape the quoted string opening at ``text[start]``; return it and the index after it."""
    end = text.find('"', start + 1)
    if end > 0 and "\\" not in text[start + 1:end]:
        return text[start + 1:end], end + 1
    out = []
    i, n = start + 1, len(text)
    while i < n:
        ch = text[i]
        if ch == "\\":
            if i + 1 >= n:
                break
            out.append(text[i + 1])
            i += 2
            continue
        if ch == '"':
            return "".join(out), i + 1
        out.append(ch)
        i += 1
    raise SipParseError("unterminated quoted string")


def quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


# Fast paths: regular expressions for the common shapes, which need no unescaping. Input they do
# not match goes to the careful parsers, which accept more and explain what is wrong.
_T = r"A-Za-z0-9\-.!%*_+`'~"  # token characters
_P = r"A-Za-z0-9\-_.!~*'()\[\]/:&+$"  # URI parameter characters, without escapes
_SIMPLE_URI = (
    rf"(sips?):(?:([A-Za-z0-9\-_.!~*'()&=+$,;?/]+)@)?([A-Za-z0-9][A-Za-z0-9\-.]*)(?::([0-9]{{1,5}}))?"
    rf"((?:;[{_P}]+(?:=[{_P}]+)?)*)"
)
_DISPLAY = rf'[ \t]*(?:"([^"\\\x00-\x1f]*)"[ \t]*|((?:[{_T}]+[ \t]+)*(?:[{_T}]+)?)[ \t]*)'
_HEADER_PARAMS = rf"[ \t]*((?:;[{_T}]+(?:=[{_T}]+)?)*)[ \t]*\Z"
_FAST_SIP_URI: Final = re.compile(_SIMPLE_URI + r"\Z").match
_FAST_NAME_ADDR: Final = re.compile(_DISPLAY + "<" + _SIMPLE_URI + ">" + _HEADER_PARAMS).match
_FAST_NAME_ADDR_ANY_URI: Final = re.compile(_DISPLAY + r'<(sips?:[^<>" \t]*)>' + _HEADER_PARAMS).match


def _simple_params(text: str) -> dict[str, str | None]:
    params: dict[str, str | None] = {}
    for part in text[1:].split(";"):
        name, eq, value = part.partition("=")
        params[name.lower()] = value if eq else None
    return params


def _simple_uri(scheme: str, user: str | None, host: str, port_text: str | None, ptext: str) -> SipUri | None:
    """Build a SipUri from ``_SIMPLE_URI`` groups; ``None`` if a check the pattern cannot do fails."""
    if ".." in host:
        return None
    port = None
    if port_text is not None:
        port = int(port_text)
        if port > 65535:
            return None
    return SipUri(scheme, user, host.lower(), port, _simple_params(ptext) if ptext else {}, {})


# --- URIs --------------------------------------------------------------------------------------


class SipUri:
    """A sip:, sips: or tel: URI. Components are stored unescaped; ``str()`` re-escapes."""

    __slots__ = ("scheme", "user", "password", "host", "port", "params", "headers")

    def __init__(
        self,
        scheme: str = "sip",
        user: str | None = None,
        host: str = "",
        port: int | None = None,
        params: dict[str, str | None] | None = None,
        headers: dict[str, str] | None = None,
        password: str | None = None,
    ) -> None:
        self.scheme = scheme
        self.user = user
        self.password = password
        self.host = host
        self.port = port
        self.params = params if params is not None else {}
        self.headers = headers if headers is not None else {}

    @classmethod
    def parse(cls, text: str) -> SipUri:
        match = _FAST_SIP_URI(text)
        if match is not None:
            uri = _simple_uri(*match.groups())
            if uri is not None:
                return uri
        return cls._parse(text)

    @classmethod
    def _parse(cls, text: str) -> SipUri:
        scheme, colon, rest = text.strip(_WS).partition(":")
        if not colon or not rest:
            raise SipParseError("malformed URI")
        scheme = scheme.lower()
        if scheme == "tel":
            return cls._parse_tel(rest)
        if scheme not in ("sip", "sips"):
            if not scheme[:1].isalpha() or not _SCHEME_CHARS.issuperset(scheme):
                raise SipParseError("malformed URI")
            raise UnsupportedUriScheme(f"unsupported URI scheme {scheme!r}", scheme)
        if " " in rest or "\t" in rest or "<" in rest or ">" in rest or '"' in rest:
            raise SipParseError("malformed URI")
        user = password = None
        at = rest.find("@")
        if at >= 0:
            userinfo, rest = rest[:at], rest[at + 1:]
            user, colon, pw = userinfo.partition(":")
            if colon:
                if not _PASSWORD_OK.issuperset(pw.replace("%", "")):
                    raise SipParseError("malformed URI password")
                password = unescape(pw)
            if not user or not _USER_OK.issuperset(user.replace("%", "")):
                raise SipParseError("malformed URI user")
            user = unescape(user)
        headers: dict[str, str] = {}
        qmark = rest.find("?")
        if qmark >= 0:
            for hdr in rest[qmark + 1:].split("&"):
                name, eq, value = hdr.partition("=")
                if not name or not eq or not _HEADER_OK.issuperset((name + value).replace("%", "")):
                    raise SipParseError("malformed URI header")
                headers[unescape(name)] = unescape(value)
            rest = rest[:qmark]
        params: dict[str, str | None] = {}
        semi = rest.find(";")
        if semi >= 0:
            for part in rest[semi + 1:].split(";"):
                name, eq, value = part.partition("=")
                if not name or not _PARAM_OK.issuperset(name.replace("%", "")):
                    raise SipParseError("malformed URI parameter")
                if eq and not _PARAM_OK.issuperset(value.replace("%", "")):
                    raise SipParseError("malformed URI parameter")
                params[unescape(name).lower()] = unescape(value) if eq else None
            rest = rest[:semi]
        host, port = split_host_port(rest, "URI host")
        return SipUri(scheme, user, host, port, params, headers, password)

    @classmethod
    def _parse_tel(cls, rest: str) -> SipUri:
        number, semi, ptext = rest.partition(";")
        allowed = frozenset(string.hexdigits + "+-.()*#pPwW")
        if not number or not allowed.issuperset(number):
            raise SipParseError("malformed tel URI")
        params: dict[str, str | None] = {}
        if semi:
            for part in ptext.split(";"):
                name, eq, value = part.partition("=")
                if not name or not _PARAM_OK.issuperset(name):
                    raise SipParseError("malformed tel URI parameter")
                params[name.lower()] = unescape(value) if eq else None
        return cls("tel", number, "", None, params)

    def __str__(self) -> str:
        if self.scheme == "tel":
            return f"tel:{self.user}{self._format_params()}"
        out = [self.scheme, ":"]
        if self.user is not None:
            out.append(escape(self.user, _USER_OK))
            if self.password is not None:
                out += [":", escape(self.password, _PASSWORD_OK)]
            out.append("@")
        out.append(self.host)
        if self.port is not None:
            out.append(f":{self.port}")
        out.append(self._format_params())
        if self.headers:
            out.append("?")
            out.append(
                "&".join(f"{escape(k, _HEADER_OK)}={escape(v, _HEADER_OK)}" for k, v in self.headers.items())
            )
        return "".join(out)

    def _format_params(self) -> str:
        return "".join(
            f";{escape(k, _PARAM_OK)}" if v is None else f";{escape(k, _PARAM_OK)}={escape(v, _PARAM_OK)}"
            for k, v in self.params.items()
        )

    def __repr__(self) -> str:
        return f"SipUri({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SipUri):
            return NotImplemented
        return (
            self.scheme == other.scheme
            and self.user == other.user
            and self.password == other.password
            and self.host == other.host
            and self.port == other.port
            and self.params == other.params
            and self.headers == other.headers
        )

    __hash__ = None  # type: ignore[assignment]  # mutable

    @property
    def transport(self) -> str | None:
        value = self.params.get("transport")
        return value.upper() if value else None

    @property
    def host_port(self) -> str:
        return self.host if self.port is None else f"{self.host}:{self.port}"

    def copy(self, **changes: object) -> SipUri:
        uri = SipUri(
            self.scheme, self.user, self.host, self.port, dict(self.params), dict(self.headers), self.password
        )
        for name, value in changes.items():
            setattr(uri, name, value)  # raises AttributeError for unknown names (slots)
        return uri


class NameAddr:
    """``"Display" <uri>;params`` or ``uri;params`` as found in From, To, Contact, Route, ..."""

    __slots__ = ("display_name", "uri", "params")

    def __init__(
        self, uri: SipUri, display_name: str | None = None, params: dict[str, str | None] | None = None
    ) -> None:
        self.uri = uri
        self.display_name = display_name
        self.params = params if params is not None else {}

    @classmethod
    def parse(cls, text: str, header: str | None = None) -> NameAddr:
        # fast paths: quoted or token display name, <sip:...>, token parameters
        uri: SipUri | None = None
        match = _FAST_NAME_ADDR(text)
        if match is not None:
            quoted, tokens, scheme, user, host, port_text, ptext, tail = match.groups()
            uri = _simple_uri(scheme, user, host, port_text, ptext)
        else:
            match = _FAST_NAME_ADDR_ANY_URI(text)
            if match is not None:
                quoted, tokens, uri_text, tail = match.groups()
                with contextlib.suppress(SipParseError):  # else the careful path reports it
                    uri = SipUri.parse(uri_text)
        if uri is not None:
            display = quoted if quoted is not None else (" ".join(tokens.split()) or None)
            return NameAddr(uri, display, _simple_params(tail) if tail else {})
        try:
            return cls._parse(text.strip(" \t"))
        except UnsupportedUriScheme as unsupported:
            raise UnsupportedUriScheme(str(unsupported), unsupported.scheme, header) from None
        except SipParseError as error:
            if header is not None and error.header is None:
                raise SipParseError(f"malformed {header} ({error})", header) from None
            raise

    @classmethod
    def _parse(cls, s: str) -> NameAddr:
        display: str | None = None
        if s.startswith('"'):
            display, end = parse_quoted(s)
            rest = s[end:].lstrip(_WS)
            if not rest.startswith("<"):
                raise SipParseError("display name without <URI>")
            lt = 0
        else:
            lt = s.find("<")
        if lt >= 0:
            if display is None:
                name = s[:lt].strip(_WS)
                if name:
                    if not all(is_token(word) for word in name.split()):
                        raise SipParseError("malformed display name")
                    display = " ".join(name.split())
                rest = s[lt:]
            gt = rest.find(">")
            if gt < 0:
                raise SipParseError("missing '>'")
            uri = SipUri.parse(rest[1:gt])
            tail = rest[gt + 1:].strip(_WS)
        else:
            semi = s.find(";")
            uri_text, tail = (s, "") if semi < 0 else (s[:semi], s[semi:])
            if "?" in uri_text or "," in uri_text:
                raise SipParseError("URI with headers or commas must be enclosed in <>")
            uri = SipUri.parse(uri_text)
        params: dict[str, str | None] = {}
        if tail:
            if tail[0] != ";":
                raise SipParseError("junk after URI")
            params = parse_params(tail[1:], "header")
        return NameAddr(uri, display, params)

    @property
    def tag(self) -> str | None:
        return self.params.get("tag")

    def __str__(self) -> str:
        prefix = quote(self.display_name) + " " if self.display_name else ""
        return f"{prefix}<{self.uri}>{format_params(self.params)}"

    def __repr__(self) -> str:
        return f"NameAddr({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, NameAddr):
            return NotImplemented
        return (self.display_name, self.uri, self.params) == (other.display_name, other.uri, other.params)

    __hash__ = None  # type: ignore[assignment]

    def copy(self) -> NameAddr:
        return NameAddr(self.uri.copy(), self.display_name, dict(self.params))
