"""The engine calls a volume's steps run: create it (labelled with its owner and reclaim policy), and stop and
remove a container that uses it (before a replace). The driver wraps them in its error translation and keeps
the policy and adoption records."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from reconciler.drivers.volume.spec import LABEL_INSTANCE, LABEL_RECLAIM
from reconciler.model import Desired, ownership_labels


def create_volume(api: Any, desired: Desired, project: str, revision: str | None = None) -> Mapping[str, Any]:
    """Create the volume; returns the engine's record of it (its instance label binds the policy record)."""
    labels = ownership_labels(desired, project, revision=revision)
    labels[LABEL_RECLAIM] = desired.spec["reclaimPolicy"]
    labels[LABEL_INSTANCE] = uuid.uuid4().hex
    return api.create_volume(
        name=desired.name,
        driver=desired.spec["driver"],
        driver_opts=desired.spec["driverOpts"] or None,
        labels=labels,
    )


def stop_and_remove(api: Any, cid: str) -> None:
    """Stop a container (within its own stop timeout, else 10 s) and remove it, keeping its anonymous volumes."""
    info = api.inspect_container(cid)
    stop_timeout = info["Config"].get("StopTimeout")
    api.stop(cid, timeout=10 if stop_timeout is None else stop_timeout)
    api.remove_container(cid, v=False)
