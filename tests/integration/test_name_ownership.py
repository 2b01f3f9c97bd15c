"""Names on the real engine that belong to someone else: an ID prefix is not a name, a container of another owner
under the aside name stops a replace untouched, and a secret the engine quotes back in an error stays hidden."""

from __future__ import annotations

import contextlib
from typing import Any

import pytest
from docker.errors import NotFound

from tests.helpers import apply_ok, changes_of, doc, in_sync, plan_json, sleeper, write

pytestmark = pytest.mark.engine


def remove_quietly(api: Any, cid: str) -> None:
    with contextlib.suppress(NotFound):
        api.remove_container(cid, force=True)


def test_a_declared_name_that_is_an_id_prefix_is_a_new_object(
    reconcile: Any, tmp_manifests: Any, project_name: str, base_image: str, api: Any
) -> None:
    """A container named like the start of another container's ID is created beside it; the other one stays."""
    first = f"{project_name}-a"
    directory = write(tmp_manifests, [doc("Container", first, sleeper(base_image))])
    apply_ok(reconcile, directory)
    first_id = api.inspect_container(first)["Id"]
    prefix = first_id[:10]
    both = [doc("Container", first, sleeper(base_image)), doc("Container", prefix, sleeper(base_image))]
    directory = write(tmp_manifests, both)
    try:
        rc, plan = plan_json(reconcile, directory)
        assert rc == 2 and changes_of(plan) == {prefix: ("create", [])}
        apply_ok(reconcile, directory)
        assert api.inspect_container(first)["Id"] == first_id
        assert api.inspect_container(prefix)["Name"] == f"/{prefix}"
        in_sync(reconcile, directory)
    finally:
        remove_quietly(api, prefix)


def test_an_unowned_container_under_the_aside_name_stops_the_replace(
    reconcile: Any, tmp_manifests: Any, project_name: str, base_image: str, api: Any
) -> None:
    """The replace fails before the old container is stopped, and the other owner's container survives."""
    name = f"{project_name}-web"
    directory = write(tmp_manifests, [doc("Container", name, sleeper(base_image))])
    apply_ok(reconcile, directory)
    old_id = api.inspect_container(name)["Id"]
    foreign = api.create_container(base_image, command=["sleep", "300"], name=f"{name}__reconciler_old")["Id"]
    try:
        directory = write(tmp_manifests, [doc("Container", name, sleeper(base_image, hostname="changed"))])
        proc = reconcile("apply", directory)
        assert proc.returncode == 1, proc.stdout + proc.stderr
        assert "does not own it" in proc.stdout
        assert api.inspect_container(foreign)["Name"] == f"/{name}__reconciler_old"
        old = api.inspect_container(name)
        assert old["Id"] == old_id and old["State"]["Running"]
    finally:
        remove_quietly(api, foreign)


def test_a_sensitive_value_quoted_back_by_the_engine_is_masked(
    reconcile: Any, tmp_manifests: Any, project_name: str, base_image: str
) -> None:
    """The engine refuses a NUL in an env value and quotes the value back: no output shows the secret."""
    name = f"{project_name}-s"
    spec = sleeper(base_image, env={"TOKEN": "hunter2-secret\0x"}, sensitiveEnv=["TOKEN"])
    directory = write(tmp_manifests, [doc("Container", name, spec)])
    for args in (("apply", directory), ("--log-format", "json", "apply", directory, "--output", "json")):
        proc = reconcile(*args)
        assert proc.returncode == 1, proc.stdout + proc.stderr
        assert "null" in proc.stdout + proc.stderr  # the engine's reason still shows
        assert "hunter2" not in proc.stdout + proc.stderr
