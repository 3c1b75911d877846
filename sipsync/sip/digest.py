"""HTTP Digest authentication for SIP (RFC 2617, RFC 7616, RFC 8760).

Pure functions on strings: nothing here knows about SIP message objects.

Server side, in short::

    nonces = NonceManager(secret)
    # challenge: one header per algorithm, strongest first (RFC 8760 section 2.4)
    for value in build_challenges(realm, nonces.issue(realm)):
        response.headers.add('WWW-Authenticate', value)
    # verification of a later request
    creds = parse_credentials(request.headers.get('Authorization'))
    state = nonces.check(creds.nonce, realm)        # STALE -> re-challenge with stale=true
    ok = state is NonceState.VALID and verify_response(creds, request.method, stored_ha1)

What the caller still has to check itself (it needs message context):

* ``creds.realm`` is the realm it challenged with, and ``creds.username`` is the user
  the HA1 belongs to;
* ``creds.uri`` matches the Request-URI (RFC 3261 section 22.4 leaves the comparison
  to the server; an exact string comparison is the usual choice);
* ``creds.opaque`` equals what was sent, when an opaque was sent.

Replay protection: nonces are stateless (a keyed BLAKE2b MAC over a timestamp, some random
bytes and the realm), so the server keeps no per-nonce state and does *not* track the
nonce-count (``nc``).  A captured request can therefore be replayed until its nonce
expires (``ttl``, five minutes by default).  For REGISTER this is harmless in
practice (a replay re-installs the same binding), and the TLS transport removes the
capture opportunity.  A deployment that needs strict one-time use must add an
``(nonce, nc)`` cache on top of :meth:`NonceManager.check`.

HA1 values: store ``compute_ha1(user, realm, password, algorithm)`` once per algorithm
that is offered; verification then never needs the clear-text password.
"""

from __future__ import annotations

import binascii
import enum
import hashlib
import hmac
import os
import re
import struct
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Final
from urllib.parse import unquote

__all__ = [
    "ALGORITHMS",
    "DigestCredentials",
    "DigestError",
    "NonceManager",
    "NonceState",
    "build_challenge",
    "build_challenges",
    "compute_ha1",
    "expected_response",
    "parse_credentials",
    "verify_response",
]

#: Base algorithms a server may offer, strongest first (the order RFC 8760 wants
#: the challenges in).  The ``-sess`` variants of both are accepted on verification.
ALGORITHMS: Final = ("MD5", "SHA-256")


class DigestError(ValueError):
    """An Authorization / Proxy-Authorization value that cannot be used."""


