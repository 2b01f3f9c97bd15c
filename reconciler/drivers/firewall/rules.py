"""The shared rule model: allow-lists -> chains of iptables rules, and iptables arguments <-> rules.

Pure: no kernel access. Both backends render and read rules through `Rule`, so what is compared for drift is
the same structure whichever backend wrote it.

Layout, per IP family (see docs/firewall.md):

    DOCKER-USER:        -m comment --comment reconciler:<project> -j RECONCILE-<h>       (one jump, at the top)
    RECONCILE-<h>:      RELATED -> RETURN                                                 (ICMP errors pass)
                        one marker per list (comment only, no target): list name + spec-hash
                        per group: -i IF [-p P] conntrack DNAT/ORIGINAL [--ctorigdst D] [--ctorigdstport N]
                                   -g RECONCILE-<h>-<g>
    RECONCILE-<h>-<g>:  -s SRC -j RETURN (per allowed source of each list covering the group) ... -j DROP

A group is one (interface, original destination block or all, port or all). Groups are closed under
intersection and ordered most specific first, so the first group a packet meets is the intersection of every
group it falls in, and that group allows the union of the sources of every list covering it.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from reconciler.drivers.firewall.spec import IPNetwork, parse_address_set

DOCKER_USER = "DOCKER-USER"
CHAIN_PREFIX = "RECONCILE-"
COMMENT_PREFIX = "reconciler:"
HASH_KEY = "spec-hash="
MAX_CHAIN_NAME = 28


@dataclass(frozen=True)
class Rule:
    """One iptables rule in the subset reconcile writes; anything else read back lands in `extra`."""

    iface: str | None = None
    proto: str | None = None
    src: str | None = None  # canonical CIDR `a/len`
    src_range: str | None = None  # `a-b`
    ctstate: str | None = None
    ctdir: str | None = None
    ctorigdst: str | None = None  # canonical CIDR
    ctorigdstport: int | None = None
    comment: str | None = None
    target: str | None = None
    goto: bool = False
    extra: tuple[str, ...] = ()  # options reconcile never writes (a hand edit): always a difference

    def args(self) -> list[str]:
        """iptables arguments (without `-A CHAIN`), in the order iptables-save prints them."""
        out: list[str] = []
        if self.src:
            out += ["-s", self.src]
        if self.iface:
            out += ["-i", self.iface]
        if self.proto:
            out += ["-p", self.proto]
        if self.src_range:
            out += ["-m", "iprange", "--src-range", self.src_range]
        if self.ctstate or self.ctdir or self.ctorigdst or self.ctorigdstport:
            out += ["-m", "conntrack"]
            if self.ctstate:
                out += ["--ctstate", self.ctstate]
            if self.ctorigdst:
                out += ["--ctorigdst", self.ctorigdst]
            if self.ctorigdstport:
                out += ["--ctorigdstport", str(self.ctorigdstport)]
            if self.ctdir:
                out += ["--ctdir", self.ctdir]
        if self.comment:
            out += ["-m", "comment", "--comment", self.comment]
        out += list(self.extra)
        if self.target:
            out += ["-g" if self.goto else "-j", self.target]
        return out

    def text(self, chain: str, verb: str = "-A") -> str:
        """The rule as an `iptables-restore` line (double quotes, as iptables-save prints them)."""
        return " ".join(quote(t) for t in [verb, chain, *self.args()])

    @property
    def list_name(self) -> str | None:
        """The list named in the comment (`reconciler:<project>:<list>...`), or None for shared rules."""
        if not self.comment or not self.comment.startswith(COMMENT_PREFIX):
            return None
        rest = self.comment[len(COMMENT_PREFIX) :].split(" ", 1)[0]
        parts = rest.split(":")
        return parts[1] if len(parts) > 1 and parts[1] else None


def quote(token: str) -> str:
    """A token as iptables-restore reads it: double-quoted when it holds spaces (comments never hold quotes)."""
    if token and not any(c.isspace() or c in "\"'" for c in token):
        return token
    if '"' in token or "\n" in token:
        raise ValueError(f"cannot quote {token!r} for iptables-restore")
    return f'"{token}"'


def canonical_network(text: str) -> str:
    """`192.0.2.1`, `192.0.2.1/32`, `192.0.2.1/255.255.255.255` -> `192.0.2.1/32` (and the IPv6 equivalents)."""
    addr, _, mask = text.partition("/")
    if mask and ":" in mask:  # an IPv6 netmask as libiptc prints it
        mask = str(bin(int(ipaddress.IPv6Address(mask))).count("1"))
    return str(ipaddress.ip_network(f"{addr}/{mask}" if mask else addr, strict=False))


_FLAG_FIELDS = {
    "-i": "iface",
    "--in-interface": "iface",
    "-p": "proto",
    "--protocol": "proto",
    "--src-range": "src_range",
    "--ctstate": "ctstate",
    "--ctdir": "ctdir",
    "--comment": "comment",
}


def parse_args(tokens: Sequence[str]) -> Rule:
    """A Rule from iptables arguments (as iptables-save prints them, without `-A CHAIN`)."""
    values: dict[str, Any] = {}
    extra: list[str] = []
    i = 0
    while i < len(tokens):
        tok = tokens[i]
        nxt = tokens[i + 1] if i + 1 < len(tokens) else ""
        if tok == "-m" and nxt in ("conntrack", "comment", "iprange"):
            i += 2
            continue
        if tok in _FLAG_FIELDS:
            values[_FLAG_FIELDS[tok]] = nxt
        elif tok in ("-s", "--source"):
            values["src"] = canonical_network(nxt)
        elif tok == "--ctorigdst":
            values["ctorigdst"] = canonical_network(nxt)
        elif tok == "--ctorigdstport":
            values["ctorigdstport"] = int(nxt) if nxt.isdigit() else nxt
        elif tok in ("-j", "--jump", "-g", "--goto"):
            values["target"] = nxt
            values["goto"] = tok in ("-g", "--goto")
        else:  # `!`, other matches, counters: keep verbatim so the rule compares unequal to ours
            extra.append(tok)
            i += 1
            continue
        i += 2
    return Rule(**values, extra=tuple(extra))


# --- naming ---------------------------------------------------------------------------------------------------


def short_hash(text: str, length: int = 8) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def main_chain(project: str) -> str:
    """The project's own chain, reached from DOCKER-USER; the hash keeps projects apart in 28 characters."""
    return f"{CHAIN_PREFIX}{short_hash(project)}"


