"""What an engine's `info()` says about its place in a swarm: a manager, a worker (which cannot create services
or overlay networks, but whose containers can join a manager's attachable overlay), or no swarm at all."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def is_worker(swarm: Mapping[str, Any]) -> bool:
    """`info()["Swarm"]` of an active node without control: a worker."""
    return swarm.get("LocalNodeState") == "active" and not swarm.get("ControlAvailable")


def worker_problem(swarm: Mapping[str, Any], creates: str) -> str | None:
    """Why an engine that is a swarm *worker* cannot create `creates` ("services", "overlay networks"), naming
    its managers (the addresses its engine reports); None for a manager or an engine in no swarm."""
    if not is_worker(swarm):
        return None
    managers = ", ".join(sorted(str(m.get("Addr")) for m in swarm.get("RemoteManagers") or [] if m.get("Addr")))
    return (
        f"this engine is a swarm worker, and workers cannot create {creates}: place it on a manager of its swarm "
        f"({'manager at ' + managers if managers else 'see `docker node ls` on a manager'})"
    )
