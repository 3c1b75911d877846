"""Rating on the node: the rate of a number, the first charge, the cost and the longest call."""

import random
from decimal import Decimal

import pytest

from sipsync.server.rating import Rate, RateIndex

NOW = 1_800_000_000  # 2027-01-15T08:00:00Z


def rate(per_minute="0.60000", connect="0.10000", first=60, step=60, prefix="27", **dates):
    return Rate({"prefix": prefix, "price_per_minute": per_minute, "connect_fee": connect,
                 "first_increment": first, "next_increment": step, **dates})  # fmt: skip


def plan(*rates):
    return {"rates": [{**r.doc, "effective_from": r.doc.get("effective_from", "2026-01-01T00:00:00Z"),
                       "effective_to": r.doc.get("effective_to")} for r in rates]}  # fmt: skip


@pytest.mark.parametrize(
    ("seconds", "billed", "cost"),
    [(0, 0, "0.0000"), (0.2, 60, "0.7000"), (60, 60, "0.7000"), (61, 120, "1.3000"), (120, 120, "1.3000"),
     (121, 180, "1.9000")],
)  # fmt: skip
def test_cost_rounds_up_to_the_next_increment(seconds, billed, cost):
    assert rate().cost(seconds) == (billed, Decimal(cost))


def test_cost_with_a_short_next_increment_and_half_up_rounding():
    short = rate(per_minute="0.33333", connect="0", first=30, step=6)
    assert short.cost(31) == (36, Decimal("0.2000"))  # 0.33333 * 36/60 = 0.199998
    assert short.cost(10) == (30, Decimal("0.1667"))  # 0.166665 -> half up


def test_first_charge_is_connect_fee_plus_first_increment():
    assert rate().first_charge == Decimal("0.7000")
    assert rate(per_minute="0.33333", connect="0", first=30).first_charge == Decimal("0.1667")


@pytest.mark.parametrize(
    ("the_rate", "available", "cap", "expected"),
    [
        (rate(), "0.7000", 7200, 60),  # exactly connect + one increment
        (rate(), "1.2999", 7200, 60),  # a cent short of the second
        (rate(), "1.3000", 7200, 120),
        (rate(), "0.6999", 7200, 0),  # not even the first
        (rate(), "1000", 7200, 7200),  # the cap
        (rate(first=30, step=6, connect="0"), "0.7500", 7200, 72),  # 30 s + seven 6 s steps at 1 c/s
        (rate(per_minute="1.00000", connect="0", first=1, step=1), "0.0500", 7200, 3),  # 3 s at 1/min
        (rate(per_minute="0.00000"), "0.1000", 500, 500),  # free per minute: the cap
        (rate(per_minute="0.00100", connect="0", first=1, step=1), "0.0001", 7200, 8),  # cost rounds half up
    ],
)
def test_max_seconds(the_rate, available, cap, expected):
    seconds = the_rate.max_seconds(Decimal(available), cap)
    assert seconds == expected
    if seconds:
        assert the_rate.cost(seconds)[1] <= Decimal(available)
        if seconds < cap:  # one more increment would not be covered
            assert the_rate.cost(seconds + 1)[1] > Decimal(available)


def test_what_the_max_duration_allows_is_what_rating_charges():
    """For many balances the longest call allowed costs at most the balance, and a second more
    would cost more."""
    for the_rate in (rate(), rate(first=30, step=6, connect="0.05000"), rate(per_minute="0.35000")):
        for cents in range(70, 2000, 37):
            available = Decimal(cents) / 100
            seconds = the_rate.max_seconds(available, 10**6)
            assert the_rate.cost(seconds)[1] <= available < the_rate.cost(seconds + 1)[1]


def test_longest_prefix_in_effect_wins():
    index = RateIndex(plan(rate(prefix="27"), rate(prefix="2782"),
                           rate(prefix="27821", effective_from="2030-01-01T00:00:00Z")))  # fmt: skip
    assert index.find("27821234567", NOW).prefix == "2782"  # 27821 is not in effect yet
    assert index.find("27115550100", NOW).prefix == "27"
    assert index.find("44123", NOW) is None
    assert index.find("", NOW) is None
    assert RateIndex({"rates": []}).find("27115550100", NOW) is None


def test_a_price_change_takes_effect_at_its_moment_and_the_first_rate_in_effect_wins():
    old = rate(prefix="2711", per_minute="0.50000", effective_to="2027-01-15T08:00:00Z")
    new = rate(prefix="2711", per_minute="0.40000", effective_from="2027-01-15T08:00:00Z")
    overlapping = rate(prefix="2711", per_minute="0.30000", effective_from="2027-01-15T08:00:00+00:00")
    index = RateIndex(plan(old, new, overlapping, rate(prefix="27")))
    change = NOW
    assert index.find("27115550100", change - 1).per_minute == Decimal("0.50000")
    assert index.find("27115550100", change).per_minute == Decimal("0.40000")
    assert index.find("27115550100", change + 10**6).per_minute == Decimal("0.40000")
    expired = RateIndex(plan(old, rate(prefix="27")))
    assert expired.find("27115550100", change).prefix == "27"  # the shorter prefix still applies


def test_the_index_agrees_with_a_scan_of_every_rate_on_a_large_deck():
    """10,000 prefixes, some with a window that has not started or has ended: the index finds what
    scanning every rate for the longest prefix in effect finds."""
    rng = random.Random(20261124)
    windows = [{}, {"effective_from": "2030-01-01T00:00:00Z"}, {"effective_to": "2026-06-01T00:00:00Z"}]
    prefixes = {"".join(rng.choice("0123456789") for _ in range(rng.randint(1, 7))) for _ in range(10_000)}
    deck = [rate(prefix=p, per_minute=f"0.{i % 90 + 10:02d}000", **rng.choice(windows))
            for i, p in enumerate(sorted(prefixes))]  # fmt: skip
    index = RateIndex(plan(*deck))
    in_effect = [r for r in deck if r.in_effect(NOW)]

    def scan(digits):
        matching = [r for r in in_effect if digits.startswith(r.prefix)]
        return max(matching, key=lambda r: len(r.prefix), default=None)

    found = 0
    for _ in range(2_000):
        digits = "".join(rng.choice("0123456789") for _ in range(rng.randint(0, 15)))
        expected = scan(digits)
        got = index.find(digits, NOW)
        assert (got and got.doc["prefix"]) == (expected and expected.doc["prefix"]), digits
        found += got is not None
    assert found > 500  # the comparison covered many numbers that have a rate
