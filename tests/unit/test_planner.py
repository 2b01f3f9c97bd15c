"""Planner: one change per object, ownership, pruning, and the order constraints between changes."""

from __future__ import annotations

import pytest

from reconciler.core.catalog import build_catalog
from reconciler.core.planner import observe_all, plan_changes
from reconciler.model import Action, Plan

from .fakes import FakeDriver, resource


def make_plan(drivers: dict[str, FakeDriver], resources: list, prune: bool = True) -> Plan:
    catalog, problems = build_catalog(resources, drivers)
    assert problems == []
    return plan_changes(catalog, drivers, "p", observe_all(catalog, drivers), prune=prune)


@pytest.mark.parametrize(
    ("existing", "spec", "action", "fields"),
    [
        (None, {}, Action.CREATE, []),
        ({"size": 1, "colour": "red"}, {}, Action.NONE, []),
        ({"size": 1, "colour": "red"}, {"size": 1, "colour": "red"}, Action.NONE, []),  # explicit default
        ({"size": 1, "colour": "red"}, {"size": 2}, Action.UPDATE, ["size"]),
        ({"size": 1, "colour": "red"}, {"colour": "blue"}, Action.REPLACE, ["colour"]),
        ({"size": 1, "colour": "red"}, {"size": 3, "colour": "blue"}, Action.REPLACE, ["colour", "size"]),
    ],
)
def test_one_change_per_object(existing: dict | None, spec: dict, action: Action, fields: list[str]) -> None:
    """create / none / update / replace, with the changed fields named."""
    thing = FakeDriver("Thing")
    if existing:
        thing.put("t", **existing)
    plan = make_plan({"Thing": thing}, [resource("Thing", "t", spec)])
    [change] = plan.changes
    assert change.action is action
    assert [f.path for f in change.fields] == fields
    assert plan.in_sync is (action is Action.NONE)


def test_prune_deletes_owned_only() -> None:
    """Owned objects without a manifest are deleted; others' and unlabelled objects are never planned."""
    thing = FakeDriver("Thing")
    thing.put("mine")
    thing.put("theirs", project="other")
    thing.put("nobody", project=None)
    plan = make_plan({"Thing": thing}, [])
    assert [(c.name, c.action) for c in plan.changes] == [("mine", Action.DELETE)]


def test_no_prune_keeps_with_a_note() -> None:
    """--no-prune plans no deletion and says what it kept."""
    thing = FakeDriver("Thing")
    thing.put("mine")
    plan = make_plan({"Thing": thing}, [], prune=False)
    assert plan.changes == () and plan.notes == ("Thing/mine: manifest gone; kept because of --no-prune",)


def test_unowned_name_is_blocked_not_taken_over() -> None:
    """A declared name held by an object of another project is a plan error naming it."""
    thing = FakeDriver("Thing")
    thing.put("t", project="other")
    plan = make_plan({"Thing": thing}, [resource("Thing", "t")])
    [change] = plan.changes
    assert change.blocked is not None and "project 'other'" in change.blocked
    assert plan.blocked == [change] and not plan.in_sync


def test_edges_follow_references_and_put_deletes_in_reverse() -> None:
    """Creates wait for what they reference; deletes wait for deletes of higher rank and, by default, for every
    change of a higher rank; `create_after_deletes` kinds wait for their own kind's deletes."""
    net, ctr = FakeDriver("Net", rank=1), FakeDriver("Ctr", rank=2)
    ctr.create_after_deletes = True  # type: ignore[attr-defined]
    net.put("old")
    ctr.put("gone")
    plan = make_plan(
        {"Net": net, "Ctr": ctr},
        [resource("Net", "new"), resource("Ctr", "app", {"needs": ["Net/new"]})],
    )
    edges = plan.edges
    assert edges[("Ctr", "app")] == {("Net", "new"), ("Ctr", "gone")}
    assert edges[("Net", "old")] == {("Ctr", "app"), ("Ctr", "gone")}
    assert edges[("Ctr", "gone")] == frozenset()
    assert edges[("Net", "new")] == frozenset()
    assert [c.name for c in plan.changes] == ["gone", "new", "app", "old"]  # shown in the order apply goes


