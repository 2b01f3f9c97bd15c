"""Images pulled by reconcile on the real engine and the loopback registry: pull policies, moved tags, and the
removal rules (only tags this project pulled, never one a container uses, never an image it did not pull)."""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any

import pytest
from docker.errors import NotFound

from tests.helpers import cli, image_manifest, plan_json_any

pytestmark = pytest.mark.engine
LABEL_PROJECT = "io.reconciler.project"

REGISTRY = "127.0.0.1:5000"


def push_scratch(api: Any, tmp_path: Path, reference: str, content: str, project: str) -> str:
    """Build a FROM-scratch image holding one file, tag it `reference`, push it; returns its ID. Labelled with
    the test's project (not as an Image of it) so the project cleanup removes it whatever happens."""
    ctx = tmp_path / f"scratch-{secrets.token_hex(4)}"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM scratch\nCOPY data /data\n")
    (ctx / "data").write_text(content + "\n")
    image_id = None
    for item in api.build(path=str(ctx), tag=reference, labels={LABEL_PROJECT: project}, rm=True, decode=True):
        assert "error" not in item, item
        image_id = (item.get("aux") or {}).get("ID") or image_id
    repo, _, tag = reference.rpartition(":")
    for item in api.push(repo, tag=tag, stream=True, decode=True):
        assert "error" not in item, item
    assert image_id is not None
    return image_id


def test_absent_image_is_pulled_back_and_its_tag_pruned(
    api, project_name, reconcile, tmp_manifests, base_image, tmp_path, local_refs
):
    """IfNotPresent pulls an absent reference once; with its manifest gone the pulled tag is removed."""
    ref = f"127.0.0.1:5000/{project_name}/pulled:1"
    pushed_id = push_scratch(api, tmp_path, ref, "pulled", project_name)
    api.remove_image(ref)
    local_refs.append(ref)
    tmp_manifests("img.yaml", image_manifest("pulled", ref))
    tmp_manifests("base.yaml", image_manifest("base", base_image))
    run = cli(reconcile, tmp_path)

    code, plan = plan_json_any(run, tmp_manifests.dir)
    assert code == 2, plan
    [change] = plan["changes"]
    assert (change["name"], change["action"], change["steps"]) == ("pulled", "create", [f"pull {ref}"])
    assert run("apply", tmp_manifests.dir).returncode == 0
    assert api.inspect_image(ref)["Id"] == pushed_id
    assert run("plan", tmp_manifests.dir).returncode == 0
    state = json.loads(next((tmp_path / "state" / project_name).glob("pulled-images-*.json")).read_text())
    assert state[ref]["name"] == "pulled"

    (tmp_manifests.dir / "img.yaml").unlink()
    code, plan = plan_json_any(run, tmp_manifests.dir)
    assert code == 2
    [change] = plan["changes"]
    assert (change["action"], change["steps"]) == ("delete", [f"remove tag {ref}"])
    assert run("apply", tmp_manifests.dir).returncode == 0
    with pytest.raises(NotFound):
        api.inspect_image(ref)
    api.inspect_image(base_image)  # declared, present before, never pulled by us: untouched
    assert run("plan", tmp_manifests.dir).returncode == 0


def test_pulled_image_used_by_a_container_is_kept(
    api, project_name, reconcile, tmp_manifests, base_image, tmp_path, local_refs
):
    """A pulled tag still used by a container survives its manifest's removal, and the plan says why."""
    ref = f"127.0.0.1:5000/{project_name}/used:1"
    push_scratch(api, tmp_path, ref, "used", project_name)
    api.remove_image(ref)
    local_refs.append(ref)
    tmp_manifests("img.yaml", image_manifest("used", ref))
    run = cli(reconcile, tmp_path)
    assert run("apply", tmp_manifests.dir).returncode == 0
    api.create_container(ref, ["/data"], name=f"{project_name}-user", labels={"io.reconciler.project": project_name})
    (tmp_manifests.dir / "img.yaml").write_text("")
    # Another declared image (present, never pulled by us) keeps the project non-empty and needs no change, so
    # the apply below has nothing to do but decide about the pulled tag: a clean exit 0 is expected.
    tmp_manifests("other.yaml", image_manifest("base", base_image))
    kept = f"image {ref} kept: used by containers {project_name}-user"
    proc = run("plan", tmp_manifests.dir)
    assert proc.returncode == 0 and kept in proc.stdout, proc.stdout + proc.stderr
    proc = run("apply", tmp_manifests.dir)
    assert proc.returncode == 0 and kept in proc.stdout, proc.stdout + proc.stderr
    assert "0 failed" in proc.stdout
    api.inspect_image(ref)  # still there


