"""`ipc: container:NAME` and `pid: container:NAME` against the real engine (Docker 20.10 stores the target's ID):
the sharer sees the target's processes, is read back in sync, and is replaced after the target when the target is
replaced (the engine pins the namespaces by ID)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.helpers import apply_ok, doc, in_sync, plan_json, sleeper, write

pytestmark = pytest.mark.engine


def _manifests(p: str, image: str, marker: str) -> list[dict[str, Any]]:
    target = {**sleeper(image), "command": ["sh", "-c", f"exec sleep {marker}"], "ipc": "shareable"}
    sharer = sleeper(image, ipc=f"container:{p}-a", pid=f"container:{p}-a")
    return [doc("Container", f"{p}-a", target), doc("Container", f"{p}-b", sharer)]


def test_sharing_a_containers_ipc_and_pid_namespaces(
    reconcile: Any, tmp_manifests: Any, project_name: str, base_image: str, api: Any
) -> None:
    p = project_name
    directory = write(tmp_manifests, _manifests(p, base_image, "3001"))
    apply_ok(reconcile, directory)
    first_b = api.inspect_container(f"{p}-b")["Id"]
    processes = api.exec_start(api.exec_create(f"{p}-b", ["ps"])).decode()
    assert "sleep 3001" in processes, processes  # A's process, seen from B's (shared) PID namespace
    in_sync(reconcile, directory)

    directory = write(tmp_manifests, _manifests(p, base_image, "3002"))
    rc, plan = plan_json(reconcile, directory)
    assert rc == 2
    order = [(c["name"], c["action"]) for c in plan["changes"]]
    assert order == [(f"{p}-a", "replace"), (f"{p}-b", "replace")], order
    apply_ok(reconcile, directory)
    assert api.inspect_container(f"{p}-b")["Id"] != first_b
    processes = api.exec_start(api.exec_create(f"{p}-b", ["ps"])).decode()
    assert "sleep 3002" in processes, processes
    in_sync(reconcile, directory)
