"""Service, Secret and Config on the real test engine, a one-node swarm manager (scripts/testenv.sh).

Every test works in its own project and removes every service, secret and config it made (then conftest's
project cleanup removes its networks); nothing else on the engine is touched.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from docker.errors import NotFound

from tests.conftest import configured_docker_host
from tests.helpers import WatchProcess, wait_for
from tests.swarmhelpers import (
    LABEL,
    apply_ok,
    changes_of,
    doc,
    docker_cli,
    exec_output,
    plan_json,
    remove_swarm_objects,
    running_tasks,
    service,
    task_container,
    write,
)

pytestmark = pytest.mark.engine


@pytest.fixture
def swarm_project(api: Any, project_name: str) -> Iterator[str]:
    """The test's project; its swarm objects are removed afterwards (before conftest removes its networks)."""
    info = api.info().get("Swarm") or {}
    if info.get("LocalNodeState") != "active" or not info.get("ControlAvailable"):
        pytest.fail("the test engine is not a swarm manager; run scripts/testenv.sh up")
    yield project_name
    remove_swarm_objects(api, project_name)


def test_replicated_service_secret_rotation_noop_and_drift(
    api: Any, swarm_project: str, reconcile: Any, tmp_manifests: Any, base_image: str, free_subnet: Any
) -> None:
    """Create (overlay network, secret, 2 replicas); a no-op plan is empty and apply sends no update; a secret
    rotation makes a new version and repoints the service, keeping the old one while the service's previous spec
    (what a rollback returns to) refers to it; `docker service scale` is drift."""
    p = swarm_project
    net, secret, web = f"{p}-net", f"{p}-pw", f"{p}-web"
    tmp_manifests("pw.txt", "hunter2\n")
    tmp_manifests("web.env", "API_TOKEN=tok-from-file\n")
    docs = [
        doc("Network", net, {"driver": "overlay", "ipam": {"config": [{"subnet": free_subnet()}]}}),
        doc("Secret", secret, {"file": "./pw.txt"}),
        doc(
            "Service",
            web,
            service(
                base_image,
                replicas=2,
                envFiles=["./web.env"],
                networks=[{"name": net, "aliases": ["web"]}],
                secrets=[{"name": secret, "target": "pw", "mode": "0400"}],
                healthcheck={"test": ["CMD", "true"], "interval": "1s"},
            ),
            {"tier": "front"},
        ),
    ]
    directory = write(tmp_manifests, docs)
    out = apply_ok(reconcile, directory)
    assert "tok-from-file" not in out and "hunter2" not in out
    assert len(running_tasks(api, web)) == 2
    assert exec_output(api, task_container(api, web), "cat", "/run/secrets/pw") == "hunter2\n"
    info = api.inspect_service(web)
    assert "@sha256:" in info["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"]  # pinned at apply
    assert info["Spec"]["Labels"][LABEL] == p and info["Spec"]["Labels"]["tier"] == "front"

    # no-op: plan empty (exit 0), apply sends no update (the service's version does not move)
    version = info["Version"]["Index"]
    rc, plan = plan_json(reconcile, directory)
    assert rc == 0 and plan["changes"] == []
    apply_ok(reconcile, directory)
    assert api.inspect_service(web)["Version"]["Index"] == version

    # drift: scaled by hand -> one field, no task restart, repaired by apply
    docker_cli("service", "scale", "--detach", f"{web}=3")
    rc, plan = plan_json(reconcile, directory)
    assert rc == 2 and changes_of(plan) == {("Service", web): ("update", ["replicas"])}
    assert plan["changes"][0]["fields"][0]["old"] == 3
    before = {t["ID"] for t in api.tasks(filters={"service": web, "desired-state": "running"})}
    apply_ok(reconcile, directory)
    after = {t["ID"] for t in running_tasks(api, web)}
    assert len(after) == 2 and after <= before  # scaled back down: no task was restarted

    # rotation: a new version, the service repointed (rolling), the old version kept for a rollback
    old_version = api.inspect_service(web)["Spec"]["TaskTemplate"]["ContainerSpec"]["Secrets"][0]["SecretName"]
    tmp_manifests("pw.txt", "hunter3\n")
    rc, plan = plan_json(reconcile, directory)
    assert rc == 2
    assert changes_of(plan) == {
        ("Secret", secret): ("create", []),
        ("Service", web): ("update", [f"secrets.{secret}"]),
    }
    assert "hunter" not in json.dumps(plan)
    apply_ok(reconcile, directory)
    spec = api.inspect_service(web)["Spec"]["TaskTemplate"]["ContainerSpec"]
    new_version = spec["Secrets"][0]["SecretName"]
    assert new_version != old_version and new_version.startswith(f"{secret}-")
    kept = sorted(s["Spec"]["Name"] for s in api.secrets(filters={"label": [f"{LABEL}={p}"]}))
    assert kept == sorted([new_version, old_version])
    previous = api.inspect_service(web)["PreviousSpec"]["TaskTemplate"]["ContainerSpec"]["Secrets"]
    assert previous[0]["SecretName"] == old_version
    assert exec_output(api, task_container(api, web), "cat", "/run/secrets/pw") == "hunter3\n"
    assert plan_json(reconcile, directory)[0] == 0


