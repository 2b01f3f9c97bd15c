"""Executor: dependency order, bounded concurrency, failures skip only their dependents."""

from __future__ import annotations

import gc
import threading
import time
import warnings

from reconciler.core.catalog import build_catalog
from reconciler.core.executor import execute, succeeded
from reconciler.core.planner import observe_all, plan_changes
from reconciler.model import Action, Change, Outcome, Result

from .fakes import FakeDriver, resource


def run(drivers: dict, resources: list, **kwargs):
    catalog, problems = build_catalog(resources, drivers)
    assert problems == []
    plan = plan_changes(catalog, drivers, "p", observe_all(catalog, drivers))
    return plan, execute(plan, drivers, **kwargs)


def failing_chain() -> tuple[FakeDriver, list]:
    """base (which fails) <- child <- grandchild, and an independent one."""
    thing = FakeDriver("Thing")
    thing.fail.add("base")
    res = [
        resource("Thing", "base"),
        resource("Thing", "child", {"needs": ["Thing/base"]}),
        resource("Thing", "grandchild", {"needs": ["Thing/child"]}),
        resource("Thing", "independent"),
    ]
    return thing, res


def test_applies_in_dependency_order() -> None:
    """A chain a <- b <- c is applied a, b, c even with several workers."""
    thing = FakeDriver("Thing")
    res = [
        resource("Thing", "c", {"needs": ["Thing/b"]}),
        resource("Thing", "b", {"needs": ["Thing/a"]}),
        resource("Thing", "a"),
    ]
    _, results = run({"Thing": thing}, res, workers=4)
    assert [name for name, _ in thing.applied] == ["a", "b", "c"]
    assert succeeded(results)


def test_failure_skips_only_dependents() -> None:
    """When one change fails, what depends on it is skipped and everything else is applied."""
    thing, res = failing_chain()
    _, results = run({"Thing": thing}, res)
    outcome = {r.change.name: r.outcome for r in results}
    assert outcome == {
        "base": Outcome.FAILED,
        "child": Outcome.SKIPPED,
        "grandchild": Outcome.SKIPPED,
        "independent": Outcome.APPLIED,
    }
    assert "failed on purpose" in next(r.error for r in results if r.change.name == "base")
    assert not succeeded(results)


def test_blocked_change_is_reported_and_not_applied() -> None:
    """A blocked change is never applied; its outcome says blocked."""
    thing = FakeDriver("Thing")
    thing.put("t", project="other")
    _, results = run({"Thing": thing}, [resource("Thing", "t")])
    assert [r.outcome for r in results] == [Outcome.BLOCKED]
    assert thing.applied == []


def test_pool_is_bounded_and_concurrent() -> None:
    """Independent changes run concurrently, never more than `workers` at once."""
    thing = FakeDriver("Thing")
    active, peak = 0, 0
    guard = threading.Lock()
    original = thing.apply

    def slow_apply(change):
        nonlocal active, peak
        with guard:
            active += 1
            peak = max(peak, active)
        time.sleep(0.05)
        with guard:
            active -= 1
        original(change)

    thing.apply = slow_apply  # type: ignore[method-assign]
    _, results = run({"Thing": thing}, [resource("Thing", f"t{i}") for i in range(8)], workers=3)
    assert succeeded(results) and peak == 3


def test_stop_event_starts_nothing_new() -> None:
    """With the stop event set, pending changes are skipped as cancelled."""
    thing = FakeDriver("Thing")
    stop = threading.Event()
    stop.set()
    _, results = run({"Thing": thing}, [resource("Thing", "t")], stop=stop)
    assert thing.applied == [] and results[0].outcome is Outcome.SKIPPED


def test_unchanged_objects_do_not_block_dependents() -> None:
    """An object already in sync counts as done for what waits on it."""
    thing = FakeDriver("Thing")
    thing.put("base")
    _, results = run({"Thing": thing}, [resource("Thing", "base"), resource("Thing", "c", {"needs": ["Thing/base"]})])
    assert {r.change.name: r.outcome for r in results} == {"base": Outcome.UNCHANGED, "c": Outcome.APPLIED}
    assert thing.applied == [("c", Action.CREATE)]


def test_a_finished_execute_leaves_no_reference_cycle() -> None:
    """Nothing of a plan waits for the cyclic collector once execute returned and its results are dropped (a
    pass's whole plan would otherwise outlive the pass until a full collection), skipped dependents included."""
    thing, res = failing_chain()
    gc.collect()
    gc.disable()
    try:
        gc.set_debug(gc.DEBUG_SAVEALL)
        plan, results = run({"Thing": thing}, res, workers=2)
        assert [r.outcome for r in results].count(Outcome.SKIPPED) == 2
        del plan, results
        gc.collect()
        left = [o for o in gc.garbage if isinstance(o, Change | Result)]
    finally:
        gc.set_debug(0)
        # what else became garbage meanwhile (other tests' daemon threads ending: a socket they left unclosed)
        # is not this test's subject: its ResourceWarning must not fail it
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            gc.garbage.clear()
            gc.collect()
        gc.enable()
    assert left == []
