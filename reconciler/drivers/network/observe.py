"""An engine network (inspect or list entry) -> the canonical spec shape `diff` compares with a declared one.

Pure: the driver lists and inspects, and adds what adoption changes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from reconciler.drivers.engine.common import user_labels
from reconciler.drivers.network.spec import canonical


def observed_spec(net: Mapping[str, Any]) -> dict[str, Any]:
    labels = net.get("Labels") or {}
    ipam = net.get("IPAM") or {}
    config = []
    for entry in ipam.get("Config") or []:
        item = {"subnet": canonical(entry.get("Subnet", ""))}
        if entry.get("Gateway"):
            item["gateway"] = canonical(entry["Gateway"], address=True)
        if entry.get("IPRange"):
            item["ipRange"] = canonical(entry["IPRange"])
        config.append(item)
    return {
        "driver": net.get("Driver"),
        "internal": bool(net.get("Internal")),
        "attachable": bool(net.get("Attachable")),
        "enableIPv6": bool(net.get("EnableIPv6")),
        "ipam": {"driver": ipam.get("Driver") or "default", "config": config},
        "options": {k: v for k, v in (net.get("Options") or {}).items() if k != "encrypted"},
        "encrypted": "encrypted" in (net.get("Options") or {}),
        "labels": user_labels(labels),
    }
