"""`reconcile watch`: converge, then keep the host converged.

One loop in the main thread runs passes one at a time (single flight). Triggers (the manifest directory, the
engine's events, the resync timer, retry timers) only put requests in a coalescing queue. Every pass is level
triggered and whole: it re-reads the manifests (keeping the last valid version of a broken file), re-observes
the engine, plans the whole project and applies every pending change except those of objects waiting out a
backoff. Observing is one label-filtered listing per kind; while the engine's event stream is connected the
engine remembers its inspect answers between passes and asks again only about objects an event (or this
process's own write) named since; the resync also drops what the engine's event log names since the last one
(an event the stream dropped), or everything when the log cannot vouch for that time. An event's keys only decide
*when* a pass runs, never what it may skip.
"""

from __future__ import annotations

import dataclasses
import hashlib
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import structlog

from reconciler.contract import EngineEvent
from reconciler.core.catalog import Catalog
from reconciler.core.failures import write_failures
from reconciler.core.project import Loaded, ProjectRunner
from reconciler.delays import ENGINE_DOWN, RESYNC_SPREAD, spread
from reconciler.errors import EngineUnavailable, Problem, ReconcileError
from reconciler.model import Action, Change, Desired, ErrorClass, Outcome, Plan, Result
from reconciler.spechash import canonical_json
from reconciler.watch.backoff import FailureMemory
from reconciler.watch.lastgood import Assembly, LastValid, Use
from reconciler.watch.metrics import Metrics
from reconciler.watch.statuspage import StatusBoard
from reconciler.watch.triggers import Batch, Key, WorkQueue

log = structlog.get_logger()

EVENT_SETTLE_SECONDS = 0.15


@dataclass(frozen=True)
class WatchOptions:
    prune: bool = True
    allow_empty: bool = False
    resync: float = 300.0


def _subject(key: Key) -> str:
    return f"{key[0]}/{key[1]}"


class PassObserver(Protocol):
    """Follows the passes (the status page's board, the live view): told of each pass, its plan, every result."""

    def pass_started(self, number: int, reasons: list[str]) -> None: ...

    def planned(self, plan: Plan) -> None: ...

    def result(self, result: Result) -> None: ...

    def pass_done(self, results: list[Result], failures: dict[str, dict[str, Any]]) -> None: ...

    def pass_failed(self, error: str) -> None: ...


