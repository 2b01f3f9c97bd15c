"""Issue 24, defect 4: an `apply --adopt` (or any replace) killed with SIGKILL after it parked the old container as
`<name>__reconciler_old` left it there for good. The next apply, with or without --adopt, finishes or undoes the
interrupted step: no parked container remains, `docker-compose ps` of the adopted project is empty, the network
holds nothing the project does not own (it can be pruned), and the volume's data is kept."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.faultproxy import FaultProxy
from tests.helpers import LABEL_PROJECT, REPO, configured_docker_host, remove_project_objects

pytestmark = pytest.mark.engine

ASIDE = "__reconciler_old"
COMPOSE = """
version: "3.8"
services:
  {p}-store:
    image: {image}
    command: ["sleep", "3600"]
    volumes: ["data:/data"]
    stop_grace_period: 1s
  {p}-web:
    image: {image}
    command: ["sleep", "3600"]
    volumes: ["data:/data"]
    depends_on: [{p}-store]
    stop_grace_period: 1s
volumes:
  data: {{}}
"""
# (method, n-th such request, before the engine sees it): the adopt apply replaces two containers, each with
# POST stop, POST rename, POST create, POST start, then DELETE of the parked one
ADOPT_KILLS = [
    ("POST", 1, True),
    ("POST", 2, True),
    ("POST", 2, False),
    ("POST", 3, False),
    ("POST", 4, True),
    ("POST", 4, False),
    ("DELETE", 1, True),
    ("POST", 6, False),
    ("POST", 7, False),
    ("POST", 8, True),
    ("POST", 8, False),
    ("DELETE", 2, True),
]
# and after these many seconds, wherever the apply is then (the kills fell at 1.4-2.8 s)
ADOPT_DELAYS = [1.4, 2.1, 2.8]
# Compose projects the kills above are shared among, adopted side by side
ADOPT_PROJECTS = 3


def compose(project: str, directory: Path, *args: str) -> subprocess.CompletedProcess[str]:
    if shutil.which("docker-compose") is None:
        pytest.fail("docker-compose is not installed (scripts/testenv.sh installs Debian's docker-compose)")
    env = {"DOCKER_HOST": configured_docker_host() or "", "PATH": "/usr/bin:/bin"}
    return subprocess.run(
        ["docker-compose", "-p", project, *args], cwd=directory, env=env, capture_output=True, text=True, timeout=180
    )


@pytest.fixture
def proxy() -> Iterator[FaultProxy]:
    host = configured_docker_host() or ""
    if not host.startswith("unix://"):
        pytest.fail("the fault proxy needs the test engine on a unix socket")
    with FaultProxy(host) as running:
        yield running


def killed_apply(
    proxy: FaultProxy, project: str, directory: Path, kill: tuple[str, int, bool] | float, *args: str
) -> str:
    """`apply DIR ARGS` through the proxy, SIGKILLed at the given request (or after so many seconds, unless it
    ended before); where it was killed."""
    proxy.clear()
    process = subprocess.Popen(
        [sys.executable, "-m", "reconciler.cli", "--project", project, "apply", str(directory), *args],
        cwd=REPO,
        env={**os.environ, "DOCKER_HOST": proxy.url},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    if isinstance(kill, float):
        try:
            _, err = process.communicate(timeout=kill)
        except subprocess.TimeoutExpired:
            process.kill()
            _, err = process.communicate(timeout=60)
        assert process.returncode in (0, -9), err[-2000:]
        return f"after {kill}s (exit {process.returncode}, {len(proxy.requests)} requests)"
    method, n, before = kill
    rule = proxy.arm_kill(process.pid, n, method=method, before=before)
    _, err = process.communicate(timeout=300)
    assert process.returncode == -9 and rule.fired, f"not killed at {kill}: {err[-2000:]}"
    return f"{kill} at {rule.fired_at}"


def parked(api, project: str) -> list[str]:
    return [c["Names"][0] for c in api.containers(all=True, filters={"name": [ASIDE]}) if project in c["Names"][0]]


def cli(project: str, *args: object) -> subprocess.CompletedProcess[str]:
    """`reconcile --project PROJECT ARGS` as the `reconcile` fixture runs it, for any of the test's projects."""
    return subprocess.run(
        [sys.executable, "-m", "reconciler.cli", "--project", project, *map(str, args)],
        cwd=REPO,
        env={**os.environ, "DOCKER_HOST": configured_docker_host() or ""},
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def adopt_rounds(p: str, root: Path, image: str, kills: list[tuple[str, int, bool] | float]) -> None:
    """Compose project `p` adopted by an apply killed at each of `kills` in turn, each time from the Compose
    project again; every next apply finishes or undoes it. Its own fault proxy, engine client and directories."""
    import docker

    source = root / "compose"
    source.mkdir(parents=True)
    (source / "docker-compose.yml").write_text(COMPOSE.format(p=p, image=image))
    out = root / "manifests"
    api = docker.APIClient(base_url=configured_docker_host(), version="auto", timeout=60)
    try:
        with FaultProxy(configured_docker_host() or "") as proxy:
            up = compose(p, source, "up", "-d")
            assert up.returncode == 0, up.stderr
            store = api.containers(filters={"label": [f"com.docker.compose.project={p}"], "name": [f"{p}-store"]})
            api.exec_start(api.exec_create(store[0]["Id"], ["sh", "-c", "echo precious > /data/precious.txt"]))
            imported = cli(p, "import", "compose", source / "docker-compose.yml", "--out", out)
            assert imported.returncode == 0, imported.stderr
            names = [f"{p}-{p}-store-1", f"{p}-{p}-web-1"]
            for number, kill in enumerate(kills):
                if number:  # each round starts from the Compose project again (same volume, same network)
                    for name in names:
                        api.remove_container(name, force=True)
                    up = compose(p, source, "up", "-d")
                    assert up.returncode == 0, up.stderr
                where = killed_apply(proxy, p, out, kill, "--adopt")
                again = cli(p, "apply", out, "--adopt")
                assert again.returncode == 0, f"{where}: {again.stdout[-3000:]}{again.stderr[-2000:]}"
                assert parked(api, p) == [], where
                assert compose(p, source, "ps", "-q").stdout.strip() == "", where
                for name in names:
                    info = api.inspect_container(name)
                    assert info["State"]["Running"] and info["Config"]["Labels"][LABEL_PROJECT] == p, where
                said = api.exec_start(api.exec_create(names[0], ["cat", "/data/precious.txt"])).decode()
                assert said.strip() == "precious", where
                users = api.inspect_network(f"{p}_default")["Containers"] or {}
                assert sorted(u["Name"] for u in users.values()) == sorted(names), where  # nothing else: prunable
                assert cli(p, "plan", out).returncode == 0, where
            empty = root / "empty"
            empty.mkdir()
            pruned = cli(p, "apply", empty, "--allow-empty")
            assert pruned.returncode == 0, pruned.stdout + pruned.stderr
            assert not api.networks(names=[f"{p}_default"]) and api.inspect_volume(f"{p}_data")  # kept: Retain
    finally:
        remove_project_objects(api, p)
        compose(p, source, "down", "-v", "--remove-orphans")
        api.close()


def test_an_interrupted_adopt_is_finished_or_undone_by_the_next_apply(
    project_name, tmp_path, base_image, unique_name
) -> None:
    """The kills are shared round-robin among ADOPT_PROJECTS Compose projects adopted side by side (each round
    mostly waits on stop grace periods and the settle window): every kill is still one killed apply --adopt from
    a fresh Compose project, recovered and checked the same way, and each project is pruned at the end."""
    kills: list[tuple[str, int, bool] | float] = [*ADOPT_KILLS, *ADOPT_DELAYS]
    projects = [project_name] + [unique_name("t") for _ in range(ADOPT_PROJECTS - 1)]
    with ThreadPoolExecutor(max_workers=ADOPT_PROJECTS) as pool:
        runs = [
            pool.submit(adopt_rounds, p, tmp_path / p, base_image, kills[w::ADOPT_PROJECTS])
            for w, p in enumerate(projects)
        ]
        for run in runs:
            run.result()


def container(name: str, image: str, command: str, version: str, volume: str) -> str:
    return f"""
apiVersion: reconciler/v1
kind: Volume
metadata: {{name: {volume}}}
spec: {{reclaimPolicy: Retain}}
---
apiVersion: reconciler/v1
kind: Container
metadata: {{name: {name}}}
spec:
  image: {image}
  command: ["sh", "-c", "{command}"]
  env: {{VERSION: "{version}"}}
  mounts: [{{type: volume, source: {volume}, target: /data}}]
  stopTimeout: 1
"""


@pytest.mark.parametrize("kill", [("POST", 3, False), ("POST", 4, True)], ids=["after-create", "before-start"])
def test_a_replace_interrupted_before_its_new_container_ran_restores_the_old_one(
    kill, api, project_name, tmp_manifests, reconcile, base_image, proxy
) -> None:
    """Killed once the new container was created but before it ran: the next apply does not start it blindly
    (it would crash here) and drop the parked one, as it did; it removes the new one and replaces the parked one
    again, which fails in the settle window and gives the old container its name back, running (exit 1)."""
    name, volume = f"{project_name}-web", f"{project_name}-data"
    good = "echo kept > /data/marker; trap 'exit 0' TERM; while :; do sleep 1; done"
    tmp_manifests("web.yaml", container(name, base_image, good, "1", volume))
    assert reconcile("apply", tmp_manifests.dir).returncode == 0
    old_id = api.inspect_container(name)["Id"]
    tmp_manifests("web.yaml", container(name, base_image, "exit 3", "2", volume))
    where = killed_apply(proxy, project_name, tmp_manifests.dir, kill)
    assert parked(api, project_name) == [f"/{name}{ASIDE}"], where

    again = reconcile("apply", tmp_manifests.dir)
    assert again.returncode == 1, again.stdout + again.stderr
    assert "stopped right after starting" in again.stdout and "restored and restarted" in again.stdout
    info = api.inspect_container(name)
    assert info["Id"] == old_id and info["State"]["Running"], where
    assert parked(api, project_name) == [], where
    said = api.exec_start(api.exec_create(name, ["cat", "/data/marker"])).decode()
    assert said.strip() == "kept"

    tmp_manifests("web.yaml", container(name, base_image, good, "3", volume))
    assert reconcile("apply", tmp_manifests.dir).returncode == 0
    assert parked(api, project_name) == [] and reconcile("plan", tmp_manifests.dir).returncode == 0
