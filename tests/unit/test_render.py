"""Rendering plans and results: symbols, field lines, JSON shape, and sensitive values never shown."""

from __future__ import annotations

import json

from reconciler.model import Action, Change, FieldChange, Outcome, Plan, Result
from reconciler.output.render import plan_json, plan_text, results_text


def sample_plan() -> Plan:
    return Plan(
        "demo",
        (
            Change("Volume", "data", Action.CREATE),
            Change("Container", "api", Action.UPDATE, (FieldChange("resources.memory", 1, 2, Action.UPDATE),)),
            Change(
                "Container",
                "web",
                Action.REPLACE,
                (FieldChange("env", {"A": "s3cret"}, {"A": "n3w"}, Action.REPLACE, sensitive=True),),
            ),
            Change("Network", "old", Action.DELETE),
            Change("Volume", "db", Action.REPLACE, blocked="would destroy data"),
            Change("Network", "same", Action.NONE),
        ),
        notes=("Volume/x: retained",),
    )


def test_text_plan_symbols_and_fields() -> None:
    """Each pending change has its symbol, fields show old -> new and how they change; in-sync objects are quiet."""
    text = plan_text(sample_plan())
    assert "  + Volume/data" in text and "  ~ Container/api" in text and "  -/+ Container/web" in text
    assert "  - Network/old" in text and "  ! Volume/db: blocked: would destroy data" in text
    assert "resources.memory: 1 -> 2  (in place)" in text
    assert "Network/same" not in text
    assert "note: Volume/x: retained" in text
    assert text.endswith("Plan: 1 to create, 1 to update, 1 to replace, 1 to delete, 1 blocked.")


def test_sensitive_values_never_rendered() -> None:
    """Values of sensitive fields appear as (sensitive) in text and JSON."""
    plan = sample_plan()
    text, doc = plan_text(plan), plan_json(plan)
    for secret in ("s3cret", "n3w"):  # the old value and the new one
        assert secret not in text and secret not in doc
    assert "env: (sensitive) -> (sensitive)" in text
    fields = json.loads(doc)["changes"][2]["fields"]
    assert fields == [
        {"path": "env", "old": "(sensitive)", "new": "(sensitive)", "action": "replace", "sensitive": True}
    ]


def test_json_plan_shape() -> None:
    """The JSON plan has a summary, the pending and blocked changes, and the notes."""
    doc = json.loads(plan_json(sample_plan()))
    assert doc["summary"] == {"create": 1, "update": 1, "replace": 1, "delete": 1, "blocked": 1}
    assert doc["inSync"] is False and len(doc["changes"]) == 5
    assert doc["changes"][1]["fields"][0] == {
        "path": "resources.memory",
        "old": 1,
        "new": 2,
        "action": "update",
        "sensitive": False,
    }


def test_results_summary() -> None:
    """Apply results list what happened to each changed object and count outcomes."""
    change = Change("Volume", "data", Action.CREATE)
    text = results_text(
        [
            Result(change, Outcome.APPLIED, seconds=0.2),
            Result(Change("Volume", "b", Action.CREATE), Outcome.FAILED, "boom"),
        ]
    )
    assert "+ Volume/data: created in 0.2s" in text and "! Volume/b: failed: boom" in text
    assert text.endswith("Apply: 1 applied, 1 failed, 0 blocked, 0 skipped, 0 unchanged.")
