"""Pull mode (`--as-host NAME`): a host behind NAT follows the fleet tree itself and applies to its own engine
what the tree places on its Host. Two namespace engines of the fleet environment each run their own
`watch --git … --as-host`, on one repository served over file://, and converge their own parts only."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from docker.errors import NotFound

from tests.gitrepo import Upstream
from tests.helpers import REPO, WatchProcess, remove_project_objects, wait_for

# spec.engine is never used in pull mode: addresses nobody answers (and nothing is sent to them)
TREE = """\
apiVersion: reconciler/v1
kind: Host
metadata: {{name: edge-a, labels: {{role: edge}}}}
spec: {{engine: "ssh://deploy@edge-a.invalid"}}
---
apiVersion: reconciler/v1
kind: Host
metadata: {{name: edge-b, labels: {{role: edge}}}}
spec: {{engine: "ssh://deploy@edge-b.invalid"}}
---
apiVersion: reconciler/v1
kind: Container
metadata: {{name: {project}-a}}
spec: {{hosts: [edge-a], image: {image}, command: ["sleep", "3600"], stopTimeout: 1, env: {{LEVEL: "{level}"}}}}
---
apiVersion: reconciler/v1
kind: Container
metadata: {{name: {project}-b}}
spec: {{hosts: [edge-b], image: {image}, command: ["sleep", "3600"], stopTimeout: 1, env: {{LEVEL: "{level}"}}}}
---
apiVersion: reconciler/v1
kind: Container
metadata: {{name: {project}-both}}
spec: {{hosts: {{matchLabels: {{role: edge}}}}, image: {image}, command: ["sleep", "3600"], stopTimeout: 1}}
"""


@pytest.fixture
def engines(fleet_env: Any, project_name: str) -> Iterator[dict[str, Any]]:
    clients = {name: fleet_env.client(name, "unix") for name in ("a", "b")}
    yield clients
    for client in clients.values():
        try:
            remove_project_objects(client, project_name)
        finally:
            client.close()


def names(client: Any, project: str) -> set[str]:
    found = client.containers(all=True, filters={"label": [f"io.reconciler.project={project}"]})
    return {c["Names"][0].lstrip("/") for c in found}


def level(client: Any, name: str) -> str:
    """LEVEL of container `name` ("" while a replace has it parked under another name)."""
    try:
        env = client.inspect_container(name)["Config"]["Env"]
    except NotFound:
        return ""
    return next(e for e in env if e.startswith("LEVEL=")).split("=", 1)[1]


def test_two_hosts_each_follow_their_own_part_of_one_tree(
    fleet_env: Any, engines: dict[str, Any], project_name: str, tmp_path: Path, lock_env: dict[str, str]
) -> None:
    p = project_name
    upstream = Upstream(tmp_path / "upstream")
    upstream.commit({"fleet.yaml": TREE.format(project=p, image=fleet_env.base_image, level="one")}, "edge: one")
    watches: list[WatchProcess] = []
    try:
        for engine, host in (("a", "edge-a"), ("b", "edge-b")):
            env = {**os.environ, **lock_env, "DOCKER_HOST": fleet_env[engine].unix}
            watches.append(
                WatchProcess(
                    p,
                    tmp_path / f"state-{engine}",
                    env,
                    tmp_path / f"watch-{engine}.log",
                    "--git",
                    upstream.url,
                    "--poll",
                    "0.5",
                    "--as-host",
                    host,
                )
            )
        want = {"a": {f"{p}-a", f"{p}-both"}, "b": {f"{p}-b", f"{p}-both"}}
        for engine in ("a", "b"):
            wait_for(lambda e=engine: names(engines[e], p) == want[e], 90, f"engine {engine} to hold its part")
        upstream.commit({"fleet.yaml": TREE.format(project=p, image=fleet_env.base_image, level="two")}, "edge: two")
        wait_for(lambda: level(engines["a"], f"{p}-a") == "two", 60, "edge-a to follow the new commit")
        wait_for(lambda: level(engines["b"], f"{p}-b") == "two", 60, "edge-b to follow the new commit")
        for engine in ("a", "b"):  # the replaced container is parked until its successor settled
            wait_for(lambda e=engine: names(engines[e], p) == want[e], 60, f"engine {engine}'s replace to finish")

        status = run_status(tmp_path / "state-a", p, {**lock_env, "DOCKER_HOST": fleet_env["a"].unix}, "edge-a")
        assert status.returncode in (0, 2), status.stderr
        rows = json.loads(status.stdout)["objects"]
        assert {(r["name"], r["host"]) for r in rows} == {(f"{p}-a", "edge-a"), (f"{p}-both", "edge-a")}
        for w in watches:
            assert w.stop() == 0, w.stderr()[-2000:]
    finally:
        for w in watches:
            w.kill()


def run_status(state: Path, project: str, env: dict[str, str], host: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "reconciler.cli", "-p", project, "status", str(state), "--as-host", host, "-o", "json"],
        cwd=REPO,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_as_host_needs_a_host_of_the_tree(reconcile: Callable[..., Any], tmp_path: Path) -> None:
    tree = tmp_path / "tree"
    tree.mkdir()
    (tree / "fleet.yaml").write_text(TREE.format(project="x", image="busybox:1", level="one"))
    run = reconcile("plan", tree, "--as-host", "edge-c")
    assert run.returncode == 1 and "edge-c" in run.stderr and "Traceback" not in run.stderr
    run = reconcile("plan", tree, "--as-host", "edge-a", "--host", "edge-b")
    assert run.returncode == 1 and "--as-host works on one Host" in run.stderr
    (tree / "fleet.yaml").write_text("")
    run = reconcile("plan", tree, "--as-host", "edge-a")
    assert run.returncode == 1 and "--as-host need a tree with Host manifests" in run.stderr
