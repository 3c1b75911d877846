"""The transaction timers: deadline order, replacement, cancellation and stale entries."""

import random

from sipsync.sip.timers import TimerWheel


def held(w):
    """Entries the wheel holds, live or stale."""
    return w._held


def test_timer_wheel_order_replace_cancel():
    w = TimerWheel()
    a, b = object(), object()
    assert w.next_deadline() is None
    w.set(a, 'X', 5.0)
    w.set(b, 'Y', 3.0)
    w.set(a, 'Z', 3.0)
    assert w.next_deadline() == 3.0
    w.set(b, 'Y', 7.0)  # replaces the earlier Y
    assert w.deadline(b, 'Y') == 7.0
    assert w.cancel(a, 'Z') is True
    assert w.cancel(a, 'Z') is False
    assert w.next_deadline() == 5.0
    assert w.pop_due(4.9) is None
    assert w.pop_due(10.0) == (a, 'X')
    assert w.pop_due(10.0) == (b, 'Y')
    assert w.pop_due(10.0) is None
    assert len(w) == 0 and w.next_deadline() is None


def test_timer_wheel_ties_fire_in_insertion_order_and_compaction():
    w = TimerWheel()
    owners = [object() for _ in range(5)]
    for o in owners:
        w.set(o, 'T', 1.0)
    assert [w.pop_due(1.0)[0] for _ in owners] == owners
    o = object()
    for i in range(1000):  # lots of re-arming: stale entries must not pile up
        w.set(o, 'T', float(i))
    assert len(w) == 1
    assert held(w) <= 64 * 4
    assert w.pop_due(1e9) == (o, 'T')


def test_the_wheel_agrees_with_a_plain_model_under_random_use():
    """Sets on a coarse grid (many ties), re-arms, cancels and pops, with the clock now and then
    stepping back, checked step by step against a dict."""
    rng = random.Random(20261124)
    w = TimerWheel()
    model: dict[tuple, tuple[float, int]] = {}  # (owner, name) -> (deadline, order set)
    def owner() -> str:  # equal owners, not always the same object, as a dict matches them
        return f'txn{rng.randrange(60)}'

    now, order = 0.0, 0
    for step in range(20_000):
        roll = rng.random()
        if roll < 0.5:
            key = (owner(), rng.choice('ABCDEFGHIJKLM'))
            deadline = now + rng.choice((0.5, 1.0, 2.0, 4.0, 5.0, 32.0, rng.randint(0, 80) / 2))
            w.set(*key, deadline)
            model[key] = (deadline, order)
            order += 1
            assert held(w) <= max(64, 4 * len(model))  # stale entries are swept as they come
        elif roll < 0.65:
            key = (owner(), rng.choice('ABCDEFGHIJKLM'))
            assert w.cancel(*key) is (model.pop(key, None) is not None)
        elif roll < 0.95:
            now += rng.choice((0, 0.25, 0.5)) if rng.random() < 0.97 else -rng.choice((0.5, 1, 3))
            while True:
                due = [(deadline, n, key) for key, (deadline, n) in model.items() if deadline <= now]
                got = w.pop_due(now)
                if not due:
                    assert got is None, step
                    break
                expected = min(due)[2]
                assert got == expected, step
                del model[expected]
        expected_next = min(model.values())[0] if model else None
        assert w.next_deadline() == expected_next, step
        assert len(w) == len(model)
