"""Error types of the SIP message layer."""

from __future__ import annotations


class SipParseError(ValueError):
    """The one error type for any malformed SIP input.

    ``header`` names the header field at fault when known (e.g. ``'Via'``), so that a
    server can answer with a precise ``400 Bad Request - malformed Via``.
    """

    def __init__(self, message: str, header: str | None = None) -> None:
        super().__init__(message)
        self.header = header


class UnsupportedVersion(SipParseError):
    """The start line names a SIP version other than 2.0 (answer 505)."""


class UnsupportedUriScheme(SipParseError):
    """A URI uses a scheme other than sip, sips or tel (answer 416 for a Request-URI)."""

    def __init__(self, message: str, scheme: str, header: str | None = None) -> None:
        super().__init__(message, header)
        self.scheme = scheme
