"""Whole-project checks: duplicates, normalization errors, undeclared references, cycles, driver checks."""

from __future__ import annotations

from reconciler.core.catalog import build_catalog

from .fakes import FakeDriver, resource


def drivers() -> dict[str, FakeDriver]:
    return {"Thing": FakeDriver("Thing"), "Other": FakeDriver("Other", rank=2)}


def test_duplicates_across_files_name_both_places() -> None:
    """The same kind+name in two files is reported at both, each naming the other."""
    a = resource("Thing", "x", file="a.yaml", line=1)
    b = resource("Thing", "x", file="b.yaml", line=5)
    _, problems = build_catalog([a, b], drivers())
    assert [str(p) for p in problems] == [
        "a.yaml:3: Thing/x: metadata.name: duplicate Thing name (also at b.yaml:5)",
        "b.yaml:7: Thing/x: metadata.name: duplicate Thing name (also at a.yaml:1)",
    ]


def test_same_name_different_kinds_is_fine() -> None:
    """Names are unique per kind, not across kinds."""
    catalog, problems = build_catalog([resource("Thing", "x"), resource("Other", "x")], drivers())
    assert problems == [] and len(catalog.desired) == 2


def test_undeclared_reference_and_spec_error() -> None:
    """A reference to an undeclared object and a normalization error are both reported."""
    res = [resource("Other", "o", {"needs": ["Thing/missing"]}), resource("Thing", "t", {"bad": True})]
    _, problems = build_catalog(res, drivers())
    assert {str(p) for p in problems} == {
        "m.yaml:4: Other/o: spec.needs[0]: refers to undeclared Thing 'missing'",
        "m.yaml:4: Thing/t: spec.bad: bad value",
    }


def test_cycle_is_spelled_out() -> None:
    """A dependency cycle names every object on it."""
    res = [
        resource("Thing", "a", {"needs": ["Thing/b"]}),
        resource("Thing", "b", {"needs": ["Thing/c"]}),
        resource("Thing", "c", {"needs": ["Thing/a"]}),
    ]
    _, problems = build_catalog(res, drivers())
    assert [p.message for p in problems] == ["dependency cycle: Thing/a -> Thing/b -> Thing/c -> Thing/a"]
    assert problems[0].field == "spec.needs[0]"


def test_driver_checks_and_missing_driver() -> None:
    """Semantic checks of the driver are reported; a kind with no driver is an error."""
    res = [resource("Thing", "t", {"size": -1}), resource("Ghost", "g")]
    _, problems = build_catalog(res, drivers())
    assert {p.message for p in problems} == {"must not be negative", "no driver installed for kind Ghost"}


def test_dependencies_only_count_declared_objects() -> None:
    """The catalog's dependency view lists what a declared object waits for."""
    res = [resource("Other", "o", {"needs": ["Thing/t"]}), resource("Thing", "t")]
    catalog, problems = build_catalog(res, drivers())
    assert problems == []
    assert catalog.dependencies(("Other", "o")) == {("Thing", "t")}
