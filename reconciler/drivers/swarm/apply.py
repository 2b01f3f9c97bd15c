"""The canonical service spec -> the engine's ServiceSpec document (the inverse of observe.py).

Pure. An update starts from the service's current document and overwrites only what the manifest manages, so
what someone else set (a log driver, platforms) survives, and a change that does not touch the task template
leaves it byte for byte as it was: swarm rolls no task for it.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from reconciler.drivers.swarm.fields import FIELDS, Building


def _built(part: str, building: Building) -> dict[str, Any]:
    """`building.doc` with every field of `part` written into it (each row of fields.FIELDS writes its own)."""
    for row in FIELDS:
        if row.part == part and row.write is not None:
            row.write(building.spec[row.key] if row.normalize is not None else None, building)
    return building.doc


def task_template(
    spec: Mapping[str, Any],
    image: str,
    secret_ids: Mapping[str, tuple[str, str]],
    config_ids: Mapping[str, tuple[str, str]],
    current: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """TaskTemplate for `spec`, over the `current` one (kept keys the manifest does not manage)."""
    task = copy.deepcopy(dict(current or {}))
    task.pop("Runtime", None)  # engine-filled; it fills it again
    task.setdefault("ContainerSpec", {})
    _built("task", Building(spec, task, image=image, secret_ids=secret_ids, config_ids=config_ids))
    task.setdefault("ForceUpdate", 0)
    return task


def endpoint_spec(spec: Mapping[str, Any], current: Mapping[str, Any] | None = None) -> dict[str, Any]:
    return _built("endpoint", Building(spec, dict(current or {})))


def service_spec(
    name: str,
    spec: Mapping[str, Any],
    labels: Mapping[str, str],
    template: Mapping[str, Any],
    endpoint: Mapping[str, Any],
    current: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The whole ServiceSpec: `template`/`endpoint` as built above (or the current ones, kept untouched)."""
    out = copy.deepcopy(dict(current or {}))
    out["Name"] = name
    out["TaskTemplate"] = dict(template)
    _built("service", Building(spec, out, labels=labels))
    out["EndpointSpec"] = dict(endpoint)
    out.pop("Networks", None)  # deprecated top-level form; TaskTemplate.Networks is the one
    return out
