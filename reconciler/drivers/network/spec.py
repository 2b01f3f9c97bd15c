"""Pure side of the Network kind: the normalized spec (canonical address spellings) and its checks."""

from __future__ import annotations

import bisect
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


class SubnetIndex:
    """Every declared subnet, for the overlap check of each network without a scan of all the others: two CIDR
    networks overlap only when one contains the other, so the clashes of a subnet are its supernets (one dict
    lookup per shorter prefix) and the subnets inside it (a range of the start-sorted list)."""

    def __init__(self, networks: Iterable[Desired]) -> None:
        # (version, network address, prefix length) -> [(network name, index in its subnets)]
        self.exact: dict[tuple[int, int, int], list[tuple[str, int]]] = {}
        rows = []
        for desired in networks:
            for k, subnet in enumerate(subnets_of(desired.spec)):
                start = int(subnet.network_address)
                self.exact.setdefault((subnet.version, start, subnet.prefixlen), []).append((desired.name, k))
                rows.append(((subnet.version, start), desired.name, k, subnet))
        rows.sort(key=lambda r: r[0])
        self.starts = [r[0] for r in rows]
        self.rows = rows

    def clashes(
        self, name: str, subnet: ipaddress.IPv4Network | ipaddress.IPv6Network
    ) -> list[tuple[str, ipaddress.IPv4Network | ipaddress.IPv6Network]]:
        """(other network, its first subnet in its own order that overlaps `subnet`), one per other network."""
        found: list[tuple[str, int, ipaddress.IPv4Network | ipaddress.IPv6Network]] = []
        for prefix in range(subnet.prefixlen + 1):
            outer = subnet.supernet(new_prefix=prefix) if prefix < subnet.prefixlen else subnet
            for other, k in self.exact.get((subnet.version, int(outer.network_address), prefix), ()):
                found.append((other, k, outer))
        low = bisect.bisect_left(self.starts, (subnet.version, int(subnet.network_address)))
        high = bisect.bisect_right(self.starts, (subnet.version, int(subnet.broadcast_address)))
        found.extend((other, k, inner) for _, other, k, inner in self.rows[low:high])
        first: dict[str, tuple[int, ipaddress.IPv4Network | ipaddress.IPv6Network]] = {}
        for other, k, net in found:
            if other != name and (other not in first or k < first[other][0]):
                first[other] = (k, net)
        return [(other, net) for other, (_, net) in first.items()]


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
    if spec.get("external"):  # made outside the project (drivers/engine/external.py): nothing else is declared
        normalized["external"] = True
        hashed = {"external": True}
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
