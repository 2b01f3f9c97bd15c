"""What `watch` remembers of each object between passes, and when it may try a failed one again.

One `ObjectRecord` per object, in one of three states (`State`):

    applied            in sync or applied; remembers the spec it had (`applied`), so that applying the same spec
                       again is recognised as a repair (something on the host undid it)
    failing-temporary  failed; tried again when its timer runs out (exponential backoff, `OBJECT_RETRY` in
                       reconciler/delays.py, or the driver's own delay), at once when its manifest changes;
                       a repair storm (too many repairs, `RepairLimiter`) holds an object the same way
    held-permanent     failed in a way a retry cannot fix; no timer: held until its manifest changes, the object
                       changes on the host, a resync or an engine restart releases it (it is then failing and due)

    (none) --success--> applied --failure--> failing-temporary / held-permanent
    failing / held --success--> applied (the failure is forgotten)
    failing / held --manifest edited--> its failure is forgotten: tried in this pass (repairs counted afresh)
    held --object changed, resync, engine restart--> failing, due at once (its failure count is kept)

`FailureMemory` holds the records, the repair counts and the time of the next due retry. Pure bookkeeping over
an injected clock: the controller decides what a failure, a repair or a change is (it passes fingerprints).
"""

from __future__ import annotations

import enum
import time
from collections import deque
from collections.abc import Callable, Hashable
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Generic, TypeVar

from reconciler.delays import OBJECT_RETRY, Exponential

# doco-cd's numbers: at most 5 repairs of one object in 300 s, then back off.
MAX_REPAIRS = 5
REPAIR_WINDOW = 300.0

K = TypeVar("K", bound=Hashable)


class State(enum.Enum):
    APPLIED = "applied"
    FAILING = "failing-temporary"
    HELD = "held-permanent"


class _FirstLook:
    def __repr__(self) -> str:
        return "FIRST_LOOK"


FIRST_LOOK = _FirstLook()  # `Retry.seen`: the object was not observed since the failure yet


@dataclass
class Retry:
    """One object's failure: how often in a row, the last error, when it may be tried again, and what the
    manifest asked (`desired`) and the host showed (`seen`) then, to tell whether either changed since."""

    failures: int
    error: str
    not_before: float  # monotonic clock
    not_before_wall: float  # wall clock, for people (`status`)
    reason: str = "failed"  # "failed" or "repair-storm"
    permanent: bool = False  # no timer: held until released (the manifest or the object changed, a resync)
    desired: str | None = None  # fingerprint of the manifest's spec when it failed
    seen: object = None  # fingerprint of what was observed in the first pass after the failure (or FIRST_LOOK)
    watch_object: bool = False  # whether a change of the observed object releases it (failures, not storms)
    log_tail: tuple[str, ...] = ()  # the failing container's last output lines (masked)

    @property
    def next_retry_iso(self) -> str | None:
        if self.permanent:
            return None
        return datetime.fromtimestamp(self.not_before_wall, UTC).isoformat(timespec="seconds")


@dataclass
class ObjectRecord:
    """What is remembered of one object: the spec last seen in sync or applied, and its failure if any."""

    applied: str | None = None  # fingerprint of the spec last seen in sync or applied
    failure: Retry | None = None

    @property
    def state(self) -> State | None:
        if self.failure is not None:
            return State.HELD if self.failure.permanent else State.FAILING
        return State.APPLIED if self.applied is not None else None


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

    def forget_except(self, keys: AbstractSet[Hashable]) -> None:
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