def _md5(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# Canonical (upper-case) algorithm token -> (hex digest function, is "-sess").
_HASHES: Final[dict[str, tuple[Callable[[bytes], str], bool]]] = {
    "MD5": (_md5, False),
    "MD5-SESS": (_md5, True),
    "SHA-256": (_sha256, False),
    "SHA-256-SESS": (_sha256, True),
}
# Canonical spelling of each accepted token, as it appears in the RFCs.
_CANONICAL: Final = {
    "MD5": "MD5", "MD5-SESS": "MD5-sess", "SHA-256": "SHA-256", "SHA-256-SESS": "SHA-256-sess"
}  # fmt: skip
_HEX_LEN: Final = {"MD5": 32, "MD5-sess": 32, "SHA-256": 64, "SHA-256-sess": 64}


def _hash_for(algorithm: str) -> tuple[Callable[[bytes], str], bool]:
    try:
        return _HASHES[algorithm.upper()]
    except KeyError:
        raise DigestError(f"unsupported digest algorithm {algorithm!r}") from None


def _canonical_algorithm(algorithm: str) -> str:
    try:
        return _CANONICAL[algorithm.upper()]
    except KeyError:
        raise DigestError(f"unsupported digest algorithm {algorithm!r}") from None


def compute_ha1(username: str, realm: str, password: str, algorithm: str = "MD5") -> str:
    """``H(username ":" realm ":" password)`` as lower-case hex.

    For the ``-sess`` algorithms this is still the value to store: the session key
    ``H(HA1 ":" nonce ":" cnonce)`` is derived per request by :func:`expected_response`.
    """
    digest, _sess = _hash_for(algorithm)
    return digest(f"{username}:{realm}:{password}".encode())


# --------------------------------------------------------------------------- parsing


@dataclass(init=False, slots=True)
class DigestCredentials:
    """The parameters of a ``Digest`` Authorization / Proxy-Authorization value.

    Treat as read-only. Built for every authenticated request, so not frozen (that would pay
    ``object.__setattr__`` for each field) and with its __init__ written out for mypyc (see
    sipsync.native)."""

    username: str
    realm: str
    nonce: str
    uri: str
    response: str
    algorithm: str
    qop: str | None
    nc: str | None
    cnonce: str | None
    opaque: str | None

    def __init__(
        self,
        username: str,
        realm: str,
        nonce: str,
        uri: str,
        response: str,
        algorithm: str = "MD5",
        qop: str | None = None,
        nc: str | None = None,
        cnonce: str | None = None,
        opaque: str | None = None,
    ) -> None:
        self.username = username
        self.realm = realm
        self.nonce = nonce
        self.uri = uri
        self.response = response
        self.algorithm = algorithm
        self.qop = qop
        self.nc = nc
        self.cnonce = cnonce
        self.opaque = opaque


# One auth-param: token "=" ( token / quoted-string ), then a comma or the end.
# Leading commas/whitespace are skipped so that empty list elements (",,") are allowed
# as RFC 7230 section 7 asks.  \s covers the CR LF of folded header lines too.
_PARAM_RE: Final = re.compile(
    r"[\s,]*"
    r"([!#$%&'*+\-.^_`|~0-9A-Za-z]+)"  # name (token)
    r"\s*=\s*"
    r'(?:"((?:[^"\\]|\\.)*)"'  # quoted-string (group 2), with quoted-pairs
    r"|([!#$%&'*+\-.^_`|~0-9A-Za-z/:@\[\]?]+))"  # or a token (group 3), lenient
    r"\s*(?:,|$)",
    re.DOTALL,
)
_UNESCAPE_RE: Final = re.compile(r"\\(.)", re.DOTALL)
_SCHEME_RE: Final = re.compile(r"\s*Digest(?:\s+|$)", re.IGNORECASE)

_MANDATORY: Final = ("username", "realm", "nonce", "uri", "response")
_MANDATORY_SET: Final = frozenset(_MANDATORY)
_LOWER_HEX: Final = frozenset("0123456789abcdef")
_ANY_HEX: Final = frozenset("0123456789abcdefABCDEF")
_QOPS: Final = frozenset({"auth", "auth-int"})


_TOKEN_CHARS: Final = frozenset(
    "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
)
_TOKEN_VALUE_CHARS: Final = _TOKEN_CHARS | frozenset("/:@[]?")  # the regular expression's lenient token


def _parse_params(text: str, pos: int) -> dict[str, str]:
    """Parameters of a credentials value. This runs on every authenticated request, so the
    common shape (no escapes, no commas inside quotes) is split with str methods and checked
    once as a whole; anything else goes through the regular expression, which also reports
    where a list is broken."""
    if "\\" in text or not text.isascii():
        return _parse_params_regex(text, pos)
    body = text[pos:]
    params: dict[str, str] = {}
    tokens: list[str] = []  # the unquoted values
    pairs = quoted = 0
    for part in body.split(","):
        name, eq, value = part.partition("=")
        if not eq:
            if name.strip():
                return _parse_params_regex(text, pos)
            continue
        value = value.strip()
        if value[:1] == '"':
            if len(value) < 2 or value[-1] != '"':
                return _parse_params_regex(text, pos)
            value = value[1:-1]
            quoted += 1
        else:
            tokens.append(value)
        params[name.strip().lower()] = value
        pairs += 1
    if (
        body.count('"') != 2 * quoted  # a quote inside a value
        or "" in params
        or not _TOKEN_CHARS.issuperset("".join(params))
        or "" in tokens
        or not _TOKEN_VALUE_CHARS.issuperset("".join(tokens))
    ):
        return _parse_params_regex(text, pos)
    if len(params) != pairs:
        return _parse_params_regex(text, pos)  # reports the duplicate
    return params


def _parse_params_regex(text: str, pos: int) -> dict[str, str]:
    params: dict[str, str] = {}
    end = len(text)
    match = _PARAM_RE.match
    while pos < end:
        m = match(text, pos)
        if m is None:
            if text[pos:].strip(" \t\r\n,"):
                raise DigestError(f"malformed digest parameters near {text[pos : pos + 20]!r}")
            break
        name = m.group(1).lower()
        quoted = m.group(2)
        if quoted is None:
            value = m.group(3)
        elif "\\" in quoted:
            value = _UNESCAPE_RE.sub(r"\1", quoted)
        else:
            value = quoted
        if name in params:
            raise DigestError(f"duplicate digest parameter {name!r}")
        params[name] = value
        pos = m.end()
    return params


def _decode_ext_value(value: str) -> str:
    """RFC 8187 ext-value (``UTF-8''percent%20encoded``), used by ``username*``."""
    charset, sep, rest = value.partition("'")
    _lang, sep2, encoded = rest.partition("'")
    if not sep or not sep2 or charset.upper() != "UTF-8":
        raise DigestError("malformed username* parameter")
    try:
        return unquote(encoded, encoding="utf-8", errors="strict")
    except UnicodeDecodeError:
        raise DigestError("malformed username* parameter") from None


def parse_credentials(header_value: str) -> DigestCredentials:
    """Parse the value of an Authorization or Proxy-Authorization header field.

    Raises :class:`DigestError` when the scheme is not Digest, the parameter list is
    malformed or has duplicates, a mandatory parameter is missing, ``qop`` is present
    without ``nc``/``cnonce`` (or is not auth/auth-int), ``nc`` is not 8 hex digits,
    ``response`` is not hex of the algorithm's length, or the algorithm is unsupported.
    Unknown parameters are ignored (RFC 7616 section 3.4).  ``userhash=true``
    (RFC 7616 section 3.4.4) is refused: this server never offers it.
    """
    if not isinstance(header_value, str):
        raise DigestError("credentials must be a string")
    m = _SCHEME_RE.match(header_value)
    if m is None:
        raise DigestError("not a Digest credentials value")
    params = _parse_params(header_value, m.end())

    if "username*" in params:
        if "username" in params:
            raise DigestError("both username and username* present")
        params["username"] = _decode_ext_value(params["username*"])
    if not _MANDATORY_SET.issubset(params):
        missing = next(name for name in _MANDATORY if name not in params)
        raise DigestError(f"missing digest parameter {missing!r}")
    if "userhash" in params and params["userhash"].lower() == "true":
        raise DigestError("userhash is not supported")

    algorithm = params.get("algorithm")
    algorithm = "MD5" if algorithm is None or algorithm == "MD5" else _canonical_algorithm(algorithm)
    response = params["response"].lower()
    if len(response) != _HEX_LEN[algorithm] or not _LOWER_HEX.issuperset(response):
        raise DigestError("digest response is not a hex digest of the right length")

    qop = params.get("qop")
    nc = params.get("nc")
    cnonce = params.get("cnonce")
    if qop is not None:
        qop = qop.lower()
        if qop not in _QOPS:
            raise DigestError(f"unsupported qop {qop!r}")
        if nc is None or cnonce is None:
            raise DigestError("qop requires nc and cnonce")
        if len(nc) != 8 or not _ANY_HEX.issuperset(nc):
            raise DigestError("nc must be 8 hex digits")
    elif algorithm.endswith("-sess") and cnonce is None:
        raise DigestError(f"{algorithm} requires cnonce")

    return DigestCredentials(
        params["username"],
        params["realm"],
        params["nonce"],
        params["uri"],
        response,
        algorithm,
        qop,
        nc,
        cnonce,
        params.get("opaque"),
    )


# ---------------------------------------------------------------------------- nonces


class NonceState(enum.Enum):
    VALID = "valid"
    STALE = "stale"  # ours (HMAC ok) but expired: re-challenge with stale=true
    INVALID = "invalid"  # forged, garbled, or issued for another realm


_TS: Final = struct.Struct(">Q")  # issue time in milliseconds
_RAND_LEN: Final = 9
_MAC_LEN: Final = 16
_BODY_LEN: Final = _TS.size + _RAND_LEN
_NONCE_LEN: Final = _BODY_LEN + _MAC_LEN  # 33 bytes -> 44 base64 characters, no padding
# base64url as base64.urlsafe_b64encode/decode make it, without their Python wrappers (a nonce is
# issued or checked on every challenged request)
_URLSAFE: Final = bytes.maketrans(b"+/", b"-_")
_STANDARD: Final = bytes.maketrans(b"-_", b"+/")


class NonceManager:
    """Stateless nonces: ``base64url(ms-timestamp || random || MAC)``.

    The MAC is keyed BLAKE2b with a 16-byte digest (RFC 7693; a MAC by construction, in one
    C call, where HMAC-SHA256 costs two hashes and a Python wrapper on every request). It
    covers the timestamp, the random bytes and the realm, so a nonce is only accepted for the
    realm it was issued for.  No server-side storage: any
    process holding the same ``secret`` can check a nonce.  See the module docstring
    about replays.
    """

    #: Tolerated clock difference for nonces stamped in the future (several
    #: processes sharing a secret may not have perfectly equal clocks).
    FUTURE_SKEW = 5.0

    __slots__ = ("_clock", "_keyed", "ttl")

    def __init__(self, secret: bytes, ttl: float = 300.0, clock: Callable[[], float] = time.time) -> None:
        if not secret:
            raise ValueError("secret must not be empty")
        if ttl <= 0:
            raise ValueError("ttl must be positive")
        key = bytes(secret)
        if len(key) > 64:  # BLAKE2b takes keys up to 64 bytes
            key = hashlib.sha256(key).digest()
        # Keyed once; each MAC starts from a copy of the keyed state.
        self._keyed = hashlib.blake2b(key=key, digest_size=_MAC_LEN)
        self.ttl = float(ttl)
        self._clock = clock

    def _mac(self, body: bytes, realm: str) -> bytes:
        mac = self._keyed.copy()
        mac.update(body + realm.encode())
        return mac.digest()

    def issue(self, realm: str) -> str:
        body = _TS.pack(int(self._clock() * 1000)) + os.urandom(_RAND_LEN)
        return binascii.b2a_base64(body + self._mac(body, realm), newline=False).translate(_URLSAFE).decode()

    def check(self, nonce: str, realm: str) -> NonceState:
        if len(nonce) != 44:
            return NonceState.INVALID
        try:
            raw = binascii.a2b_base64(nonce.encode("ascii").translate(_STANDARD))
        except (binascii.Error, UnicodeEncodeError, ValueError):
            return NonceState.INVALID
        if len(raw) != _NONCE_LEN:
            return NonceState.INVALID
        body = raw[:_BODY_LEN]
        if not hmac.compare_digest(raw[_BODY_LEN:], self._mac(body, realm)):
            return NonceState.INVALID
        age = self._clock() - _TS.unpack_from(body)[0] / 1000.0
        if age > self.ttl or age < -self.FUTURE_SKEW:
            return NonceState.STALE
        return NonceState.VALID


# ------------------------------------------------------------------------ challenges


def _quote(value: str) -> str:
    if '"' in value or "\\" in value:
        value = value.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{value}"'


def build_challenge(
    realm: str,
    nonce: str,
    *,
    algorithm: str = "MD5",
    stale: bool = False,
    qop: str | None = "auth",
    opaque: str | None = None,
) -> str:
    """The value of one WWW-Authenticate / Proxy-Authenticate header field.

    ``qop=None`` (or ``''``) produces an RFC 2069 style challenge without qop.
    """
    parts = [f"Digest realm={_quote(realm)}"]
    if qop:
        parts.append(f"qop={_quote(qop)}")
    parts.append(f"nonce={_quote(nonce)}")
    if opaque is not None:
        parts.append(f"opaque={_quote(opaque)}")
    parts.append(f"algorithm={_canonical_algorithm(algorithm)}")
    if stale:
        parts.append("stale=true")
    return ", ".join(parts)


def build_challenges(
    realm: str,
    nonce: str,
    *,
    algorithms: Iterable[str] = ("SHA-256", "MD5"),
    stale: bool = False,
    qop: str | None = "auth",
    opaque: str | None = None,
) -> list[str]:
    """One challenge per algorithm, in the given order (RFC 8760: SHA-256 before MD5).

    Add each as its own header field, in list order.  The same nonce is used for
    all of them, which RFC 7616 permits; the client answers only one.
    """
    return [
        build_challenge(realm, nonce, algorithm=alg, stale=stale, qop=qop, opaque=opaque)
        for alg in algorithms
    ]


# ---------------------------------------------------------------------- verification


def expected_response(creds: DigestCredentials, method: str, ha1: str, body: bytes = b"") -> str:
    """The request-digest the client should have sent, as lower-case hex.

    ``ha1`` is :func:`compute_ha1` for the credentials' algorithm (for ``-sess``
    algorithms pass the plain HA1; the session key is derived here).  ``body`` is
    only used with ``qop=auth-int``.  Without qop this is the RFC 2069 form.
    """
    digest, sess = _hash_for(creds.algorithm)
    if sess:
        ha1 = digest(f"{ha1}:{creds.nonce}:{creds.cnonce}".encode())
    qop = creds.qop
    if qop == "auth-int":
        ha2 = digest(f"{method}:{creds.uri}:{digest(body)}".encode())
    else:
        ha2 = digest(f"{method}:{creds.uri}".encode())
    if qop:
        return digest(f"{ha1}:{creds.nonce}:{creds.nc}:{creds.cnonce}:{qop}:{ha2}".encode())
    return digest(f"{ha1}:{creds.nonce}:{ha2}".encode())


def verify_response(creds: DigestCredentials, method: str, ha1: str, body: bytes = b"") -> bool:
    """Constant-time comparison of ``creds.response`` with :func:`expected_response`.

    Does not look at the nonce: call :meth:`NonceManager.check` as well.
    """
    response = creds.response
    if not response.isascii():
        return False
    try:
        expected = expected_response(creds, method, ha1, body)
    except DigestError:
        return False
    return hmac.compare_digest(expected, response.lower())
