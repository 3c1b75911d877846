"""SIP requests and responses: ordered raw headers plus lazily parsed, cached typed views."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, Final

from .errors import SipParseError, UnsupportedUriScheme
from .headers import CSeq, Via, split_header_values
from .uri import TOKEN_CHARS, NameAddr, SipUri, parse_uint

COMPACT_FORMS: Final = {
    "v": "Via",
    "f": "From",
    "t": "To",
    "i": "Call-ID",
    "m": "Contact",
    "l": "Content-Length",
    "c": "Content-Type",
    "k": "Supported",
    "s": "Subject",
    "e": "Content-Encoding",
    "o": "Event",
    "r": "Refer-To",
    "b": "Referred-By",
    "x": "Session-Expires",
    "u": "Allow-Events",
    "a": "Accept-Contact",
    "j": "Reject-Contact",
    "d": "Request-Disposition",
    "y": "Identity",
    "n": "Identity-Info",
}

_KNOWN_NAMES = [
    "Accept",
    "Accept-Contact",
    "Accept-Encoding",
    "Accept-Language",
    "Alert-Info",
    "Allow",
    "Allow-Events",
    "Authentication-Info",
    "Authorization",
    "Call-ID",
    "Call-Info",
    "Contact",
    "Content-Disposition",
    "Content-Encoding",
    "Content-Language",
    "Content-Length",
    "Content-Type",
    "CSeq",
    "Date",
    "Error-Info",
    "Event",
    "Expires",
    "From",
    "History-Info",
    "Identity",
    "Identity-Info",
    "In-Reply-To",
    "Max-Forwards",
    "Min-Expires",
    "Min-SE",
    "MIME-Version",
    "Organization",
    "P-Asserted-Identity",
    "P-Preferred-Identity",
    "Path",
    "Priority",
    "Privacy",
    "Proxy-Authenticate",
    "Proxy-Authorization",
    "Proxy-Require",
    "RAck",
    "Reason",
    "Record-Route",
    "Refer-To",
    "Referred-By",
    "Reject-Contact",
    "Replaces",
    "Reply-To",
    "Request-Disposition",
    "Require",
    "Retry-After",
    "Route",
    "RSeq",
    "Server",
    "Service-Route",
    "Session-Expires",
    "Subject",
    "Subscription-State",
    "Supported",
    "Timestamp",
    "To",
    "Unsupported",
    "User-Agent",
    "Via",
    "Warning",
    "WWW-Authenticate",
]
CANONICAL_NAMES: Final[dict[str, str]] = {name.lower(): name for name in _KNOWN_NAMES}
CANONICAL_NAMES.update(COMPACT_FORMS)

# Headers whose values are comma-separated lists (RFC 3261 7.3.1). Deliberately excludes the
# auth headers, Date, and anything unknown, whose values may contain unquoted commas.
LIST_HEADERS: Final = frozenset(
    name.lower()
    for name in (
        "Via",
        "Contact",
        "Route",
        "Record-Route",
        "Path",
        "Service-Route",
        "Allow",
        "Supported",
        "Require",
        "Proxy-Require",
        "Unsupported",
        "Accept",
        "Accept-Encoding",
        "Accept-Language",
        "Allow-Events",
        "Content-Encoding",
        "Content-Language",
        "In-Reply-To",
        "Alert-Info",
        "Call-Info",
        "Error-Info",
        "Warning",
        "P-Asserted-Identity",
        "P-Preferred-Identity",
        "History-Info",
        "Reason",
        "Accept-Contact",
        "Reject-Contact",
        "Request-Disposition",
    )
)

REASON_PHRASES: Final[dict[int, str]] = {
    100: "Trying",
    180: "Ringing",
    181: "Call Is Being Forwarded",
    182: "Queued",
    183: "Session Progress",
    199: "Early Dialog Terminated",
    200: "OK",
    202: "Accepted",
    204: "No Notification",
    300: "Multiple Choices",
    301: "Moved Permanently",
    302: "Moved Temporarily",
    305: "Use Proxy",
    380: "Alternative Service",
    400: "Bad Request",
    401: "Unauthorized",
    402: "Payment Required",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    406: "Not Acceptable",
    407: "Proxy Authentication Required",
    408: "Request Timeout",
    410: "Gone",
    412: "Conditional Request Failed",
    413: "Request Entity Too Large",
    414: "Request-URI Too Long",
    415: "Unsupported Media Type",
    416: "Unsupported URI Scheme",
    417: "Unknown Resource-Priority",
    420: "Bad Extension",
    421: "Extension Required",
    422: "Session Interval Too Small",
    423: "Interval Too Brief",
    428: "Use Identity Header",
    429: "Provide Referrer Identity",
    433: "Anonymity Disallowed",
    436: "Bad Identity-Info",
    437: "Unsupported Certificate",
    438: "Invalid Identity Header",
    439: "First Hop Lacks Outbound Support",
    440: "Max-Breadth Exceeded",
    469: "Bad Info Package",
    470: "Consent Needed",
    480: "Temporarily Unavailable",
    481: "Call/Transaction Does Not Exist",
    482: "Loop Detected",
    483: "Too Many Hops",
    484: "Address Incomplete",
    485: "Ambiguous",
    486: "Busy Here",
    487: "Request Terminated",
    488: "Not Acceptable Here",
    489: "Bad Event",
    491: "Request Pending",
    493: "Undecipherable",
    494: "Security Agreement Required",
    500: "Server Internal Error",
    501: "Not Implemented",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Server Time-out",
    505: "Version Not Supported",
    513: "Message Too Large",
    555: "Push Notification Service Not Supported",
    580: "Precondition Failure",
    600: "Busy Everywhere",
    603: "Decline",
    604: "Does Not Exist Anywhere",
    606: "Not Acceptable",
    607: "Unwanted",
    608: "Rejected",
}
_CLASS_PHRASES: Final = {
    1: "Trying",
    2: "OK",
    3: "Redirected",
    4: "Client Error",
    5: "Server Error",
    6: "Global Failure",
}

_name_cache: Final[dict[str, tuple[str, str]]] = {}
_SINGLE_KEYS: Final = {
    name: name.lower()
    for name in ("Call-ID", "CSeq", "From", "To", "Max-Forwards", "Expires", "Content-Type")
}


def normalize_name(name: str) -> tuple[str, str]:
    """Return ``(lowercase key, canonical name)`` for a header name; compact forms are expanded."""
    hit = _name_cache.get(name)
    if hit is not None:
        return hit
    key = name.lower()
    canonical = CANONICAL_NAMES.get(key)
    if canonical is None:
        canonical = name
    else:
        key = canonical.lower()
    result = (key, canonical)
    if len(_name_cache) < 4096:
        _name_cache[name] = result
    return result


def _check_header_text(name: str, value: str) -> None:
    if "\r" in value or "\n" in value or not TOKEN_CHARS.issuperset(name) or not name:
        raise ValueError(f"invalid header {name!r}: {value[:40]!r}")


class Headers:
    """Ordered ``(name, value)`` header fields with case-insensitive lookups.

    Also owns the cache of parsed typed views (see ``SipMessage``) and the index of first values;
    a mutation drops the views of the header it changed and updates that header's index entry (a
    proxy rewrites Via, Route and Max-Forwards, and From, To and CSeq stay parsed).
    """

    __slots__ = ("_items", "_cache")

    def __init__(
        self, items: Iterable[tuple[str, str]] = (), parsed: list[tuple[str, str, str]] | None = None
    ) -> None:
        """``items`` are checked name/value pairs; ``parsed`` (key, name, value) triples the parser
        or this class already checked, taken as they are."""
        self._items: list[tuple[str, str, str]] = parsed if parsed is not None else []
        self._cache: dict[str, Any] = {}
        for name, value in items:
            self.add(name, value)

    @classmethod
    def _from_parsed(cls, items: list[tuple[str, str, str]]) -> Headers:
        return Headers((), items)

    @classmethod
    def from_trusted(cls, items: Iterable[tuple[str, str]]) -> Headers:
        """Headers from values this process built itself or already parsed from the wire (so
        without CR/LF): names are normalised, values not checked again (a server building many
        requests, e.g. NOTIFYs, saves the check)."""
        return cls._from_parsed([(*normalize_name(name), value) for name, value in items])

    def get(self, name: str, default: str | None = None) -> str | None:
        key = normalize_name(name)[0]
        index = self._cache.get("")
        if index is not None:
            return index[0].get(key, default)
        for k, _, value in self._items:
            if k == key:
                return value
        return default

    def _index(self) -> tuple[dict[str, str], set[str]]:
        """First value per key, and the keys that occur more than once; cached until a mutation."""
        index = self._cache.get("")
        if index is None:
            items = self._items
            first = {k: value for k, _, value in reversed(items)}
            repeated: set[str] = set()
            if len(first) != len(items):
                seen: set[str] = set()
                for k, _, _ in items:
                    if k in seen:
                        repeated.add(k)
                    seen.add(k)
            index = self._cache[""] = (first, repeated)
        return index

    def get_all(self, name: str) -> list[str]:
        key = normalize_name(name)[0]
        index, repeated = self._index()
        if key not in repeated:  # at most one field: the index has it (the common case)
            value = index.get(key)
            if value is None:
                return []
            if key in LIST_HEADERS:
                return split_header_values(value)
            return [value]
        if key in LIST_HEADERS:
            out: list[str] = []
            for k, _, value in self._items:
                if k == key:
                    out += split_header_values(value)
            return out
        return [value for k, _, value in self._items if k == key]

    def get_first_value(self, name: str) -> str | None:
        """First element of a (possibly comma-separated) header, e.g. the top Via."""
        value = self.get(name)
        if value is None:
            return None
        key = normalize_name(name)[0]
        if key in LIST_HEADERS and "," in value:
            parts = split_header_values(value)
            return parts[0] if parts else ""
        return value

    def _changed(self, key: str) -> tuple[dict[str, str], set[str]] | None:
        """The fields of ``key`` changed: their parsed views go. Returns the index for the caller
        to bring up to date for that key alone (None: not built), which each mutation does
        from what it knows, without a scan (rebuilding it after every change cost more than all
        the rest)."""
        cache = self._cache
        if not cache:
            return None
        views = _VIEWS_OF.get(key)
        if views is not None:
            for view in views:
                cache.pop(view, None)
        cache.pop(_INT_VIEW + key, None)
        return cache.get("")

    def add(self, name: str, value: str) -> None:
        _check_header_text(name, value)
        key, canonical = normalize_name(name)
        self._items.append((key, canonical, value))
        index = self._changed(key)
        if index is not None:
            if key in index[0]:
                index[1].add(key)
            else:
                index[0][key] = value

    def _first_at(self, key: str) -> int:
        """Position of the first field of ``key``, -1 if none (a loop, which mypyc compiles
        inline, where a generator expression is an object per call)."""
        for i, item in enumerate(self._items):
            if item[0] == key:
                return i
        return -1

    def insert_first(self, name: str, value: str) -> None:
        _check_header_text(name, value)
        key, canonical = normalize_name(name)
        at = self._first_at(key)
        self._items.insert(max(at, 0), (key, canonical, value))
        index = self._changed(key)
        if index is not None:
            index[0][key] = value
            if at >= 0:
                index[1].add(key)

    def set(self, name: str, value: str) -> None:
        _check_header_text(name, value)
        key, canonical = normalize_name(name)
        at = self._first_at(key)
        if at < 0:
            at = len(self._items)
        self._items = [item for item in self._items if item[0] != key]
        self._items.insert(at, (key, canonical, value))
        index = self._changed(key)
        if index is not None:
            index[0][key] = value
            index[1].discard(key)

    def remove(self, name: str) -> int:
        key = normalize_name(name)[0]
        before = len(self._items)
        self._items = [item for item in self._items if item[0] != key]
        if len(self._items) != before:
            index = self._changed(key)
            if index is not None:
                index[0].pop(key, None)
                index[1].discard(key)
        return before - len(self._items)

    def replace_first(self, name: str, value: str) -> bool:
        """Put ``value`` in place of the first value of ``name`` (the first element, in a
        comma-separated field); False, and nothing changed, when there is none."""
        _check_header_text(name, value)
        key, canonical = normalize_name(name)
        at = self._first_at(key)
        if at < 0:
            return False
        old = self._items[at][2]
        if key in LIST_HEADERS and "," in old:
            parts = split_header_values(old)
            if len(parts) > 1:
                value = ", ".join([value, *parts[1:]])
        self._items[at] = (key, canonical, value)
        index = self._changed(key)
        if index is not None:
            index[0][key] = value  # still first; still as many fields
        return True

    def remove_first(self, name: str) -> str | None:
        key = normalize_name(name)[0]
        items = self._items
        for i, (k, canonical, value) in enumerate(items):
            if k != key:
                continue
            if key in LIST_HEADERS and "," in value:
                parts = split_header_values(value)
                if len(parts) > 1:
                    rest = ", ".join(parts[1:])
                    items[i] = (k, canonical, rest)
                    index = self._changed(key)
                    if index is not None:
                        index[0][key] = rest  # still first; still as many fields
                    return parts[0]
            del items[i]
            index = self._changed(key)
            if index is not None:
                first, repeated = index
                if key in repeated:  # the next field of ``key`` comes first now
                    later = [v for k2, _, v in items[i:] if k2 == key]
                    first[key] = later[0]
                    if len(later) == 1:
                        repeated.discard(key)
                else:
                    first.pop(key, None)
            return value
        return None

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        key = normalize_name(name)[0]
        return any(k == key for k, _, _ in self._items)

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return ((name, value) for _, name, value in self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"Headers({list(self)!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Headers):
            return NotImplemented
        return [(k, v) for k, _, v in self._items] == [(k, v) for k, _, v in other._items]

    __hash__ = None  # type: ignore[assignment]

    def copy(self) -> Headers:
        copied = Headers._from_parsed(list(self._items))
        index = self._cache.get("")
        if index is not None:  # the parsed views stay behind: each message parses its own
            copied._cache[""] = (dict(index[0]), set(index[1]))
        return copied


class SipMessage:
    """Common part of requests and responses.

    Typed accessors parse their header on first use and cache the result in ``headers``;
    they raise ``SipParseError`` when the header is malformed, or missing where mandatory.
    Parsed objects are views: mutate the message through ``headers`` (which clears the cache).
    """

    __slots__ = ("headers", "body", "version")

    def __init__(self, headers: Headers | None = None, body: bytes = b"", version: str = "SIP/2.0") -> None:
        self.headers = headers if headers is not None else Headers()
        self.body = body
        self.version = version

    # --- typed accessors -----------------------------------------------------------------

    def _single(self, name: str) -> str | None:
        """The value of a header that may occur at most once (RFC 3261 7.3.1)."""
        index, repeated = self.headers._index()
        key = _SINGLE_KEYS[name]
        if key in repeated:
            raise SipParseError(f"multiple {name} headers", name)
        return index.get(key)

    def _required(self, name: str) -> str:
        value = self._single(name)
        if value is None:
            raise SipParseError(f"missing {name}", name)
        return value

    @property
    def vias(self) -> list[Via]:
        cache = self.headers._cache
        vias = cache.get("vias")
        if vias is None:
            values = self.headers.get_all("Via")
            if not values:
                raise SipParseError("missing Via", "Via")
            vias = cache["vias"] = [Via.parse(v) for v in values]
        return vias

    @property
    def via(self) -> Via:
        cache = self.headers._cache
        via = cache.get("via")
        if via is None:
            value = self.headers._index()[0].get("via")  # get_first_value("Via"), on the hot path
            if value is not None and "," in value:
                parts = split_header_values(value)
                value = parts[0] if parts else ""
            if not value:
                raise SipParseError("missing Via", "Via")
            via = cache["via"] = Via.parse(value)
        return via

    def replace_top_via(self, via: Via) -> None:
        """Put ``via`` in place of the topmost Via value, its parsed view kept (a proxy stamping
        received/rport need not parse what it just built)."""
        headers = self.headers
        if not headers.replace_first("Via", str(via)):
            raise SipParseError("missing Via", "Via")
        headers._cache["via"] = via

    def push_via(self, via: Via, text: str | None = None) -> None:
        """Add ``via`` as the topmost Via value, its parsed view kept; ``text`` is ``str(via)``
        when the caller has it already (a proxy's own Via, on every request it forwards)."""
        headers = self.headers
        headers.insert_first("Via", str(via) if text is None else text)
        headers._cache["via"] = via

    @property
    def call_id(self) -> str:
        cache = self.headers._cache
        call_id = cache.get("call_id")
        if call_id is None:
            call_id = self._required("Call-ID")
            if not call_id or " " in call_id or "\t" in call_id:
                raise SipParseError("malformed Call-ID", "Call-ID")
            cache["call_id"] = call_id
        return call_id

    @property
    def cseq(self) -> CSeq:
        cache = self.headers._cache
        cseq = cache.get("cseq")
        if cseq is None:
            cseq = cache["cseq"] = CSeq.parse(self._required("CSeq"))
        return cseq

    @property
    def from_(self) -> NameAddr:
        cache = self.headers._cache
        addr = cache.get("from")
        if addr is None:
            addr = cache["from"] = NameAddr.parse(self._required("From"), "From")
        return addr

    @property
    def to(self) -> NameAddr:
        cache = self.headers._cache
        addr = cache.get("to")
        if addr is None:
            addr = cache["to"] = NameAddr.parse(self._required("To"), "To")
        return addr

    @property
    def contacts(self) -> list[NameAddr]:
        """Contact bindings; empty for ``Contact: *`` (see ``contact_star``) or no Contact."""
        cache = self.headers._cache
        contacts = cache.get("contacts")
        if contacts is None:
            values = self.headers.get_all("Contact")
            if values == ["*"]:
                contacts = []
            elif "*" in values:
                raise SipParseError("malformed Contact: '*' mixed with addresses", "Contact")
            else:
                contacts = [NameAddr.parse(v, "Contact") for v in values]
            cache["contacts"] = contacts
        return contacts

    @property
    def contact_star(self) -> bool:
        return self.headers.get_all("Contact") == ["*"]

    def _uint_header(self, name: str, limit: int) -> int | None:
        cache = self.headers._cache
        key = _INT_VIEW + normalize_name(name)[0]
        if key in cache:
            return cache[key]
        value = self._single(name)
        number = None if value is None else parse_uint(value.strip(), name, limit, name)
        cache[key] = number
        return number

    @property
    def max_forwards(self) -> int | None:
        return self._uint_header("Max-Forwards", 255)

    @property
    def expires(self) -> int | None:
        return self._uint_header("Expires", 2**32 - 1)

    @property
    def content_type(self) -> str | None:
        value = self.headers.get("Content-Type")
        return value.strip() if value is not None else None

    @property
    def is_request(self) -> bool:
        return isinstance(self, Request)

    # --- serialisation -------------------------------------------------------------------

    def start_line(self) -> str:
        raise NotImplementedError

    def to_bytes(self) -> bytes:
        lines = [self.start_line()]
        length_done = False
        for key, name, value in self.headers._items:
            if key == "content-length":
                if length_done:
                    continue
                length_done = True
                value = str(len(self.body))
            lines.append(f"{name}: {value}")
        if not length_done:
            lines.append(f"Content-Length: {len(self.body)}")
        lines.append("\r\n")
        return "\r\n".join(lines).encode("utf-8", "surrogateescape") + self.body

    def __bytes__(self) -> bytes:
        return self.to_bytes()


class Request(SipMessage):
    __slots__ = ("method", "raw_uri", "_uri")

    def __init__(
        self,
        method: str,
        uri: SipUri | str,
        headers: Headers | None = None,
        body: bytes = b"",
        version: str = "SIP/2.0",
    ) -> None:
        super().__init__(headers, body, version)
        self.method = method
        if isinstance(uri, SipUri):
            self._uri: SipUri | None = uri
            self.raw_uri = str(uri)
        else:
            self._uri = None
            self.raw_uri = uri

    @property
    def uri(self) -> SipUri:
        """The parsed Request-URI (``UnsupportedUriScheme`` for e.g. an http: URI: answer 416)."""
        uri = self._uri
        if uri is None:
            try:
                uri = SipUri.parse(self.raw_uri)
            except UnsupportedUriScheme as unsupported:
                unsupported.header = "Request-URI"
                raise
            except SipParseError as error:
                raise SipParseError(f"malformed Request-URI ({error})", "Request-URI") from None
            if uri.headers:
                raise SipParseError("headers not allowed in Request-URI", "Request-URI")
            self._uri = uri
        return uri

    @uri.setter
    def uri(self, uri: SipUri) -> None:
        self._uri = uri
        self.raw_uri = str(uri)

    def start_line(self) -> str:
        # a mutated SipUri object must be reflected: re-serialise when it was parsed or set
        raw = str(self._uri) if self._uri is not None else self.raw_uri
        return f"{self.method} {raw} {self.version}"

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.raw_uri}>"