def test_global_service_and_image_change_rolling_start_first(
    api: Any, swarm_project: str, reconcile: Any, tmp_manifests: Any, base_image: str
) -> None:
    """A global service runs one task per node; an image change rolls it start-first onto the new image."""
    web = f"{swarm_project}-agent"
    other = base_image.rsplit(":", 1)[0] + ":swarm-test"  # the same image under a second tag of the registry
    api.tag(base_image, other.rsplit(":", 1)[0], "swarm-test")
    try:
        for line in api.push(other, stream=True, decode=True):
            assert "error" not in line, line
    finally:
        api.remove_image(other, noprune=True)
    nodes = [n for n in api.nodes() if n["Status"]["State"] == "ready" and n["Spec"]["Availability"] == "active"]
    spec = service(base_image, mode="global", update={"order": "start-first"})
    directory = write(tmp_manifests, [doc("Service", web, spec)])
    apply_ok(reconcile, directory)
    tasks = running_tasks(api, web)
    assert sorted(t["NodeID"] for t in tasks) == sorted(n["ID"] for n in nodes)

    directory = write(tmp_manifests, [doc("Service", web, {**spec, "image": other})])
    rc, plan = plan_json(reconcile, directory)
    assert rc == 2 and changes_of(plan) == {("Service", web): ("update", ["image"])}
    assert any("rolls its tasks start-first" in s for s in plan["changes"][0]["steps"])
    apply_ok(reconcile, directory)
    info = api.inspect_service(web)
    assert info["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"].startswith(other + "@sha256:")
    assert info["Spec"]["UpdateConfig"]["Order"] == "start-first"
    assert (info.get("UpdateStatus") or {}).get("State") == "completed"
    tasks = running_tasks(api, web)
    assert len(tasks) == len(nodes)
    assert all(t["Spec"]["ContainerSpec"]["Image"].startswith(other) for t in tasks)
    assert plan_json(reconcile, directory)[0] == 0


def test_failing_update_is_rolled_back_and_named(
    api: Any, swarm_project: str, reconcile: Any, tmp_manifests: Any, base_image: str
) -> None:
    """A command that exits: apply fails (exit 1) naming the task and its error, the service runs its previous
    spec again, and the plan still shows the change."""
    web = f"{swarm_project}-web"
    directory = write(tmp_manifests, [doc("Service", web, service(base_image))])
    apply_ok(reconcile, directory)
    good = api.inspect_service(web)["Spec"]["TaskTemplate"]["ContainerSpec"]["Args"]

    directory = write(tmp_manifests, [doc("Service", web, {**service(base_image), "command": ["sh", "-c", "exit 3"]})])
    proc = reconcile("apply", directory)
    assert proc.returncode == 1
    assert "update failed" in proc.stdout and "rolled back to the previous spec" in proc.stdout
    assert "non-zero exit (3)" in proc.stdout and "task " in proc.stdout
    info = api.inspect_service(web)
    assert info["Spec"]["TaskTemplate"]["ContainerSpec"]["Args"] == good
    assert info["UpdateStatus"]["State"] == "rollback_completed"
    assert len(running_tasks(api, web)) == 1
    rc, plan = plan_json(reconcile, directory)
    assert rc == 2 and changes_of(plan) == {("Service", web): ("update", ["command"])}


