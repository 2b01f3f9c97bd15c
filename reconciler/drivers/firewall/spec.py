"""FirewallAllowList specs: parse address sets, normalize a manifest spec, and find semantic problems.

Pure functions: no kernel, no engine. An address set is an address (`10.0.0.5`), a CIDR (`10.0.0.0/24`) or an
inclusive range (`10.0.0.5-10.0.0.9`), one family per entry.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

PROTOCOLS = ("tcp", "udp", "sctp")
DEFAULT_PROTOCOL = "tcp"
# Linux IFNAMSIZ is 16 including the NUL; '/' and whitespace are never allowed, ':' is an alias separator.
INTERFACE_NAME = re.compile(r"^[^/:\s]{1,15}$")


@dataclass(frozen=True, order=True)
class AddressSet:
    """One parsed address set: the inclusive interval [first, last] of one family."""

    family: int  # 4 or 6
    first: int
    last: int
    text: str  # canonical form: `a`, `a/len` or `a-b`

    @property
    def is_range(self) -> bool:
        return "-" in self.text

    def networks(self) -> list[IPNetwork]:
        """The CIDR blocks that exactly cover this set (a range becomes several blocks)."""
        cls = ipaddress.IPv4Address if self.family == 4 else ipaddress.IPv6Address
        return list(ipaddress.summarize_address_range(cls(self.first), cls(self.last)))


def parse_address_set(text: str) -> AddressSet:
    """`text` as an AddressSet with a canonical text; raises ValueError with a message for the user."""
    raw = str(text).strip()
    if "-" in raw:
        start_text, _, end_text = raw.partition("-")
        try:
            start = ipaddress.ip_address(start_text.strip())
            end = ipaddress.ip_address(end_text.strip())
        except ValueError as exc:
            raise ValueError(f"{raw!r} is not a valid address range: {exc}") from None
        if start.version != end.version:
            raise ValueError(f"range {raw!r} mixes IPv{start.version} and IPv{end.version}")
        if int(start) > int(end):
            raise ValueError(f"range {raw!r} starts after it ends")
        canonical = str(start) if start == end else f"{start}-{end}"
        return AddressSet(start.version, int(start), int(end), canonical)
    if "/" in raw:
        try:
            net = ipaddress.ip_network(raw, strict=True)
        except ValueError as exc:
            loose = _loose_network(raw)
            hint = f"; did you mean {loose}?" if loose else ""
            raise ValueError(f"{raw!r} is not a valid CIDR: {exc}{hint}") from None
        single = net.prefixlen == net.max_prefixlen
        canonical = str(net.network_address) if single else str(net)
        return AddressSet(net.version, int(net.network_address), int(net.broadcast_address), canonical)
    try:
        addr = ipaddress.ip_address(raw)
    except ValueError as exc:
        raise ValueError(f"{raw!r} is not a valid address: {exc}") from None
    return AddressSet(addr.version, int(addr), int(addr), str(addr))


def _loose_network(raw: str) -> str | None:
    try:
        return str(ipaddress.ip_network(raw, strict=False))
    except ValueError:
        return None


def _canonical_sets(values: Iterable[Any]) -> list[str]:
    """Sorted, deduplicated canonical texts; invalid entries are kept verbatim (check() reports them)."""
    parsed: dict[str, tuple[int, int, int, str]] = {}
    for value in values:
        try:
            aset = parse_address_set(str(value))
            parsed[aset.text] = (aset.family, aset.first, aset.last, aset.text)
        except ValueError:
            parsed[str(value)] = (99, 0, 0, str(value))
    return [text for _, _, _, text in sorted(parsed.values())]


def _port_entry(value: Any) -> dict[str, Any]:
    if isinstance(value, Mapping):
        return {"port": value.get("port"), "protocol": str(value.get("protocol") or DEFAULT_PROTOCOL).lower()}
    return {"port": value, "protocol": DEFAULT_PROTOCOL}


def normalize_spec(spec: Mapping[str, Any]) -> dict[str, Any]:
    """The canonical spec: sorted unique interfaces, address sets and ports (protocol default tcp).

    `destinations: []` and `ports: []` mean "all" (the same as leaving them out).
    """
    ports: dict[tuple[str, str], dict[str, Any]] = {}
    for value in spec.get("ports") or []:
        entry = _port_entry(value)
        ports[(entry["protocol"], str(entry["port"]).zfill(5))] = entry
    return {
        "interfaces": sorted({str(i) for i in spec.get("interfaces") or []}),
        "sources": _canonical_sets(spec.get("sources") or []),
        "destinations": _canonical_sets(spec.get("destinations") or []),
        "ports": [ports[k] for k in sorted(ports)],
    }


def check_spec(spec: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Semantic problems of a spec as written (paths index the manifest's own lists), as (path, message)."""
    problems: list[tuple[str, str]] = []
    interfaces = spec.get("interfaces") or []
    if not interfaces:
        problems.append(("spec.interfaces", "at least one interface is required"))
    for i, name in enumerate(interfaces):
        if not isinstance(name, str) or not INTERFACE_NAME.match(name) or name in (".", ".."):
            problems.append((f"spec.interfaces.{i}", f"{name!r} is not a valid interface name"))
    for field in ("sources", "destinations"):
        for i, text in enumerate(spec.get(field) or []):
            try:
                parse_address_set(str(text))
            except ValueError as exc:
                problems.append((f"spec.{field}.{i}", str(exc)))
    for i, value in enumerate(spec.get("ports") or []):
        entry = _port_entry(value)
        port = entry["port"]
        if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
            problems.append((f"spec.ports.{i}.port", f"port must be a number 1-65535, not {port!r}"))
        if entry["protocol"] not in PROTOCOLS:
            problems.append((f"spec.ports.{i}.protocol", f"protocol must be one of {', '.join(PROTOCOLS)}"))
    return problems


def families_of(texts: Iterable[str]) -> set[int]:
    """The IP families (4, 6) present among valid address-set texts."""
    found = set()
    for text in texts:
        try:
            found.add(parse_address_set(text).family)
        except ValueError:
            continue
    return found


def describe(spec: Mapping[str, Any]) -> str:
    """One line in words: which traffic the list governs."""
    ifaces = ", ".join(spec["interfaces"])
    ports = ", ".join(f"{p['port']}/{p['protocol']}" for p in spec["ports"]) or "all published ports"
    dests = ", ".join(spec["destinations"]) or "any host address"
    return f"traffic arriving on {ifaces} for {dests}, {ports}"
