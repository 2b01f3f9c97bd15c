"""Where a service stands, beside its spec (issue 24, defect 1): an update in flight, paused or rolling back, or
tasks missing, is a pending change; old secret versions stay while a current or previous spec refers to them;
a scale to 0 is waited for until the tasks taken away have stopped."""

from __future__ import annotations

import copy
import json
from pathlib import Path

from reconciler.contract import DriverContext
from reconciler.drivers.swarm.converge import judge
from reconciler.drivers.swarm.diff import ROLLOUT, TASKS, found_steps, sends_update, standing
from reconciler.drivers.swarm.driver import SecretDriver
from reconciler.drivers.swarm.observe import ServiceFacts, task_counts
from reconciler.model import Action, Change, FieldChange, Observed

FIXTURES = Path(__file__).parent / "swarm_fixtures"
EPOCH = "2000-01-01T00:00:00Z"


def facts(state: str | None = None, tasks: tuple[int, int] | None = (2, 2), message: str = "") -> ServiceFacts:
    return ServiceFacts("id", 1, None, update_state=state, update_message=message, tasks=tasks)


def test_an_update_in_flight_or_stalled_is_never_in_sync() -> None:
    for state in ("updating", "rollback_started", "paused", "rollback_paused"):
        [marker] = standing(facts(state, message="update paused due to failure"), [])
        assert (marker.path, marker.old, marker.new) == (ROLLOUT, state, "completed")
        assert "update paused due to failure" in marker.note
    assert standing(facts("completed"), []) == []
    assert standing(facts("rollback_completed"), []) == []  # the spec differs from the manifest: fields say it
    assert found_steps(standing(facts("updating"), []), wait=True) == [
        "wait for the update in flight to converge; on failure roll it back to the previous spec"
    ]


def test_fewer_running_tasks_than_wanted_is_not_in_sync_unless_a_change_is_sent_anyway() -> None:
    [marker] = standing(facts(tasks=(0, 2)), [])
    assert (marker.path, marker.old, marker.new) == (TASKS, "0/2 running", "2/2 running")
    replicas = FieldChange("replicas", 3, 2, Action.UPDATE)
    assert standing(facts(tasks=(0, 2)), [replicas]) == []
    assert standing(facts(tasks=(2, 2)), []) == []
    assert standing(facts(tasks=None), []) == []


def test_task_counts_read_replicas_and_running_tasks() -> None:
    info = {"ID": "s1", "Spec": {"Mode": {"Replicated": {"Replicas": 3}}}}
    tasks = [
        {"ServiceID": "s1", "DesiredState": "running", "Status": {"State": "running"}},
        {"ServiceID": "s1", "DesiredState": "running", "Status": {"State": "starting"}},
        {"ServiceID": "s2", "DesiredState": "running", "Status": {"State": "running"}},
    ]
    assert task_counts(info, tasks) == (1, 3)
    assert task_counts({"ID": "s1", "Spec": {"Mode": {"Global": {}}}}, tasks) == (1, 2)


def test_only_a_new_spec_replaces_the_previous_one() -> None:
    marker = FieldChange(ROLLOUT, "updating", "completed", Action.UPDATE)
    assert not sends_update(Change("Service", "web", Action.UPDATE, (marker,)))
    assert sends_update(
        Change("Service", "web", Action.UPDATE, (marker, FieldChange("image", "a", "b", Action.UPDATE)))
    )
    assert not sends_update(Change("Service", "web", Action.NONE))


def test_old_versions_stay_while_a_current_or_previous_spec_refers_to_them(tmp_path: Path) -> None:
    driver = SecretDriver(DriverContext("p", tmp_path))
    old = Observed("Secret", "pw-1", "sec1", {}, {"engineName": "pw-1"})
    delete = Change("Secret", "pw-1", Action.DELETE, observed=old)
    update = Change("Service", "web", Action.UPDATE, (FieldChange("secrets.pw", "pw-1", "pw-2", Action.UPDATE),))
    resume = Change("Service", "web", Action.UPDATE, (FieldChange(ROLLOUT, "updating", "completed", Action.UPDATE),))
    removed = Change("Service", "web", Action.DELETE)
    cases = [
        ("current", update, Action.NONE),  # becomes the previous spec: a rollback needs it
        ("previous", update, Action.DELETE),  # the update sent makes the current spec the previous one
        ("previous", resume, Action.NONE),  # an update in flight: its rollback returns to this version
        ("previous", removed, Action.DELETE),
        ("current", removed, Action.DELETE),
    ]
    for which, service_change, action in cases:
        driver._users = {"sec1": [("web", "p", which)]}
        got = driver.after_plan(delete, {("Service", "web"): service_change})
        assert got.action is action, (which, service_change, got)
    driver._users = {"sec1": [("other", "q", "previous")]}
    assert driver.prune(old).action is Action.NONE  # another project's rollback needs it


def test_a_scale_down_waits_until_the_tasks_taken_away_have_stopped() -> None:
    doc = json.loads((FIXTURES / "service-full.json").read_text())
    info, tasks = doc["service"], [t for t in doc["tasks"] if t["DesiredState"] == "running"]
    info = copy.deepcopy(info)
    assert judge(info, tasks, 1, {}, EPOCH).done
    stopping = copy.deepcopy(tasks[0])
    stopping["ID"] = "stopping-task"
    stopping["DesiredState"] = "shutdown"
    progress = judge(info, [*tasks, stopping], 1, {}, EPOCH)
    assert not progress.done and progress.waiting_for == "1 task(s) still stopping"
    stopping["Status"]["State"] = "shutdown"
    assert judge(info, [*tasks, stopping], 1, {}, EPOCH).done
