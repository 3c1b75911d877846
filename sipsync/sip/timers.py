"""SIP transaction timer values (RFC 3261 section 17, table 4; RFC 6026) and the timer queues.

Nothing here reads a clock: deadlines are plain numbers on whatever monotonic time
base the owner uses (``loop.time()`` in the server, bare floats in tests).
"""

from __future__ import annotations

import heapq
import itertools
from collections import deque
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
    """Named one-shot timers per owner, in deadline order.

    ``set(owner, name, deadline)`` replaces any pending timer of the same name for that owner;
    ``cancel`` / ``cancel_all`` remove them. Entries fire in deadline order, ties in the order
    they were set.

    Timers of one name nearly always have one duration (Timer B, F, H, J, L and M are 64*T1, K
    and I are T4, C the ring timeout), so each name has a queue that takes an entry at its tail
    while deadlines come in order: O(1), where a single heap of every timer (hundreds of thousands
    at a few thousand calls a second, each 32 s long) cost a sift through it per set and per
    pop. An entry that would go before its queue's tail (a retransmission interval that doubled,
    a call's maximum duration) goes to a heap instead; the earliest timer is the earliest head
    of the queues and the heap.

    Removal is lazy: a cancelled or replaced entry stays until it reaches the head of its queue
    (or the heap's top) and is then dropped; when stale entries dominate, all are swept. The
    earliest entry is remembered until something could change it, so asking for the next
    deadline after every message costs no walk over the queues.
    """

    __slots__ = ('_lanes', '_heap', '_live', '_seq', '_held', '_first')

    def __init__(self) -> None:
        # entries are (deadline, seq, owner, name); one is live iff _live[(owner, name)] == seq
        self._lanes: dict[str, deque[tuple[float, int, Hashable, str]]] = {}
        self._heap: list[tuple[float, int, Hashable, str]] = []
        self._live: dict[tuple[Hashable, str], int] = {}
        self._seq = itertools.count()
        self._held = 0  # entries in the queues and the heap, live or stale
        self._first: tuple[float, int, Hashable, str] | None = None  # the earliest, if known

    def __len__(self) -> int:
        return len(self._live)

    def set(self, owner: Hashable, name: str, deadline: float) -> None:
        seq = next(self._seq)
        key = (owner, name)
        self._live[key] = seq
        entry = (deadline, seq, owner, name)
        first = self._first
        if first is not None:
            if (first[2], first[3]) == key:
                self._first = None  # replaced: the earliest is to be found again
            elif deadline < first[0]:
                self._first = entry  # (a tie goes after the known earliest, which was set first)
        lane = self._lanes.get(name)
        if lane is None:
            lane = self._lanes[name] = deque()
        if not lane or lane[-1][0] <= deadline:
            lane.append(entry)
        else:
            heapq.heappush(self._heap, entry)
        self._held += 1
        if self._held > 64 and self._held > 4 * len(self._live):
            self._compact()

    def cancel(self, owner: Hashable, name: str) -> bool:
        first = self._first
        if first is not None and first[3] == name and first[2] == owner:
            self._first = None
        return self._live.pop((owner, name), None) is not None

    def cancel_all(self, owner: Hashable, names: tuple[str, ...] | list[str]) -> None:
        first = self._first
        if first is not None and first[2] == owner:
            self._first = None
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
        for entry in itertools.chain(self._heap, *self._lanes.values()):
            if entry[1] == seq:
                return entry[0]
        return None  # pragma: no cover - _live and the entries always agree

    def _compact(self) -> None:
        live = self._live
        for name, lane in self._lanes.items():
            self._lanes[name] = deque(e for e in lane if live.get((e[2], e[3])) == e[1])
        self._heap = [e for e in self._heap if live.get((e[2], e[3])) == e[1]]
        heapq.heapify(self._heap)
        self._held = len(live)
        self._first = None

    def _earliest(self) -> tuple[float, int, Hashable, str] | None:
        """The earliest live entry (left in place), dropping the stale ones in front of it."""
        if self._first is not None:
            return self._first
        live = self._live
        best: tuple[float, int, Hashable, str] | None = None
        for lane in self._lanes.values():
            while lane:
                head = lane[0]
                if live.get((head[2], head[3])) == head[1]:
                    if best is None or _before(head, best):
                        best = head
                    break
                lane.popleft()
                self._held -= 1
        heap = self._heap
        while heap:
            top = heap[0]
            if live.get((top[2], top[3])) == top[1]:
                if best is None or _before(top, best):
                    best = top
                break
            heapq.heappop(heap)
            self._held -= 1
        self._first = best
        return best

    def next_deadline(self) -> float | None:
        earliest = self._earliest()
        return earliest[0] if earliest is not None else None

    def pop_due(self, now: float) -> tuple[Hashable, str] | None:
        """Remove and return the earliest live timer with ``deadline <= now``, if any.

        One at a time, so that a handler may set or cancel timers (including ones
        that are also due) before the next is taken.
        """
        earliest = self._earliest()
        if earliest is None or earliest[0] > now:
            return None
        heap = self._heap
        if heap and heap[0][1] == earliest[1]:  # by seq: compiled code copies the tuples
            heapq.heappop(heap)
        else:
            self._lanes[earliest[3]].popleft()  # the head of its name's queue
        self._held -= 1
        self._first = None
        owner, name = earliest[2], earliest[3]
        del self._live[(owner, name)]
        return owner, name


def _before(a: tuple[float, int, Hashable, str], b: tuple[float, int, Hashable, str]) -> bool:
    """Whether entry ``a`` fires before ``b``: by deadline, ties in the order they were set."""
    return a[0] < b[0] or (a[0] == b[0] and a[1] < b[1])
