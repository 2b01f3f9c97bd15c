"""Waiting for a service to converge, judged from its tasks, and rolling a failed update back.

A service has converged when its update (if one runs) completed and the tasks it wants running all run the
current task template (a task with a healthcheck reads `running` only once healthy): the replica count for a
replicated service, one per eligible node for a global one. A new service must then stay so for a settle window
(its update monitor): swarm watches the tasks of an update, but nothing watches a create's, and a command that
crashes after two seconds reads `running` first. It has failed when swarm paused or rolled back the
update, when tasks of the current template keep failing, or when the timeout passes.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from reconciler.errors import PermanentError, TemporaryError

FAILED_STATES = frozenset({"failed", "rejected", "orphaned"})
# a task swarm is taking away (scaled down, replaced) whose container still runs: not converged until it stopped
STOPPING_DESIRED = frozenset({"shutdown", "remove"})
STILL_UP = frozenset({"running", "starting"})
FAILURE_LIMIT = 3  # failed tasks of the current template that mean "this spec does not run"
POLL_SECONDS = 1.0
UPDATE_START_SECONDS = 5.0  # swarm starts an update within milliseconds; none at all when no task is dirty
_IGNORED_TEMPLATE_KEYS = ("Runtime",)  # in the service's template, never in its tasks'


@dataclass(frozen=True)
class Progress:
    """One look at a service: converged, failed (with why), or still going (with what it waits for)."""

    done: bool
    failure: str | None
    waiting_for: str


def _template(spec: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in (spec.get("TaskTemplate") or {}).items() if k not in _IGNORED_TEMPLATE_KEYS}


def _node_label(task: Mapping[str, Any], nodes: Mapping[str, str]) -> str:
    node = task.get("NodeID") or ""
    return f" on node {nodes.get(node, node[:12])}" if node else ""


def task_error(task: Mapping[str, Any], nodes: Mapping[str, str]) -> str:
    """`task 1a2b3c4d5e6f (slot 2) on node n1: failed: starting container failed: ...`"""
    status = task.get("Status") or {}
    slot = f" (slot {task['Slot']})" if task.get("Slot") else ""
    why = status.get("Err") or status.get("Message") or "no error reported"
    exit_code = (status.get("ContainerStatus") or {}).get("ExitCode")
    code = f" (exit code {exit_code})" if exit_code and f"({exit_code})" not in why else ""
    return f"task {task['ID'][:12]}{slot}{_node_label(task, nodes)}: {status.get('State')}: {why}{code}"


def last_failure(tasks: list[Mapping[str, Any]], nodes: Mapping[str, str], template: Any = None) -> str | None:
    """The most recent failed task (of `template`, when given), as `task_error` says it."""
    failed = [
        t
        for t in tasks
        if (t.get("Status") or {}).get("State") in FAILED_STATES and (template is None or t.get("Spec") == template)
    ]
    if not failed:
        return None
    latest = max(failed, key=lambda t: (t.get("Status") or {}).get("Timestamp") or t.get("UpdatedAt") or "")
    return task_error(latest, nodes)


def judge(
    info: Mapping[str, Any],
    tasks: list[Mapping[str, Any]],
    eligible_nodes: int,
    nodes: Mapping[str, str],
    since: str,
) -> Progress:
    """Pure: where service `info` stands given its `tasks`. `since` (RFC 3339) bounds the failures counted to
    tasks created by this apply; `eligible_nodes` is how many tasks a global service without constraints wants."""
    spec = info["Spec"]
    template = _template(spec)
    status = info.get("UpdateStatus") or {}
    state = status.get("State")
    recent = [t for t in tasks if (t.get("CreatedAt") or "") >= since]
    if state in ("paused", "rollback_paused", "rollback_started", "rollback_completed"):
        why = last_failure(recent, nodes) or status.get("Message") or state
        return Progress(False, f"update {state.replace('_', ' ')}: {why}", "")
    current = [t for t in tasks if t.get("Spec") == template]
    failed = [t for t in recent if t.get("Spec") == template and (t.get("Status") or {}).get("State") in FAILED_STATES]
    if len(failed) >= FAILURE_LIMIT:
        return Progress(False, last_failure(failed, nodes) or "tasks keep failing", "")
    wanted_running = [t for t in tasks if t.get("DesiredState") == "running"]
    running_current = [
        t for t in current if t.get("DesiredState") == "running" and t["Status"].get("State") == "running"
    ]
    stale = [t for t in wanted_running if t.get("Spec") != template]
    if "Global" in (spec.get("Mode") or {}):
        constrained = bool(((spec.get("TaskTemplate") or {}).get("Placement") or {}).get("Constraints"))
        want = len(wanted_running) if constrained else eligible_nodes
        want = max(want, 1)
    else:
        want = int(spec["Mode"]["Replicated"]["Replicas"])
    if state == "updating":
        return Progress(False, None, f"update in progress ({len(running_current)}/{want} tasks on the new spec)")
    if stale:
        return Progress(False, None, f"{len(stale)} task(s) still on the previous spec")
    not_running = [t for t in wanted_running if t["Status"].get("State") != "running"]
    stopping = [
        t
        for t in tasks
        if t.get("DesiredState") in STOPPING_DESIRED and (t.get("Status") or {}).get("State") in STILL_UP
    ]
    if len(running_current) >= want and not not_running:
        surplus = len(wanted_running) - want
        if "Replicated" in (spec.get("Mode") or {}) and surplus > 0:
            # the update is stored but the orchestrator has not yet told the tasks above the count to stop:
            # a scale to 0 read just after it finds every task still wanted running
            return Progress(False, None, f"{surplus} task(s) above {want} replica(s) not yet told to stop")
        if stopping:  # scaled down (to 0, say): done once the tasks taken away have stopped
            return Progress(False, None, f"{len(stopping)} task(s) still stopping")
        return Progress(True, None, "")
    starting = ", ".join(sorted({t["Status"].get("State", "?") for t in not_running})) or "none scheduled yet"
    why = next((t["Status"]["Err"] for t in not_running if t["Status"].get("Err")), "")
    return Progress(
        False, None, f"{len(running_current)}/{want} tasks running ({starting})" + (f": {why}" if why else "")
    )


class ServiceWaiter:
    """Polls one service until `judge` says done or failed, or `timeout` seconds pass."""

    def __init__(self, api: Any, log: Any, timeout: float, poll: float = POLL_SECONDS) -> None:
        self.api = api
        self.log = log
        self.timeout = timeout
        self.poll = poll

    def _nodes(self) -> tuple[int, dict[str, str]]:
        nodes = self.api.nodes()
        names = {n["ID"]: (n.get("Description") or {}).get("Hostname", n["ID"][:12]) for n in nodes}
        eligible = sum(
            1
            for n in nodes
            if (n.get("Status") or {}).get("State") == "ready" and (n.get("Spec") or {}).get("Availability") == "active"
        )
        return eligible, names

    def look(
        self, service_id: str, since: str
    ) -> tuple[Progress, Mapping[str, Any], list[Mapping[str, Any]], dict[str, str]]:
        info = self.api.inspect_service(service_id)
        tasks = self.api.tasks(filters={"service": service_id})
        eligible, names = self._nodes()
        return judge(info, tasks, eligible, names, since), info, tasks, names

    def wait(
        self,
        name: str,
        service_id: str,
        since: str,
        expect_update: bool = False,
        on_progress: Callable[[str], None] | None = None,
        settle: float = 0.0,
    ) -> None:
        """Return once converged (for `settle` seconds, with the same running tasks: none crashed and was replaced
        meanwhile); raise PermanentError (failed) or TemporaryError (timed out) otherwise.

        `expect_update`: the change rolls tasks. Until swarm's updater starts, the update status is empty and
        tasks whose endpoint (not template) is stale look current, so first wait (briefly) for it to start."""
        deadline = time.monotonic() + self.timeout
        if expect_update:
            started = time.monotonic() + UPDATE_START_SECONDS
            while time.monotonic() < started and not self.api.inspect_service(service_id).get("UpdateStatus"):
                time.sleep(self.poll / 4)
        last = ""
        settled: tuple[float, frozenset[str]] | None = None  # since when converged, with which running tasks
        while True:
            progress, _, tasks, names = self.look(service_id, since)
            if progress.done:
                running = frozenset(t["ID"] for t in tasks if (t.get("Status") or {}).get("State") == "running")
                if settled is None or settled[1] != running:
                    settled = (time.monotonic(), running)
                if time.monotonic() - settled[0] >= settle:
                    return
                progress = Progress(False, None, f"tasks running, settling ({settle:g}s)")
            else:
                settled = None
            if progress.failure is not None:
                raise PermanentError(progress.failure)
            if progress.waiting_for != last:
                last = progress.waiting_for
                self.log.info("service.waiting", name=name, waiting_for=last)
                if on_progress is not None:
                    on_progress(last)
            if time.monotonic() >= deadline:
                why = last_failure(tasks, names)
                raise TemporaryError(
                    f"not converged after {self.timeout:.0f}s: {last}" + (f"; last task error: {why}" if why else "")
                )
            time.sleep(self.poll)

    def wait_rollback(self, service_id: str) -> str:
        """Wait for a rollback to finish; its final state (`rollback_completed`, or why it did not)."""
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            info = self.api.inspect_service(service_id)
            state = (info.get("UpdateStatus") or {}).get("State")
            if state in ("rollback_completed", "rollback_paused"):
                return state
            time.sleep(self.poll)
        return f"rollback not finished after {self.timeout:.0f}s"
