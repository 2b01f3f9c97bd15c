"""`plan`, `apply` and `status` over the Hosts of a fleet: one runner per Host, run concurrently (bounded), one
report. A Host that cannot be reached or fails is reported with its reason and never stops the others (except
under a staged `--rollout`, which stops after the first batch with a failed Host)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

import structlog

from reconciler.core.executor import succeeded
from reconciler.core.failures import record_failures
from reconciler.core.lock import ProjectLock
from reconciler.core.placement import HostSpec
from reconciler.core.project import Loaded, ProjectRunner
from reconciler.errors import ReconcileError
from reconciler.model import Plan, Result

log = structlog.get_logger()

HOST_CONCURRENCY = 8
T = TypeVar("T")


@dataclass
class HostRun:
    """What one command did on one Host."""

    host: HostSpec
    engine: str
    plan: Plan | None = None
    results: list[Result] | None = None
    error: str | None = None  # unreachable, locked, or failed before planning
    skipped: str | None = None  # not started: a staged rollout stopped earlier

    @property
    def failed(self) -> bool:
        return self.error is not None or (self.results is not None and not succeeded(self.results))


def concurrently(items: Sequence[T], work: Callable[[T], None], limit: int = HOST_CONCURRENCY) -> None:
    if not items:
        return
    with ThreadPoolExecutor(max_workers=min(limit, len(items)), thread_name_prefix="host") as pool:
        list(pool.map(work, items))


def _guarded(run: HostRun, work: Callable[[], None]) -> None:
    try:
        work()
    except ReconcileError as exc:
        run.error = str(exc).splitlines()[0]
    except Exception as exc:  # one Host's bug must not hide the others' results
        log.exception("host.crashed", host=run.host.name)
        run.error = f"internal error: {exc!r}"
    if run.error is not None:
        log.error("host.failed", host=run.host.name, engine=run.engine, error=run.error)


def check_distinct(runs: list[HostRun], runners: Mapping[str, ProjectRunner]) -> None:
    """Connect to every Host (concurrently) and refuse Hosts that are the same engine under two addresses: each
    would prune what the other creates. The first of them by name is kept."""
    identities: dict[str, str] = {}

    def one(run: HostRun) -> None:
        engine = runners[run.host.name].engine
        assert engine is not None

        def work() -> None:
            identities[run.host.name] = engine.identity()

        _guarded(run, work)

    concurrently(runs, one)
    seen: dict[str, str] = {}
    for run in sorted(runs, key=lambda r: r.host.name):
        ident = identities.get(run.host.name)
        if ident is None:
            continue
        if ident in seen:
            run.error = f"Host {run.host.name} is the same engine as Host {seen[ident]}; give each engine one Host"
            log.error("host.failed", host=run.host.name, engine=run.engine, error=run.error)
        else:
            seen[ident] = run.host.name


def plan_fleet(
    runners: Mapping[str, ProjectRunner],
    hosts: Iterable[HostSpec],
    make_plan: Callable[[ProjectRunner, Loaded], Plan],
    loaded: Loaded,
) -> list[HostRun]:
    runs = [HostRun(h, runners[h.name].ctx.engine_url or "") for h in hosts]
    check_distinct(runs, runners)

    def one(run: HostRun) -> None:
        runner = runners[run.host.name]

        def work() -> None:
            run.plan = make_plan(runner, runner.load(resources=loaded.resources))

        _guarded(run, work)

    concurrently([r for r in runs if r.error is None], one)
    return runs


def parse_rollout(text: str) -> int | None:
    """`all` -> None (every Host at once); `N` -> batches of N Hosts."""
    if text == "all":
        return None
    try:
        size = int(text)
    except ValueError:
        size = 0
    if size < 1:
        raise ReconcileError(f"--rollout {text}: use `all` or a number of hosts per batch (1 = host by host)")
    return size


def apply_fleet(
    runners: Mapping[str, ProjectRunner],
    hosts: Sequence[HostSpec],
    make_plan: Callable[[ProjectRunner, Loaded], Plan],
    loaded: Loaded,
    wait: bool,
    batch: int | None,
    on_plan: Callable[[HostRun], None] | None = None,
) -> list[HostRun]:
    """Apply on every Host: all at once, or in batches of `batch` Hosts in name order, stopping after the first
    batch in which a Host failed (the Hosts not started are reported as skipped, with why)."""
    runs = [HostRun(h, runners[h.name].ctx.engine_url or "") for h in sorted(hosts, key=lambda h: h.name)]

    def one(run: HostRun) -> None:
        runner = runners[run.host.name]

        def work() -> None:
            with ProjectLock(runner.project, run.engine, wait=wait) as lock:
                current = runner.load_valid() if lock.waited else runner.load(resources=loaded.resources)
                run.plan = make_plan(runner, current)
                if on_plan is not None:
                    on_plan(run)
                run.results = runner.apply(run.plan)
                record_failures(runner.project, run.engine, run.results)

        _guarded(run, work)

    check_distinct(runs, runners)
    size = len(runs) if batch is None else batch
    for start in range(0, len(runs), max(1, size)):
        current = runs[start : start + size]
        concurrently([r for r in current if r.error is None], one)
        failed = [r.host.name for r in current if r.failed]
        if failed and batch is not None:
            for later in runs[start + size :]:
                if later.error is None:  # one that failed already (its engine's identity) stays failed
                    later.skipped = f"not started: the rollout stopped after {', '.join(failed)} failed"
            break
    return runs
