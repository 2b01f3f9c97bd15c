"""Taking over a running Compose v1 project (Debian's docker-compose): import its file, `apply --adopt`, and the
data is still there, the containers are the project's own, `docker-compose ps` lists nothing, the next plan is in
sync, and another Compose project with the same services is left alone."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import free_port, remove_project_objects

pytestmark = pytest.mark.engine

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
    command: ["httpd", "-f", "-p", "80", "-h", "/data"]
    ports: ["127.0.0.1:{port}:80"]
    volumes: ["data:/data"]
    depends_on: [{p}-store]
    stop_grace_period: 1s
volumes:
  data: {{}}
"""


def compose(project: str, directory: Path, *args: str, host: str) -> subprocess.CompletedProcess[str]:
    if shutil.which("docker-compose") is None:
        pytest.fail("docker-compose is not installed (scripts/testenv.sh installs Debian's docker-compose)")
    return subprocess.run(
        ["docker-compose", "-p", project, *args],
        cwd=directory,
        env={"DOCKER_HOST": host, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


@pytest.fixture
def compose_project(engine_host: str, api, project_name: str, tmp_path: Path, base_image: str) -> Iterator[dict]:
    """Two Compose projects with the same services: ours (named like the reconcile project) and a bystander."""
    port, other_port = free_port(), free_port()
    mine, other = tmp_path / "mine", tmp_path / "other"
    for directory, p in ((mine, port), (other, other_port)):
        directory.mkdir()
        # service names, and so container names, of this test only: a `web` elsewhere on the engine is no clash
        (directory / "docker-compose.yml").write_text(COMPOSE.format(image=base_image, port=p, p=project_name))
    bystander = f"{project_name}-other"
    up = compose(project_name, mine, "up", "-d", host=engine_host)
    assert up.returncode == 0, up.stderr
    up = compose(bystander, other, "up", "-d", host=engine_host)
    assert up.returncode == 0, up.stderr
    yield {"dir": mine, "port": port, "bystander": bystander, "other_dir": other}
    # the project's own containers first (after a failure mid-test they still hold Compose's volume, which
    # `down -v` then cannot remove and nothing else would)
    remove_project_objects(api, project_name)
    for name, directory in ((project_name, mine), (bystander, other)):
        compose(name, directory, "down", "-v", "--remove-orphans", host=engine_host)


def test_adopt_takes_over_a_compose_project_without_losing_data(
    api, engine_host, compose_project, project_name, reconcile
):
    p = project_name
    volume = f"{p}_data"
    # the import names containers as Compose v2 does (`<project>-<service>-1`); docker-compose 1.29 named these
    # `<project>_<service>_1`: adoption finds them by Compose's own labels (project, service, number)
    web, store_name = f"{p}-{p}-web-1", f"{p}-{p}-store-1"
    # data written while Compose runs the project: it must survive the takeover
    store = api.containers(
        filters={"label": [f"com.docker.compose.project={p}", f"com.docker.compose.service={p}-store"]}
    )
    exec_id = api.exec_create(store[0]["Id"], ["sh", "-c", "echo precious > /data/precious.txt"])
    api.exec_start(exec_id)
    assert fetch_path(compose_project["port"], "/precious.txt").strip() == "precious"  # Compose serves it
    bystanders = {
        c["Id"]
        for c in api.containers(
            all=True, filters={"label": [f"com.docker.compose.project={compose_project['bystander']}"]}
        )
    }

    out = compose_project["dir"] / "manifests"
    imported = reconcile("import", "compose", compose_project["dir"] / "docker-compose.yml", "--out", out)
    assert imported.returncode == 0, imported.stderr

    # a label the Compose network lacks: that network is replaced (its Compose containers reattached), not adopted
    network = out / f"network-{p}_default.yaml"
    network.write_text(
        network.read_text().replace(f"  name: {p}_default", f"  name: {p}_default\n  labels: {{tier: back}}")
    )

    refused = reconcile("plan", out)
    assert refused.returncode == 1 and "reconcile never takes over objects it does not own" in refused.stdout

    planned = reconcile("plan", out, "--adopt", "--output", "json")
    assert planned.returncode == 2, planned.stdout + planned.stderr
    changes = {c["name"]: c for c in json.loads(planned.stdout)["changes"]}
    assert changes[volume]["action"] == "update" and changes[volume]["fields"][0]["path"] == "owner"
    assert any("its data is kept" in s for s in changes[volume]["steps"])
    assert changes[web]["action"] == "replace" and changes[store_name]["action"] == "replace"
    # Compose 1.29 mounts the named volume through HostConfig.Binds: it is the same mount, not a change
    assert "mounts" not in [f["path"] for f in changes[store_name]["fields"]], changes[store_name]["fields"]
    assert changes[f"{p}_default"]["action"] == "replace"
    assert [f["path"] for f in changes[f"{p}_default"]["fields"]] == ["owner", "labels"]

    applied = reconcile("apply", out, "--adopt")
    assert applied.returncode == 0, applied.stdout + applied.stderr

    deadline = time.monotonic() + 30
    while True:
        try:
            served = fetch_path(compose_project["port"], "/precious.txt")
            break
        except OSError:
            assert time.monotonic() < deadline, "the adopted web container does not answer"
            time.sleep(0.3)
    assert served.strip() == "precious"  # same volume, same data, now served by the project's own container
    for name in (web, store_name):
        labels = api.inspect_container(name)["Config"]["Labels"]
        assert labels["io.reconciler.project"] == p and "com.docker.compose.project" not in labels
    assert api.inspect_network(f"{p}_default")["Labels"]["io.reconciler.project"] == p
    ps = compose(p, compose_project["dir"], "ps", "-q", host=engine_host)
    assert ps.stdout.strip() == ""
    still = {
        c["Id"]
        for c in api.containers(
            all=True, filters={"label": [f"com.docker.compose.project={compose_project['bystander']}"]}
        )
    }
    assert still == bystanders  # another Compose project with the same services: untouched

    again = reconcile("plan", out)
    assert again.returncode == 0, again.stdout + again.stderr

    # cleanup of what is the project's now (the adopted volume keeps Compose's labels, so remove it by name)
    empty = compose_project["dir"] / "empty"
    empty.mkdir()
    assert reconcile("apply", empty, "--allow-empty").returncode == 0
    api.remove_volume(volume)


def fetch_path(port: int, path: str) -> str:
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as response:
        return response.read().decode()