class Response(SipMessage):
    __slots__ = ("status", "reason")

    def __init__(
        self,
        status: int,
        reason: str | None = None,
        headers: Headers | None = None,
        body: bytes = b"",
        version: str = "SIP/2.0",
    ) -> None:
        super().__init__(headers, body, version)
        self.status = status
        self.reason = default_reason(status) if reason is None else reason

    def start_line(self) -> str:
        return f"{self.version} {self.status} {self.reason}"

    def __repr__(self) -> str:
        return f"<Response {self.status} {self.reason}>"


def default_reason(status: int) -> str:
    return REASON_PHRASES.get(status) or _CLASS_PHRASES.get(status // 100, "Unknown")


def make_response(
    request: Request,
    status: int,
    reason: str | None = None,
    *,
    to_tag: str | None = None,
    extra_headers: Iterable[tuple[str, str]] = (),
) -> Response:
    """Build a response to ``request`` per RFC 3261 8.2.6 (Via, From, To, Call-ID, CSeq copied)."""
    items: list[tuple[str, str, str]] = []
    for key, name, value in request.headers._items:
        if key in _COPIED:
            if key == "to" and to_tag is not None and not _has_tag(request):
                value = f"{value};tag={to_tag}"
            items.append((key, name, value))
    headers = Headers._from_parsed(items)
    for name, value in extra_headers:
        headers.add(name, value)
    return Response(status, reason, headers, version="SIP/2.0")


def render_response(
    request: Request,
    status: int,
    reason: str | None = None,
    *,
    to_tag: str | None = None,
    top_via: str | None = None,
    extra_headers: Iterable[tuple[str, str]] = (),
) -> bytes:
    """The bytes of a body-less response to ``request``: what ``make_response(...).to_bytes()``
    gives, without building the intermediate message (a stateless server answers every request).

    ``top_via`` replaces the first Via value (e.g. with received/rport filled in).
    """
    lines = [f"SIP/2.0 {status} {default_reason(status) if reason is None else reason}"]
    for key, name, value in request.headers._items:
        if key not in _COPIED:
            continue
        if key == "via" and top_via is not None:
            rest = split_header_values(value)[1:] if "," in value else []
            value = ", ".join([top_via, *rest])
            top_via = None
        elif key == "to" and to_tag is not None and ("tag" not in value or not _has_tag(request)):
            value = f"{value};tag={to_tag}"
        lines.append(f"{name}: {value}")
    for name, value in extra_headers:
        _check_header_text(name, value)
        lines.append(f"{name}: {value}")
    lines.append("Content-Length: 0\r\n\r\n")
    return "\r\n".join(lines).encode("utf-8", "surrogateescape")


_COPIED: Final = frozenset(("via", "from", "to", "call-id", "cseq"))
# the typed views (``SipMessage`` accessors) cached in ``Headers._cache`` under each header key;
# integer headers' views are found by their key (_INT_VIEW), whichever header it is
_VIEWS_OF: Final = {
    "via": ("via", "vias"),
    "call-id": ("call_id",),
    "cseq": ("cseq",),
    "from": ("from",),
    "to": ("to",),
    "contact": ("contacts",),
}
_INT_VIEW: Final = "int:"  # + the header key: an unsigned integer header's value (_uint_header)


def _has_tag(request: Request) -> bool:
    try:
        return request.to.tag is not None
    except SipParseError:  # answering a malformed request: look at the raw text
        return ";tag=" in (request.headers.get("To") or "").replace(" ", "").lower()
