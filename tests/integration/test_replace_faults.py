"""A replace interrupted by an engine failure at any step leaves the declared container running: the old one
restarted under its name, or the new one; never neither. Each step is made to fail through the fault proxy (500
answers, as many in a row as the client retries), and the error names the step."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from reconciler.delays import ENGINE_READ_ATTEMPTS, ENGINE_REQUEST_ATTEMPTS
from tests.faultproxy import FaultProxy
from tests.helpers import LABEL_PROJECT, configured_docker_host

pytestmark = pytest.mark.engine

SLEEPER = 'trap "exit 0" TERM; while :; do sleep 1; done'
RETRIES = ENGINE_REQUEST_ATTEMPTS  # attempts the engine client makes of a request it may repeat
READ_RETRIES = ENGINE_READ_ATTEMPTS  # ... and of a read that was sent

# step -> (method, path pattern (OLD: the old container's ID), failures in a row, matching requests let through)
STEPS = {
    "stop": ("POST", r"^/containers/OLD/stop", RETRIES, 0),
    "rename": ("POST", r"^/containers/OLD/rename", RETRIES, 0),  # the Replacer looks, then tries again
    "create": ("POST", r"^/containers/create", RETRIES, 0),
    "start": ("POST", r"^/containers/(?!OLD)[0-9a-f]{64}/start", RETRIES, 0),
    "settle": ("GET", r"^/containers/(?!OLD)[0-9a-f]{64}/json", READ_RETRIES, 0),
    "remove-old": ("DELETE", r"^/containers/OLD", RETRIES, 0),
}


@pytest.fixture
def proxy() -> Iterator[FaultProxy]:
    host = configured_docker_host() or ""
    if not host.startswith("unix://"):
        pytest.fail("the fault proxy needs the test engine on a unix socket")
    with FaultProxy(host) as running:
        yield running


def manifest(name: str, image: str, version: str) -> str:
    return f"""
    apiVersion: reconciler/v1
    kind: Container
    metadata: {{name: {name}}}
    spec:
      image: {image}
      command: ["sh", "-c", {json.dumps(SLEEPER)}]
      env: {{VERSION: "{version}"}}
      stopTimeout: 1
    """


def containers(api, project: str) -> list[dict]:
    return api.containers(all=True, filters={"label": [f"{LABEL_PROJECT}={project}"]})


@pytest.mark.parametrize("step", [*STEPS, "rollback-rename"])
def test_a_replace_failing_at_any_step_leaves_the_service_running(
    step: str, api, project_name, tmp_manifests, reconcile, base_image, proxy
) -> None:
    name = f"{project_name}-web"
    tmp_manifests("web.yaml", manifest(name, base_image, "1"))
    assert reconcile("apply", tmp_manifests.dir).returncode == 0
    old_id = api.inspect_container(name)["Id"]

    tmp_manifests("web.yaml", manifest(name, base_image, "2"))  # an env change: a replace
    if step == "rollback-rename":  # the create fails, then the rename back fails as well (every retry of it)
        proxy.fail("POST", r"^/containers/create", RETRIES)
        proxy.fail("POST", rf"^/containers/{old_id}/rename", RETRIES, skip=1)
    else:
        method, path, count, skip = STEPS[step]
        proxy.fail(method, path.replace("OLD", old_id), count, skip)
    done = reconcile("--debug", "apply", tmp_manifests.dir, env={"DOCKER_HOST": proxy.url})
    output = done.stdout + done.stderr
    assert all(rule.failed == rule.count for rule in proxy.rules), "the fault was not reached"
    said = "create" if step == "rollback-rename" else step
    assert f"replace failed at its {said} step" in output, output[-3000:]
    assert "Traceback" not in output

    info = api.inspect_container(name)
    assert info["State"]["Running"], f"nothing runs under {name} after a failure at {step}"
    if step == "remove-old":
        # the new one runs and no rollback happened: an engine fault, which a fresh plan sees (the parked old
        # container is a leftover), so the same apply plans again and removes it
        assert done.returncode == 0, output[-3000:]
        assert info["Id"] != old_id and "VERSION=2" in info["Config"]["Env"]
        assert "the new container runs" in output and "apply.round" in output
        assert [c["Names"] for c in containers(api, project_name)] == [[f"/{name}"]]
    else:  # a replace rolled back is an outcome, never re-planned in the same apply: exit 1
        assert done.returncode == 1, output[-3000:]
        assert "apply.round" not in output
        assert info["Id"] == old_id and "VERSION=1" in info["Config"]["Env"]
        assert "the old container was restored and restarted" in output
        assert len(containers(api, project_name)) == 1

    proxy.clear()
    again = reconcile("apply", tmp_manifests.dir)
    assert again.returncode == 0, again.stderr[-3000:]
    assert reconcile("plan", tmp_manifests.dir).returncode == 0
    left = containers(api, project_name)
    assert [c["Names"] for c in left] == [[f"/{name}"]] and left[0]["State"] == "running"
