"""The nftables form of a project's ruleset: its own table, rendered as one `nft -f` transaction.

Pure: no kernel access. The rules are the same `Rule`/`ChainSet` model the iptables backends write, so reading
lists back and finding drift is shared; only the spelling differs:

    table ip|ip6 reconciler-<h>                      one per family; <h> as in RECONCILE-<h>, so projects never clash
      chain forward   type filter hook forward priority filter - 10; policy accept;
                      jump RECONCILE-<h>             (the equivalent of the DOCKER-USER jump)
      chain RECONCILE-<h>, RECONCILE-<h>-<g>         exactly the chains of the iptables layout

`-m conntrack --ctstate DNAT --ctdir ORIGINAL --ctorigdst D --ctorigdstport N` becomes
`ct status dnat ct direction original ct original ip daddr D ct original proto-dst N`; the source rules of one
list in one group become one rule with an anonymous interval set (`ip saddr { ... } return`). Rule comments
leave out the project name (the table is the project's), which keeps them within nft's 128 bytes; only the jump
in the base chain says `reconciler:<project>` in full, so `nft list ruleset` shows whose table it is.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import replace

from reconciler.drivers.firewall.rules import COMMENT_PREFIX, ChainSet, Rule, canonical_network, short_hash
from reconciler.drivers.firewall.spec import parse_address_set

TABLE_PREFIX = "reconciler-"
BASE_CHAIN = "forward"
# Docker's nftables filter-FORWARD runs at `priority filter` (0), as does iptables-nft's FORWARD: a lower number
# runs first. -10 rather than -1 leaves room for a user's own chains (e.g. Docker's accept-fwmark, which must be
# set at `filter - 1` or lower) on either side of ours.
PRIORITY = -10
PRIORITY_TEXT = "filter - 10"
# nft refuses longer rule comments ("comment too long, 128 characters maximum allowed").
MAX_COMMENT = 128

_TARGETS = {"RETURN": "return", "DROP": "drop", "ACCEPT": "accept"}
_CTSTATES = {"RELATED": "ct state related", "DNAT": "ct status dnat"}


def nft_family(family: int) -> str:
    """The nftables family of an IP family: `ip` or `ip6`."""
    return "ip" if family == 4 else "ip6"


def table_name(project: str) -> str:
    """The project's table; the hash (the same as in its chain names) keeps projects apart."""
    return f"{TABLE_PREFIX}{short_hash(project)}"


def _string(text: str) -> str:
    if '"' in text or "\n" in text:
        raise ValueError(f"cannot quote {text!r} for nft")
    return f'"{text}"'


def _source_only(rule: Rule) -> bool:
    """A source rule (`-s X -j RETURN` or its range form) and nothing else, which can join a set."""
    return bool(rule.src or rule.src_range) and rule == Rule(
        src=rule.src, src_range=rule.src_range, comment=rule.comment, target=rule.target
    )


def _element(rule: Rule) -> str:
    if rule.src_range:
        return rule.src_range
    net = ipaddress.ip_network(rule.src or "")
    return str(net.network_address) if net.prefixlen == net.max_prefixlen else str(net)


def _verdict(rule: Rule) -> str:
    if rule.target is None:
        # A rule without a verdict must still hold a statement: a bare comment would become the chain's comment.
        return "continue"
    if rule.target in _TARGETS:
        return _TARGETS[rule.target]
    return f"{'goto' if rule.goto else 'jump'} {rule.target}"


def to_nft_comment(comment: str, project: str | None) -> str:
    """A rule comment as stored in the project's table: without the project name, which the table already says.

    `reconciler:<project>` -> `reconciler`, `reconciler:<project>:<rest>` -> `reconciler:<rest>`. nft takes at
    most 128 bytes of comment, too few for a 63-character project and a 63-character list name plus a spec hash.
    `project` None: the comment as it is.
    """
    if project is None:
        return comment
    own = f"{COMMENT_PREFIX}{project}"
    if comment == own:
        return COMMENT_PREFIX[:-1]
    if comment.startswith(own + ":"):
        return COMMENT_PREFIX + comment[len(own) + 1 :]
    return comment


def from_nft_comment(comment: str | None, project: str | None) -> str | None:
    """The inverse of `to_nft_comment` (comments reconcile did not write come back unchanged)."""
    if project is None:
        return comment
    if comment == COMMENT_PREFIX[:-1]:
        return f"{COMMENT_PREFIX}{project}"
    if comment is not None and comment.startswith(COMMENT_PREFIX):
        return f"{COMMENT_PREFIX}{project}:{comment[len(COMMENT_PREFIX) :]}"
    return comment


def _comment(rule: Rule, project: str | None) -> list[str]:
    if not rule.comment:
        return []
    text = to_nft_comment(rule.comment, project)
    if len(text.encode()) > MAX_COMMENT:
        raise ValueError(f"the rule comment {text!r} is longer than nft's {MAX_COMMENT} bytes")
    return ["comment", _string(text)]