class Controller:
    """The watch loop's state: last valid manifests, what it remembers per object (`memory`: applied, failing,
    held; repair counts), the engine's backoff, the queue."""

    def __init__(
        self,
        runner: ProjectRunner,
        engine: str,
        options: WatchOptions,
        metrics: Metrics | None = None,
        memory: FailureMemory[Key] | None = None,
        board: StatusBoard | None = None,
        observers: Sequence[PassObserver] = (),
    ) -> None:
        self.runner = runner
        self.engine = engine
        self.options = options
        self.metrics = metrics or Metrics()
        self.memory: FailureMemory[Key] = memory or FailureMemory()  # per object: spec applied, failure, repairs
        self.board = board  # the status page's view of the passes (with --metrics-addr)
        self.observers: list[PassObserver] = [o for o in (board, *observers) if o is not None]  # + the live view
        self.sources = LastValid(runner.manifest_dir)
        self.queue = WorkQueue()
        self.stop = threading.Event()
        self.blocked: dict[Key, str] = {}  # objects skipped because something they need failed
        self.engine_failures = 0  # passes in a row that found the engine unreachable
        self.engine_retry_at: float | None = None
        self.inputs: frozenset[Path] = frozenset()  # files besides the manifests that the documents are read from
        self.on_inputs: Callable[[frozenset[Path]], None] | None = None  # told when `inputs` change
        self.passes = 0
        self.catalog: Catalog | None = None  # the last valid manifests a pass planned (the update checks read it)
        self._known: set[Key] = set()
        self._known_lock = threading.Lock()
        self._reported: tuple[frozenset[Problem], tuple[str, ...], tuple[str, ...], tuple[str, ...]] | None = None
        self._written: dict[str, dict[str, Any]] | None = None

    # --- triggers' view ---------------------------------------------------------------------------------

    def known(self) -> set[Key]:
        """Declared and observed-owned objects of the last plan (what engine events are matched against)."""
        with self._known_lock:
            return set(self._known)

    def event_keys(self, event: EngineEvent) -> set[Key]:
        """The known objects an engine event is about, as the drivers of their kinds read it."""
        known = self.known()
        return {
            key
            for driver in self.runner.drivers.values()
            for key in driver.event_keys(event, self.runner.project, known)
        }

    @property
    def retry_at(self) -> float | None:
        """When the next per-object retry is due (monotonic), or None."""
        return self.memory.retry_at

    def request(self, reason: str, keys: set[Key] | None = None) -> None:
        self.queue.add(reason, keys)

    def request_stop(self, *_: object) -> None:
        """Signal handler: no new change starts; the one in flight finishes; then the loop ends. It never logs:
        the signal may arrive while this thread holds the log writer's (non-reentrant) lock."""
        self.stop.set()
        self.queue.wake()

    # --- the loop ---------------------------------------------------------------------------------------

    def _next_resync(self) -> float:
        # spread, so many hosts resyncing against one registry do not do it in step
        return time.monotonic() + max(0.1, spread(self.options.resync, RESYNC_SPREAD))

    def run(self) -> None:
        """Pass after pass until `stop` is set."""
        self.request("startup")
        next_resync = self._next_resync()
        while not self.stop.is_set():
            self.metrics.tick()
            deadlines = [d for d in (next_resync, self.retry_at, self.engine_retry_at) if d is not None]
            timeout = min(5.0, max(0.0, min(deadlines) - time.monotonic()))
            batch = self.queue.take(timeout)
            if self.stop.is_set():
                break
            now = time.monotonic()
            if batch is None:
                batch = Batch(everything=True)
                if now >= next_resync:
                    batch.reasons.add("resync")
                if self.engine_retry_at is not None and now >= self.engine_retry_at:
                    batch.reasons.add("engine.retry")
                if self.retry_at is not None and now >= self.retry_at:
                    batch.reasons.add("retry")
                if not batch.reasons:
                    continue
            if batch.reasons and all(r.startswith("event:") for r in batch.reasons):
                batch = self._gather_events(batch)
            engine_waiting = self.engine_retry_at is not None and now < self.engine_retry_at
            if engine_waiting and "engine.reconnected" not in batch.reasons:
                continue  # the engine retry pass re-reads everything anyway
            self.run_pass(batch)
            next_resync = self._next_resync()
        log.info("watch.stopping")

    def _gather_events(self, batch: Batch) -> Batch:
        """Engine events come in bursts (`docker rm -f` sends die, then destroy): wait a moment and take the
        rest of the burst into the same pass, so the pass does not plan against a half-removed object."""
        time.sleep(EVENT_SETTLE_SECONDS)
        more = self.queue.take(0)
        if more is not None:
            batch.everything |= more.everything
            batch.keys |= more.keys
            batch.reasons |= more.reasons
        return batch

    def run_pass(self, batch: Batch | None = None) -> list[Result]:
        """One whole pass; never raises for an expected failure (it is logged and retried later)."""
        batch = batch or Batch(everything=True, reasons={"manual"})
        if "resync" in batch.reasons:
            self.memory.release_permanent()  # a condition outside the object (a port freed) may have gone
            self.runner.resync_observations()  # read again what a dropped event may have left untold
        elif "engine.reconnected" in batch.reasons:
            # The engine restarted: a daemon shutting down stops containers while it still answers, so a change
            # in flight then can fail in a way that looks permanent ("stopped right after starting, exit code 0")
            # and is not the spec's fault
            for key in self.memory.release_permanent():
                log.info("object.retry_now", subject=_subject(key), reason="the engine restarted")
        self.passes += 1
        started = time.monotonic()
        log.info(
            "pass.started",
            number=self.passes,
            reasons=",".join(sorted(batch.reasons)),
            objects=",".join(_subject(k) for k in sorted(batch.keys)) or None,
        )
        for observer in self.observers:
            observer.pass_started(self.passes, sorted(batch.reasons))
        try:
            results = self._pass()
        except EngineUnavailable as exc:
            self._engine_down(str(exc))
            self.metrics.pass_done("error", time.monotonic() - started)
            self._board_failed(str(exc))
            return []
        except ReconcileError as exc:
            self._engine_down(str(exc), what="pass.failed")
            self.metrics.pass_done("error", time.monotonic() - started)
            self._board_failed(str(exc))
            return []
        except Exception as exc:  # a bug must not end a process that runs for months: log, retry later
            log.exception("pass.crashed", error=repr(exc))
            self._engine_down(repr(exc), what="pass.crashed")
            self.metrics.pass_done("error", time.monotonic() - started)
            self._board_failed(repr(exc))
            return []
        seconds = time.monotonic() - started
        ok = all(r.outcome in (Outcome.APPLIED, Outcome.UNCHANGED) for r in results)
        self.metrics.pass_done("ok" if ok else "failed", seconds)
        log.info(
            "pass.done",
            number=self.passes,
            seconds=round(seconds, 3),
            applied=sum(r.outcome is Outcome.APPLIED for r in results),
            failing=len(self.memory.failures()),
        )
        return results

    def _board_failed(self, error: str) -> None:
        for observer in self.observers:
            observer.pass_failed(error.splitlines()[0][:300] if error else "failed")

    def _on_result(self, result: Result) -> None:
        self.metrics.tick()
        for observer in self.observers:
            observer.result(result)

    # --- one pass -----------------------------------------------------------------------------------------

    def _assemble(self) -> tuple[Assembly, Loaded | None]:
        last: dict[str, Loaded] = {}

        def check(resources: list[Any]) -> list[Problem]:
            loaded = self.runner.load(resources=resources)
            last["loaded"] = loaded
            return loaded.problems

        assembly = self.sources.assemble(check)
        self._report(assembly)
        self._note_inputs(assembly)
        return assembly, (last.get("loaded") if assembly.ok else None)

    def _note_inputs(self, assembly: Assembly) -> None:
        """Tell the file watcher which files besides the manifests the documents are read from (the drivers'
        `inputs`: env files, build contexts, configuration), so an edit of one triggers a pass."""
        paths: set[Path] = set()
        for resource in assembly.read:
            driver = self.runner.drivers.get(resource.kind)
            if driver is not None:
                paths.update(Path(p) for p in driver.inputs(resource))
        inputs = frozenset(paths)
        if inputs != self.inputs:
            self.inputs = inputs
            log.info("watch.inputs", files=len(inputs))
            if self.on_inputs is not None:
                self.on_inputs(inputs)

    def _report(self, assembly: Assembly) -> None:
        """Log manifest problems (each with file:line) when they differ from the last pass's."""
        kept, left = tuple(assembly.using(Use.LAST_VALID)), tuple(assembly.using(Use.LEFT_OUT))
        suspended = tuple(assembly.using(Use.SUSPENDED))
        current = (frozenset(assembly.problems), kept, left + suspended, tuple(assembly.emptied))
        if current == self._reported:
            return
        self._reported = current
        for problem in assembly.problems:
            log.error("manifest.invalid", problem=str(problem))
        for rel in kept:
            if rel in assembly.emptied:
                log.warning(
                    "manifest.emptied",
                    file=rel,
                    hint="the file is empty: its last valid version stays in force until it has content again; "
                    "delete the file to prune its objects",
                )
            else:
                log.warning(
                    "manifest.kept_last_valid", file=rel, hint="its objects stay as they were until it is fixed"
                )
        for rel in left:
            log.warning("manifest.left_out", file=rel, hint="invalid and not valid since watch started; nothing pruned")
        for rel in suspended:
            log.warning(
                "manifest.suspended",
                file=rel,
                hint="neither this version nor its last valid version fits the other files (see the problems above); "
                "its objects are left as they are and nothing is pruned until it fits again",
            )
        if not assembly.ok:
            log.error("manifests.inconsistent", hint="no consistent set of manifests; nothing is changed")
        elif not assembly.problems and self.passes > 1:
            log.info("manifests.valid", files=assembly.files)
        self.metrics.set_gauges(problems=len(assembly.problems))

    def _prune_decision(self, assembly: Assembly) -> tuple[bool, str]:
        if not self.options.prune:
            return False, "kept because of --no-prune"
        if not assembly.resources and not self.options.allow_empty:
            log.warning(
                "manifests.empty", dir=str(self.runner.manifest_dir), hint="nothing is pruned without --allow-empty"
            )
            return False, "kept: the manifest directory is empty or missing (use --allow-empty to prune)"
        if not assembly.complete:
            return (
                False,
                "kept: a manifest is left out of this pass (invalid with no valid version yet, or conflicting with "
                "the other files); nothing is pruned until it is fixed",
            )
        return True, ""

    def _pass(self) -> list[Result]:
        assembly, loaded = self._assemble()
        if loaded is None:
            self._board_failed("no consistent set of manifests; nothing was changed (see the log)")
            return []
        prune, keep_reason = self._prune_decision(assembly)
        self.catalog = loaded.catalog
        plan = self.runner.plan(loaded.catalog, prune=prune, keep_reason=keep_reason)
        self._engine_up()
        with self._known_lock:
            self._known = {c.key for c in plan.changes}
        self._forget_except(self._known)
        plan, repairs = self._hold(plan)
        for observer in self.observers:
            observer.planned(plan)
        results = self.runner.apply(plan, stop=self.stop, on_result=self._on_result)
        gone = [r for r in results if r.outcome is Outcome.FAILED and r.error_class is ErrorClass.UNAVAILABLE]
        if gone:
            raise EngineUnavailable(f"the engine went away during the pass ({gone[0].error})")
        self._account(results, repairs)
        self._write_state()
        for observer in self.observers:
            observer.pass_done(results, self.failures_state())
        return results

    def _forget_except(self, known: set[Key]) -> None:
        """Drop what is kept per object for objects neither declared nor observed any more: a watch that runs for
        months over names that come and go must not keep a record of every name it ever saw."""
        self.memory.forget_except(known)

    def _is_repair(self, change: Change) -> bool:
        """Re-applying a spec that was already applied (or seen in sync): something on the host undid it."""
        return (
            change.action is not Action.DELETE
            and change.desired is not None
            and self.memory.is_repair(change.key, _fingerprint(change.desired))
        )

    def _hold(self, plan: Plan) -> tuple[Plan, set[Key]]:
        """Mark pending changes of objects in backoff (or in a repair storm) as blocked, so the executor skips
        them and their dependents; return the plan and the keys whose change is a repair."""
        changes: list[Change] = []
        repairs: set[Key] = set()
        self.memory.holds_decided()  # retries due after this are not tried in this pass
        for change in plan.changes:
            if change.pending:
                desired = _fingerprint(change.desired)
                if self.memory.manifest_changed(change.key, desired):
                    # A new spec deserves a try now, not after the old backoff or repair-storm hold; an edit is
                    # someone acting on the object, so its repairs are counted afresh.
                    self.memory.edited(change.key)
                    log.info("object.retry_now", subject=change.subject, reason="manifest changed")
                elif self.memory.observed_changed(change.key, _seen(change)):
                    self.memory.release(change.key)
                retry = self.memory.held(change.key)
                if retry is None and self._is_repair(change):
                    retry = self.memory.repair_storm(change.key, desired)
                    if retry is not None:
                        wait = retry.not_before - self.memory.clock()
                        log.warning("object.repair_storm", subject=change.subject, retry_in=round(wait, 1))
                if retry is not None:
                    when = (
                        "held after a permanent failure until its manifest or the object changes"
                        if retry.permanent
                        else f"waiting to retry at {retry.next_retry_iso}"
                    )
                    change = dataclasses.replace(change, blocked=f"{when} (last error: {retry.error})")
                elif self._is_repair(change):
                    repairs.add(change.key)
            changes.append(change)
        return dataclasses.replace(plan, changes=tuple(changes)), repairs

    def _account(self, results: list[Result], repairs: set[Key]) -> None:
        self.blocked = {}
        for result in results:
            change, key = result.change, result.change.key
            if result.outcome in (Outcome.APPLIED, Outcome.UNCHANGED):
                if result.outcome is Outcome.APPLIED:
                    self.metrics.change_applied(change.kind, change.action.value)
                    if key in repairs:
                        count = self.memory.repaired(key)
                        log.info("object.repaired", subject=change.subject, action=change.action.value, count=count)
                if self.memory.succeeded(key, _fingerprint(change.desired)):
                    log.info("object.recovered", subject=change.subject)
            elif result.outcome is Outcome.FAILED:
                self.metrics.change_failed(change.kind)
                permanent = result.error_class is ErrorClass.PERMANENT
                retry = self.memory.failed(
                    key,
                    result.error or "failed",
                    result.retry_after,
                    permanent=permanent,
                    desired=_fingerprint(change.desired),
                    log_tail=result.log_tail,
                )
                log.warning(
                    "object.held" if permanent else "object.retry_scheduled",
                    subject=change.subject,
                    failures=retry.failures,
                    next_retry=retry.next_retry_iso,
                    error_class=(result.error_class or ErrorClass.PERMANENT).value,
                    error=result.error,
                )
            elif result.outcome is Outcome.SKIPPED and not (result.error or "").startswith("cancelled"):
                self.blocked[key] = result.error or "a dependency did not complete"
        self.memory.schedule()
        self.metrics.set_gauges(failing=len(self.memory.failures()))

    # --- the engine ---------------------------------------------------------------------------------------

    def _engine_up(self) -> None:
        if self.engine_failures:
            log.info("engine.available", after_failures=self.engine_failures)
        self.engine_failures = 0
        self.engine_retry_at = None
        self.metrics.set_gauges(engine_up=True)

    def _engine_down(self, error: str, what: str = "engine.unavailable") -> None:
        """Back off the whole pass and drop the client, so the next pass connects afresh (a restarted
        dockerd leaves the old client's pooled connections dead)."""
        self.engine_failures += 1
        delay = ENGINE_DOWN.delay(self.engine_failures)
        self.engine_retry_at = time.monotonic() + delay
        self.runner.reset_engine()
        self.metrics.set_gauges(engine_up=False)
        log.warning(what, error=error.splitlines()[0][:300], retry_in=delay, attempt=self.engine_failures)

    # --- what `status` reads ------------------------------------------------------------------------------

    def failures_state(self, running: bool = True) -> dict[str, dict[str, Any]]:
        state: dict[str, dict[str, Any]] = {}
        for key, retry in sorted(self.memory.failures().items()):
            state[_subject(key)] = {
                "status": "failing",
                "error": retry.error,
                "failures": retry.failures,
                "reason": retry.reason,
                "errorClass": "permanent" if retry.permanent else "temporary",
                "nextRetry": retry.next_retry_iso if running else None,
                **({"logTail": list(retry.log_tail)} if retry.log_tail else {}),
            }
        for key, reason in sorted(self.blocked.items()):
            state.setdefault(_subject(key), {"status": "blocked", "error": reason, "nextRetry": None})
        return state

    def _write_state(self, running: bool = True) -> None:
        state = self.failures_state(running)
        if state == self._written:
            return
        try:
            write_failures(self.runner.project, self.engine, state)
            self._written = state
        except OSError as exc:
            log.warning("state.write_failed", error=str(exc))

    def close(self) -> None:
        """Leave the failures for `status`, without retry times nobody will keep."""
        self._write_state(running=False)


def _fingerprint(desired: Desired | None) -> str | None:
    """What the manifest asks of an object, all of it: the spec hash covers only the fields whose change needs
    a replace, so an edit of an in-place field (a memory limit) would otherwise look like a repair of the same
    spec (and five of them like a repair storm), and would not count as the manifest changing after a failure."""
    if desired is None:
        return None
    digest = hashlib.sha256(canonical_json(desired.spec).encode()).hexdigest()[:16]
    return f"{desired.spec_hash}+{digest}"


def _seen(change: Change) -> str | None:
    """A fingerprint of what was observed of a change's object (None: nothing was there)."""
    obs = change.observed
    return None if obs is None else f"{obs.id} {canonical_json(obs.spec)}"
