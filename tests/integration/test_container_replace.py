"""Replacing containers on the real engine: a moved image tag replaces, a failing replacement rolls back while
the old container keeps serving, and a leftover aside container from an interrupted replace is recovered."""

from __future__ import annotations

import contextlib
import io
import json
import socket
from typing import Any

import docker.errors
import pytest

from tests.helpers import Stack, apply_ok, changes_of, fetch, in_sync, plan_json

pytestmark = pytest.mark.engine


def test_moved_image_tag_replaces_the_container(
    reconcile: Any, stack: Stack, api: Any, project_name: str, base_image: str
) -> None:
    """The reference now names another image (rebuilt and re-tagged): plan shows a replace, apply runs the new one."""
    repo = f"127.0.0.1:5000/reconciler/{project_name}"
    ref = f"{repo}:v1"
    api.tag(base_image, repo, "v1")
    try:
        stack.specs["api"]["image"] = ref
        directory = stack.write()
        apply_ok(reconcile, directory)
        old_image = api.inspect_container(stack.name("api"))["Image"]
        dockerfile = f"FROM {base_image}\nLABEL rebuilt=yes\n".encode()
        built = list(
            api.build(
                fileobj=io.BytesIO(dockerfile),
                tag=ref,
                labels={"io.reconciler.project": project_name},
                rm=True,
                decode=True,
            )
        )
        new_image = api.inspect_image(ref)["Id"]
        assert new_image != old_image, built
        rc, plan = plan_json(reconcile, directory)
        assert rc == 2 and changes_of(plan) == {stack.name("api"): ("replace", ["image"])}
        apply_ok(reconcile, directory)
        assert api.inspect_container(stack.name("api"))["Image"] == new_image
        in_sync(reconcile, directory)
    finally:
        # untag only: the base image keeps its own tag; the rebuilt image carries the project label for cleanup
        for c in api.containers(all=True, filters={"label": f"io.reconciler.project={project_name}"}):
            api.remove_container(c["Id"], force=True)
        with contextlib.suppress(docker.errors.NotFound):
            api.remove_image(ref)


def test_failing_new_container_rolls_back(reconcile: Any, stack: Stack, api: Any) -> None:
    """A new command that exits at once: apply fails (exit 1), the old container is restored and keeps serving."""
    directory = stack.write()
    apply_ok(reconcile, directory)
    old_id = api.inspect_container(stack.name("web"))["Id"]
    stack.specs["web"]["command"] = ["sh", "-c", "exit 3"]
    stack.write()
    proc = reconcile("apply", directory)
    assert proc.returncode == 1
    assert "old container was restored" in proc.stdout + proc.stderr
    info = api.inspect_container(stack.name("web"))
    assert info["Id"] == old_id and info["State"]["Running"]
    assert fetch(stack.port) == f"hello from {stack.p}\n"
    names = {c["Names"][0] for c in api.containers(all=True, filters={"label": f"io.reconciler.project={stack.p}"})}
    assert f"/{stack.name('web')}__reconciler_old" not in names and len(names) == 3


def test_port_conflict_rolls_back(reconcile: Any, stack: Stack, api: Any) -> None:
    """The new container cannot bind its host port (taken by another process): rollback, old one serves on."""
    directory = stack.write()
    apply_ok(reconcile, directory)
    old_id = api.inspect_container(stack.name("web"))["Id"]
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        stack.specs["web"]["ports"].append({"containerPort": 81, "hostPort": taken, "hostIP": "127.0.0.1"})
        stack.write()
        proc = reconcile("apply", directory)
    assert proc.returncode == 1, proc.stdout
    assert "restored" in proc.stdout + proc.stderr
    info = api.inspect_container(stack.name("web"))
    assert info["Id"] == old_id and info["State"]["Running"]
    assert fetch(stack.port)


def test_interrupted_replace_is_recovered(reconcile: Any, stack: Stack, api: Any, project_name: str) -> None:
    """A container left parked under the aside name with no primary is renamed back and started; a stale aside
    next to a running primary is removed."""
    directory = stack.write()
    apply_ok(reconcile, directory)
    web = stack.name("web")
    old_id = api.inspect_container(web)["Id"]
    api.stop(web, timeout=1)
    api.rename(web, f"{web}__reconciler_old")  # as a crash between "park" and "create" leaves it
    rc, plan = plan_json(reconcile, directory)
    assert rc == 2 and changes_of(plan)[web] == ("update", ["name", "state"])
    apply_ok(reconcile, directory)
    info = api.inspect_container(web)
    assert info["Id"] == old_id and info["State"]["Running"]
    in_sync(reconcile, directory)

    labels = {"io.reconciler.project": project_name, "io.reconciler.kind": "Container", "io.reconciler.name": web}
    stale = api.create_container(stack.image, "true", name=f"{web}__reconciler_old", labels=labels)["Id"]
    rc, plan = plan_json(reconcile, directory)
    assert rc == 2 and changes_of(plan) == {f"{web}__reconciler_old": ("delete", [])}
    apply_ok(reconcile, directory)
    assert not api.containers(all=True, filters={"id": stale})
    assert api.inspect_container(web)["Id"] == old_id
    assert json.loads(reconcile("plan", directory, "--output", "json").stdout)["inSync"]
