"""The engine calls a network's steps run: create it from the canonical spec (an overlay on an engine
outside swarm mode is a permanent error). The driver wraps it in its error translation and logs."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from reconciler.errors import PermanentError


def create_network(api: Any, name: str, spec: Mapping[str, Any], labels: Mapping[str, str]) -> str:
    """The new network's ID."""
    pools = [
        {
            "Subnet": e["subnet"],
            **({"Gateway": e["gateway"]} if "gateway" in e else {}),
            **({"IPRange": e["ipRange"]} if "ipRange" in e else {}),
        }
        for e in spec["ipam"]["config"]
    ]
    ipam = {"Driver": spec["ipam"]["driver"], "Config": pools, "Options": {}}
    try:
        made = api.create_network(
            name,
            driver=spec["driver"],
            options={**spec["options"], **({"encrypted": ""} if spec.get("encrypted") else {})} or None,
            ipam=ipam,
            internal=spec["internal"],
            attachable=spec["attachable"] or None,
            enable_ipv6=spec["enableIPv6"],
            labels=dict(labels),
            check_duplicate=True,
        )
    except Exception as exc:
        if "not a swarm manager" in str(exc):
            raise PermanentError(f"network {name}: overlay networks need swarm mode (docker swarm init)") from None
        raise
    return str(made["Id"])
