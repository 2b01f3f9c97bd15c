"""The test environment itself: engine, registry with the base image, a runnable base image, swarm mode."""

from __future__ import annotations

import json
import urllib.request

import pytest

pytestmark = pytest.mark.engine

REGISTRY = "http://127.0.0.1:5000"
MANIFEST_V2 = "application/vnd.docker.distribution.manifest.v2+json"


def test_engine_answers(api):
    """The engine of the test environment answers a ping and reports a server version."""
    assert api.ping() is True
    assert api.version()["ApiVersion"]


def test_registry_serves_base_image_manifest(base_image):
    """The registry on 127.0.0.1:5000 serves the base image's v2 manifest through the distribution API."""
    repo, tag = base_image.removeprefix("127.0.0.1:5000/").rsplit(":", 1)
    request = urllib.request.Request(f"{REGISTRY}/v2/{repo}/manifests/{tag}", headers={"Accept": MANIFEST_V2})
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.status == 200
        manifest = json.load(response)
    assert manifest["mediaType"] == MANIFEST_V2
    assert len(manifest["layers"]) >= 1


def test_base_image_runs_shell_and_applets(api, base_image, unique_name):
    """A container from the base image runs `sh -c "echo ok"` and has the applets tests rely on."""
    script = "echo ok; for a in httpd nc sleep true wget timeout; do command -v $a >/dev/null || echo missing $a; done"
    container = api.create_container(base_image, ["sh", "-c", script], name=unique_name("testenv"))
    try:
        api.start(container)
        result = api.wait(container, timeout=60)
        output = api.logs(container).decode()
    finally:
        api.remove_container(container, force=True)
    assert result["StatusCode"] == 0
    assert output == "ok\n"


def test_swarm_mode_is_active(api):
    """The engine is a swarm manager, so overlay networks can be created."""
    swarm = api.info()["Swarm"]
    assert swarm["LocalNodeState"] == "active"
    assert swarm["ControlAvailable"] is True


def test_project_cleanup_removes_only_that_projects_objects(api, base_image, unique_name):
    """The project_name teardown removes a project's containers, networks (swarm too), volumes, images only."""
    from tests.helpers import remove_project_objects

    project = unique_name("t")
    labels = {"io.reconciler.project": project}
    bystander = unique_name("testenv-keep")
    api.create_volume(bystander, labels={"io.reconciler.project": f"{project}-other"})
    try:
        bridge = api.create_network(unique_name("testenv-br"), labels=labels)["Id"]
        overlay = api.create_network(unique_name("testenv-ov"), driver="overlay", attachable=True, labels=labels)
        volume = api.create_volume(unique_name("testenv-vol"), labels=labels)["Name"]
        container = api.create_container(
            base_image,
            ["sleep", "300"],
            name=unique_name("testenv-c"),
            labels=labels,
            host_config=api.create_host_config(binds={volume: {"bind": "/data", "mode": "rw"}}),
            networking_config=api.create_networking_config({bridge: api.create_endpoint_config()}),
        )["Id"]
        api.start(container)
        image = api.commit(container, repository=f"testenv-img-{project}", tag="1", conf={"Labels": labels})["Id"]

        remove_project_objects(api, project)

        assert api.containers(all=True, filters={"label": [f"io.reconciler.project={project}"]}) == []
        assert api.networks(ids=[bridge, overlay["Id"]]) == []
        assert not [v for v in api.volumes()["Volumes"] or [] if v["Name"] == volume]
        assert not [i for i in api.images(all=True) if i["Id"] == image]
        assert api.inspect_volume(bystander)["Labels"]["io.reconciler.project"] == f"{project}-other"
    finally:
        remove_project_objects(api, project)
        api.remove_volume(bystander, force=True)
