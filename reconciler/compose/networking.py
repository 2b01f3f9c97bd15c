"""A service's networks (`networks`, `network_mode`) and its `depends_on`, in the names the import chose."""

from __future__ import annotations

import ipaddress
import re
from typing import TYPE_CHECKING, Any

from reconciler.compose.source import ComposeError, Loc, Map, scalar_text

if TYPE_CHECKING:
    from reconciler.compose.service import ServiceMapper

_ALIAS = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")


def map_networking(m: ServiceMapper) -> None:
    """`network_mode` -> `spec.networkMode`, else `networks` (default: the project's default network) ->
    `spec.networks` with aliases and static addresses."""
    s = m.service
    mode = s.text("network_mode") if s.get("network_mode") is not None else None
    if mode is not None:
        if s.get("networks"):
            at = s.at("networks")
            raise ComposeError(at.file, at.line, f"services.{m.name}: network_mode and networks are exclusive")
        if mode in ("bridge", "host", "none"):
            m.spec["networkMode"] = mode
        elif mode.startswith("service:"):
            other = mode.partition(":")[2]
            if other not in m.ctx.containers:
                m.lost("network_mode", f"service {other!r} is not part of the import")
            else:
                m.spec["networkMode"] = f"container:{m.ctx.containers[other]}"
        elif mode.startswith("container:"):
            other = mode.partition(":")[2]
            if other in m.ctx.containers.values():
                m.spec["networkMode"] = mode
            else:
                m.lost("network_mode", f"container {other!r} is not declared by the project")
        else:
            m.lost("network_mode", f"{mode!r}: reconciler supports bridge, host, none, service: and container:")
        return
    networks = s.get("networks")
    if networks is None or not networks:
        networks = Map(s.loc)
        networks.put("default", Map(s.loc), s.loc)
    out = []
    for key, options in networks.items():
        at = networks.at(key)
        declared = m.ctx.networks.get(key)
        if declared is None:
            m.lost(f"networks.{key}", "the network is not declared by the import (see its entry)", at)
            continue
        entry: dict[str, Any] = {"name": declared}
        aliases: list[str] = []
        if m.container_name != m.name and _ALIAS.match(m.name):
            # Compose makes every service reachable by its service name on each of its networks
            aliases.append(m.name)
        if isinstance(options, Map):
            for option in options:
                oat = options.at(option)
                if option == "aliases":
                    for i, alias in enumerate(options["aliases"] or []):
                        text = scalar_text(alias)
                        if not _ALIAS.match(text):
                            m.lost(f"networks.{key}.aliases[{i}]", f"{text!r} is not a valid alias", oat)
                        elif text not in aliases:
                            aliases.append(text)
                elif option == "ipv4_address":
                    _static_address(m, key, options.text(option), entry, oat)
                elif not option.startswith("x-"):
                    m.lost(
                        f"networks.{key}.{option}",
                        "reconciler's network attachment has aliases and ipv4Address only",
                        oat,
                    )
        if aliases:
            entry["aliases"] = aliases
        out.append(entry)
    if out:
        m.spec["networks"] = out


def _static_address(m: ServiceMapper, key: str, address: str, entry: dict[str, Any], at: Loc) -> None:

    try:
        ip = ipaddress.IPv4Address(address)
    except ValueError:
        raise ComposeError(
            at.file, at.line, f"services.{m.name}.networks.{key}.ipv4_address: invalid address {address!r}"
        ) from None
    subnets = [ipaddress.ip_network(s, strict=False) for s in m.ctx.network_subnets.get(key, [])]
    if key not in m.ctx.external_networks and not any(ip in net for net in subnets):
        m.lost(
            f"networks.{key}.ipv4_address",
            "a static address needs a subnet containing it in the "
            "network's ipam.config (the engine refuses it otherwise)",
            at,
        )
        return
    entry["ipv4Address"] = address


def map_depends_on(m: ServiceMapper) -> None:
    """`depends_on` -> `spec.dependsOn`: service_started -> started, service_healthy -> healthy,
    service_completed_successfully -> completed."""
    depends = m.service.get("depends_on")
    if not depends:
        return
    out = []
    for other, options in depends.items():
        at = depends.at(other)
        options = options if isinstance(options, Map) else Map(at)
        required = options.get("required", True) is not False
        if other not in m.ctx.containers:
            if other in m.ctx.all_services:
                m.lost(f"depends_on.{other}", "that service is not imported (profiles); ordering lost", at)
            elif required:
                raise ComposeError(at.file, at.line, f"services.{m.name}.depends_on: unknown service {other!r}")
            continue
        condition = options.text("condition") if "condition" in options else "service_started"
        entry: dict[str, Any] = {"name": m.ctx.containers[other]}
        if condition == "service_healthy":
            entry["condition"] = "healthy"
        elif condition == "service_completed_successfully":
            entry["condition"] = "completed"  # the other becomes a one-shot (mapping.py's _one_shots)
        elif condition != "service_started":
            raise ComposeError(
                at.file, at.line, f"services.{m.name}.depends_on.{other}: unknown condition {condition!r}"
            )
        for option in options:
            if option not in ("condition", "required") and not option.startswith("x-"):
                m.lost(
                    f"depends_on.{other}.{option}", "reconciler's dependsOn has a condition only", options.at(option)
                )
        out.append(entry)
    if out:
        m.spec["dependsOn"] = out
