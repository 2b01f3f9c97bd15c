"""`reconcile import compose --swarm` applied on the test engine's swarm, and compared with `docker stack deploy`
of the same file: the services' main fields must be the same."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import configured_docker_host
from tests.helpers import wait_for
from tests.swarmhelpers import SLEEPER, apply_ok, exec_output, remove_swarm_objects, running_tasks, task_container

pytestmark = pytest.mark.engine

_COMPOSE = """
services:
  web:
    image: {image}
    command: ["sh", "-c", "{sleeper}"]
    stop_grace_period: 2s
    networks: [net]
    secrets:
      - {{source: pw, target: pw, mode: 0400}}
    deploy:
      replicas: 2
      update_config: {{parallelism: 1, delay: 1s, monitor: 1s, order: start-first, failure_action: rollback}}
      rollback_config: {{parallelism: 2, order: stop-first}}
      restart_policy: {{condition: on-failure, delay: 1s, max_attempts: 3}}
      placement: {{constraints: [node.role==manager], max_replicas_per_node: 2}}
      resources: {{limits: {{cpus: "0.5", memory: 64M}}, reservations: {{memory: 8M}}}}
  agent:
    image: {image}
    command: ["sh", "-c", "{sleeper}"]
    stop_grace_period: 2s
    deploy: {{mode: global}}
networks:
  net: {{ipam: {{config: [{{subnet: {subnet}}}]}}}}
secrets:
  pw: {{file: ./pw.txt}}
"""


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DOCKER_HOST": configured_docker_host() or ""}
    return subprocess.run(["docker", *args], env=env, capture_output=True, text=True, timeout=180)


@pytest.fixture
def stack(api: Any, project_name: str) -> Iterator[str]:
    """A `docker stack deploy` name for the comparison; the stack is removed afterwards, with the project."""
    info = api.info().get("Swarm") or {}
    if info.get("LocalNodeState") != "active" or not info.get("ControlAvailable"):
        pytest.fail("the test engine is not a swarm manager; run scripts/testenv.sh up")
    name = f"{project_name}s"
    yield name
    _cli("stack", "rm", name)  # first: the stack's tasks stop while remove_swarm_objects waits for the project's
    remove_swarm_objects(api, project_name)
    wait_for(lambda: not api.services(filters={"label": f"com.docker.stack.namespace={name}"}), 60, "stack removed")
    wait_for(
        lambda: not api.containers(all=True, filters={"label": f"com.docker.stack.namespace={name}"}),
        60,
        "stack tasks gone",
    )
    for network in api.networks(filters={"label": f"com.docker.stack.namespace={name}"}):
        api.remove_network(network["Id"])


_ROLLING_DEFAULTS = {
    "Parallelism": 1,
    "Delay": 0,
    "FailureAction": "pause",
    "Monitor": 5_000_000_000,
    "MaxFailureRatio": 0,
    "Order": "stop-first",
}
_RESTART_DEFAULTS = {"Condition": "any", "Delay": 5_000_000_000, "MaxAttempts": 0, "Window": 0}


def _main_fields(api: Any, name: str) -> dict[str, Any]:
    """The fields both ways must agree on. Allow-list of what differs by design: labels (reconciler's ownership
    labels, stack deploy's namespace label), the image (reconciler pins the digest it resolved, stack deploy too
    but with the tag kept: compared without the digest), network IDs (compared by count), secret IDs and names
    (each side has its own secret object). reconciler writes the engine's defaults that stack deploy leaves unset
    (the engine reads an unset value as its default, documented for `docker service create`): filled in on both
    sides, and empty resource parts dropped."""
    spec = api.inspect_service(name)["Spec"]
    for key in ("UpdateConfig", "RollbackConfig"):
        spec[key] = {**_ROLLING_DEFAULTS, **(spec.get(key) or {})}
    task = spec["TaskTemplate"]
    task["RestartPolicy"] = {**_RESTART_DEFAULTS, **(task.get("RestartPolicy") or {})}
    task["Resources"] = {k: v for k, v in (task.get("Resources") or {}).items() if v}
    task = spec["TaskTemplate"]
    container = task["ContainerSpec"]
    return {
        "mode": spec["Mode"],
        "update": spec.get("UpdateConfig"),
        "rollback": spec.get("RollbackConfig"),
        "restart": task.get("RestartPolicy"),
        "placement": {k: v for k, v in task.get("Placement", {}).items() if k != "Platforms"},
        "resources": task.get("Resources"),
        "image": container["Image"].split("@")[0],
        "args": container.get("Args"),
        "grace": container.get("StopGracePeriod"),
        "secrets": [{"File": s["File"]} for s in container.get("Secrets", [])],
        "networks": len(task.get("Networks", [])),
        "aliases": [n.get("Aliases") for n in task.get("Networks", [])],
    }


def test_swarm_import_applies_converges_and_matches_stack_deploy(
    api: Any, project_name: str, stack: str, reconcile: Any, tmp_path: Path, base_image: str, free_subnet: Any
) -> None:
    p = project_name
    (tmp_path / "pw.txt").write_text("hunter2\n")
    subnet = free_subnet()
    text = _COMPOSE.format(image=base_image, sleeper=SLEEPER.replace('"', '\\"'), subnet=subnet)
    (tmp_path / "compose.yml").write_text(text)
    out = tmp_path / "out"
    proc = reconcile("import", "compose", tmp_path / "compose.yml", "--swarm", "--out", out)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    apply_ok(reconcile, out)
    web, agent = f"{p}_web", f"{p}_agent"
    spec = api.inspect_service(web)["Spec"]
    assert spec["Mode"] == {"Replicated": {"Replicas": 2}}
    assert spec["UpdateConfig"]["Order"] == "start-first" and spec["UpdateConfig"]["Delay"] == 1_000_000_000
    assert spec["UpdateConfig"]["FailureAction"] == "rollback"
    net = api.inspect_network(f"{p}_net")
    assert net["Driver"] == "overlay"
    assert [n["Target"] for n in spec["TaskTemplate"]["Networks"]] == [net["Id"]]
    assert api.inspect_service(agent)["Spec"]["Mode"] == {"Global": {}}
    wait_for(lambda: len(running_tasks(api, web)) == 2, 120, "two web tasks running")
    assert exec_output(api, task_container(api, web), "cat", "/run/secrets/pw") == "hunter2\n"
    assert reconcile("plan", out).returncode == 0  # in sync after apply

    # the same file through `docker stack deploy`: the services' main fields agree
    # (its own subnet: two overlay networks on one subnet are not what a user would run)
    (tmp_path / "stack.yml").write_text(text.replace(subnet, free_subnet()))
    deployed = _cli("stack", "deploy", "--resolve-image", "never", "-c", str(tmp_path / "stack.yml"), stack)
    assert deployed.returncode == 0, deployed.stderr
    for name in ("web", "agent"):
        ours, theirs = _main_fields(api, f"{p}_{name}"), _main_fields(api, f"{stack}_{name}")
        assert ours == theirs, name
    ours_net, theirs_net = api.inspect_network(f"{p}_net"), api.inspect_network(f"{stack}_net")
    for key in ("Driver", "Scope", "Attachable", "Internal", "EnableIPv6"):
        assert ours_net[key] == theirs_net[key], key
