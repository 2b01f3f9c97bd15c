"""Per-object backoff and the repair cap: pure timing over an injected clock."""

from __future__ import annotations

import pytest

from reconciler.watch.backoff import Backoff, RepairLimiter, delay_for


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.parametrize(("failures", "delay"), [(0, 0.0), (1, 1.0), (2, 2.0), (3, 4.0), (9, 256.0), (10, 300.0)])
def test_delay_doubles_from_one_second_up_to_the_cap(failures: int, delay: float) -> None:
    """1 s * 2^(n-1), capped at 300 s."""
    assert delay_for(failures) == delay


def test_failure_holds_the_key_until_its_retry_time() -> None:
    """A failed key is held for its delay, then free again; other keys are never held."""
    clock = Clock()
    backoff = Backoff(clock=clock, wall=clock)
    retry = backoff.failed("a", "boom")
    assert retry.failures == 1 and backoff.held("a") is retry and backoff.held("b") is None
    assert backoff.next_due() == clock.now + 1.0
    clock.now += 1.0
    assert backoff.held("a") is None and backoff.next_due() is None


def test_consecutive_failures_grow_and_success_resets() -> None:
    """Each failure in a row doubles the wait; a success forgets the record."""
    clock = Clock()
    backoff = Backoff(clock=clock, wall=clock)
    for _ in range(3):
        retry = backoff.failed("a", "boom")
    assert retry.failures == 3 and retry.not_before == clock.now + 4.0
    assert backoff.succeeded("a") is True and backoff.succeeded("a") is False
    assert backoff.failed("a", "again").failures == 1


def test_explicit_delay_is_used_but_capped() -> None:
    """A delay given by the caller wins over the computed one, never beyond the cap."""
    clock = Clock()
    backoff = Backoff(clock=clock, wall=clock, cap=60)
    assert backoff.failed("a", "x", delay=5).not_before == clock.now + 5
    assert backoff.failed("b", "x", delay=999).not_before == clock.now + 60


def test_next_retry_is_an_iso_time() -> None:
    """`status` shows the wall-clock retry time in ISO 8601 UTC."""
    backoff = Backoff(clock=lambda: 0.0, wall=lambda: 0.0)
    assert backoff.failed("a", "x").next_retry_iso == "1970-01-01T00:00:01+00:00"


def test_forget_except_drops_undeclared_keys() -> None:
    """Records of objects that are gone are dropped."""
    backoff = Backoff()
    backoff.failed("a", "x")
    backoff.failed("b", "x")
    backoff.forget_except({"b"})
    assert set(backoff.entries) == {"b"}


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
