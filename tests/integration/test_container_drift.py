"""Container drift made by hand on the real engine that is more than a field: a paused container, a renamed one,
a restart policy changed by `docker update`, and a freshly created container that exits at once."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.helpers import apply_ok, changes_of, doc, in_sync, plan_json, sleeper, write

pytestmark = pytest.mark.engine


def test_paused_container_is_unpaused(
    reconcile: Any, tmp_manifests: Any, project_name: str, base_image: str, api: Any
) -> None:
    """docker pause: plan shows state paused -> running, apply unpauses the same container, next plan exits 0."""
    name = f"{project_name}-c"
    directory = write(tmp_manifests, [doc("Container", name, sleeper(base_image))])
    apply_ok(reconcile, directory)
    cid = api.inspect_container(name)["Id"]
    api.pause(name)
    rc, plan = plan_json(reconcile, directory)
    assert rc == 2 and changes_of(plan) == {name: ("update", ["state"])}
    assert plan["changes"][0]["fields"][0]["old"] == "paused"
    apply_ok(reconcile, directory)
    state = api.inspect_container(name)["State"]
    assert state["Running"] and not state["Paused"] and api.inspect_container(name)["Id"] == cid
    in_sync(reconcile, directory)


def test_restart_policy_set_by_hand_is_taken_back(
    reconcile: Any, tmp_manifests: Any, project_name: str, base_image: str, api: Any
) -> None:
    """docker update --restart always on a container declared without one: updated back to "no" in place (the
    engine ignores an update naming an empty policy, so "no" must be said)."""
    name = f"{project_name}-c"
    directory = write(tmp_manifests, [doc("Container", name, sleeper(base_image))])
    apply_ok(reconcile, directory)
    cid = api.inspect_container(name)["Id"]
    api.update_container(name, restart_policy={"Name": "always"})
    rc, plan = plan_json(reconcile, directory)
    assert rc == 2 and changes_of(plan) == {name: ("update", ["restartPolicy"])}
    apply_ok(reconcile, directory)
    info = api.inspect_container(name)
    assert info["HostConfig"]["RestartPolicy"]["Name"] in ("no", "") and info["Id"] == cid
    in_sync(reconcile, directory)


def test_container_renamed_by_hand_is_renamed_back(
    reconcile: Any, tmp_manifests: Any, project_name: str, base_image: str, api: Any
) -> None:
    """docker rename: plan shows one in-place rename back (not delete + create), apply keeps the same container."""
    name = f"{project_name}-web"
    directory = write(tmp_manifests, [doc("Container", name, sleeper(base_image))])
    apply_ok(reconcile, directory)
    cid = api.inspect_container(name)["Id"]
    api.rename(name, f"{name}x")
    rc, plan = plan_json(reconcile, directory)
    assert rc == 2 and changes_of(plan) == {name: ("update", ["name"])}
    apply_ok(reconcile, directory)
    assert api.inspect_container(name)["Id"] == cid
    in_sync(reconcile, directory)


def test_renamed_container_beside_one_holding_the_name_is_pruned(
    reconcile: Any, tmp_manifests: Any, project_name: str, base_image: str, api: Any
) -> None:
    """A renamed copy while a container holds the declared name again: the copy is a leftover and is pruned."""
    name = f"{project_name}-web"
    directory = write(tmp_manifests, [doc("Container", name, sleeper(base_image))])
    apply_ok(reconcile, directory)
    api.rename(name, f"{name}x")
    apply_ok(reconcile, directory)  # renamed back
    api.rename(name, f"{name}x")
    api.stop(f"{name}x", timeout=1)
    labels = api.inspect_container(f"{name}x")["Config"]["Labels"]
    api.create_container(base_image, ["sleep", "300"], name=name, labels=labels)
    rc, plan = plan_json(reconcile, directory)
    assert rc == 2 and changes_of(plan)[f"{name}x"] == ("delete", [])
    apply_ok(reconcile, directory)
    names = {
        c["Names"][0] for c in api.containers(all=True, filters={"label": f"io.reconciler.project={project_name}"})
    }
    assert names == {f"/{name}"}


def test_leftover_aside_is_removed_under_no_prune(
    reconcile: Any, tmp_manifests: Any, project_name: str, base_image: str, api: Any
) -> None:
    """A stale `<name>__reconciler_old` next to its declared primary is replace state: plan --no-prune shows its
    removal with a note saying what it is, and apply --no-prune removes it (other leftovers are kept)."""
    name = f"{project_name}-web"
    directory = write(tmp_manifests, [doc("Container", name, sleeper(base_image))])
    apply_ok(reconcile, directory)
    labels = api.inspect_container(name)["Config"]["Labels"]
    stale = api.create_container(base_image, "true", name=f"{name}__reconciler_old", labels=labels)["Id"]
    gone = {**labels, "io.reconciler.name": f"{project_name}-gone"}
    kept = api.create_container(base_image, "true", name=f"{project_name}-gone", labels=gone)["Id"]
    proc = reconcile("plan", "--no-prune", directory, "--output", "json")
    rc, plan = proc.returncode, json.loads(proc.stdout)
    assert rc == 2 and changes_of(plan) == {f"{name}__reconciler_old": ("delete", [])}
    assert f"Container/{name}__reconciler_old: leftover of an interrupted replace of {name}" in " ".join(plan["notes"])
    assert not any("__reconciler_old: manifest gone" in n for n in plan["notes"])
    assert any(f"Container/{project_name}-gone: manifest gone" in n for n in plan["notes"])
    proc = reconcile("apply", "--no-prune", directory)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert not api.containers(all=True, filters={"id": stale})
    assert api.containers(all=True, filters={"id": kept})


def test_created_container_that_exits_at_once_fails_the_create(
    reconcile: Any, tmp_manifests: Any, project_name: str, base_image: str, api: Any
) -> None:
    """A new `state: running` container whose command exits at once fails its create clearly (not 'created' and
    drift in the next plan), and nothing of it is left behind."""
    name = f"{project_name}-oops"
    spec = {"image": base_image, "command": ["sh", "-c", "exit 3"], "stopTimeout": 1}
    directory = write(tmp_manifests, [doc("Container", name, spec)])
    proc = reconcile("apply", directory)
    assert proc.returncode == 1, proc.stdout
    assert "stopped right after starting (exit code 3)" in proc.stdout
    assert not api.containers(all=True, filters={"name": f"^/{name}$"})


def test_a_container_its_restart_policy_keeps_bringing_back_fails_the_create(
    reconcile: Any, tmp_manifests: Any, project_name: str, base_image: str, api: Any
) -> None:
    """`restartPolicy: always` and a command that dies after a moment: running at every look of the settle
    window, but restarted in between; that is a crash, reported as one, and nothing is left behind."""
    name = f"{project_name}-loop"
    spec = {
        "image": base_image,
        "command": ["sh", "-c", "sleep 0.2; exit 3"],
        "stopTimeout": 1,
        "restartPolicy": {"name": "always"},
    }
    directory = write(tmp_manifests, [doc("Container", name, spec)])
    proc = reconcile("apply", directory)
    assert proc.returncode == 1, proc.stdout
    assert "stopped right after starting" in proc.stdout, proc.stdout
    assert not api.containers(all=True, filters={"name": f"^/{name}$"})