def project_comment(project: str) -> str:
    return f"{COMMENT_PREFIX}{project}"


def list_comment(project: str, name: str) -> str:
    return f"{COMMENT_PREFIX}{project}:{name}"


def marker_comment(project: str, name: str, spec_hash: str) -> str:
    return f"{list_comment(project, name)} {HASH_KEY}{spec_hash}"


def jump_rule(project: str) -> Rule:
    return Rule(comment=project_comment(project), target=main_chain(project))


def is_reconcile_jump(rule: Rule) -> bool:
    """Whether `rule` is some project's jump from DOCKER-USER (ours or another reconcile project's).

    Such jumps may sit above ours without harm: their chains only RETURN or DROP, never ACCEPT, so every
    packet they let through still reaches ours; only other rules above our jump count as "not at the top".
    """
    return (
        rule.target is not None
        and rule.target.startswith(CHAIN_PREFIX)
        and rule.comment is not None
        and rule.comment.startswith(COMMENT_PREFIX)
        and rule == Rule(comment=rule.comment, target=rule.target)
    )


# --- allow-lists -> chains ------------------------------------------------------------------------------------

ALL = None  # a group component meaning "any destination" / "any port"


@dataclass(frozen=True)
class AllowList:
    """One normalized FirewallAllowList, as the rule builder needs it."""

    name: str
    spec_hash: str
    interfaces: tuple[str, ...]
    sources: tuple[str, ...]
    destinations: tuple[str, ...]
    ports: tuple[tuple[str, int], ...]  # (protocol, port)

    @classmethod
    def from_spec(cls, name: str, spec: Mapping[str, Any], spec_hash: str) -> AllowList:
        return cls(
            name=name,
            spec_hash=spec_hash,
            interfaces=tuple(spec["interfaces"]),
            sources=tuple(spec["sources"]),
            destinations=tuple(spec["destinations"]),
            ports=tuple((p["protocol"], int(p["port"])) for p in spec["ports"]),
        )

    def blocks(self, family: int) -> list[IPNetwork | None] | None:
        """Destination blocks of `family` ([ALL] when no destinations); None when the list has only others."""
        if not self.destinations:
            return [ALL]
        nets: list[IPNetwork | None] = [n for d in self.destinations for n in _family_networks(d, family)]
        return nets or None

    def selectors(self, family: int) -> list[tuple[str, IPNetwork | None, tuple[str, int] | None]]:
        blocks = self.blocks(family)
        if blocks is None:
            return []
        ports: list[tuple[str, int] | None] = list(self.ports) or [ALL]
        return [(i, b, p) for i in self.interfaces for b in blocks for p in ports]


def _family_networks(text: str, family: int) -> list[IPNetwork]:
    aset = parse_address_set(text)
    return aset.networks() if aset.family == family else []


Group = tuple[str, "IPNetwork | None", "tuple[str, int] | None"]


def _meet_block(a: IPNetwork | None, b: IPNetwork | None) -> tuple[bool, IPNetwork | None]:
    if a is ALL:
        return True, b
    if b is ALL:
        return True, a
    if a.subnet_of(b):  # type: ignore[arg-type]
        return True, a
    if b.subnet_of(a):  # type: ignore[arg-type]
        return True, b
    return False, None


