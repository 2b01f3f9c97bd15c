"""Per-object retry timing for `watch`: exponential backoff after failures and a cap on repairs (restart storms).

Pure bookkeeping over an injected clock; the controller decides what a failure or a repair is.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from datetime import UTC, datetime

# client-go starts at 5 ms and Flux at 750 ms; an engine call that failed rarely succeeds a few ms later.
BASE_DELAY = 1.0
FACTOR = 2.0
MAX_DELAY = 300.0
# doco-cd's numbers: at most 5 repairs of one object in 300 s, then back off.
MAX_REPAIRS = 5
REPAIR_WINDOW = 300.0


def delay_for(failures: int, base: float = BASE_DELAY, factor: float = FACTOR, cap: float = MAX_DELAY) -> float:
    """Seconds to wait after the `failures`-th consecutive failure (1 -> base, 2 -> base*factor, ... <= cap)."""
    if failures <= 0:
        return 0.0
    return min(cap, base * factor ** min(failures - 1, 64))


@dataclass
class Retry:
    """One object's failure record: how often in a row, the last error, when it may be tried again."""

    failures: int
    error: str
    not_before: float  # monotonic clock
    not_before_wall: float  # wall clock, for people (`status`)
    reason: str = "failed"  # "failed" or "repair-storm"
    permanent: bool = False  # no timer: held until released (the manifest or the object changed, a resync)

    @property
    def next_retry_iso(self) -> str | None:
        if self.permanent:
            return None
        return datetime.fromtimestamp(self.not_before_wall, UTC).isoformat(timespec="seconds")


@dataclass
class Backoff:
    """Exponential backoff per key, reset on success. `clock`/`wall` are injectable for tests."""

    base: float = BASE_DELAY
    factor: float = FACTOR
    cap: float = MAX_DELAY
    clock: Callable[[], float] = time.monotonic
    wall: Callable[[], float] = time.time
    entries: dict[Hashable, Retry] = field(default_factory=dict)

    def failed(
        self, key: Hashable, error: str, delay: float | None = None, reason: str = "failed", permanent: bool = False
    ) -> Retry:
        """Record one more failure of `key`; `delay` (e.g. a TemporaryError's own) overrides the computed one.
        A `permanent` failure gets no timer: it is held until `release`d."""
        failures = self.entries[key].failures + 1 if key in self.entries else 1
        if permanent:
            retry = Retry(failures, error, float("inf"), float("inf"), reason, permanent=True)
        else:
            wait = delay if delay is not None else delay_for(failures, self.base, self.factor, self.cap)
            wait = min(wait, self.cap)
            retry = Retry(failures, error, self.clock() + wait, self.wall() + wait, reason)
        self.entries[key] = retry
        return retry

    def release(self, key: Hashable) -> None:
        """Let a held permanent failure be tried in the next pass (its failure count is kept)."""
        retry = self.entries.get(key)
        if retry is not None and retry.permanent:
            retry.not_before = retry.not_before_wall = 0.0
            retry.permanent = False

    def release_permanent(self) -> list[Hashable]:
        """Release every held permanent failure; the keys released."""
        held = [key for key, retry in self.entries.items() if retry.permanent]
        for key in held:
            self.release(key)
        return held

    def succeeded(self, key: Hashable) -> bool:
        """Forget `key`'s failures; True when there were any (the object recovered)."""
        return self.entries.pop(key, None) is not None

    def held(self, key: Hashable) -> Retry | None:
        """The record of `key` when it must still wait, else None."""
        retry = self.entries.get(key)
        if retry is not None and retry.not_before > self.clock():
            return retry
        return None

    def next_due(self, after: float | None = None) -> float | None:
        """Monotonic time of the earliest retry later than `after` (default: now), or None. A caller that last
        looked at the entries at time `after` passes it: a retry that fell due since is due now, not lost."""
        since = self.clock() if after is None else after
        due = [r.not_before for r in self.entries.values() if r.not_before > since and not r.permanent]
        return min(due) if due else None

    def forget_except(self, keys: set[Hashable]) -> None:
        """Drop records of objects no longer declared or observed."""
        for key in [k for k in self.entries if k not in keys]:
            del self.entries[key]


@dataclass
class RepairLimiter:
    """Counts repairs (an object re-applied although its manifest did not change) in a sliding window."""

    limit: int = MAX_REPAIRS
    window: float = REPAIR_WINDOW
    clock: Callable[[], float] = time.monotonic
    times: dict[Hashable, deque[float]] = field(default_factory=dict)

    def record(self, key: Hashable) -> int:
        """Note one repair of `key` now; return how many happened within the window (this one included)."""
        now = self.clock()
        stamps = self.times.setdefault(key, deque())
        stamps.append(now)
        while stamps and stamps[0] <= now - self.window:
            stamps.popleft()
        return len(stamps)

    def exceeded(self, key: Hashable) -> bool:
        """True when `key` was repaired `limit` times within the window: the next repair must wait."""
        now = self.clock()
        stamps = self.times.get(key)
        if not stamps:
            return False
        while stamps and stamps[0] <= now - self.window:
            stamps.popleft()
        return len(stamps) >= self.limit

    def forget(self, key: Hashable) -> None:
        """Drop `key`'s repair history (its manifest changed: the next repair starts a new count)."""
        self.times.pop(key, None)

    def forget_except(self, keys: set[Hashable]) -> None:
        """Drop the history of objects no longer declared or observed, and of any whose repairs all left the
        window (an empty history and a missing one mean the same)."""
        now = self.clock()
        for key in list(self.times):
            stamps = self.times[key]
            if key not in keys or not stamps or stamps[-1] <= now - self.window:
                del self.times[key]

    def retry_after(self, key: Hashable) -> float:
        """Seconds until the oldest repair of `key` leaves the window."""
        stamps = self.times.get(key)
        if not stamps:
            return 0.0
        return max(0.0, stamps[0] + self.window - self.clock())
