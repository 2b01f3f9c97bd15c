"""A service as the engine reports it (`inspect_service`) -> the canonical spec shape of spec.py.

Pure translation, field by field (each row of fields.FIELDS reads its own). Absent engine fields read as the
defaults normalize fills in, and fields the engine or the docker CLI add on their own (Runtime, Isolation, Init,
DNSConfig, Placement.Platforms, ForceUpdate) are not read, so a service created from a manifest reads back exactly
as that manifest normalizes: no spurious update.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from reconciler.drivers.swarm.fields import FIELDS, Reading
from reconciler.drivers.swarm.values import split_digest


@dataclass(frozen=True)
class ServiceFacts:
    """Beside the observed spec: identity, version, and which engine objects it points at."""

    id: str
    version: int
    image_digest: str | None  # the digest the spec pins, if any
    # declared Secret/Config name -> the engine name of the version the service uses now
    secret_versions: Mapping[str, str] = field(default_factory=dict)
    config_versions: Mapping[str, str] = field(default_factory=dict)
    update_state: str | None = None  # UpdateStatus.State (paused, rollback_completed, ...)
    update_message: str = ""
    # tasks running / tasks wanted (replicas; a global service: its tasks meant to run); None: not looked at
    tasks: tuple[int, int] | None = None


def task_counts(info: Mapping[str, Any], tasks: list[Mapping[str, Any]]) -> tuple[int, int]:
    """(running, wanted) for one service from its tasks meant to run (`desired-state=running`)."""
    mine = [t for t in tasks if t.get("ServiceID") == info["ID"] and t.get("DesiredState") == "running"]
    running = sum(1 for t in mine if (t.get("Status") or {}).get("State") == "running")
    mode = (info.get("Spec") or {}).get("Mode") or {}
    if "Replicated" in mode:
        return running, int((mode["Replicated"] or {}).get("Replicas", 1))
    return running, len(mine)


def observed_service(
    info: Mapping[str, Any],
    network_names: Mapping[str, str],
    secret_names: Mapping[str, str],
    config_names: Mapping[str, str],
    tasks: list[Mapping[str, Any]] | None = None,
) -> tuple[dict[str, Any], ServiceFacts]:
    """(canonical spec, facts) of one `inspect_service` document: each row of fields.FIELDS reads its field.
    `network_names` maps network IDs to names; `secret_names`/`config_names` map the engine names of the
    project's versions to their manifest names."""
    reading = Reading(info, network_names, secret_names, config_names)
    normalized = {row.key: row.read(reading) for row in FIELDS}
    _, digest = split_digest(reading.container.get("Image", ""))
    status = info.get("UpdateStatus") or {}
    facts = ServiceFacts(
        id=info["ID"],
        version=int((info.get("Version") or {}).get("Index", 0)),
        image_digest=digest,
        secret_versions=reading.versions.get("secrets", {}),
        config_versions=reading.versions.get("configs", {}),
        update_state=status.get("State"),
        update_message=status.get("Message", ""),
        tasks=None if tasks is None else task_counts(info, tasks),
    )
    return normalized, facts
