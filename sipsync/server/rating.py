"""Rating on the node: the rate of a number, what a call must pay up front, and what it costs.

``RateIndex(plan).find(digits, now)``: the longest prefix of the E.164 digits among the plan's
rates in effect at ``now`` (``effective_from <= now < effective_to``); where several rates of
that prefix are in effect, the first in the plan. If no rate of the longest matching prefix is
in effect, the next shorter prefix is tried. The index is built once per plan version, so a
lookup costs at most one dictionary probe per digit, however many rates the plan holds.

``Rate.cost(seconds)``: the call's duration in whole seconds is rounded *up* (a started second
counts); it is then billed as ``first_increment`` seconds if not longer than that, else
``first_increment`` plus the rest rounded *up* to a whole number of ``next_increment``\\ s.
``cost = connect_fee + price_per_minute * billed_seconds / 60``, quantised to 4 decimal places
with ROUND_HALF_UP. An unanswered call (or one of zero seconds) costs nothing, not even the
connect fee. Example: 61 s at 60/60 bills 120 s. The portal rates its records by the same rule.

``Rate.max_seconds(available, cap)``: the longest call ``available`` pays for: the first
increment plus as many whole next increments as fit, never more than ``cap``.
"""

from __future__ import annotations

import math
from datetime import datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

__all__ = ["NO_COST", "ZERO", "Rate", "RateIndex"]

ZERO = Decimal("0")
_PLACES = Decimal("0.0001")
NO_COST = ZERO.quantize(_PLACES)
_SIXTY = Decimal(60)


def _epoch(text: str | None) -> float | None:
    return None if text is None else datetime.fromisoformat(text).timestamp()


class Rate:
    """One rate of a plan, its figures read once. ``doc`` is the rate as provisioned: what call
    records and the call state in the store carry (read it, do not change it)."""

    __slots__ = (
        "connect_fee", "doc", "ends", "first", "first_charge", "per_minute", "prefix", "starts", "step",
    )  # fmt: skip

    def __init__(self, doc: dict[str, Any]) -> None:
        self.doc = doc
        self.prefix: str = doc["prefix"]
        self.connect_fee = Decimal(doc["connect_fee"])
        self.per_minute = Decimal(doc["price_per_minute"])
        self.first = int(doc["first_increment"])
        self.step = int(doc["next_increment"])
        self.starts = _epoch(doc.get("effective_from"))
        self.ends = _epoch(doc.get("effective_to"))
        # what a call must be able to pay before it starts: the connect fee and the first increment
        self.first_charge: Decimal = (self.connect_fee + self.per_minute * self.first / _SIXTY).quantize(
            _PLACES, ROUND_HALF_UP
        )

    def in_effect(self, now: float) -> bool:
        return (self.starts is None or self.starts <= now) and (self.ends is None or now < self.ends)

    def billed_seconds(self, seconds: float) -> int:
        whole = math.ceil(seconds - 1e-9)
        if whole <= self.first:
            return self.first
        return self.first + math.ceil((whole - self.first) / self.step) * self.step

    def cost(self, seconds: float) -> tuple[int, Decimal]:
        """``(billed seconds, cost)`` of an answered call of ``seconds`` (see the module doc)."""
        if seconds <= 0:
            return 0, NO_COST
        billed = self.billed_seconds(seconds)
        if billed == self.first:
            return billed, self.first_charge
        cost = self.connect_fee + self.per_minute * billed / _SIXTY
        return billed, cost.quantize(_PLACES, ROUND_HALF_UP)

    def max_seconds(self, available: Decimal, cap: int) -> int:
        """The longest call (whole seconds) ``available`` pays for, at most ``cap``: 0 if it does
        not even cover the first increment; ``cap`` if the rate is free per minute."""
        if self.first_charge > available:
            return 0
        if self.per_minute <= 0:
            return cap
        first, step = self.first, self.step
        left = available - self.connect_fee - self.per_minute * first / _SIXTY
        seconds = first + max(0, int(left / (self.per_minute * step / _SIXTY))) * step
        if seconds > cap:
            return max(cap, 1)
        # the division above is inexact and the cost is quantised: settle on the exact boundary
        while seconds > first and self.cost(seconds)[1] > available:
            seconds -= step
        while seconds + step <= cap and self.cost(seconds + step)[1] <= available:
            seconds += step
        return seconds

    def __repr__(self) -> str:
        return f"Rate({self.doc!r})"


class RateIndex:
    """A rate plan's rates by prefix (see the module doc)."""

    __slots__ = ("_by_prefix", "_longest")

    def __init__(self, plan: dict[str, Any]) -> None:
        self._by_prefix: dict[str, list[Rate]] = {}
        for doc in plan.get("rates", ()):
            rate = Rate(doc)
            self._by_prefix.setdefault(rate.prefix, []).append(rate)
        self._longest = max(map(len, self._by_prefix), default=0)

    def find(self, digits: str, now: float) -> Rate | None:
        by_prefix = self._by_prefix
        for length in range(min(len(digits), self._longest), 0, -1):
            rates = by_prefix.get(digits[:length])
            if rates is not None:
                for rate in rates:
                    if rate.in_effect(now):
                        return rate
        return None
