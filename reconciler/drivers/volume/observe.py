"""An engine volume (inspect or list entry) -> the canonical spec shape `diff` compares with a desired one.

Pure: the driver lists and inspects, and decides the reclaim policy in force (policy.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from reconciler.drivers.engine.common import user_labels


def observed_spec(vol: Mapping[str, Any], reclaim_policy: str) -> dict[str, Any]:
    return {
        "driver": vol.get("Driver"),
        "driverOpts": dict(vol.get("Options") or {}),
        "labels": user_labels(vol.get("Labels") or {}),
        "reclaimPolicy": reclaim_policy,
    }
