"""What watch remembers per object (applied, failing-temporary, held-permanent) and the repair cap: pure
bookkeeping over an injected clock."""

from __future__ import annotations

import pytest

from reconciler.delays import Exponential
from reconciler.watch.backoff import FailureMemory, RepairLimiter, State


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def memory(clock: Clock | None = None, **kwargs) -> FailureMemory[str]:
    clock = clock or Clock()
    return FailureMemory(clock=clock, wall=clock, **kwargs)


def test_failure_holds_the_key_until_its_retry_time() -> None:
    """A failed key is held for its delay, then free again; other keys are never held."""
    clock = Clock()
    mem = memory(clock)
    retry = mem.failed("a", "boom")
    assert retry.failures == 1 and mem.held("a") is retry and mem.held("b") is None
    assert mem.state("a") is State.FAILING and mem.state("b") is None
    assert mem.next_due() == clock.now + 1.0
    clock.now += 1.0
    assert mem.held("a") is None and mem.next_due() is None


def test_consecutive_failures_grow_and_success_resets() -> None:
    """Each failure in a row doubles the wait; a success forgets the failure."""
    clock = Clock()
    mem = memory(clock)
    for _ in range(3):
        retry = mem.failed("a", "boom")
    assert retry.failures == 3 and retry.not_before == clock.now + 4.0
    assert mem.succeeded("a", "spec-1") is True and mem.succeeded("a", "spec-1") is False
    assert mem.state("a") is State.APPLIED and mem.failures() == {}
    assert mem.failed("a", "again").failures == 1


def test_explicit_delay_is_used_but_capped() -> None:
    """A delay given by the caller wins over the computed one, never beyond the cap."""
    clock = Clock()
    mem = memory(clock, policy=Exponential(base=1.0, cap=60))
    assert mem.failed("a", "x", delay=5).not_before == clock.now + 5
    assert mem.failed("b", "x", delay=999).not_before == clock.now + 60


def test_next_retry_is_an_iso_time() -> None:
    """`status` shows the wall-clock retry time in ISO 8601 UTC."""
    mem = FailureMemory(clock=lambda: 0.0, wall=lambda: 0.0)
    assert mem.failed("a", "x").next_retry_iso == "1970-01-01T00:00:01+00:00"


def test_forget_except_drops_undeclared_keys() -> None:
    """Records of objects that are gone are dropped, whatever their state, with their repair counts."""
    mem = memory()
    mem.failed("a", "x")
    mem.failed("b", "x")
    mem.succeeded("c", "spec")
    mem.repaired("a")
    mem.forget_except({"b"})
    assert set(mem.records) == {"b"} and mem.repairs.times == {}


def test_applied_remembers_the_spec_so_the_same_spec_again_is_a_repair() -> None:
    """In sync or applied with a spec: applying that spec again is a repair, another spec is not; a delete
    forgets the object."""
    mem = memory()
    assert not mem.is_repair("a", "spec-1")
    mem.succeeded("a", "spec-1")
    assert mem.state("a") is State.APPLIED
    assert mem.is_repair("a", "spec-1") and not mem.is_repair("a", "spec-2") and not mem.is_repair("a", None)
    mem.failed("a", "boom", desired="spec-2")  # a failed edit keeps what was applied
    assert mem.is_repair("a", "spec-1")
    assert mem.succeeded("a", None) is True  # deleted
    assert mem.state("a") is None and "a" not in mem.records


def test_a_permanent_failure_is_held_without_a_timer_until_released() -> None:
    """held-permanent: no retry time; released (resync, engine restart) it is failing and due at once, its
    failure count kept."""
    clock = Clock()
    mem = memory(clock)
    mem.failed("a", "bad spec", permanent=True, desired="spec-1")
    assert mem.state("a") is State.HELD and mem.failure("a").next_retry_iso is None
    clock.now += 10_000
    assert mem.held("a") is not None and mem.next_due() is None
    assert mem.release_permanent() == ["a"] and mem.release_permanent() == []
    assert mem.state("a") is State.FAILING and mem.held("a") is None
    assert mem.failed("a", "again").failures == 2


