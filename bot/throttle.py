"""Per-user pacing of searches: at most one a `interval`, the overflow queued, then refused.

Why queue rather than refuse: a photographer who pastes three descriptions in a row means all
three, so they are answered one a second (the user is told once that they are queued) instead
of being dropped. Only when more than `max_queued` are already waiting is a search refused
with a polite "send it again", which bounds the work and the memory one user can cause.

Pure logic with an injected clock, so the tests run without sleeping; the handler awaits
`Decision.delay` before searching.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from time import monotonic


@dataclass(frozen=True)
class Decision:
    """What to do with one search: wait `delay` seconds first, or refuse it."""

    accepted: bool
    delay: float = 0.0
    # True for the first queued search of a burst: tell the user they are being slowed down.
    notify: bool = False


@dataclass
class _UserState:
    next_slot: float  # when this user's next search may start
    notified: bool = False


class Throttle:
    """Slots searches `interval` seconds apart per user; thread-unsafe, call from the loop."""

    def __init__(
        self,
        interval: float = 1.0,
        max_queued: int = 3,
        clock: Callable[[], float] = monotonic,
        prune_above: int = 10_000,
    ) -> None:
        if interval < 0 or max_queued < 0:
            raise ValueError("interval and max_queued must be non-negative")
        self.interval = interval
        self.max_queued = max_queued
        self._clock = clock
        self._users: dict[int, _UserState] = {}
        self._prune_above = prune_above

    def reserve(self, user_id: int) -> Decision:
        """Take the user's next slot: now when they are idle, later when they are not."""
        now = self._clock()
        state = self._users.get(user_id)
        if state is None or state.next_slot <= now:
            if len(self._users) >= self._prune_above:
                self._prune(now)
            self._users[user_id] = _UserState(next_slot=now + self.interval)
            return Decision(accepted=True)
        delay = state.next_slot - now
        queued = delay / self.interval if self.interval else 0.0
        # `queued` counts the searches ahead of this one, itself excluded (rounding guards
        # against float error in repeated additions).
        if round(queued, 6) > self.max_queued:
            return Decision(accepted=False, delay=delay)
        notify = not state.notified
        state.notified = True
        state.next_slot += self.interval
        return Decision(accepted=True, delay=delay, notify=notify)

    def _prune(self, now: float) -> None:
        """Forget idle users, so the table stays as small as the set of active ones."""
        for user_id in [u for u, s in self._users.items() if s.next_slot <= now]:
            del self._users[user_id]

    def __len__(self) -> int:
        return len(self._users)


class Pacer:
    """Lets an action through at most once every `interval` seconds (progress-message edits:
    Telegram rate-limits edits of one message, and nobody reads faster than that anyway)."""

    def __init__(self, interval: float, clock: Callable[[], float] = monotonic) -> None:
        self.interval = interval
        self._clock = clock
        self._last: float | None = None

    def ready(self) -> bool:
        now = self._clock()
        if self._last is not None and now - self._last < self.interval:
            return False
        self._last = now
        return True
