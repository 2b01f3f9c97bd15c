"""One-shot containers (`state: completed`) on the real engine: run once to exit 0 before the containers waiting
for them with `condition: completed` start, in sync afterwards and never started again; a non-zero exit fails the
apply with the exit code and the container's output, and its dependents are not started; a failed run is run again
by the next apply."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.helpers import SLEEPER, apply_ok, doc, in_sync, plan_json, write

pytestmark = pytest.mark.engine


# slow on purpose (the app finds the file only if its start waited for the job's exit); fails while ./gate/ok
# is missing, so an unchanged job can fail and then succeed
JOB = "sleep 2; test -f /gate/ok || { echo migration-broke-here; exit 3; }; touch /data/done"


def stack(p: str, image: str, tmp_manifests: Any, gate_open: bool) -> list[dict[str, Any]]:
    """`<p>-job` (a one-shot on volume `<p>-data`) and `<p>-app`, which exits at once unless the job's file is
    there when it starts."""
    tmp_manifests("gate/.keep", "")
    if gate_open:
        tmp_manifests("gate/ok", "")
    data = [{"type": "volume", "source": f"{p}-data", "target": "/data"}]
    gate = [*data, {"type": "bind", "source": "./gate", "target": "/gate"}]
    return [
        doc("Volume", f"{p}-data", {"reclaimPolicy": "Delete"}),
        doc(
            "Container",
            f"{p}-job",
            {
                "image": image,
                "command": ["sh", "-c", JOB],
                "mounts": gate,
                "state": "completed",
                "completionTimeout": "60s",
            },
        ),
        doc(
            "Container",
            f"{p}-app",
            {
                "image": image,
                "command": ["sh", "-c", f"test -f /data/done || exit 9; {SLEEPER}"],
                "mounts": data,
                "stopTimeout": 1,
                "dependsOn": [{"name": f"{p}-job", "condition": "completed", "timeout": "60s"}],
            },
        ),
    ]


def started_at(api: Any, name: str) -> str:
    return str(api.inspect_container(name)["State"]["StartedAt"])


def test_a_one_shot_runs_once_before_its_dependents_and_is_then_in_sync(
    reconcile: Any, tmp_manifests: Any, project_name: str, base_image: str, api: Any
) -> None:
    p = project_name
    directory = write(tmp_manifests, stack(p, base_image, tmp_manifests, gate_open=True))
    apply_ok(reconcile, directory)
    job = api.inspect_container(f"{p}-job")["State"]
    assert (job["Status"], job["ExitCode"]) == ("exited", 0)
    assert api.inspect_container(f"{p}-app")["State"]["Running"]

    in_sync(reconcile, directory)  # exited 0 is what it is declared to do: no drift
    first = started_at(api, f"{p}-job")
    apply_ok(reconcile, directory)
    assert started_at(api, f"{p}-job") == first, "a completed one-shot is never started again"


def test_a_failing_one_shot_fails_the_apply_with_its_exit_code_and_output(
    reconcile: Any, tmp_manifests: Any, project_name: str, base_image: str, api: Any
) -> None:
    p = project_name
    directory = write(tmp_manifests, stack(p, base_image, tmp_manifests, gate_open=False))
    proc = reconcile("apply", directory)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    assert "exit code 3" in out, out
    assert not api.containers(all=True, filters={"name": f"^/{p}-app$"}), "its dependent is not created"
    status = reconcile("status", directory, "-o", "json")
    (row,) = [r for r in json.loads(status.stdout)["objects"] if r["name"] == f"{p}-job"]
    assert row["logTail"] == ["migration-broke-here"], row

    rc, plan = plan_json(reconcile, directory)
    job = {c["name"]: c for c in plan["changes"]}[f"{p}-job"]
    assert rc == 2 and job["action"] == "update", job
    assert [f["path"] for f in job["fields"]] == ["state"] and job["steps"] == [f"run {p}-job to completion"]
    assert "(in place; exit code 3)" in reconcile("plan", directory).stdout

    # the cause fixed outside the spec: the same container is run again (not replaced), then the app starts
    failed = api.inspect_container(f"{p}-job")["Id"]
    tmp_manifests("gate/ok", "")
    apply_ok(reconcile, directory)
    in_sync(reconcile, directory)
    job_state = api.inspect_container(f"{p}-job")
    assert job_state["Id"] == failed and job_state["State"]["ExitCode"] == 0
    assert api.inspect_container(f"{p}-app")["State"]["Running"]


def test_completed_conditions_must_match_the_dependencys_state(
    reconcile: Any, tmp_manifests: Any, base_image: str
) -> None:
    docs = [
        doc("Container", "job", {"image": base_image, "state": "completed"}),
        doc("Container", "svc", {"image": base_image}),
        doc("Container", "web-a", {"image": base_image, "dependsOn": [{"name": "job"}]}),
        doc("Container", "web-b", {"image": base_image, "dependsOn": [{"name": "svc", "condition": "completed"}]}),
        doc("Container", "job-c", {"image": base_image, "state": "completed", "restartPolicy": {"name": "always"}}),
    ]
    proc = reconcile("validate", write(tmp_manifests, docs))
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1
    assert "wait for it with `condition: completed`" in out, out
    assert "is not declared `state: completed`" in out, out
    assert "restartPolicy always restarts a container that ran to completion" in out, out