def test_image_not_pulled_by_the_project_is_used_but_never_removed(
    api, project_name, reconcile, tmp_manifests, base_image, tmp_path, local_refs
):
    """An existing image of the declared reference is in sync as it is, and stays when the manifest goes."""
    repo = f"127.0.0.1:5000/{project_name}/foreign"
    api.tag(base_image, repo, "1")
    local_refs.append(f"{repo}:1")
    tmp_manifests("img.yaml", image_manifest("foreign", f"{repo}:1"))
    tmp_manifests("base.yaml", image_manifest("base", base_image))
    run = cli(reconcile, tmp_path)
    assert run("plan", tmp_manifests.dir).returncode == 0
    assert run("apply", tmp_manifests.dir).returncode == 0
    (tmp_manifests.dir / "img.yaml").unlink()
    assert run("plan", tmp_manifests.dir).returncode == 0
    assert run("apply", tmp_manifests.dir).returncode == 0
    api.inspect_image(f"{repo}:1")


def test_moved_tag_is_repulled_under_always_only(api, project_name, reconcile, tmp_manifests, tmp_path, local_refs):
    """A tag moved in the registry: IfNotPresent keeps the local image, Always notices (digest) and re-pulls."""
    repo = f"127.0.0.1:5000/{project_name}/moving"
    ref = f"{repo}:1"
    local_refs.append(ref)
    first = push_scratch(api, tmp_path, ref, "first", project_name)
    second = push_scratch(api, tmp_path, ref, "second", project_name)  # the registry's tag now points here
    api.tag(first, repo, "1")  # ... while the engine still has the first image under it
    api.remove_image(second)
    tmp_manifests("img.yaml", image_manifest("moving", ref, "IfNotPresent"))
    run = cli(reconcile, tmp_path)
    assert run("plan", tmp_manifests.dir).returncode == 0
    assert api.inspect_image(ref)["Id"] == first

    tmp_manifests("img.yaml", image_manifest("moving", ref, "Always"))
    code, plan = plan_json_any(run, tmp_manifests.dir)
    assert code == 2, plan
    [change] = plan["changes"]
    assert change["action"] == "replace" and [f["path"] for f in change["fields"]] == ["digest"]
    assert run("apply", tmp_manifests.dir).returncode == 0
    assert api.inspect_image(ref)["Id"] == second
    assert run("plan", tmp_manifests.dir).returncode == 0
    api.remove_image(first)


def test_pull_progress_is_logged_as_json_events(api, project_name, reconcile, tmp_manifests, tmp_path, local_refs):
    """`--log-format json` gives structured image.pull.progress events on stderr."""
    ref = f"127.0.0.1:5000/{project_name}/progress:1"
    push_scratch(api, tmp_path, ref, "progress", project_name)
    api.remove_image(ref)
    local_refs.append(ref)
    tmp_manifests("img.yaml", image_manifest("progress", ref))
    proc = reconcile("--log-format", "json", "apply", tmp_manifests.dir, env={"RECONCILER_STATE_DIR": str(tmp_path)})
    assert proc.returncode == 0, proc.stderr
    events = [json.loads(line) for line in proc.stderr.splitlines() if line.startswith("{")]
    progress = [e for e in events if e["event"] == "image.pull.progress"]
    assert progress and all(e["reference"] == ref for e in progress)
    assert any(e.get("status") == "Pull complete" for e in progress)
