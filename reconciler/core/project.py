"""One project on one engine: load -> validate -> observe -> plan -> apply, the sequence every command shares."""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from reconciler.contract import Driver, DriverContext, Engine, UpdateCheck
from reconciler.core import placement as fleet
from reconciler.core.catalog import Catalog, build_catalog
from reconciler.core.executor import DEFAULT_WORKERS, execute
from reconciler.core.graph import Key
from reconciler.core.manifests import load_directory, register_schema
from reconciler.core.placement import HostSpec
from reconciler.core.planner import observe_all, plan_changes
from reconciler.core.plugins import driver_classes
from reconciler.delays import APPLY_ROUND
from reconciler.errors import PermanentError, Problem, ReconcileError, ValidationFailed
from reconciler.model import Observed, Outcome, Plan, Resource, Result

PROJECT_NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$")


def default_project(manifest_dir: Path) -> str:
    """The manifest directory's base name, made into a valid label value."""
    base = manifest_dir.resolve().name
    cleaned = re.sub(r"[^a-zA-Z0-9_.-]", "-", base).lstrip("-_.")
    return cleaned or "default"


def check_project_name(name: str) -> str:
    if not PROJECT_NAME.match(name):
        raise PermanentError(f"invalid project name {name!r}: use letters, digits, '_', '.', '-' (max 63)")
    return name


@dataclass
class Loaded:
    resources: list[Resource]
    catalog: Catalog
    problems: list[Problem]
    hosts: list[HostSpec] = field(default_factory=list)  # the tree's Host documents (none: one engine)
    placement: dict[Key, frozenset[str]] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return not self.resources and not self.problems


