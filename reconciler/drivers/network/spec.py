"""Pure side of the Network kind: the normalized spec (canonical address spellings) and its checks."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from typing import Any

from reconciler.model import Desired, Resource
from reconciler.spechash import spec_hash


def canonical(value: str, address: bool = False) -> str:
    """`fd00:0::/64` -> `fd00::/64`, `10.0.0.1` stays: one spelling per address, so equivalent manifests hash
    and compare the same. Invalid input is returned as written (check() reports it)."""
    try:
        return str(ipaddress.ip_address(value) if address else ipaddress.ip_network(value, strict=False))
    except ValueError:
        return value


def _ipam_entry(entry: Mapping[str, Any]) -> dict[str, str]:
    out = {"subnet": canonical(str(entry["subnet"]))}
    if entry.get("gateway"):
        out["gateway"] = canonical(str(entry["gateway"]), address=True)
    if entry.get("ipRange"):
        out["ipRange"] = canonical(str(entry["ipRange"]))
    return out


def pools_in_order(config: Iterable[Mapping[str, str]]) -> list[dict[str, str]]:
    """Pools sorted by subnet: the engine reports them in an order of its own (IPv4 first)."""
    return sorted((dict(e) for e in config), key=lambda e: e.get("subnet", ""))


def subnets_of(spec: Mapping[str, Any]) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    found = []
    for entry in spec["ipam"]["config"]:
        try:
            found.append(ipaddress.ip_network(entry["subnet"], strict=True))
        except ValueError:
            continue
    return found


def normalize_network(resource: Resource) -> Desired:
    spec = resource.spec
    ipam = spec.get("ipam") or {}
    normalized = {
        "driver": spec.get("driver") or "bridge",
        "internal": bool(spec.get("internal", False)),
        "attachable": bool(spec.get("attachable", False)),
        "enableIPv6": bool(spec.get("enableIPv6", False)),
        "ipam": {
            "driver": ipam.get("driver") or "default",
            "config": [_ipam_entry(e) for e in ipam.get("config") or []],
        },
        "options": {str(k): str(v) for k, v in (spec.get("options") or {}).items() if k != "encrypted"},
        "encrypted": bool(spec.get("encrypted", False)),
    }
    # hashed only when set, so the hashes of networks made before `encrypted` existed stay the same
    hashed = {k: v for k, v in normalized.items() if k != "encrypted" or v}
    return Desired(resource, normalized, spec_hash("Network", hashed, resource.labels))


def check_network(spec: Mapping[str, Any]) -> Iterable[tuple[str, str]]:
    """CIDR sanity: valid subnets, gateway and ipRange inside their subnet, no overlapping subnets."""
    subnets: list[tuple[int, ipaddress.IPv4Network | ipaddress.IPv6Network]] = []
    for i, entry in enumerate(spec["ipam"]["config"]):
        base = f"spec.ipam.config.{i}"
        try:
            subnet = ipaddress.ip_network(entry["subnet"], strict=True)
        except ValueError as exc:
            yield f"{base}.subnet", f"invalid subnet: {exc}"
            continue
        for j, other in subnets:
            if subnet.version == other.version and subnet.overlaps(other):
                yield f"{base}.subnet", f"overlaps spec.ipam.config[{j}].subnet {other}"
        subnets.append((i, subnet))
        if "gateway" in entry:
            try:
                gateway = ipaddress.ip_address(entry["gateway"])
                if gateway not in subnet:
                    yield f"{base}.gateway", f"gateway {gateway} is outside subnet {subnet}"
                elif gateway == subnet.network_address or (subnet.version == 4 and gateway == subnet.broadcast_address):
                    yield f"{base}.gateway", f"gateway {gateway} is the network or broadcast address of {subnet}"
            except ValueError as exc:
                yield f"{base}.gateway", f"invalid address: {exc}"
        if "ipRange" in entry:
            try:
                ip_range = ipaddress.ip_network(entry["ipRange"], strict=True)
                if ip_range.version != subnet.version or not ip_range.subnet_of(subnet):  # type: ignore[arg-type]
                    yield f"{base}.ipRange", f"ipRange {ip_range} is outside subnet {subnet}"
            except ValueError as exc:
                yield f"{base}.ipRange", f"invalid range: {exc}"
    if spec["encrypted"] and spec["driver"] != "overlay":
        yield "spec.encrypted", "encrypted applies to overlay networks only"
    if spec["attachable"] and spec["driver"] != "overlay":
        yield "spec.attachable", "attachable applies to overlay networks only"
    if spec["enableIPv6"] is False and any(s.version == 6 for _, s in subnets):
        yield "spec.enableIPv6", "an IPv6 subnet is declared; set enableIPv6: true"
