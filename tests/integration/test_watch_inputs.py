"""`reconcile watch` reacts to edits of the files manifests reference, not only to the manifests: an env file
outside the manifest directory is rotated (applied at once, not at the resync), broken (reported with its line,
nothing changed) and fixed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import CHANGE_TIMEOUT, START_TIMEOUT, wait_for

pytestmark = pytest.mark.engine

SLEEPER = 'trap "exit 0" TERM; while :; do sleep 1; done'


def env_of(api, name: str) -> dict[str, str]:
    try:
        info = api.inspect_container(name)
    except Exception:
        return {}
    if not info["State"]["Running"]:
        return {}
    return dict(item.split("=", 1) for item in info["Config"]["Env"] or [])


def test_watch_applies_an_edited_env_file_outside_the_manifest_directory(
    api,
    project_name,
    tmp_manifests,
    tmp_path: Path,
    base_image,
    watch,
) -> None:
    secrets_dir = tmp_path / "secrets"
    secrets_dir.mkdir()
    env_file = secrets_dir / "web.env"
    env_file.write_text("TOKEN=one\n")
    name = f"{project_name}-web"
    tmp_manifests(
        "web.yaml",
        f"""
        apiVersion: reconciler/v1
        kind: Container
        metadata: {{name: {name}}}
        spec:
          image: {base_image}
          command: ["sh", "-c", {json.dumps(SLEEPER)}]
          envFiles: [{env_file}]
          stopTimeout: 1
        """,
    )
    w = watch(tmp_manifests.dir, "--resync", "600")
    wait_for(lambda: env_of(api, name).get("TOKEN") == "one", START_TIMEOUT, "the container with TOKEN=one")
    w.wait_log("watch.inputs", timeout=START_TIMEOUT)
    w.wait_log("pass.done", timeout=START_TIMEOUT)

    env_file.write_text("TOKEN=two\n")  # a rotated secret: applied now, not at the resync 600 s away
    wait_for(lambda: env_of(api, name).get("TOKEN") == "two", CHANGE_TIMEOUT, "the rotated TOKEN=two")
    before = api.inspect_container(name)["Id"]

    mark = len(w.stderr())
    env_file.write_text("TOKEN=three\nthis line is broken\n")
    w.wait_log("manifest.invalid", after=mark)
    problem = next(line for line in w.stderr()[mark:].splitlines() if "manifest.invalid" in line)
    assert "web.yaml:" in problem and f"{env_file} line 2" in problem and "three" not in problem
    assert api.inspect_container(name)["Id"] == before  # nothing changed on the host

    env_file.write_text("TOKEN=four\n")
    wait_for(lambda: env_of(api, name).get("TOKEN") == "four", CHANGE_TIMEOUT, "the fixed env file applied")
    assert "TOKEN=two" not in w.stderr() and "four" not in w.stderr()  # values never printed
    assert w.stop() == 0