def _meet(g: Group, h: Group) -> Group | None:
    if g[0] != h[0]:
        return None
    ok, block = _meet_block(g[1], h[1])
    if not ok:
        return None
    if g[2] is ALL:
        port = h[2]
    elif h[2] is ALL or g[2] == h[2]:
        port = g[2]
    else:
        return None
    return (g[0], block, port)


def _covers(sel: Group, group: Group) -> bool:
    """Whether selector `sel` contains every packet of `group`."""
    meet = _meet(sel, group)
    return meet == group


def _group_order(g: Group) -> tuple[Any, ...]:
    block, port = g[1], g[2]
    return (
        block is ALL,
        -(block.prefixlen if block is not ALL else -1),
        port is ALL,
        g[0],
        str(block),
        port or ("", 0),
    )


def close_groups(selectors: Iterable[Group]) -> list[Group]:
    """The selectors plus all their intersections, most specific first."""
    groups = set(selectors)
    frontier = set(groups)
    for _ in range(64):  # bounded: each round adds strictly smaller groups of a finite lattice
        new = {m for g in frontier for h in groups if (m := _meet(g, h)) is not None} - groups
        if not new:
            break
        groups |= new
        frontier = new
    return sorted(groups, key=_group_order)


def group_chain(project: str, group: Group) -> str:
    """Stable name of a group's chain: adding another group never renames this one."""
    block = "all" if group[1] is ALL else str(group[1])
    port = "all" if group[2] is ALL else f"{group[2][0]}/{group[2][1]}"
    name = f"{main_chain(project)}-{short_hash(f'{group[0]}|{block}|{port}', 6)}"
    assert len(name) <= MAX_CHAIN_NAME
    return name


def _selector_rule(group: Group, comment: str, base: Rule | None = None) -> Rule:
    """`base` (default: a marker with `comment`) restricted to the group's interface, destination and port."""
    iface, block, port = group
    return replace(
        base or Rule(comment=comment),
        iface=iface,
        proto=port[0] if port else None,
        ctorigdst=str(block) if block is not ALL else None,
        ctorigdstport=port[1] if port else None,
    )


def _source_rule(text: str, comment: str) -> Rule:
    aset = parse_address_set(text)
    if aset.is_range:
        return Rule(src_range=aset.text, comment=comment, target="RETURN")
    return Rule(src=canonical_network(aset.text), comment=comment, target="RETURN")


@dataclass(frozen=True)
class ChainSet:
    """The project's chains of one family, main chain first, plus the jump DOCKER-USER needs."""

    main: str
    jump: Rule
    chains: Mapping[str, tuple[Rule, ...]] = field(default_factory=dict)
    covered: Mapping[str, frozenset[str]] = field(default_factory=dict)  # list name -> group chains it covers

    def lines(self) -> list[str]:
        return [rule.text(chain) for chain, rules in self.chains.items() for rule in rules]


def build_chains(project: str, lists: Sequence[AllowList], family: int) -> ChainSet | None:
    """The project's rules for one family, or None when there is no list (chains and jump are removed)."""
    if not lists:
        return None
    lists = sorted(lists, key=lambda al: al.name)
    main = main_chain(project)
    shared = project_comment(project)
    main_rules: list[Rule] = [Rule(ctstate="RELATED", comment=shared, target="RETURN")]
    for al in lists:
        # Markers never match-and-act (no target): one says the list exists, one per selector records what it
        # guards, so the list can be read back exactly (kept by --no-prune, shown field by field in plans).
        marker = marker_comment(project, al.name, al.spec_hash)
        main_rules.append(Rule(comment=marker))
        main_rules += [_selector_rule(sel, marker) for sel in sorted(al.selectors(family), key=_group_order)]
    chains: dict[str, tuple[Rule, ...]] = {}
    covered: dict[str, set[str]] = {al.name: set() for al in lists}
    for group in close_groups(s for al in lists for s in al.selectors(family)):
        chain = group_chain(project, group)
        gate = Rule(ctstate="DNAT", ctdir="ORIGINAL", comment=shared, target=chain, goto=True)
        main_rules.append(_selector_rule(group, "", gate))
        body: list[Rule] = []
        for al in lists:
            if not any(_covers(sel, group) for sel in al.selectors(family)):
                continue
            covered[al.name].add(chain)
            comment = list_comment(project, al.name)
            for text in al.sources:
                if parse_address_set(text).family == family:
                    body.append(_source_rule(text, comment))
        body.append(Rule(comment=shared, target="DROP"))
        chains[chain] = tuple(body)
    frozen = {name: frozenset(c) for name, c in covered.items()}
    return ChainSet(main, jump_rule(project), {main: tuple(main_rules), **chains}, frozen)
