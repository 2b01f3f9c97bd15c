"""A service's `ports` as Container ports: ranges expanded one port per entry, host address and protocol kept."""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING, Any

from reconciler.compose.shortforms import port_range
from reconciler.compose.source import ComposeError, Map

if TYPE_CHECKING:
    from reconciler.compose.service import ServiceMapper

_PROTOCOLS = ("tcp", "udp", "sctp")


def map_ports(m: ServiceMapper) -> None:
    """Fills `m.spec["ports"]`; reports what cannot be published."""
    ports = m.service.get("ports")
    if not ports:
        return
    mode = m.service.text("network_mode") if m.service.get("network_mode") is not None else "bridge"
    if mode != "bridge":
        m.lost("ports", f"ports cannot be published with network_mode {mode} (the engine ignores or refuses them)")
        return
    out: list[dict[str, Any]] = []
    for i, port in enumerate(ports):
        out.extend(_one(m, i, port))
    if out:
        m.spec["ports"] = out


def _one(m: ServiceMapper, i: int, port: Map) -> list[dict[str, Any]]:
    at = m.service["ports"].at(i)
    where = f"services.{m.name}.ports[{i}]"
    low, high = port_range(port.text("target"), at)
    protocol = port.text("protocol").lower() if port.get("protocol") is not None else "tcp"
    if protocol not in _PROTOCOLS:
        raise ComposeError(at.file, at.line, f"{where}: unknown protocol {protocol!r}")
    host_ip = port.text("host_ip") if port.get("host_ip") not in (None, "") else None
    if host_ip is not None:
        try:
            ipaddress.ip_address(host_ip)
        except ValueError:
            raise ComposeError(at.file, at.line, f"{where}: invalid host address {host_ip!r}") from None
    for key in port:
        if key in ("name", "app_protocol"):
            m.lost(f"ports[{i}].{key}", "reconciler's ports carry no names or application protocols", port.at(key))
        elif key == "mode" and port.text("mode") not in ("host", "ingress"):
            raise ComposeError(at.file, at.line, f"{where}: unknown mode {port.text('mode')!r}")
        elif key not in ("target", "published", "host_ip", "protocol", "mode") and not key.startswith("x-"):
            raise ComposeError(at.file, at.line, f"{where}: unknown key {key!r}")
    published = port.text("published") if port.get("published") not in (None, "") else None
    count = high - low + 1
    host_ports: list[int | None] = [None] * count
    if published is not None:
        host_low, host_high = port_range(published, at)
        if host_high - host_low + 1 == count:
            host_ports = list(range(host_low, host_high + 1))
        elif count == 1:
            m.lost(
                f"ports[{i}]",
                f"host port range {published} for one container port: the engine picks a free one at start; "
                "reconciler publishes fixed ports",
                at,
            )
            return []
        else:
            raise ComposeError(at.file, at.line, f"{where}: host and container port ranges differ in size")
    entries = []
    for offset, host_port in enumerate(host_ports):
        entry: dict[str, Any] = {"containerPort": low + offset}
        if host_port is not None:
            entry["hostPort"] = host_port
        if host_ip is not None:
            entry["hostIP"] = host_ip
        if protocol != "tcp" or port.get("protocol") is not None:
            entry["protocol"] = protocol
        entries.append(entry)
    return entries