class FailureMemory(Generic[K]):
    """The watch loop's memory of its objects: one `ObjectRecord` per key, the repair counts, and when the next
    retry is due. `clock` (monotonic) and `wall` are injectable for tests."""

    def __init__(
        self,
        policy: Exponential = OBJECT_RETRY,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        repairs: RepairLimiter | None = None,
    ) -> None:
        self.policy = policy
        self.clock = clock
        self.wall = wall
        self.repairs = repairs or RepairLimiter(clock=clock)
        self.records: dict[K, ObjectRecord] = {}
        self.retry_at: float | None = None  # monotonic time the loop runs a pass for the next due retry
        self.held_at: float | None = None  # when the last pass decided which objects wait

    # --- reading ------------------------------------------------------------------------------------------

    def state(self, key: K) -> State | None:
        record = self.records.get(key)
        return None if record is None else record.state

    def failures(self) -> dict[K, Retry]:
        """Every object with a failure on record (failing or held), by key."""
        return {key: r.failure for key, r in self.records.items() if r.failure is not None}

    def failure(self, key: K) -> Retry | None:
        record = self.records.get(key)
        return None if record is None else record.failure

    def held(self, key: K) -> Retry | None:
        """The failure of `key` when it must still wait, else None."""
        retry = self.failure(key)
        if retry is not None and retry.not_before > self.clock():
            return retry
        return None

    def is_repair(self, key: K, desired: str | None) -> bool:
        """Applying `desired` is a repair: it is the spec last seen in sync or applied."""
        record = self.records.get(key)
        return desired is not None and record is not None and record.applied == desired

    def manifest_changed(self, key: K, desired: str | None) -> bool:
        """`key` has a failure on record and the manifest asks for something else than when it failed."""
        retry = self.failure(key)
        return retry is not None and retry.desired != desired

    def observed_changed(self, key: K, seen: object) -> bool:
        """`key` has a failure on record and the object changed since the first pass that saw it after the
        failure (a failed apply's own partial effects are in that first look, so they do not count)."""
        retry = self.failure(key)
        if retry is None or not retry.watch_object:
            return False
        if retry.seen is FIRST_LOOK:
            retry.seen = seen
            return False
        return retry.seen != seen

    def next_due(self, after: float | None = None) -> float | None:
        """Monotonic time of the earliest retry later than `after` (default: now), or None. A caller that last
        looked at the records at time `after` passes it: a retry that fell due since is due now, not lost."""
        since = self.clock() if after is None else after
        due = [r.not_before for r in self.failures().values() if r.not_before > since and not r.permanent]
        return min(due) if due else None

    # --- transitions --------------------------------------------------------------------------------------

    def succeeded(self, key: K, applied: str | None) -> bool:
        """`key` is in sync (or applied) with spec `applied` (None: it was deleted). Forgets its failure; True
        when there was one (the object recovered)."""
        record = self.records.get(key)
        recovered = record is not None and record.failure is not None
        if applied is None:
            self.records.pop(key, None)
        elif record is None:
            self.records[key] = ObjectRecord(applied=applied)
        else:
            record.applied, record.failure = applied, None
        return recovered

    def failed(
        self,
        key: K,
        error: str,
        delay: float | None = None,
        reason: str = "failed",
        permanent: bool = False,
        desired: str | None = None,
        watch_object: bool = True,
        log_tail: tuple[str, ...] = (),
    ) -> Retry:
        """Record one more failure of `key` while the manifest asked for `desired`; `delay` (e.g. a
        TemporaryError's own) overrides the computed one, never beyond the policy's cap. A `permanent` failure
        gets no timer: it is held until released. With `watch_object`, a change of the observed object after
        the failure releases a permanent one (a repair storm keeps what the last failure saw)."""
        record = self.records.setdefault(key, ObjectRecord())
        previous = record.failure
        failures = previous.failures + 1 if previous is not None else 1
        if permanent:
            retry = Retry(failures, error, float("inf"), float("inf"), reason, permanent=True)
        else:
            wait = delay if delay is not None else self.policy.delay(failures)
            wait = min(wait, self.policy.cap)
            retry = Retry(failures, error, self.clock() + wait, self.wall() + wait, reason)
        retry.desired, retry.log_tail = desired, log_tail
        if watch_object:
            retry.seen, retry.watch_object = FIRST_LOOK, True
        elif previous is not None:
            retry.seen, retry.watch_object = previous.seen, previous.watch_object
        record.failure = retry
        return retry

    def repair_storm(self, key: K, desired: str | None) -> Retry | None:
        """When `key` was repaired too often in the window: hold it (a failure with reason "repair-storm") until
        the oldest repair leaves the window, and return that failure; else None."""
        if not self.repairs.exceeded(key):
            return None
        wait = max(self.repairs.retry_after(key), 1.0)
        message = f"repaired {self.repairs.limit} times in {self.repairs.window:.0f} s"
        return self.failed(key, message, wait, "repair-storm", desired=desired, watch_object=False)

    def repaired(self, key: K) -> int:
        """Note one repair of `key`; how many within the window."""
        return self.repairs.record(key)

    def edited(self, key: K) -> None:
        """The manifest of `key` changed after its failure: forget the failure (it is tried in this pass), and
        count its repairs afresh (an edit is someone acting on the object)."""
        record = self.records.get(key)
        if record is not None:
            record.failure = None
            if record.applied is None:
                del self.records[key]
        self.repairs.forget(key)

    def release(self, key: K) -> None:
        """Let a held permanent failure be tried in the next pass (its failure count is kept)."""
        retry = self.failure(key)
        if retry is not None and retry.permanent:
            retry.not_before = retry.not_before_wall = 0.0
            retry.permanent = False

    def release_permanent(self) -> list[K]:
        """Release every held permanent failure; the keys released."""
        held = [key for key, retry in self.failures().items() if retry.permanent]
        for key in held:
            self.release(key)
        return held

    def forget_except(self, keys: AbstractSet[K]) -> None:
        """Drop records of objects no longer declared or observed."""
        for key in [k for k in self.records if k not in keys]:
            del self.records[key]
        self.repairs.forget_except(keys)

    # --- the loop's timer ---------------------------------------------------------------------------------

    def holds_decided(self) -> None:
        """The pass decided now which objects wait: retries due after this were not tried in it."""
        self.held_at = self.clock()

    def schedule(self) -> float | None:
        """After a pass: when the loop must run the next one for a retry. Retries that fell due while the pass
        ran (after its holds were decided) are due now: a slow pass must not push them to the periodic resync."""
        due = self.next_due(after=self.held_at)
        self.retry_at = None if due is None else due + 0.01
        return self.retry_at
