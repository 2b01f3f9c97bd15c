"""Reading the project's nftables table back (`nft -j list table`) into the shared rule model.

Pure. Every expression reconcile writes maps back to a `Rule` field; anything else (a counter, a negation, a
match reconcile never writes) is kept verbatim in `Rule.extra`, so a hand-edited rule never compares equal to
ours. A source set expands into one rule per element, the shape `build_chains` produces.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from reconciler.drivers.firewall.backend import LiveFamily
from reconciler.drivers.firewall.nft import BASE_CHAIN, PRIORITY, from_nft_comment, nft_family
from reconciler.drivers.firewall.rules import Rule, canonical_network, jump_rule, main_chain

_VERDICTS = {"return": "RETURN", "drop": "DROP", "accept": "ACCEPT"}


def _address(value: Any) -> str | None:
    """An address or prefix value of nft JSON as text (`a`, `a/len`), None for anything else."""
    if isinstance(value, str):
        return value
    if isinstance(value, Mapping) and isinstance(value.get("prefix"), Mapping):
        prefix = value["prefix"]
        return f"{prefix.get('addr')}/{prefix.get('len')}"
    return None


def _source_element(value: Any) -> Rule | None:
    if isinstance(value, Mapping) and isinstance(value.get("range"), list) and len(value["range"]) == 2:
        start, end = value["range"]
        return Rule(src_range=f"{start}-{end}")
    text = _address(value)
    if text is None:
        return None
    try:
        return Rule(src=canonical_network(text))
    except ValueError:
        return None


def _sources(value: Any) -> list[Rule] | None:
    """Source rules of a saddr match's right-hand side (one value or an anonymous set), None if foreign."""
    elements = value["set"] if isinstance(value, Mapping) and "set" in value else [value]
    if not isinstance(elements, list):
        return None
    rules = [_source_element(e) for e in elements]
    return None if any(r is None for r in rules) else rules  # type: ignore[return-value]


def _saddr(body: Mapping[str, Any], fam: str) -> list[Rule] | None:
    if body.get("op") != "==" or _match_key(body.get("left"), fam) != "saddr":
        return None
    return _sources(body.get("right"))


def _match_key(left: Any, fam: str) -> str | None:
    if not isinstance(left, Mapping):
        return None
    if "meta" in left:
        return f"meta {left['meta'].get('key')}"
    if "payload" in left:
        payload = left["payload"]
        return "saddr" if payload == {"protocol": fam, "field": "saddr"} else None
    if "ct" in left:
        ct = left["ct"]
        key, direction = ct.get("key"), ct.get("dir")
        if ct.get("family") == fam and key == "daddr":  # how nft before 1.0 spells `ct original ip daddr`
            key = f"{fam} daddr"
            ct = {k: v for k, v in ct.items() if k != "family"}
        if direction == "original" and key in (f"{fam} daddr", "proto-dst") and set(ct) == {"key", "dir"}:
            return f"ct original {key.split()[-1]}"
        if direction is None and set(ct) == {"key"}:
            return f"ct {key}"
    return None


def rules_from_json(rule: Mapping[str, Any], family: int, project: str | None) -> list[Rule]:
    """One nft rule (the `rule` object of `nft -j`) as Rules: several when it matches a set of sources.
    `project`: the one whose name our comments leave out (None: comments as they are)."""
    fam = nft_family(family)
    values: dict[str, Any] = {}
    extra: list[str] = []
    sources: list[Rule] | None = None

    def keep(expr: Any) -> None:
        extra.append(json.dumps(expr, sort_keys=True))

    for expr in rule.get("expr") or []:
        if not isinstance(expr, Mapping) or len(expr) != 1:
            keep(expr)
            continue
        ((kind, body),) = expr.items()
        if kind == "match" and isinstance(body, Mapping):
            if _match(body, fam, values):
                continue
            found = _saddr(body, fam) if sources is None else None
            if found is None:
                keep(expr)
            else:
                sources = found
        elif kind in _VERDICTS and body is None and "target" not in values:
            values["target"] = _VERDICTS[kind]
        elif kind in ("goto", "jump") and isinstance(body, Mapping) and "target" not in values:
            values["target"], values["goto"] = body.get("target"), kind == "goto"
        elif kind == "continue" and body is None:
            pass  # reconcile writes it only to give a verdict-less rule a statement
        else:
            keep(expr)
    base = Rule(**values, comment=from_nft_comment(rule.get("comment"), project), extra=tuple(extra))
    if sources is None:
        return [base]
    return [replace(base, src=s.src, src_range=s.src_range) for s in sources]


