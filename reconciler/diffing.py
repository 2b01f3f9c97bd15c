"""Field-by-field comparison of a normalized desired spec with an observed one, by per-field rules."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from reconciler.model import Action, FieldChange


class Compare(enum.Enum):
    EXACT = "exact"
    AT_LEAST = "at_least"  # observed may hold more than declared (engine-added labels, env, mounts)
    IGNORE = "ignore"  # not observable, or never drift (runtime-assigned values)


@dataclass(frozen=True)
class Rule:
    action: Action = Action.REPLACE  # what a difference in this field needs
    compare: Compare = Compare.EXACT


REPLACE = Rule(Action.REPLACE)
UPDATE = Rule(Action.UPDATE)
IGNORE = Rule(Action.NONE, Compare.IGNORE)


def _covers(desired: object, observed: object) -> bool:
    if isinstance(desired, Mapping) and isinstance(observed, Mapping):
        return all(k in observed and observed[k] == v for k, v in desired.items())
    if isinstance(desired, list | tuple) and isinstance(observed, list | tuple):
        return all(item in observed for item in desired)
    return desired == observed


def _restrict(desired: Any, observed: Any) -> Any:
    """The part of `observed` that `desired` speaks about, for display."""
    if isinstance(desired, Mapping) and isinstance(observed, Mapping):
        return {k: observed[k] for k in desired if k in observed}
    if isinstance(desired, list | tuple) and isinstance(observed, list | tuple):
        return [item for item in observed if item in desired]
    return observed


def diff_specs(
    desired: Mapping[str, Any],
    observed: Mapping[str, Any],
    rules: Mapping[str, Rule],
    default: Rule = REPLACE,
    sensitive: frozenset[str] = frozenset(),
    prefix: str = "",
) -> list[FieldChange]:
    """Every differing field, at the granularity the rules name (a rule on `a.b` makes `a` compared per key)."""
    changes: list[FieldChange] = []
    for key in sorted(set(desired) | set(observed)):
        path = f"{prefix}{key}"
        want, have = desired.get(key), observed.get(key)
        rule = rules.get(path)
        if rule is None and isinstance(want, Mapping | None) and isinstance(have, Mapping | None):
            if any(r.startswith(path + ".") for r in rules):
                changes.extend(diff_specs(want or {}, have or {}, rules, default, sensitive, path + "."))
                continue
        rule = rule or default
        if rule.compare is Compare.IGNORE:
            continue
        if rule.compare is Compare.AT_LEAST:
            if _covers(want, have):
                continue
            have = _restrict(want, have)
        elif want == have:
            continue
        secret = any(path == s or path.startswith(s + ".") or s.startswith(path + ".") for s in sensitive)
        changes.append(FieldChange(path, have, want, rule.action, sensitive=secret))
    return changes


def overall_action(fields: list[FieldChange]) -> Action:
    """REPLACE if any field needs it, UPDATE if any field changes in place, else NONE."""
    if any(f.action is Action.REPLACE for f in fields):
        return Action.REPLACE
    if fields:
        return Action.UPDATE
    return Action.NONE
