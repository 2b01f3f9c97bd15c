"""Run a Plan: dependency order, a bounded pool, failures isolated to what depends on them."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait

import structlog

from reconciler.contract import Driver
from reconciler.core.graph import Key, find_cycle, format_cycle
from reconciler.errors import ReconcileError, classify
from reconciler.model import Change, Outcome, Plan, Result

log = structlog.get_logger()

# Changes in flight at once. The engine's work is bounded elsewhere (the engine client's request bound,
# `--parallel`, 8 by default: the engine slows sharply beyond ~10 concurrent starts), so a change that waits — a
# settle window, a dependency's health, a stop timeout — holds a thread here, never an engine slot.
DEFAULT_WORKERS = 64


def _apply_one(driver: Driver, change: Change) -> Result:
    started = time.monotonic()
    try:
        driver.apply(change)
    except ReconcileError as exc:
        seconds = time.monotonic() - started
        return Result(
            change, Outcome.FAILED, str(exc), seconds, classify(exc), exc.delay, exc.log_tail, exc.replannable
        )
    except Exception as exc:  # a driver bug must not take the other changes down with it
        log.exception("change.crashed", subject=change.subject)
        return Result(change, Outcome.FAILED, f"internal error: {exc!r}", time.monotonic() - started, classify(exc))
    return Result(change, Outcome.APPLIED, None, time.monotonic() - started)


def execute(
    plan: Plan,
    drivers: Mapping[str, Driver],
    workers: int = DEFAULT_WORKERS,
    stop: threading.Event | None = None,
    on_result: Callable[[Result], None] | None = None,
    on_start: Callable[[Change], None] | None = None,
) -> list[Result]:
    """Apply every pending change of `plan` once its dependencies succeeded; return one Result per change.

    A failed or blocked change skips only the changes that (transitively) wait for it. When `stop` is set no
    new change starts; those in flight finish, so no object is left half-replaced. `on_start` is told of each
    change as it is handed to a worker, `on_result` of each result as it settles.
    """
    changes = {c.key: c for c in plan.changes}
    waits = {k: {d for d in plan.edges.get(k, ()) if d in changes} for k in changes}
    cycle = find_cycle(waits)
    if cycle:
        raise ReconcileError(f"internal error: plan has a dependency cycle: {format_cycle(cycle)}")
    dependents: dict[Key, set[Key]] = {k: set() for k in changes}
    for key, deps in waits.items():
        for dep in deps:
            dependents[dep].add(key)

    results: dict[Key, Result] = {}
    lock = threading.Lock()

    def record(result: Result) -> None:
        with lock:
            results[result.change.key] = result
        if on_result is not None:
            on_result(result)
        if result.outcome is Outcome.APPLIED:
            log.info(
                "change.applied",
                subject=result.change.subject,
                action=result.change.action.value,
                seconds=round(result.seconds, 3),
            )
        elif result.outcome in (Outcome.FAILED, Outcome.BLOCKED):
            log.error(f"change.{result.outcome.value}", subject=result.change.subject, error=result.error)

    def skip_dependents(key: Key, reason: str) -> None:
        # Depth first, like a recursion would go, but without one: a nested function that calls itself is a
        # reference cycle (function -> its closure cell -> function) holding every change of the plan, so a
        # pass's whole plan would outlive it until the collector's rare full collection (docs/guarantees.md,
        # Soak).
        stack = sorted(dependents[key], reverse=True)
        while stack:
            dep = stack.pop()
            if dep not in results:
                record(Result(changes[dep], Outcome.SKIPPED, reason))
                stack.extend(sorted(dependents[dep], reverse=True))

    running: dict[Future[Result], Key] = {}
    with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="apply") as pool:
        while True:
            ready = [
                k
                for k in sorted(changes)
                if k not in results
                and k not in running.values()
                and all(d in results and results[d].outcome in (Outcome.APPLIED, Outcome.UNCHANGED) for d in waits[k])
            ]
            for key in ready:
                change = changes[key]
                if change.blocked is not None:
                    record(Result(change, Outcome.BLOCKED, change.blocked))
                    skip_dependents(key, f"{change.subject} is blocked")
                elif not change.pending:
                    record(Result(change, Outcome.UNCHANGED))
                elif stop is not None and stop.is_set():
                    record(Result(change, Outcome.SKIPPED, "cancelled: shutting down"))
                    skip_dependents(key, "cancelled: shutting down")
                else:
                    log.info("change.started", subject=change.subject, action=change.action.value)
                    if on_start is not None:
                        on_start(change)
                    running[pool.submit(_apply_one, drivers[change.kind], change)] = key
            if ready and not running:
                continue  # settling one node may have made others ready
            if not running:
                break
            done, _ = wait(list(running), return_when=FIRST_COMPLETED)
            for fut in done:
                key = running.pop(fut)
                result = fut.result()
                record(result)
                if result.outcome is Outcome.FAILED:
                    skip_dependents(key, f"{result.change.subject} failed")
    for key in sorted(changes):  # anything left waits on something that never settled
        if key not in results:
            results[key] = Result(changes[key], Outcome.SKIPPED, "a dependency did not complete")
    return [results[c.key] for c in plan.changes]


def succeeded(results: list[Result]) -> bool:
    return all(r.outcome in (Outcome.APPLIED, Outcome.UNCHANGED) for r in results)
