"""A Container with `platform` whose image the engine has only for another platform: the image is pulled for the
declared platform (the engine's create refuses the local one and pulls nothing). The registry holds an arm64-only
image (built here with the classic builder: `FROM scratch` + `COPY` runs nothing, so no emulation is needed); the
engine (amd64) holds the same reference as busybox's amd64 image."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

import docker.errors
import pytest

from tests.helpers import apply_ok, doc, in_sync, write

pytestmark = pytest.mark.engine

REPOSITORY = "127.0.0.1:5000/reconciler/platform-arm64"


def _push_arm64_image(api: Any, directory: Path, tag: str) -> None:
    (directory / "f").write_text("arm64\n")
    (directory / "Dockerfile").write_text("FROM scratch\nCOPY f /f\n")
    for line in api.build(path=str(directory), tag=f"{REPOSITORY}:{tag}", platform="linux/arm64", rm=True, decode=True):
        assert "error" not in line, line
    for line in api.push(REPOSITORY, tag=tag, stream=True, decode=True):
        assert "error" not in line, line


def test_an_image_of_another_platform_is_pulled_for_the_declared_one(
    reconcile: Any, tmp_manifests: Any, tmp_path: Path, project_name: str, base_image: str, api: Any
) -> None:
    tag = project_name
    reference = f"{REPOSITORY}:{tag}"
    context = tmp_path / "context"
    context.mkdir()
    try:
        _push_arm64_image(api, context, tag)
        api.remove_image(reference)
        api.tag(base_image, REPOSITORY, tag=tag)  # the engine's own platform under that reference
        spec = {"image": reference, "command": ["/f"], "platform": "linux/arm64", "state": "stopped"}
        directory = write(tmp_manifests, [doc("Container", f"{project_name}-arm", spec)])
        apply_ok(reconcile, directory)
        image = api.inspect_image(api.inspect_container(f"{project_name}-arm")["Image"])
        assert (image["Os"], image["Architecture"]) == ("linux", "arm64")
        in_sync(reconcile, directory)
    finally:
        with contextlib.suppress(docker.errors.NotFound):
            api.remove_container(f"{project_name}-arm", force=True)
        with contextlib.suppress(docker.errors.NotFound):
            api.remove_image(reference, force=True)
