"""Where a command works: the one engine of a tree without Hosts, or the selected Hosts of a fleet. `targets`
makes a runner for each and `for_each` runs a command's work on them: the one engine directly, or every Host
concurrently (bounded) into one report. A Host that cannot be reached or fails is reported with its reason and
never stops the others (except under a staged `--rollout`, which stops after the first batch with a failed Host)."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TypeVar

import structlog

from reconciler.core.executor import succeeded
from reconciler.core.lock import ProjectLock
from reconciler.core.placement import ClusterUse, HostSpec, cluster_uses, select_hosts
from reconciler.core.project import Loaded, ProjectRunner
from reconciler.errors import PermanentError, ReconcileError
from reconciler.model import Plan, Result

log = structlog.get_logger()

HOST_CONCURRENCY = 8
T = TypeVar("T")


@dataclass
class HostRun:
    """What one command did on one target: a Host of a fleet, or (`host` None) the one engine."""

    host: HostSpec | None
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


@dataclass(frozen=True)
class Selection:
    """`--host NAME` and `--selector KEY=VALUE`: the Hosts of a fleet a command works on (all when both are empty)."""

    hosts: tuple[str, ...] = ()
    selectors: tuple[str, ...] = ()


@dataclass
class Targets:
    """What a command works on, a runner each: the one engine (`hosts` empty), or the selected Hosts of a fleet."""

    loaded: Loaded  # the whole tree, valid
    runners: list[ProjectRunner]
    hosts: list[HostSpec] = field(default_factory=list)
    # objects on one Host using a cluster-wide object of another (a worker's container on a manager's overlay)
    cluster_uses: list[ClusterUse] = field(default_factory=list)

    @property
    def fleet(self) -> bool:
        return bool(self.hosts)


def targets(runner_for: Callable[[HostSpec | None], ProjectRunner], selection: Selection) -> Targets:
    """Read and check the tree with the runner of the one engine (`runner_for(None)`); bad input stops here,
    before any lock or engine is touched. A tree with Hosts gives one runner per selected Host."""
    runner = runner_for(None)
    loaded = runner.load_valid()
    if not loaded.hosts:
        if selection.hosts or selection.selectors:
            raise PermanentError("--host, --selector and --as-host need a tree with Host manifests; this one has none")
        return Targets(loaded, [runner])
    hosts, errors = select_hosts(loaded.hosts, selection.hosts, selection.selectors)
    if errors:
        raise PermanentError(errors[0])
    uses = cluster_uses(loaded.placement, loaded.catalog, runner.drivers)
    return Targets(loaded, [runner_for(h) for h in hosts], hosts, uses)


def _host_name(run: HostRun) -> str:
    return "" if run.host is None else run.host.name


def _guarded(run: HostRun, work: Callable[[], None]) -> None:
    try:
        work()
    except ReconcileError as exc:
        run.error = str(exc).splitlines()[0]
    except Exception as exc:  # one Host's bug must not hide the others' results
        log.exception("host.crashed", host=_host_name(run))
        run.error = f"internal error: {exc!r}"
    if run.error is not None:
        log.error("host.failed", host=_host_name(run), engine=run.engine, error=run.error)


def check_distinct(runs: list[HostRun], runners: Mapping[str, ProjectRunner]) -> None:
    """Connect to every Host (concurrently) and refuse Hosts that are the same engine under two addresses: each
    would prune what the other creates. The first of them by name is kept."""
    identities: dict[str, str] = {}

    def one(run: HostRun) -> None:
        engine = runners[_host_name(run)].engine
        assert engine is not None

        def work() -> None:
            identities[_host_name(run)] = engine.identity()

        _guarded(run, work)

    concurrently(runs, one)
    seen: dict[str, str] = {}
    for run in sorted(runs, key=_host_name):
        name = _host_name(run)
        ident = identities.get(name)
        if ident is None:
            continue
        if ident in seen:
            run.error = f"Host {name} is the same engine as Host {seen[ident]}; give each engine one Host"
            log.error("host.failed", host=name, engine=run.engine, error=run.error)
        else:
            seen[ident] = name


def check_clusters(runs: list[HostRun], runners: Mapping[str, ProjectRunner], uses: list[ClusterUse]) -> None:
    """A Host whose objects use a cluster-wide object of another Host (a manager's attachable overlay network)
    must be a node of that Host's cluster, as the engines say: the manager's node list holds the node ID this
    Host's engine reports (a worker sees no cluster ID of its own). Otherwise the Host fails, saying so. A
    provider Host not selected (or unreachable) cannot be asked: its engine decides when the object is used."""
    by_name = {_host_name(r): r for r in runs}
    members: dict[str, frozenset[str]] = {}
    nodes: dict[str, str | None] = {}
    wanted = sorted({p for u in uses if u.host in by_name for p in u.providers if p in by_name})
    askers = sorted({u.host for u in uses if u.host in by_name})

    def ask(name: str) -> None:
        engine = runners[name].engine
        assert engine is not None
        run = by_name[name]
        if run.error is not None:
            return

        def work() -> None:
            if name in askers:
                nodes[name] = engine.cluster_node()
            if name in wanted:
                members[name] = engine.cluster_nodes()

        _guarded(run, work)

    concurrently(sorted(set(wanted) | set(askers)), ask)
    for use in uses:
        run = by_name.get(use.host)
        if run is None or run.error is not None or use.host not in nodes:
            continue
        providers = sorted(p for p in use.providers if p in members)
        if not providers or any(nodes[use.host] in members[p] for p in providers):
            continue
        kind, name = use.target
        where = "is in no swarm" if nodes[use.host] is None else f"is not a node of the swarm {providers[0]} manages"
        run.error = (
            f"{use.subject} uses {kind}/{name} of Host {', '.join(providers)}, but Host {use.host} {where} "
            f"(join it: `docker swarm join` with a token from {providers[0]})"
        )
        log.error("host.failed", host=use.host, engine=run.engine, error=run.error)


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


Work = Callable[[HostRun, ProjectRunner, Loaded], None]


def for_each(
    where: Targets,
    work: Work,
    *,
    lock: bool = False,
    wait: bool = False,
    batch: int | None = None,
    name_order: bool = False,
) -> list[HostRun]:
    """Run `work(run, runner, loaded)` on every target, `loaded` being the target's share of the tree; the work
    fills in its HostRun. The one engine is worked on directly (its errors are the command's). A fleet's Hosts
    are first checked to be distinct engines, then worked on concurrently, each one's error kept in its HostRun;
    in batches of `batch` Hosts when given, stopping after a batch in which a Host failed (the Hosts not started
    are reported as skipped, with why). `name_order`: the runs in Host name order (else the tree's order).

    With `lock` the work holds the target's project lock (waiting for it with `wait`); a target whose lock was
    waited for re-reads its manifests, as the directory may have moved on while the holder ran (and applied it)."""

    def one(run: HostRun, runner: ProjectRunner, loaded: Callable[[], Loaded]) -> None:
        if not lock:
            work(run, runner, loaded())
            return
        with ProjectLock(runner.project, run.engine, wait=wait) as held:
            work(run, runner, runner.load_valid() if held.waited else loaded())

    if not where.fleet:
        runner = where.runners[0]
        run = HostRun(None, runner.ctx.engine_url or "")
        one(run, runner, lambda: where.loaded)
        return [run]
    runners = {h.name: r for h, r in zip(where.hosts, where.runners, strict=True)}
    hosts = sorted(where.hosts, key=lambda h: h.name) if name_order else where.hosts
    runs = [HostRun(h, runners[h.name].ctx.engine_url or "") for h in hosts]
    check_distinct(runs, runners)
    if where.cluster_uses:
        check_clusters(runs, runners, where.cluster_uses)
    # the Hosts holding a cluster-wide object others use go first (a manager creates the overlay network its
    # workers' containers attach to)
    providers = {p for u in where.cluster_uses for p in u.providers}
    order = sorted(runs, key=lambda r: _host_name(r) not in providers)  # stable: the report keeps `runs`' order

    def on_host(run: HostRun) -> None:
        runner = runners[_host_name(run)]
        # every line logged on this Host's thread (the core's change.* lines too) says which Host (`host=`)
        with structlog.contextvars.bound_contextvars(host=_host_name(run)):
            _guarded(run, lambda: one(run, runner, lambda: runner.load(resources=where.loaded.resources)))

    size = len(runs) if batch is None else batch
    for start in range(0, len(order), max(1, size)):
        current = order[start : start + size]
        for phase in (True, False):
            concurrently([r for r in current if r.error is None and (_host_name(r) in providers) is phase], on_host)
        failed = [_host_name(r) for r in current if r.failed]
        if failed and batch is not None:
            for later in order[start + size :]:
                if later.error is None:  # one that failed already (its engine's identity) stays failed
                    later.skipped = f"not started: the rollout stopped after {', '.join(failed)} failed"
            break
    return runs
