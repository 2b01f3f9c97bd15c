"""When a service counts as converged or failed, judged from real task lists (tests/unit/swarm_fixtures)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from reconciler.drivers.swarm.converge import FAILURE_LIMIT, judge

FIXTURES = Path(__file__).resolve().parent / "swarm_fixtures"
EPOCH = "2000-01-01T00:00:00Z"


def captured() -> tuple[dict[str, Any], list[dict[str, Any]]]:
    doc = json.loads((FIXTURES / "service-full.json").read_text())
    return doc["service"], [t for t in doc["tasks"] if t["DesiredState"] == "running"]


def test_all_tasks_running_on_the_current_template_is_converged() -> None:
    """Two running tasks of the current template for two replicas: done."""
    info, tasks = captured()
    progress = judge(info, tasks, 1, {}, EPOCH)
    assert progress.done and progress.failure is None


def test_tasks_of_the_previous_template_mean_not_yet() -> None:
    """Right after an update, before swarm starts it, the old tasks still run: not converged."""
    info, tasks = captured()
    info = copy.deepcopy(info)
    info["Spec"]["TaskTemplate"]["ContainerSpec"]["Env"].append("NEW=1")
    progress = judge(info, tasks, 1, {}, EPOCH)
    assert not progress.done and progress.failure is None
    assert "previous spec" in progress.waiting_for


def test_a_paused_update_fails_with_the_last_task_error() -> None:
    """UpdateStatus paused: failed, naming the task, its node and its error."""
    info, tasks = captured()
    info = copy.deepcopy(info)
    info["UpdateStatus"] = {"State": "paused", "Message": "update paused due to failure or early termination"}
    failed = copy.deepcopy(tasks[0])
    failed["Status"] = {"State": "failed", "Err": "task: non-zero exit (3)", "Timestamp": "2030-01-01T00:00:00Z"}
    progress = judge(info, [*tasks, failed], 1, {failed["NodeID"]: "node-1"}, EPOCH)
    assert progress.failure is not None
    assert f"task {failed['ID'][:12]}" in progress.failure and "on node node-1" in progress.failure
    assert "non-zero exit (3)" in progress.failure


def test_repeated_failures_of_the_current_template_fail_a_create() -> None:
    """No update status (a create): FAILURE_LIMIT failed tasks of this template since the apply began fail it."""
    info, tasks = captured()
    failures = []
    for i in range(FAILURE_LIMIT):
        task = copy.deepcopy(tasks[0])
        task["ID"] = f"{i}" * 25
        task["DesiredState"] = "shutdown"
        task["Status"] = {"State": "rejected", "Err": "No such image", "Timestamp": f"2030-01-01T00:00:0{i}Z"}
        failures.append(task)
    progress = judge(info, [*tasks[:1], *failures], 1, {}, EPOCH)
    assert progress.failure is not None and "rejected: No such image" in progress.failure
    old = judge(info, [*tasks[:1], *failures], 1, {}, "2099-01-01T00:00:00Z")  # before this apply: not counted
    assert old.failure is None and not old.done


def test_a_global_service_wants_one_task_per_eligible_node() -> None:
    """Global without constraints: as many running tasks as ready, active nodes."""
    info, tasks = captured()
    info = copy.deepcopy(info)
    info["Spec"]["Mode"] = {"Global": {}}
    info["Spec"]["TaskTemplate"]["Placement"].pop("Constraints")
    for task in tasks:  # the tasks of that template (a service's template also says Runtime; tasks do not)
        task["Spec"] = {k: v for k, v in info["Spec"]["TaskTemplate"].items() if k != "Runtime"}
    assert judge(info, tasks, 2, {}, EPOCH).done
    assert not judge(info, tasks, 3, {}, EPOCH).done


def test_a_scale_down_the_orchestrator_has_not_acted_on_yet_is_not_converged() -> None:
    """Read just after replicas went 2 -> 0, both tasks are still wanted running: not done (an apply returned
    while the tasks ran); done once they are told to stop and have stopped."""
    info, tasks = captured()
    info = copy.deepcopy(info)
    info["Spec"]["Mode"]["Replicated"]["Replicas"] = 0
    progress = judge(info, tasks, 1, {}, EPOCH)
    assert not progress.done and "not yet told to stop" in progress.waiting_for
    stopping = [{**t, "DesiredState": "shutdown"} for t in tasks]
    assert not judge(info, stopping, 1, {}, EPOCH).done
    gone = [{**t, "DesiredState": "shutdown", "Status": {**t["Status"], "State": "shutdown"}} for t in tasks]
    assert judge(info, gone, 1, {}, EPOCH).done
