"""Per-user pacing: one search a second, the overflow queued, then refused; the pacer."""

from __future__ import annotations

from bot.throttle import Pacer, Throttle


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_idle_user_goes_at_once() -> None:
    clock = Clock()
    throttle = Throttle(1.0, 3, clock=clock)
    first = throttle.reserve(1)
    assert first.accepted and first.delay == 0 and not first.notify
    clock.now += 1.0
    again = throttle.reserve(1)
    assert again.accepted and again.delay == 0


def test_burst_is_spaced_one_a_second_then_refused() -> None:
    clock = Clock()
    throttle = Throttle(1.0, 3, clock=clock)
    decisions = [throttle.reserve(7) for _ in range(6)]
    assert [d.accepted for d in decisions] == [True, True, True, True, False, False]
    assert [round(d.delay, 6) for d in decisions[:4]] == [0.0, 1.0, 2.0, 3.0]
    assert [d.notify for d in decisions[:4]] == [False, True, False, False]
    # Refusals take no slot: after the queue drains the user goes at once again.
    clock.now += 4.0
    assert throttle.reserve(7).delay == 0


def test_users_do_not_slow_each_other() -> None:
    clock = Clock()
    throttle = Throttle(1.0, 0, clock=clock)
    assert throttle.reserve(1).delay == 0
    assert throttle.reserve(2).delay == 0
    assert not throttle.reserve(1).accepted  # no queue allowed


def test_notice_is_once_per_burst() -> None:
    clock = Clock()
    throttle = Throttle(1.0, 3, clock=clock)
    throttle.reserve(1)
    assert throttle.reserve(1).notify
    clock.now += 5
    throttle.reserve(1)
    assert throttle.reserve(1).notify


def test_zero_interval_never_waits() -> None:
    throttle = Throttle(0.0, 0, clock=Clock())
    for _ in range(5):
        decision = throttle.reserve(1)
        assert decision.accepted and decision.delay == 0


def test_idle_users_are_pruned() -> None:
    clock = Clock()
    throttle = Throttle(1.0, 3, clock=clock, prune_above=10)
    for user in range(10):
        throttle.reserve(user)
    clock.now += 2
    throttle.reserve(99)
    assert len(throttle) == 1


def test_pacer() -> None:
    clock = Clock()
    pacer = Pacer(3.0, clock=clock)
    assert pacer.ready()
    clock.now += 1
    assert not pacer.ready()
    clock.now += 2
    assert pacer.ready()