@dataclass
class ProjectRunner:
    """Everything a command needs about one project; the engine is only contacted by observe/apply.

    Drivers are made afresh for every pass (`plan` starts one, `apply` finishes it), so nothing a driver saw
    in one pass can leak into the next; `drivers` are the instances validation uses (pure hooks only).
    """

    project: str
    manifest_dir: Path
    engine_factory: Callable[[], Any] | None = None
    options: Iterable[Any] = ()
    workers: int = DEFAULT_WORKERS
    engine: Engine | None = None
    classes: dict[str, Callable[[DriverContext], Driver]] | None = None
    host: str | None = None  # in a fleet: the Host this runner converges (its share of the tree)
    # pull mode (`--as-host`): Host `host` is this machine, reached through `engine`; its spec.engine is not used,
    # so what must stay on this machine (the firewall, decrypted bind sources) is allowed there
    pull: bool = False
    drivers: dict[str, Driver] = field(init=False)
    _planned_with: tuple[Catalog, bool, str] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.ctx = DriverContext(
            self.project,
            self.manifest_dir,
            self.engine_factory,
            self.options,
            structlog.get_logger().bind(project=self.project, **({"host": self.host} if self.host else {})),
            engine_handle=self.engine,
            host=self.host,
        )
        if self.classes is None:
            self.classes = dict(driver_classes(log=self.ctx.log))
        self.drivers = self.new_drivers()
        for kind, driver in self.drivers.items():
            if driver.schema is not None:
                register_schema(kind, driver.schema)
        self._pass_drivers: dict[str, Driver] | None = None
        # in a fleet (set by load): what the kinds that act on this machine (local_only: the firewall) must not
        # observe here, as it is another Host's
        self._remote = False  # this Host is reached over the network: this machine holds nothing of it
        self._elsewhere: frozenset[Key] = frozenset()  # placed on other Hosts only

    def new_drivers(self) -> dict[str, Driver]:
        assert self.classes is not None
        return {kind: make(self.ctx) for kind, make in sorted(self.classes.items())}

    def load(self, resources: Iterable[Resource] | None = None) -> Loaded:
        """Read and check the manifest directory (or the given resources); never raises for bad input."""
        if resources is None:
            if not self.manifest_dir.is_dir():
                raise PermanentError(f"{self.manifest_dir}: manifest directory does not exist")
            found, problems = load_directory(self.manifest_dir)
        else:
            found, problems = list(resources), []
        if not fleet.is_fleet(found):
            placed = [r for r in found if "hosts" in r.spec]
            problems += [
                Problem(
                    r.source.file,
                    r.line_of("spec.hosts"),
                    r.subject,
                    "spec.hosts",
                    "names hosts, but no Host is declared",
                )
                for r in placed
            ]
            catalog, more = build_catalog([fleet.without_hosts(r) for r in found], self.drivers)
            if self.engine is not None:  # what is written on this machine for the engine (a decrypted bind source)
                engine = [(self.engine.url, self.engine.url)]
                more += [
                    p for d in catalog.desired.values() for p in fleet.local_problems(d, self.drivers[d.kind], engine)
                ]
            return Loaded(found, catalog, sorted(set(problems + more)))
        hosts, host_problems = fleet.host_specs(found)
        if self.pull and self.engine is not None:
            url = self.engine.url
            hosts = [dataclasses.replace(h, engine=url, tls=None) if h.name == self.host else h for h in hosts]
        others = [r for r in found if r.kind != fleet.HOST_KIND]
        catalog, more = build_catalog([fleet.without_hosts(r) for r in others], self.drivers)
        placement, placement_problems = fleet.place(others, hosts, catalog, self.drivers)
        if self.host is not None:
            catalog = fleet.for_host(catalog, placement, self.host)
            me = next((h for h in hosts if h.name == self.host), None)
            self._remote = me is not None and not me.local
            self._elsewhere = frozenset(
                key
                for key, on in placement.items()
                if self.host not in on and key[0] in self.drivers and self.drivers[key[0]].local_only
            )
        found_problems = sorted(set(problems + host_problems + more + placement_problems))
        return Loaded(found, catalog, found_problems, hosts, placement)

    def _observing(self, drivers: dict[str, Driver]) -> dict[str, Driver]:
        """The drivers that observe for this Host: on a remote Host, none that act on this machine (what they
        would find here is the local Hosts', never this one's, and would be pruned as undeclared)."""
        if not self._remote:
            return drivers
        return {kind: d for kind, d in drivers.items() if not d.local_only}

    def _here(self, observed: dict[str, Mapping[str, Observed]]) -> dict[str, Mapping[str, Observed]]:
        """Without what this machine holds for another Host of the fleet (a firewall list placed on another local
        Host): never pruned from here."""
        if not self._elsewhere:
            return observed
        return {
            kind: {n: o for n, o in objs.items() if (kind, n) not in self._elsewhere} for kind, objs in observed.items()
        }

    def load_valid(self) -> Loaded:
        loaded = self.load()
        if loaded.problems:
            raise ValidationFailed(loaded.problems)
        return loaded

    def plan(self, catalog: Catalog, prune: bool, keep_reason: str = "kept because of --no-prune") -> Plan:
        """Start a pass: fresh drivers observe, diff and plan."""
        drivers = self._pass_drivers = self.new_drivers()
        self._planned_with = (catalog, prune, keep_reason)
        observed = self._here(observe_all(catalog, self._observing(drivers)))
        return plan_changes(catalog, drivers, self.project, observed, prune=prune, keep_reason=keep_reason)

    def apply(
        self,
        plan: Plan,
        stop: Any = None,
        on_result: Callable[[Result], None] | None = None,
        rounds: int = 1,
        sleep: Callable[[float], None] = time.sleep,
    ) -> list[Result]:
        """Finish the pass `plan` started, with the drivers that planned it.

        With `rounds` above 1 (a command's `apply`; `watch` has its own per-object retries), what an engine fault
        failed (a 5xx the request's retries did not outlast, an answer lost after the engine acted: the error is
        `replannable`) is observed and planned again and the new plan applied, up to `rounds` passes in all (waits:
        APPLY_ROUND). Outcomes are never re-planned, even temporary ones (a rollout that did not converge, a
        replace rolled back): a fresh plan could find their spec applied and call them done. One result per object
        of `plan`, the last word on each, then the results of what only a later plan had (a parked container a
        failed removal left, say)."""
        results = self._execute(plan, stop, on_result)
        final = {r.change.key: r for r in results}
        extra: dict[Key, Result] = {}
        for round_number in range(1, rounds):
            retry = _worth_another_round([*final.values(), *extra.values()])
            if not retry or (stop is not None and stop.is_set()):
                break
            wait = APPLY_ROUND.delay(round_number)
            self.ctx.log.info("apply.round", round=round_number + 1, objects=len(retry), after=round(wait, 2))
            sleep(wait)
            catalog, prune, keep_reason = self._planned_with
            try:
                again = self.plan(catalog, prune=prune, keep_reason=keep_reason)
            except ReconcileError as exc:  # the engine went meanwhile: the first round's results stand
                self._pass_drivers = None
                self.ctx.log.warning("apply.round_failed", error=str(exc))
                break
            pending = {c.key for c in again.changes if c.pending or c.blocked is not None}
            for key in retry - pending:  # done after all: the answer of the first attempt was lost
                first = final.get(key) or extra[key]
                done = Result(first.change, Outcome.APPLIED, None, first.seconds)
                (final if key in final else extra)[key] = done
            # only what a fault failed (or what waited for it) runs again, and what no earlier round planned (a
            # leftover of a step a fault interrupted); anything else still pending (a permanent failure, an
            # outcome) is held, so what depends on it is skipped again rather than run without it
            runs = {c.key for c in again.changes if c.key in retry or (c.key not in final and c.key not in extra)}
            held = tuple(
                c
                if c.key in runs or not c.pending
                else dataclasses.replace(c, blocked=(final[c.key].error if c.key in final else None) or "not retried")
                for c in again.changes
            )

            def told(result: Result, runs: set[Key] = runs) -> None:
                if on_result is not None and result.change.key in runs and result.outcome is not Outcome.UNCHANGED:
                    on_result(result)

            for result in self._execute(dataclasses.replace(again, changes=held), stop, told):
                key = result.change.key
                if key not in runs or result.outcome is Outcome.UNCHANGED:
                    continue
                if key in final:
                    final[key] = dataclasses.replace(result, change=final[key].change)
                else:
                    extra[key] = result
        return [*(final[r.change.key] for r in results), *extra.values()]

    def _execute(self, plan: Plan, stop: Any, on_result: Callable[[Result], None] | None) -> list[Result]:
        drivers, self._pass_drivers = self._pass_drivers, None
        if drivers is None:
            raise PermanentError("internal error: apply without a plan of the same pass")
        return execute(
            plan,
            drivers,
            workers=self.workers,
            stop=stop,
            on_result=on_result,
            on_start=lambda change: self.ctx.progress(change.key, "applying", ""),
        )

    def updates(self, catalog: Catalog) -> UpdateCheck:
        """What the update policies of the declared objects find now (each driver's `updates` hook, fresh
        drivers: not part of a pass). A driver that fails is a problem of the check, logged, never raised: an
        update check must not stop a plan or a watch."""
        check = UpdateCheck()
        for kind, driver in self.new_drivers().items():
            desired = catalog.of_kind(kind)
            if not desired:
                continue
            try:
                check += driver.updates(desired)
            except ReconcileError as exc:
                self.ctx.log.warning("updates.unchecked", kind=kind, error=str(exc))
                check += UpdateCheck(
                    problems=tuple(((kind, d.name), f"cannot check for updates: {exc}") for d in desired)
                )
            except Exception:  # a driver's bug: the plan goes on without its updates
                self.ctx.log.exception("updates.crashed", kind=kind)
        return check

    def resync_observations(self) -> None:
        """The resync: the next pass observes afresh whatever the engine cannot vouch is unchanged."""
        if self.engine is not None:
            self.engine.resync()

    def reset_engine(self) -> None:
        """Forget the engine connection, so the next use reconnects (after the engine restarted)."""
        self.ctx.reset_engine()


def update_notes(plan: Plan, check: UpdateCheck) -> Plan:
    """`plan` with a note per update found (`Image/web: update available: 1.2.0 -> 1.3.1  (images.yaml:4)`): an
    available update is no change, so the plan's actions and its in-sync verdict stay as they are."""
    notes = tuple(f"Image/{u.image}: {u.summary}  ({u.file}:{u.line})" for u in check.found)
    return dataclasses.replace(plan, notes=plan.notes + notes) if notes else plan


def _worth_another_round(results: Iterable[Result]) -> set[Key]:
    """What another observe and plan may cure: failures of an engine fault, and changes skipped because of one
    (nothing when every failure is an outcome or permanent: a round would only skip them again)."""
    results = list(results)
    if not any(r.outcome is Outcome.FAILED and r.replannable for r in results):
        return set()
    return {
        r.change.key for r in results if (r.outcome is Outcome.FAILED and r.replannable) or r.outcome is Outcome.SKIPPED
    }
