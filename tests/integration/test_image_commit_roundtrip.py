"""The commit round trip of an image update, end to end against the test engine and the test registry: a host
follows a served repository with `watch --git`; the update is committed and pushed (reconciler.gitsource.propose,
as the watch's update check calls it); the host fetches that commit, pulls the new image and replaces the
container, which then runs the new image."""

from __future__ import annotations

import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from docker.errors import NotFound

from reconciler.gitsource import GitAuth, GitSource
from reconciler.updates import ImageUpdate
from reconciler.watch.run import GitWatch
from tests.gitrepo import Served
from tests.helpers import doc, sleeper, wait_for

REGISTRY = "127.0.0.1:5000"
LABEL_PROJECT = "io.reconciler.project"


def build_tagged(api: Any, tmp_path: Path, base: str, reference: str, project: str) -> str:
    """An image of `base` with one label more (so its ID differs), pushed as `reference`; the local tag is
    removed again, so the host has to pull it. Labelled with the test's project: the cleanup removes it."""
    ctx = tmp_path / f"ctx-{secrets.token_hex(4)}"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(f"FROM {base}\nLABEL version=new\n")
    image_id = None
    for item in api.build(path=str(ctx), tag=reference, labels={LABEL_PROJECT: project}, rm=True, decode=True):
        assert "error" not in item, item
        image_id = (item.get("aux") or {}).get("ID") or image_id
    push(api, reference)
    api.remove_image(reference)
    assert image_id is not None
    return str(image_id)


def push(api: Any, reference: str) -> None:
    repo, _, tag = reference.rpartition(":")
    for item in api.push(repo, tag=tag, stream=True, decode=True):
        assert "error" not in item, item


def test_a_pushed_update_commit_reaches_the_running_container(
    api: Any,
    watch: Callable[..., Any],
    project_name: str,
    base_image: str,
    tmp_path: Path,
    local_refs: list[str],
) -> None:
    repo = f"{REGISTRY}/{project_name}/api"
    old, new = f"{repo}:1.0.0", f"{repo}:1.1.0"
    api.tag(base_image, repo, "1.0.0")
    local_refs.extend([old, new])
    push(api, old)
    new_id = build_tagged(api, tmp_path, base_image, new, project_name)
    name = f"{project_name}-api"
    image = "# the API image, bumped by reconcile\n" + yaml.safe_dump(doc("Image", "api", {"reference": old}))
    container = yaml.safe_dump(doc("Container", name, sleeper(old)), sort_keys=False)
    served = Served(tmp_path / "forge")
    served.push({"hosts/web/images.yaml": image, "hosts/web/api.yaml": container}, "web: api 1.0.0")

    state = tmp_path / "state"
    w = watch(state, "--git", served.url, "--path", "hosts/web", "--poll", "0.5")

    def running() -> dict[str, Any]:
        try:  # absent for a moment while it is replaced
            return api.inspect_container(name)
        except NotFound:
            return {}

    wait_for(lambda: running().get("Config", {}).get("Image") == old, 90, "the container on the old image")

    update = ImageUpdate("api", "images.yaml", 6, "commit", old, new, "1.0.0", "1.1.0")
    with GitSource(served.url, tmp_path / "committer", path="hosts/web", auth=GitAuth(user_helpers=False)) as source:
        [result] = GitWatch(source).commit_updates([update])
    assert result.outcome == "pushed", result
    assert served.read("hosts/web/images.yaml").decode() == image.replace(old, new)

    wait_for(lambda: running().get("Config", {}).get("Image") == new, 120, "the container on the new image")
    final = running()
    assert final["Image"] == new_id and final["State"]["Running"]
    assert final["Config"]["Labels"]["io.reconciler.revision"] == result.commit
    assert w.stop() == 0
