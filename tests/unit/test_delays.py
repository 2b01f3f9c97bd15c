"""The one retry formula and its numbers (reconciler/delays.py): every user's waits, jitter ranges and caps."""

from __future__ import annotations

import pytest

from reconciler.delays import (
    ENGINE_DOWN,
    ENGINE_REQUEST,
    ENGINE_REQUEST_ATTEMPTS,
    EVENT_STREAM,
    OBJECT_RETRY,
    RESYNC_SPREAD,
    Exponential,
    spread,
)


@pytest.mark.parametrize(("failures", "delay"), [(0, 0.0), (1, 1.0), (2, 2.0), (3, 4.0), (9, 256.0), (10, 300.0)])
def test_an_object_waits_one_second_doubling_up_to_five_minutes(failures: int, delay: float) -> None:
    """`watch` per object: 1 s * 2^(n-1), capped at 300 s, no jitter."""
    assert OBJECT_RETRY.delay(failures) == delay


@pytest.mark.parametrize("policy", [ENGINE_DOWN, EVENT_STREAM])
def test_the_engine_and_its_event_stream_wait_one_second_doubling_up_to_30(policy: Exponential) -> None:
    """The whole pass after an unreachable engine, and reconnecting the event stream: 1, 2, 4 ... 30 s."""
    assert [policy.delay(n) for n in range(1, 8)] == [1.0, 2.0, 4.0, 8.0, 16.0, 30.0, 30.0]


def test_a_request_waits_a_fifth_of_a_second_doubling_jittered_and_capped() -> None:
    """One engine request inside a pass: 4 attempts, 0.2 s doubling, 50-100 % of it, at most 2 s."""
    assert ENGINE_REQUEST_ATTEMPTS == 4
    assert [ENGINE_REQUEST.delay(n, rand=lambda: 1.0) for n in range(1, 7)] == [0.2, 0.4, 0.8, 1.6, 2.0, 2.0]
    assert [ENGINE_REQUEST.delay(n, rand=lambda: 0.0) for n in (1, 3, 6)] == [0.1, 0.4, 1.0]
    for n in range(1, 10):
        assert ENGINE_REQUEST.nominal(n) / 2 <= ENGINE_REQUEST.delay(n) <= ENGINE_REQUEST.nominal(n)


def test_no_jitter_draws_no_random_number() -> None:
    """A policy without jitter is exact and never asks the random source."""

    def rand() -> float:
        raise AssertionError("asked")

    assert Exponential(base=0.5, cap=10, factor=3).delay(3, rand=rand) == 4.5


def test_a_huge_failure_count_stays_at_the_cap() -> None:
    """A watch that fails for months does not overflow the exponent."""
    assert OBJECT_RETRY.delay(10**6) == 300.0


def test_spread_moves_a_timer_by_up_to_the_fraction_either_way() -> None:
    """The resync: +-10 % of its period."""
    assert RESYNC_SPREAD == 0.1
    assert spread(300.0, RESYNC_SPREAD, uniform=lambda low, high: low) == pytest.approx(270.0)
    assert spread(300.0, RESYNC_SPREAD, uniform=lambda low, high: high) == pytest.approx(330.0)
    for _ in range(100):
        assert 270.0 <= spread(300.0, RESYNC_SPREAD) <= 330.0