def render_rule(rule: Rule, family: int, project: str | None, sources: Sequence[Rule] = ()) -> str:
    """One nft rule statement for `rule`; `sources` (source rules of one list) become one anonymous set; the
    comment leaves `project` out (None: verbatim)."""
    if rule.extra:
        raise ValueError(f"cannot render a rule with foreign options {rule.extra!r}")
    fam = nft_family(family)
    parts: list[str] = []
    if rule.iface:
        parts += ["iifname", _string(rule.iface)]
    if rule.proto:
        parts += ["meta", "l4proto", rule.proto]
    if sources:
        parts += [fam, "saddr", "{ " + ", ".join(_element(r) for r in sources) + " }"]
    elif rule.src or rule.src_range:
        parts += [fam, "saddr", _element(rule)]
    if rule.ctstate:
        if rule.ctstate not in _CTSTATES:
            raise ValueError(f"no nft form for conntrack state {rule.ctstate!r}")
        parts.append(_CTSTATES[rule.ctstate])
    if rule.ctdir:
        parts += ["ct", "direction", rule.ctdir.lower()]
    if rule.ctorigdst:
        parts += ["ct", "original", fam, "daddr", rule.ctorigdst]
    if rule.ctorigdstport:
        parts += ["ct", "original", "proto-dst", str(rule.ctorigdstport)]
    parts.append(_verdict(rule))
    parts += _comment(rule, project)
    return " ".join(parts)


def _runs(rules: Sequence[Rule]) -> Iterable[list[Rule]]:
    """Consecutive rules, source rules of the same list and verdict grouped together."""
    run: list[Rule] = []
    for rule in rules:
        if run and _source_only(rule) and (rule.comment, rule.target) == (run[0].comment, run[0].target):
            run.append(rule)
            continue
        if run:
            yield run
        run = [rule] if _source_only(rule) else []
        if not run:
            yield [rule]
    if run:
        yield run


def render_chain_rules(rules: Sequence[Rule], family: int, project: str) -> list[str]:
    """The nft statements of one chain (source runs as sets)."""
    lines = []
    for run in _runs(rules):
        if _source_only(run[0]):
            lines.append(render_rule(replace(run[0], src=None, src_range=None), family, project, run))
        else:
            lines.append(render_rule(run[0], family, project))
    return lines


def render_table(family: int, project: str, want: ChainSet | None) -> str:
    """`nft -f` input replacing the project's table of `family` as a whole in one transaction.

    `table` (creates it when missing, so that the delete cannot fail) + `delete table` + the new table: the
    kernel swaps old for new at commit; a rejected file leaves the old table in force. None: delete only.
    Source sets are written in their canonical form (no overlapping or adjacent entries), which every nft
    version stores and prints as given.
    """
    want = canonical_chainset(want)
    table = f"table {nft_family(family)} {table_name(project)}"
    lines = [table, f"delete {table}"]
    if want is None:
        return "\n".join(lines) + "\n"
    lines.append(table + " {")
    lines.append(f"\tchain {BASE_CHAIN} {{")
    lines.append(f"\t\ttype filter hook forward priority {PRIORITY_TEXT}; policy accept;")
    # The jump keeps its full comment: it names the project for people reading `nft list ruleset`, and fits.
    # (A table comment would say the same, but needs kernel 5.10+.)
    lines.append(f"\t\t{render_rule(want.jump, family, None)}")
    lines.append("\t}")
    for chain, rules in want.chains.items():
        lines.append(f"\tchain {chain} {{")
        lines += [f"\t\t{line}" for line in render_chain_rules(rules, family, project)]
        lines.append("\t}")
    lines.append("}")
    return "\n".join(lines) + "\n"


# --- the canonical form nft reads back ------------------------------------------------------------------------


def canonical_sources(rules: Sequence[Rule]) -> list[Rule]:
    """Source rules of one list as nft keeps an interval set: overlapping and adjacent entries merged, in address
    order, each an address, a CIDR when the interval is exactly one, else a range."""
    if not rules:
        return []
    intervals = []
    for rule in rules:
        aset = parse_address_set(rule.src_range or rule.src or "")
        intervals.append((aset.first, aset.last, aset.family))
    intervals.sort()
    merged: list[list[int]] = []
    for first, last, _ in intervals:
        if merged and first <= merged[-1][1] + 1:
            merged[-1][1] = max(merged[-1][1], last)
        else:
            merged.append([first, last])
    cls = ipaddress.IPv4Address if intervals[0][2] == 4 else ipaddress.IPv6Address
    out = []
    for first, last in merged:
        blocks = list(ipaddress.summarize_address_range(cls(first), cls(last)))
        if len(blocks) == 1:
            out.append(replace(rules[0], src=canonical_network(str(blocks[0])), src_range=None))
        else:
            out.append(replace(rules[0], src=None, src_range=f"{cls(first)}-{cls(last)}"))
    return out


def canonical_chainset(want: ChainSet | None) -> ChainSet | None:
    """`want` as nft will read it back (source sets merged), so desired and live compare equal when in sync."""
    if want is None:
        return None
    chains = {}
    for chain, rules in want.chains.items():
        out: list[Rule] = []
        for run in _runs(rules):
            out += canonical_sources(run) if _source_only(run[0]) else run
        chains[chain] = tuple(out)
    return replace(want, chains=chains)
