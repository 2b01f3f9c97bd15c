"""Container options the engine's Mounts API cannot carry, and the ones it may drop, on the real engine: a bind with
SELinux relabelling and an executable tmpfs go through HostConfig.Binds / Tmpfs and read back with no drift (by
hash and field by field); `platform` reads back from the image; `resources.blkioWeight` is applied where the kernel
has a block I/O weight, and refused with the engine's warning where it would be discarded."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import pytest

from reconciler.core.project import ProjectRunner
from reconciler.drivers.container.diff import diff_container
from reconciler.drivers.engine.client import connect
from reconciler.model import Action
from tests.helpers import SLEEPER, apply_ok, doc, in_sync, plan_json, write

pytestmark = pytest.mark.engine

# a script written to the tmpfs and run from it: only an `exec` tmpfs lets it run
RUN_FROM_TMPFS = f"printf '#!/bin/sh\\necho ok\\n' > /x/run.sh; chmod +x /x/run.sh; /x/run.sh > /x/ran; {SLEEPER}"


def spec(image: str, **extra: Any) -> dict[str, Any]:
    return {
        "image": image,
        "command": ["sh", "-c", RUN_FROM_TMPFS],
        "stopTimeout": 1,
        "platform": "linux/amd64",
        "mounts": [
            {"type": "bind", "source": "./conf", "target": "/conf", "readOnly": True, "selinux": "z"},
            {"type": "tmpfs", "target": "/x", "exec": True, "size": "8m", "mode": "0750"},
            {"type": "tmpfs", "target": "/plain", "size": "1m"},
        ],
        **extra,
    }


def full_comparison_finds_nothing(project: str, directory: Any, engine_host: str) -> None:
    runner = ProjectRunner(project, directory, engine_factory=lambda: connect(engine_host))
    containers = runner.load_valid().catalog.of_kind("Container")
    observed = runner.drivers["Container"].observe(containers)
    for desired in containers:
        older = dataclasses.replace(desired, spec_hash="v0-from-an-older-normalizer")
        change = diff_container(older, observed[desired.name])
        assert change.action is Action.NONE, (desired.name, change.fields)


def test_selinux_binds_exec_tmpfs_and_platform_round_trip(
    reconcile: Any, tmp_manifests: Any, project_name: str, base_image: str, engine_host: str, api: Any
) -> None:
    name = f"{project_name}-app"
    tmp_manifests("conf/app.conf", "x=1\n")
    directory = write(tmp_manifests, [doc("Container", name, spec(base_image))])
    apply_ok(reconcile, directory)
    in_sync(reconcile, directory)
    full_comparison_finds_nothing(project_name, directory, engine_host)

    host = api.inspect_container(name)["HostConfig"]
    assert host["Binds"] == [f"{directory}/conf:/conf:ro,z"]
    assert host["Tmpfs"] == {"/x": f"exec,size={8 * 1024**2},mode=750"}
    assert [m["Target"] for m in host["Mounts"]] == ["/plain"], "the other mounts stay in Mounts"
    ran = api.exec_create(name, ["cat", "/x/ran"])
    assert api.exec_start(ran).decode().strip() == "ok", "the exec tmpfs runs what is written to it"

    # each option changed alone is a replace named by mounts; another platform by platform
    for changed in (
        {"mounts": [{**spec(base_image)["mounts"][0], "selinux": "Z"}, *spec(base_image)["mounts"][1:]]},
        {"mounts": [spec(base_image)["mounts"][0], {**spec(base_image)["mounts"][1], "exec": False}]},
        {"platform": "linux/arm64"},
    ):
        write(tmp_manifests, [doc("Container", name, spec(base_image, **changed))])
        rc, plan = plan_json(reconcile, directory)
        [change] = [c for c in plan["changes"] if c["action"] != "none"]
        assert rc == 2 and change["action"] == "replace", json.dumps(change)
        assert {f["path"] for f in change["fields"]} == set(changed), json.dumps(change)


def test_blkio_weight_is_applied_or_refused_never_dropped(
    reconcile: Any, tmp_manifests: Any, project_name: str, base_image: str, api: Any
) -> None:
    # what this engine's kernel does with a weight: asked of a probe container of this test's project
    probe = api.create_container(
        base_image,
        "true",
        name=f"{project_name}-probe",
        labels={"io.reconciler.project": project_name},
        host_config=api.create_host_config(blkio_weight=300),
    )
    api.remove_container(probe["Id"], force=True)
    discards = any("discarded" in w for w in probe.get("Warnings") or [])

    name = f"{project_name}-io"
    manifest = {"image": base_image, "command": ["sh", "-c", SLEEPER], "stopTimeout": 1}
    directory = write(tmp_manifests, [doc("Container", name, {**manifest, "resources": {"blkioWeight": 300}})])
    proc = reconcile("apply", directory)
    out = proc.stdout + proc.stderr
    if discards:  # Docker 20.10 on cgroup v1 without a weight controller (this project's test host)
        assert proc.returncode == 1, out
        assert "the engine discarded resources.blkioWeight at the create" in out and "Weight discarded" in out, out
        assert not api.containers(all=True, filters={"name": f"^/{name}$"}), "a refused create leaves nothing"
        # added to a running container: the in-place update is refused the same way
        write(tmp_manifests, [doc("Container", name, manifest)])
        apply_ok(reconcile, directory)
        write(tmp_manifests, [doc("Container", name, {**manifest, "resources": {"blkioWeight": 300}})])
        proc = reconcile("apply", directory)
        assert proc.returncode == 1 and "discarded resources.blkioWeight at the update" in proc.stdout + proc.stderr
    else:
        assert proc.returncode == 0, out
        assert api.inspect_container(name)["HostConfig"]["BlkioWeight"] == 300
        in_sync(reconcile, directory)
