"""Diagnostic events the SIP service spools for the portal.

Every rejection the service sends (a final response >= 300 it generates
itself, other than an authentication challenge) is recorded as an event: a
flat JSON-able dict appended to the :class:`~sipsync.server.store.LocalStore`
event queue, where it gets a monotonically increasing id on the next flush.
The portal's collector reads them with ``store.events_after(cursor)`` and
acknowledges with ``store.ack_events(upto)``.  Call records will be spooled the
same way through :meth:`EventRecorder.record`.

Shape of a rejection event::

    {"kind": "rejection", "time": "2026-11-24T08:00:00.123Z", "node": "sip1",
     "method": "REGISTER", "code": 403, "reason_phrase": "Forbidden",
     "cause": "account_disabled", "account": "acme1001@sip.example.net",
     "source_ip": "198.51.100.7", "source_port": 5060,
     "user_agent": "Yealink SIP-T46U", "call_id": "...", "detail": {...}}

``time`` is ISO-8601 UTC with milliseconds.  Free-text fields that come from
the network (user agent, Call-ID) are cut to a bounded length.

A flood (a scanner hammering the service) must not turn into a flood of
rows: at most ``max_per_second`` events are stored per clock second; the
rest are counted and summarised by one ``{"kind": "suppressed", "count": n,
...}`` event when the next second's first event arrives (or on
:meth:`EventRecorder.flush_suppressed`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:  # pragma: no cover
    from sipsync.server.store import LocalStore

__all__ = ["CALL_RECORD_KIND", "EventRecorder", "iso_utc"]

CALL_RECORD_KIND = "call"

_MAX_TEXT = 256


# the text of recent whole seconds: every event and call record is stamped, mostly in the same second
_SECONDS: Final[dict[int, str]] = {}
# '000' to '999': mypyc turns a format spec in an f-string into str.format, which perf showed
# taking 3 % of a call's CPU for this one field
_MILLISECONDS: Final = [f"{ms:03d}" for ms in range(1000)]


def iso_utc(t: float) -> str:
    """Epoch seconds -> '2026-11-24T08:00:00.123Z' (microseconds rounded half to even, then cut
    to milliseconds, as ``datetime.fromtimestamp(t, UTC).isoformat(timespec="milliseconds")``)."""
    whole = math.floor(t)
    micro = round((t - whole) * 1_000_000)
    if micro >= 1_000_000:
        whole += 1
        micro -= 1_000_000
    second = _SECONDS.get(whole)
    if second is None:
        if len(_SECONDS) >= 16:
            _SECONDS.clear()
        second = _SECONDS[whole] = datetime.fromtimestamp(whole, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{second}.{_MILLISECONDS[micro // 1000]}Z"


def _cut(s: str | None) -> str | None:
    if s is None or len(s) <= _MAX_TEXT:
        return s
    return s[:_MAX_TEXT]


class EventRecorder:
    """Builds event dicts and queues them on the store (the caller flushes)."""

    def __init__(
        self,
        store: LocalStore,
        clock: Callable[[], float] = time.time,
        node: str = "local",
        *,
        max_per_second: int | None = 1000,
    ) -> None:
        self._store = store
        self._clock = clock
        self.node = node
        self.max_per_second = max_per_second
        self._window = -1
        self._in_window = 0
        self._suppressed = 0
        self._suppressed_since: float | None = None
        self.recorded = 0
        self.suppressed_total = 0

    def record(self, kind: str, fields: dict[str, Any], *, now: float | None = None) -> dict[str, Any]:
        """Queue an event of ``kind`` with ``fields``; returns the event dict.

        The dict is returned even when the event was suppressed by the rate
        cap (so the caller can still log it). Call records (kind "call") are
        money: they are never suppressed.
        """
        if now is None:
            now = self._clock()
        event: dict[str, Any] = {"kind": kind, "time": iso_utc(now), "node": self.node}
        event.update(fields)
        if kind == CALL_RECORD_KIND:
            self._store.append_event(event)
            self.recorded += 1
            return event
        window = int(now)
        if window != self._window:
            self._window = window
            self._in_window = 0
            self.flush_suppressed(now=now)
        cap = self.max_per_second
        if cap is not None and self._in_window >= cap:
            if self._suppressed == 0:
                self._suppressed_since = now
            self._suppressed += 1
            self.suppressed_total += 1
            return event
        self._in_window += 1
        self._store.append_event(event)
        self.recorded += 1
        return event

    def rejection(
        self,
        *,
        method: str,
        code: int,
        cause: str,
        reason_phrase: str,
        account: str | None,
        source: tuple[str, int],
        user_agent: str | None,
        call_id: str | None,
        detail: dict[str, Any] | None = None,
        now: float | None = None,
    ) -> dict[str, Any]:
        """Record a rejection the service sent; returns the event dict."""
        fields: dict[str, Any] = {
            "method": method,
            "code": int(code),
            "reason_phrase": reason_phrase,
            "cause": cause,
            "account": account,
            "source_ip": source[0],
            "source_port": int(source[1]),
            "user_agent": _cut(user_agent),
            "call_id": _cut(call_id),
        }
        if detail:
            fields["detail"] = detail
        return self.record("rejection", fields, now=now)

    def flush_suppressed(self, *, now: float | None = None) -> dict[str, Any] | None:
        """Queue the summary of events dropped by the rate cap, if any."""
        if not self._suppressed:
            return None
        if now is None:
            now = self._clock()
        event = {
            "kind": "suppressed",
            "time": iso_utc(now),
            "node": self.node,
            "count": self._suppressed,
            "since": iso_utc(self._suppressed_since if self._suppressed_since is not None else now),
        }
        self._suppressed = 0
        self._suppressed_since = None
        self._store.append_event(event)
        return event
