"""Just enough SDP (RFC 4566) for a PBX: read the media lines, filter codecs, write it back."""

from __future__ import annotations

from .errors import SipParseError

# RFC 3551 static payload types
STATIC_PAYLOADS = {
    "0": "PCMU", "3": "GSM", "4": "G723", "5": "DVI4", "6": "DVI4", "7": "LPC", "8": "PCMA",
    "9": "G722", "10": "L16", "11": "L16", "12": "QCELP", "13": "CN", "14": "MPA", "15": "G728",
    "16": "DVI4", "17": "DVI4", "18": "G729", "25": "CELB", "26": "JPEG", "28": "NV", "31": "H261",
    "32": "MPV", "33": "MP2T", "34": "H263",
}
_ALWAYS_KEPT = "TELEPHONE-EVENT"
_NOT_CODECS = frozenset((_ALWAYS_KEPT, "CN"))
_PT_ATTRIBUTES = frozenset(("rtpmap", "fmtp", "rtcp-fb"))


class Media:
    """One ``m=`` section: ``m=<kind> <port>[/<count>] <proto> <fmt> ...`` plus its lines."""

    __slots__ = ("kind", "port", "port_count", "proto", "formats", "lines", "attributes")

    def __init__(
        self,
        kind: str,
        port: int,
        proto: str,
        formats: list[str],
        attributes: list[tuple[str, str | None]] | None = None,
        lines: list[tuple[str, str]] | None = None,
        port_count: int | None = None,
    ) -> None:
        self.kind = kind
        self.port = port
        self.port_count = port_count
        self.proto = proto
        self.formats = formats
        self.lines = lines if lines is not None else []  # i=, c=, b=, k= lines, in order
        self.attributes = attributes if attributes is not None else []

    @classmethod
    def _parse_m_line(cls, value: str) -> Media:
        parts = value.split()
        if len(parts) < 3:
            raise SipParseError("malformed SDP m= line")
        port_text, _, count_text = parts[1].partition("/")
        if not port_text.isascii() or not port_text.isdigit() or int(port_text) > 65535:
            raise SipParseError("malformed SDP media port")
        count = None
        if count_text:
            if not count_text.isascii() or not count_text.isdigit():
                raise SipParseError("malformed SDP media port count")
            count = int(count_text)
        return cls(parts[0], int(port_text), parts[2], parts[3:], port_count=count)

    @property
    def connection(self) -> str | None:
        return next((value for kind, value in self.lines if kind == "c"), None)

    def attribute(self, name: str) -> str | None:
        return next((value for n, value in self.attributes if n == name), None)

    def rtpmap(self) -> dict[str, str]:
        """Payload type to encoding name (upper-case) from the a=rtpmap lines."""
        out = {}
        for name, value in self.attributes:
            if name == "rtpmap" and value:
                pt, _, rest = value.partition(" ")
                out[pt] = rest.strip().split("/", 1)[0].upper()
        return out

    def codec_names(self) -> list[tuple[str, str]]:
        """``(payload type, encoding name)`` per format; ``''`` when a dynamic type has no rtpmap."""
        mapping = self.rtpmap()
        return [(pt, mapping.get(pt) or STATIC_PAYLOADS.get(pt, "")) for pt in self.formats]

    def m_line(self) -> str:
        port = f"{self.port}/{self.port_count}" if self.port_count is not None else str(self.port)
        return " ".join([self.kind, port, self.proto, *self.formats])

    def copy(self) -> Media:
        return Media(
            self.kind, self.port, self.proto, list(self.formats), list(self.attributes), list(self.lines),
            self.port_count,
        )


class SessionDescription:
    __slots__ = ("lines", "media")

    def __init__(self, lines: list[tuple[str, str]] | None = None, media: list[Media] | None = None) -> None:
        self.lines = lines if lines is not None else []  # session-level lines (a= included), in order
        self.media = media if media is not None else []

    @classmethod
    def parse(cls, data: bytes | str) -> SessionDescription:
        text = data.decode("utf-8", "surrogateescape") if isinstance(data, bytes | bytearray) else data
        sdp = cls()
        current: Media | None = None
        for raw in text.split("\n"):
            line = raw.removesuffix("\r")
            if not line:
                continue
            kind, eq, value = line.partition("=")
            if not eq or len(kind) != 1 or not kind.isascii() or not kind.isalpha():
                raise SipParseError(f"malformed SDP line {line[:30]!r}")
            if kind == "m":
                current = Media._parse_m_line(value)
                sdp.media.append(current)
            elif current is None:
                sdp.lines.append((kind, value))
            elif kind == "a":
                name, colon, attr_value = value.partition(":")
                current.attributes.append((name, attr_value if colon else None))
            else:
                current.lines.append((kind, value))
        if not sdp.lines or sdp.lines[0][0] != "v":
            raise SipParseError("SDP does not start with v=")
        return sdp

    @property
    def connection(self) -> str | None:
        return next((value for kind, value in self.lines if kind == "c"), None)

    def to_bytes(self) -> bytes:
        out = [f"{kind}={value}" for kind, value in self.lines]
        for media in self.media:
            out.append("m=" + media.m_line())
            out.extend(f"{kind}={value}" for kind, value in media.lines)
            out.extend(
                f"a={name}" if value is None else f"a={name}:{value}" for name, value in media.attributes
            )
        return ("\r\n".join(out) + "\r\n").encode("utf-8", "surrogateescape")

    def __str__(self) -> str:
        return self.to_bytes().decode("utf-8", "surrogateescape")

    def copy(self) -> SessionDescription:
        return SessionDescription(list(self.lines), [m.copy() for m in self.media])


def filter_codecs(sdp: SessionDescription, allowed: list[str]) -> SessionDescription:
    """A copy of ``sdp`` whose audio m-lines keep only ``allowed`` encodings (and telephone-event).

    The rtpmap/fmtp/rtcp-fb lines of removed payload types are dropped. An audio m-line left
    without any allowed codec is rejected the RFC 3264 way: port 0, formats left as they were.
    When every format of every audio m-line is allowed, ``sdp`` itself is returned (nothing to
    copy or serialise again: a caller may relay the offer as it came).
    """
    wanted = {name.upper() for name in allowed}
    if all(
        name in wanted or name == _ALWAYS_KEPT
        for media in sdp.media
        if media.kind == "audio"
        for _, name in media.codec_names()
    ):
        return sdp
    result = sdp.copy()
    for media in result.media:
        if media.kind != "audio":
            continue
        names = dict(media.codec_names())
        keep = [pt for pt in media.formats if names[pt] in wanted or names[pt] == _ALWAYS_KEPT]
        if not any(names[pt] != _ALWAYS_KEPT for pt in keep):
            media.port = 0
            continue
        removed = set(media.formats) - set(keep)
        media.formats = keep
        media.attributes = [
            (name, value)
            for name, value in media.attributes
            if not (name in _PT_ATTRIBUTES and value and value.split(" ", 1)[0] in removed)
        ]
    return result


def offered_codecs(sdp: SessionDescription) -> list[str]:
    """Encoding names offered in the audio m-lines, in order, without telephone-event and CN."""
    out: list[str] = []
    for media in sdp.media:
        if media.kind != "audio":
            continue
        for _, name in media.codec_names():
            if name and name not in _NOT_CODECS and name not in out:
                out.append(name)
    return out
