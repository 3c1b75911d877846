"""SIP transaction timer values (RFC 3261 section 17, table 4; RFC 6026) and a timer heap.

Nothing here reads a clock: deadlines are plain numbers on whatever monotonic time
base the owner uses (``loop.time()`` in the server, bare floats in tests).
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Hashable
from dataclasses import dataclass

__all__ = ['TimerConfig', 'TimerWheel']


@dataclass(frozen=True, slots=True)
class TimerConfig:
    """Base timers; every other timer is derived from these as RFC 3261 table 4 says.

    Values that depend on the transport take ``reliable`` (TCP/TLS/SCTP: ``True``):
    those timers exist only to absorb retransmissions, which a reliable transport
    does not produce, so they are zero there.
    """

    T1: float = 0.5  # RTT estimate
    T2: float = 4.0  # maximum retransmit interval for non-INVITE requests and INVITE responses
    T4: float = 5.0  # maximum duration a message remains in the network

    def __post_init__(self) -> None:
        if not (0 < self.T1 <= self.T2) or self.T4 < 0:
            raise ValueError('timer values need 0 < T1 <= T2 and T4 >= 0')

    # INVITE client transaction
    @property
    def timer_a(self) -> float:
        """Initial INVITE retransmit interval (unreliable only); doubles each time."""
        return self.T1

    @property
    def timer_b(self) -> float:
        """INVITE transaction timeout."""
        return 64 * self.T1

    def timer_d(self, reliable: bool) -> float:
        """Wait time for response retransmits: at least 32 s unreliable, 0 reliable.

        Never shorter than 64*T1, so a larger T1 still covers the server's Timer H.
        """
        return 0.0 if reliable else max(32.0, 64 * self.T1)

    # non-INVITE client transaction
    @property
    def timer_e(self) -> float:
        """Initial non-INVITE retransmit interval (unreliable only); doubles up to T2."""
        return self.T1

    @property
    def timer_f(self) -> float:
        """Non-INVITE transaction timeout."""
        return 64 * self.T1

    def timer_k(self, reliable: bool) -> float:
        """Wait time for response retransmits: T4 unreliable, 0 reliable."""
        return 0.0 if reliable else self.T4

    # INVITE server transaction
    @property
    def timer_g(self) -> float:
        """Initial INVITE final-response retransmit interval (unreliable only); doubles up to T2."""
        return self.T1

    @property
    def timer_h(self) -> float:
        """Wait time for ACK receipt."""
        return 64 * self.T1

    def timer_i(self, reliable: bool) -> float:
        """Wait time for ACK retransmits: T4 unreliable, 0 reliable."""
        return 0.0 if reliable else self.T4

    # non-INVITE server transaction
    def timer_j(self, reliable: bool) -> float:
        """Wait time for non-INVITE request retransmits: 64*T1 unreliable, 0 reliable."""
        return 0.0 if reliable else 64 * self.T1

    # RFC 6026
    @property
    def timer_l(self) -> float:
        """Server INVITE: wait time in Accepted for INVITE retransmissions."""
        return 64 * self.T1

    @property
    def timer_m(self) -> float:
        """Client INVITE: wait time in Accepted for retransmitted (or forked) 2xx."""
        return 64 * self.T1

    def backoff(self, interval: float, cap: float | None = None) -> float:
        """The next retransmit interval after ``interval``: doubled, capped at ``cap``."""
        nxt = interval * 2
        return nxt if cap is None or nxt < cap else cap


class TimerWheel:
    """Named one-shot timers per owner, kept in a binary heap.

    ``set(owner, name, deadline)`` replaces any pending timer of the same name for
    that owner; ``cancel`` / ``cancel_all`` remove them.  Removal is lazy: the heap
    keeps a stale entry that is skipped when it surfaces (and the heap is compacted
    when stale entries dominate), so every operation is O(log n) or better.

    Entries fire in deadline order, ties in the order they were set.
    """

    __slots__ = ('_heap', '_live', '_seq')

    def __init__(self) -> None:
        # (deadline, seq, owner, name); an entry is live iff _live[(owner, name)] == seq
        self._heap: list[tuple[float, int, Hashable, str]] = []
        self._live: dict[tuple[Hashable, str], int] = {}
        self._seq = itertools.count()

    def __len__(self) -> int:
        return len(self._live)

    def set(self, owner: Hashable, name: str, deadline: float) -> None:
        seq = next(self._seq)
        self._live[(owner, name)] = seq
        heapq.heappush(self._heap, (deadline, seq, owner, name))
        if len(self._heap) > 64 and len(self._heap) > 4 * len(self._live):
            self._compact()

    def cancel(self, owner: Hashable, name: str) -> bool:
        return self._live.pop((owner, name), None) is not None

    def cancel_all(self, owner: Hashable, names: tuple[str, ...] | list[str]) -> None:
        live = self._live
        for name in names:
            live.pop((owner, name), None)

    def pending(self, owner: Hashable, name: str) -> bool:
        return (owner, name) in self._live

    def deadline(self, owner: Hashable, name: str) -> float | None:
        """Deadline of a pending timer (O(n); meant for tests and debugging)."""
        seq = self._live.get((owner, name))
        if seq is None:
            return None
        for entry in self._heap:
            if entry[1] == seq:
                return entry[0]
        return None  # pragma: no cover - _live and _heap always agree

    def _drop_stale_top(self) -> None:
        heap, live = self._heap, self._live
        while heap:
            _deadline, seq, owner, name = heap[0]
            if live.get((owner, name)) == seq:
                return
            heapq.heappop(heap)

    def _compact(self) -> None:
        live = self._live
        self._heap = [e for e in self._heap if live.get((e[2], e[3])) == e[1]]
        heapq.heapify(self._heap)

    def next_deadline(self) -> float | None:
        self._drop_stale_top()
        return self._heap[0][0] if self._heap else None

    def pop_due(self, now: float) -> tuple[Hashable, str] | None:
        """Remove and return the earliest live timer with ``deadline <= now``, if any.

        One at a time, so that a handler may set or cancel timers (including ones
        that are also due) before the next is taken.
        """
        self._drop_stale_top()
        heap = self._heap
        if not heap or heap[0][0] > now:
            return None
        _deadline, _seq, owner, name = heapq.heappop(heap)
        del self._live[(owner, name)]
        return owner, name