def _match(body: Mapping[str, Any], fam: str, values: dict[str, Any]) -> bool:
    """Fill `values` from one match reconcile writes; False when it is not one of them (or repeats a field)."""
    key, op, right = _match_key(body.get("left"), fam), body.get("op"), body.get("right")
    field: str | None = None
    value: str | int | None = None
    if key == "meta iifname" and op == "==" and isinstance(right, str):
        field, value = "iface", right
    elif key == "meta l4proto" and op == "==" and isinstance(right, str):
        field, value = "proto", right
    elif key == "ct state" and op in ("in", "==") and right == "related":
        field, value = "ctstate", "RELATED"
    elif key == "ct status" and op in ("in", "==") and right == "dnat":
        field, value = "ctstate", "DNAT"
    elif key == "ct direction" and op == "==" and right == "original":
        field, value = "ctdir", "ORIGINAL"
    elif key == "ct original daddr" and op == "==" and (text := _address(right)) is not None:
        try:
            field, value = "ctorigdst", canonical_network(text)
        except ValueError:
            return False
    elif key == "ct original proto-dst" and op == "==" and isinstance(right, int) and not isinstance(right, bool):
        field, value = "ctorigdstport", right
    if field is None or field in values:
        return False
    values[field] = value
    return True


def _base_chain_ok(chain: Mapping[str, Any]) -> bool:
    return (
        chain.get("type") == "filter"
        and chain.get("hook") == "forward"
        and chain.get("prio") == PRIORITY
        and chain.get("policy", "accept") == "accept"
    )


def parse_table(data: Mapping[str, Any], family: int, project: str) -> LiveFamily:
    """`nft -j list table` output of the project's table as a LiveFamily.

    The base chain plays DOCKER-USER's part: `jumps` counts the jumps to the main chain in it, `foreign_above`
    every other rule there (the table is ours alone, so any other rule is drift); a base chain with another hook,
    priority or policy counts as having no jump. Every other chain of the table is reported, so a hand-made one is
    drift too; a table without chains reports an empty main chain, so that removal deletes it.
    """
    jump = jump_rule(project)
    base: Mapping[str, Any] | None = None
    chains: dict[str, list[Rule]] = {}
    base_rules: list[Rule] = []
    for item in data.get("nftables") or []:
        if "chain" in item:
            chain = item["chain"]
            if chain.get("name") == BASE_CHAIN:
                base = chain
            else:
                chains.setdefault(chain.get("name"), [])
        elif "rule" in item:
            rule = item["rule"]
            if rule.get("chain") == BASE_CHAIN:
                base_rules += rules_from_json(rule, family, None)
            else:
                chains.setdefault(rule.get("chain"), []).extend(rules_from_json(rule, family, project))
    jumps = [i for i, r in enumerate(base_rules, 1) if r == jump]
    foreign = len(base_rules) - len(jumps)
    if base is None or not _base_chain_ok(base):
        jumps = []
    if not chains:
        chains = {main_chain(project): []}
    return LiveFamily(
        family,
        True,
        len(jumps),
        jumps[0] if jumps else 0,
        {name: tuple(rules) for name, rules in chains.items()},
        foreign if jumps else 0,
    )