def test_renaming_a_network_a_container_moves_to_is_not_circular() -> None:
    """A network replaced by a renamed one its container moves to plans without a cycle (the old network's
    delete detaches the container itself)."""
    net, ctr = FakeDriver("Net", rank=1), FakeDriver("Ctr", rank=2)
    net.delete_after_users = False  # type: ignore[attr-defined]
    net.create_after_deletes = True  # type: ignore[attr-defined]
    net.put("old")
    ctr.put("app", colour="red")
    plan = make_plan(
        {"Net": net, "Ctr": ctr},
        [resource("Net", "new"), resource("Ctr", "app", {"needs": ["Net/new"], "colour": "blue"})],
    )
    assert plan.edges[("Net", "new")] == {("Net", "old")}
    assert plan.edges[("Ctr", "app")] == {("Net", "new")}
    assert [c.name for c in plan.changes] == ["old", "new", "app"]


def test_circular_optional_edges_are_dropped() -> None:
    """If drivers' ordering preferences would form a cycle, only the required edges are kept."""
    net, ctr = FakeDriver("Net", rank=1), FakeDriver("Ctr", rank=2)
    net.create_after_deletes = True  # type: ignore[attr-defined]  (and delete_after_users by default: a cycle)
    net.put("old")
    ctr.put("app", colour="red")
    plan = make_plan(
        {"Net": net, "Ctr": ctr},
        [resource("Net", "new"), resource("Ctr", "app", {"needs": ["Net/new"], "colour": "blue"})],
    )
    assert plan.edges[("Net", "new")] == frozenset() and plan.edges[("Net", "old")] == frozenset()
    assert plan.edges[("Ctr", "app")] == {("Net", "new")}


def test_pruned_objects_go_before_what_they_depended_on() -> None:
    """A pruned container labelled as depending on another pruned container is removed first."""
    from reconciler.model import LABEL_DEPENDS_ON, Observed

    ctr = FakeDriver("Ctr", rank=2)
    ctr.put("db")
    ctr.objects["api"] = Observed("Ctr", "api", "id-api", {"io.reconciler.project": "p", LABEL_DEPENDS_ON: "db"}, {})
    ctr.objects["web"] = Observed("Ctr", "web", "id-web", {"io.reconciler.project": "p", LABEL_DEPENDS_ON: "api"}, {})
    plan = make_plan({"Ctr": ctr}, [])
    assert plan.edges[("Ctr", "db")] == {("Ctr", "api")} and plan.edges[("Ctr", "api")] == {("Ctr", "web")}
    assert [c.name for c in plan.changes] == ["web", "api", "db"]


def test_ownership_labels_name_same_kind_dependencies() -> None:
    """The depends-on label lists only same-kind references, sorted; none when there are none."""
    from reconciler.model import LABEL_DEPENDS_ON, Reference, ownership_labels

    thing = FakeDriver("Thing")
    desired = thing.normalize(resource("Thing", "t"))
    refs = [Reference("Thing", "b", "x"), Reference("Net", "n", "y"), Reference("Thing", "a", "z")]
    assert ownership_labels(desired, "p", refs)[LABEL_DEPENDS_ON] == "a,b"
    assert LABEL_DEPENDS_ON not in ownership_labels(desired, "p")


def test_dependents_of_a_blocked_change_are_blocked_in_the_plan() -> None:
    """What needs a blocked object is shown blocked (apply would skip it), transitively; in-sync ones stay quiet."""
    thing = FakeDriver("Thing")
    thing.put("base", project="other")
    thing.put("same")
    plan = make_plan(
        {"Thing": thing},
        [
            resource("Thing", "base"),
            resource("Thing", "child", {"needs": ["Thing/base"]}),
            resource("Thing", "grandchild", {"needs": ["Thing/child"]}),
            resource("Thing", "same", {"needs": ["Thing/base"]}),
        ],
    )
    blocked = {c.name: c.blocked for c in plan.changes}
    assert blocked["child"] == "waits for Thing/base, which is blocked"
    assert blocked["grandchild"] == "waits for Thing/child, which is blocked"
    assert blocked["same"] is None
