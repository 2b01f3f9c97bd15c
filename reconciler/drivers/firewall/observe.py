"""Reading lists back from rules: what a list enforces and which rules it depends on, taken the same way
from the desired and from the live ruleset so that both sides of a diff pass through the same lens."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from typing import Any

from reconciler.drivers.firewall.rules import ALL, HASH_KEY, ChainSet, group_chain, list_comment
from reconciler.drivers.firewall.spec import parse_address_set


def list_view(chainset: ChainSet | None, name: str, project: str, groups: Iterable[str]) -> list[str]:
    """The lines of `chainset` list `name` depends on: the RELATED rule, its marker, and the jumps to and
    contents of its `groups` (the group chains it covers, from the desired ruleset). Equal views of the desired
    and the live ruleset mean the list is enforced as declared."""
    if chainset is None:
        return []
    marker = list_comment(project, name) + " "
    groups = set(groups)
    lines: list[str] = []
    for rule in chainset.chains.get(chainset.main, ()):
        if (rule.comment or "").startswith(marker) or rule.target in groups or rule.ctstate == "RELATED":
            lines.append(rule.text(chainset.main))
    for chain in sorted(groups):
        lines += [r.text(chain) for r in chainset.chains.get(chain, ())]
    return lines


def _address_text(network_text: str) -> str:
    net = ipaddress.ip_network(network_text)
    return str(net.network_address) if net.prefixlen == net.max_prefixlen else str(net)


def read_list(chainsets: Mapping[int, ChainSet | None], project: str, name: str) -> dict[str, Any] | None:
    """List `name` as its rules enforce it (destinations as CIDR blocks), or None when it has no marker.

    Applied to the desired and to the live ruleset alike, so both sides of a diff pass through the same lens.
    """
    prefix = list_comment(project, name) + " "
    mine = list_comment(project, name)
    found, spec_hash = False, ""
    interfaces: set[str] = set()
    blocks: set[str | None] = set()
    ports: set[tuple[str, int] | None] = set()
    sources: list[tuple[int, str]] = []
    for family, cs in sorted(chainsets.items()):
        if cs is None:
            continue
        selectors = []
        for rule in cs.chains.get(cs.main, ()):
            if not (rule.comment or "").startswith(prefix) or rule.target:
                continue
            found, spec_hash = True, (rule.comment or "").split(HASH_KEY, 1)[-1]
            if rule.iface:
                # reconcile writes a port together with its protocol (a hand edit without one keeps None)
                port: tuple[str, int] | None = (rule.proto, rule.ctorigdstport) if rule.ctorigdstport else ALL  # type: ignore[assignment]
                block = ipaddress.ip_network(rule.ctorigdst) if rule.ctorigdst else ALL
                selectors.append((rule.iface, block, port))
                interfaces.add(rule.iface)
                blocks.add(rule.ctorigdst)
                ports.add(port)
        if selectors:  # every own selector's group holds all the list's sources of this family
            for rule in cs.chains.get(group_chain(project, selectors[0]), ()):
                if rule.comment == mine and rule.target == "RETURN":
                    text = rule.src_range or _address_text(rule.src or "")
                    sources.append((family, text))
    if not found:
        return None
    return {
        "interfaces": sorted(interfaces),
        "sources": [t for _, t in sorted(set(sources), key=lambda s: (s[0], _sort_key(s[1])))],
        "destinations": [] if None in blocks else sorted((_address_text(b) for b in blocks if b), key=_sort_key),
        "ports": [{"port": p[1], "protocol": p[0]} for p in sorted(p for p in ports if p)] if ALL not in ports else [],
        "spec-hash": spec_hash,
    }


def _sort_key(text: str) -> tuple[int, int, int]:
    aset = parse_address_set(text)
    return (aset.family, aset.first, aset.last)


def enforced_view(spec: Mapping[str, Any]) -> dict[str, Any]:
    """A normalized spec in the shape `read_list` returns (destinations as CIDR blocks), for comparison."""
    blocks = {_address_text(str(n)) for d in spec["destinations"] for n in parse_address_set(d).networks()}
    return {
        "interfaces": list(spec["interfaces"]),
        "sources": sorted(spec["sources"], key=_sort_key),
        "destinations": sorted(blocks, key=_sort_key),
        "ports": sorted(
            ({"port": p["port"], "protocol": p["protocol"]} for p in spec["ports"]),
            key=lambda p: (p["protocol"], p["port"]),
        ),
    }