def test_a_new_service_that_crashes_after_starting_is_not_converged(
    api: Any, swarm_project: str, reconcile: Any, tmp_manifests: Any, base_image: str
) -> None:
    """A create has no update for swarm to monitor: tasks that run two seconds and exit read `running` first.
    apply watches them for the service's monitor window, fails naming the exit, and removes the service again."""
    web = f"{swarm_project}-crash"
    spec = {**service(base_image), "command": ["sh", "-c", "sleep 2; exit 3"], "update": {"monitor": "4s"}}
    directory = write(tmp_manifests, [doc("Service", web, spec)])
    proc = reconcile("apply", directory)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "did not converge" in proc.stdout and "non-zero exit (3)" in proc.stdout
    with pytest.raises(NotFound):
        api.inspect_service(web)


def test_no_wait_unresolvable_image_and_prune(
    api: Any, swarm_project: str, reconcile: Any, tmp_manifests: Any, base_image: str
) -> None:
    """--no-wait returns before the tasks run; an image the registry lacks is a clear error; a service whose
    manifest is gone is removed with its secret and config, while --no-prune and an empty directory keep them."""
    p = swarm_project
    web, conf = f"{p}-web", f"{p}-conf"
    tmp_manifests("web.conf", "listen 80\n")
    docs = [
        doc("Config", conf, {"file": "./web.conf"}),
        doc("Service", web, service(base_image, configs=[{"name": conf, "target": "/etc/web.conf"}])),
    ]
    directory = write(tmp_manifests, docs)
    started = time.monotonic()
    apply_ok(reconcile, directory, "--no-wait")
    assert time.monotonic() - started < 15
    assert api.inspect_service(web)["Spec"]["Name"] == web

    missing = base_image.rsplit(":", 1)[0] + ":no-such-tag"
    directory = write(tmp_manifests, [doc("Service", f"{p}-bad", service(missing))], "bad.yaml")
    proc = reconcile("apply", directory)
    assert proc.returncode == 1 and f"image {missing} cannot be resolved to a digest" in proc.stdout
    (directory / "bad.yaml").unlink()

    (directory / "m.yaml").unlink()
    tmp_manifests("other.yaml", yaml.safe_dump(doc("Config", f"{p}-other", {"file": "./web.conf"})))
    apply_ok(reconcile, directory, "--no-prune")
    assert api.inspect_service(web)
    apply_ok(reconcile, directory)
    with pytest.raises(NotFound):
        api.inspect_service(web)
    names = sorted(c["Spec"]["Name"] for c in api.configs(filters={"label": [f"{LABEL}={p}"]}))
    assert len(names) == 1 and names[0].startswith(f"{p}-other-")


def test_watch_scales_a_service_back(
    api: Any, swarm_project: str, tmp_manifests: Any, base_image: str, tmp_path: Path
) -> None:
    """`docker service scale` under `watch` is repaired from the service's update event, not the resync."""
    web = f"{swarm_project}-web"
    directory = write(tmp_manifests, [doc("Service", web, service(base_image))])
    env = {**os.environ, "DOCKER_HOST": configured_docker_host() or "", "RECONCILER_LOCK_DIR": str(tmp_path)}
    watch = WatchProcess(swarm_project, directory, env, tmp_path / "watch.log", "--resync", "300")
    try:
        watch.wait_passes(1, timeout=60)
        docker_cli("service", "scale", "--detach", f"{web}=3")
        wait_for(
            lambda: api.inspect_service(web)["Spec"]["Mode"]["Replicated"]["Replicas"] == 1,
            30,
            f"watch to scale {web} back to 1 replica (log: {watch.log})",
            interval=0.2,
        )
    finally:
        watch.stop()
