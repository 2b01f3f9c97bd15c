"""`apply` plans again what an engine fault failed (issue 24, outcome 6): a lost answer or a step that may not be
repeated blindly no longer ends the run; a permanent failure does, so does an outcome (a rollout that did not
converge, a replace rolled back) even when a fresh plan would call it done, and `watch` (one round) is unchanged."""

from __future__ import annotations

from pathlib import Path

from reconciler.core.project import ProjectRunner
from reconciler.errors import EngineFault, PermanentError, TemporaryError
from reconciler.model import Action, Outcome
from tests.unit.fakes import FakeDriver, resource


class Flaky(FakeDriver):
    """Fails the first `failures[name]` applies of a change (EngineFault); `done_anyway`: the first failure
    happens after the object was made (the engine acted, its answer was lost)."""

    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.failures: dict[str, int] = {}
        self.done_anyway: set[str] = set()
        self.fail_with = EngineFault

    def apply(self, change):  # type: ignore[no-untyped-def]
        left = self.failures.get(change.name, 0)
        if left:
            self.failures[change.name] = left - 1
            if change.name in self.done_anyway:
                super().apply(change)  # recorded there
            else:
                with self.lock:
                    self.applied.append((change.name, change.action))
            raise self.fail_with(f"{change.name}: the connection to the engine was lost")
        super().apply(change)


def runner_for(tmp_path: Path, driver: Flaky) -> tuple[ProjectRunner, object]:
    runner = ProjectRunner(project="p", manifest_dir=tmp_path, engine_factory=lambda: None)
    runner.classes = {"Volume": lambda ctx: driver}
    runner.drivers = runner.new_drivers()
    loaded = runner.load(
        [resource("Volume", n) for n in ("a", "b", "c")] + [resource("Volume", "d", {"needs": ["Volume/a"]})]
    )
    assert not loaded.problems, loaded.problems
    return runner, loaded.catalog


def test_temporary_failures_are_planned_again_until_done(tmp_path: Path) -> None:
    driver = Flaky("Volume")
    driver.failures = {"a": 2, "b": 1, "c": 1}
    driver.done_anyway = {"c"}  # made by its first attempt: the next plan finds it, nothing is done twice
    runner, catalog = runner_for(tmp_path, driver)
    waits: list[float] = []
    results = runner.apply(runner.plan(catalog, prune=True), rounds=6, sleep=waits.append)
    assert {r.change.name: r.outcome for r in results} == dict.fromkeys("abcd", Outcome.APPLIED)
    assert [n for n, _ in driver.applied].count("c") == 1
    assert [n for n, _ in driver.applied].count("a") == 3 and len(waits) == 2  # d waited for a (skipped, then done)
    assert set(driver.objects) == set("abcd")


def test_rounds_are_bounded_and_permanent_failures_are_not_repeated(tmp_path: Path) -> None:
    driver = Flaky("Volume")
    driver.failures = {"a": 99}
    runner, catalog = runner_for(tmp_path, driver)
    results = runner.apply(runner.plan(catalog, prune=True), rounds=3, sleep=lambda _: None)
    by_name = {r.change.name: r for r in results}
    assert by_name["a"].outcome is Outcome.FAILED and by_name["d"].outcome is Outcome.SKIPPED
    assert [n for n, _ in driver.applied].count("a") == 3

    permanent = Flaky("Volume")
    permanent.failures, permanent.fail_with = {"b": 99}, PermanentError
    runner, catalog = runner_for(tmp_path, permanent)
    results = runner.apply(runner.plan(catalog, prune=True), rounds=3, sleep=lambda _: None)
    assert [n for n, _ in permanent.applied].count("b") == 1
    assert {r.change.name: r.outcome for r in results}["b"] is Outcome.FAILED


def test_one_round_is_one_pass_as_before(tmp_path: Path) -> None:
    driver = Flaky("Volume")
    driver.failures = {"b": 1}
    runner, catalog = runner_for(tmp_path, driver)
    results = runner.apply(runner.plan(catalog, prune=True))
    assert {r.change.name: r.outcome for r in results}["b"] is Outcome.FAILED
    assert driver.applied.count(("b", Action.CREATE)) == 1


def test_a_permanent_failure_is_not_repeated_when_others_are(tmp_path: Path) -> None:
    """A round plans everything again, but only what failed temporarily runs: `a` failed for good, so `d`
    (which needs it) is skipped again, never run without it."""
    driver = Flaky("Volume")
    driver.failures, driver.fail_with = {"a": 99}, PermanentError
    runner, catalog = runner_for(tmp_path, driver)
    real_apply = driver.apply
    flaky_b = {"left": 1}

    def apply(change):  # type: ignore[no-untyped-def]
        if change.name == "b" and flaky_b["left"]:
            flaky_b["left"] -= 1
            raise EngineFault("b: lost")
        real_apply(change)

    driver.apply = apply  # type: ignore[method-assign]
    results = runner.apply(runner.plan(catalog, prune=True), rounds=3, sleep=lambda _: None)
    by_name = {r.change.name: r.outcome for r in results}
    assert by_name == {"a": Outcome.FAILED, "b": Outcome.APPLIED, "c": Outcome.APPLIED, "d": Outcome.SKIPPED}
    assert [n for n, _ in driver.applied].count("a") == 1
    assert "d" not in driver.objects


def test_an_outcome_is_not_planned_again_even_when_a_fresh_plan_would_call_it_done(tmp_path: Path) -> None:
    """A swarm update that did not converge, a replace rolled back: temporary (watch retries them) but no engine
    fault. `a` is made, then fails as an outcome; a fresh plan would find it in sync, so a round would report it
    applied: no round runs, and it stays failed (exit 1)."""
    driver = Flaky("Volume")
    driver.failures, driver.fail_with, driver.done_anyway = {"a": 1}, TemporaryError, {"a"}
    runner, catalog = runner_for(tmp_path, driver)
    waits: list[float] = []
    results = runner.apply(runner.plan(catalog, prune=True), rounds=6, sleep=waits.append)
    by_name = {r.change.name: r.outcome for r in results}
    assert by_name == {"a": Outcome.FAILED, "b": Outcome.APPLIED, "c": Outcome.APPLIED, "d": Outcome.SKIPPED}
    assert waits == [] and [n for n, _ in driver.applied].count("a") == 1
    assert not results[0].replannable


def test_what_only_a_later_plan_has_runs_and_is_reported(tmp_path: Path) -> None:
    """A fault in the last step of `b` leaves a leftover (`b-old`, the parked container of a replace, say): the
    next round's plan has it (a prune), runs it and reports it; `b` is done, so nothing is left."""
    driver = Flaky("Volume")
    runner, catalog = runner_for(tmp_path, driver)
    real_apply = driver.apply
    flaky_b = {"left": 1}

    def apply(change):  # type: ignore[no-untyped-def]
        real_apply(change)
        if change.name == "b" and flaky_b["left"]:
            flaky_b["left"] -= 1
            driver.put("b-old")  # what the interrupted step leaves
            raise EngineFault("b: remove-old: the connection to the engine was lost")

    driver.apply = apply  # type: ignore[method-assign]
    seen: list[str] = []
    results = runner.apply(
        runner.plan(catalog, prune=True), rounds=3, sleep=lambda _: None, on_result=lambda r: seen.append(r.change.name)
    )
    assert [(r.change.name, r.outcome) for r in results] == [
        *((n, Outcome.APPLIED) for n in "abcd"),
        ("b-old", Outcome.APPLIED),
    ]
    assert set(driver.objects) == set("abcd") and seen.count("b-old") == 1 and "a" not in seen[4:]
