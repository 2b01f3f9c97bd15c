"""Field comparison rules: exact, at-least, ignored, nested rules, sensitive values."""

from __future__ import annotations

from reconciler.diffing import IGNORE, REPLACE, UPDATE, Compare, Rule, diff_specs, overall_action
from reconciler.model import Action


def test_exact_and_update_fields() -> None:
    """Each differing field is one FieldChange with the action its rule names."""
    changes = diff_specs({"a": 1, "b": 2}, {"a": 1, "b": 3}, {"a": REPLACE, "b": UPDATE})
    assert [(c.path, c.old, c.new, c.action) for c in changes] == [("b", 3, 2, Action.UPDATE)]
    assert overall_action(changes) is Action.UPDATE


def test_at_least_ignores_engine_additions_but_not_missing_entries() -> None:
    """Engine-added labels are not drift; a declared label that is missing or different is."""
    rule = {"labels": Rule(Action.REPLACE, Compare.AT_LEAST)}
    assert diff_specs({"labels": {"a": "1"}}, {"labels": {"a": "1", "engine": "x"}}, rule) == []
    [change] = diff_specs({"labels": {"a": "1"}}, {"labels": {"a": "2", "engine": "x"}}, rule)
    assert change.old == {"a": "2"} and change.new == {"a": "1"}


def test_nested_rules_compare_per_key_and_ignore() -> None:
    """A rule on `r.memory` makes `r` compared key by key; ignored fields never show."""
    rules = {"r.memory": UPDATE, "r.cpus": UPDATE, "mac": IGNORE}
    changes = diff_specs(
        {"r": {"memory": 2, "cpus": 1}, "mac": "x"}, {"r": {"memory": 1, "cpus": 1}, "mac": "y"}, rules
    )
    assert [c.path for c in changes] == ["r.memory"]


def test_sensitive_paths_are_marked() -> None:
    """Changes inside a sensitive path are flagged so renderers hide the values."""
    [change] = diff_specs({"env": {"PASSWORD": "new"}}, {"env": {"PASSWORD": "old"}}, {}, sensitive=frozenset({"env"}))
    assert change.sensitive


def test_overall_action_prefers_replace() -> None:
    """A single replace-only field makes the whole change a replace."""
    changes = diff_specs({"a": 1, "b": 1}, {"a": 2, "b": 2}, {"a": UPDATE, "b": REPLACE})
    assert overall_action(changes) is Action.REPLACE
    assert overall_action([]) is Action.NONE