def test_release_leaves_a_temporary_failure_alone() -> None:
    clock = Clock()
    mem = memory(clock)
    retry = mem.failed("a", "busy")
    mem.release("a")
    assert mem.held("a") is retry and retry.not_before == clock.now + 1.0


def test_an_edit_after_a_failure_forgets_it_and_restarts_the_repair_count() -> None:
    """The manifest asks for another spec than when it failed: the failure is forgotten (tried now), the repairs
    are counted afresh; what was applied before stays known."""
    mem = memory()
    mem.succeeded("a", "spec-1")
    for _ in range(5):
        mem.repaired("a")
    mem.failed("a", "boom", permanent=True, desired="spec-2")
    assert not mem.manifest_changed("a", "spec-2") and mem.manifest_changed("a", "spec-3")
    assert not mem.manifest_changed("b", "spec-3")  # no failure on record: nothing to compare
    mem.edited("a")
    assert mem.state("a") is State.APPLIED and mem.held("a") is None and "a" not in mem.repairs.times
    mem.failed("b", "boom", desired="x")
    mem.edited("b")  # never applied: nothing left to remember
    assert "b" not in mem.records


def test_the_object_changing_after_the_first_look_releases_a_held_failure() -> None:
    """The first pass after a failure records what it saw (the failed apply's own effects); only a change after
    that counts."""
    mem = memory()
    mem.failed("a", "bad", permanent=True, desired="spec")
    assert not mem.observed_changed("a", "seen-1")  # first look
    assert not mem.observed_changed("a", "seen-1")
    assert mem.observed_changed("a", "seen-2")
    assert not mem.observed_changed("b", "seen-2")  # no failure on record


def test_a_repair_storm_holds_until_the_oldest_repair_leaves_the_window() -> None:
    """failing-temporary with reason repair-storm; a change of the observed object does not release it."""
    clock = Clock()
    mem = memory(clock, repairs=RepairLimiter(limit=2, window=300, clock=clock))
    mem.succeeded("a", "spec")
    assert mem.repair_storm("a", "spec") is None
    mem.repaired("a")
    clock.now += 100
    mem.repaired("a")
    retry = mem.repair_storm("a", "spec")
    assert retry is not None and retry.reason == "repair-storm" and retry.error == "repaired 2 times in 300 s"
    assert mem.state("a") is State.FAILING and retry.not_before == pytest.approx(clock.now + 200)
    assert not mem.observed_changed("a", "x") and not mem.observed_changed("a", "y")
    assert not mem.manifest_changed("a", "spec") and mem.manifest_changed("a", "spec-2")


def test_schedule_keeps_a_retry_that_fell_due_during_the_pass() -> None:
    """The loop's timer: the earliest retry after the holds were decided, even if it is already past."""
    clock = Clock()
    mem = memory(clock)
    mem.failed("a", "x")  # due at +1
    mem.holds_decided()
    clock.now += 5  # a slow pass
    assert mem.schedule() == pytest.approx(clock.now - 4 + 0.01)
    mem.holds_decided()
    assert mem.schedule() is None and mem.retry_at is None


def test_repair_limiter_caps_repairs_in_a_sliding_window() -> None:
    """Five repairs within 300 s exceed the cap; it lifts once the oldest leaves the window."""
    clock = Clock()
    limiter = RepairLimiter(limit=5, window=300, clock=clock)
    for i in range(5):
        assert not limiter.exceeded("a")
        assert limiter.record("a") == i + 1
        clock.now += 10
    assert limiter.exceeded("a") and not limiter.exceeded("b")
    assert limiter.retry_after("a") == pytest.approx(250)
    clock.now += 251
    assert not limiter.exceeded("a")


def test_repair_limiter_forget_starts_a_new_count() -> None:
    """Forgetting a key (its manifest changed) lifts the cap for it alone."""
    limiter = RepairLimiter(limit=2, window=300, clock=Clock())
    for key in ("a", "b"):
        limiter.record(key)
        limiter.record(key)
    limiter.forget("a")
    assert not limiter.exceeded("a") and limiter.exceeded("b")
