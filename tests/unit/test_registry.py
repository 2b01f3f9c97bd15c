"""Driver registry: the built-in kinds' entry points (complete, each meeting the contract), entry points of other
distributions replacing or adding kinds."""

from __future__ import annotations

import tomllib
from importlib.metadata import entry_points
from pathlib import Path
from types import SimpleNamespace

import reconciler.core.plugins as base
from reconciler.contract import BaseDriver, DriverContext, missing_hooks
from reconciler.core.manifests import load_directory

REPO = Path(__file__).resolve().parents[2]


class _EP(SimpleNamespace):
    pass


def _installed_and(*extra: _EP) -> list[object]:
    """The installed entry points of the group, plus `extra` (entry points of made-up distributions)."""
    return [*entry_points(group=base.ENTRY_POINT_GROUP), *extra]


def _declared() -> dict[str, str]:
    """The built-in kinds' entry points as pyproject.toml declares them: the one list of built-in drivers."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    return dict(project["entry-points"][base.ENTRY_POINT_GROUP])


def test_every_schema_kind_has_one_builtin_driver_and_every_driver_a_schema() -> None:
    """The entry points name exactly the kinds of schemas/ (Host and common are no driver's), and each loads a
    class of that kind that meets the contract."""
    schema_kinds = {p.name.removesuffix(".schema.json") for p in (REPO / "schemas").glob("*.schema.json")}
    declared = _declared()
    assert set(declared) == schema_kinds - {"Host", "common"}
    for kind, spec in declared.items():
        cls = base.load(spec)
        assert missing_hooks(cls) == [], kind
        assert cls.kind == kind


def test_installed_metadata_registers_what_pyproject_declares() -> None:
    """The drivers found at run time are the ones declared (stale metadata: run `pip install -e .` again)."""
    installed = {ep.name: ep.value for ep in entry_points(group=base.ENTRY_POINT_GROUP) if ep.dist.name == "reconciler"}
    assert installed == _declared(), "the installed entry points differ from pyproject.toml: reinstall the package"
    assert base.driver_specs() == _declared()


def test_third_party_entry_point_replaces_builtin_and_adds_kind(monkeypatch, tmp_path) -> None:
    """An entry point from another distribution wins over the built-in driver; a new name adds a kind."""
    eps = [
        _EP(name="Volume", value="tests.unit.fakes:FakeDriver", dist=SimpleNamespace(name="acme-volumes")),
        *_installed_and(),  # the override wins whatever the order
        _EP(name="Gadget", value="tests.unit.test_registry:GadgetDriver", dist=SimpleNamespace(name="acme-gadgets")),
    ]
    monkeypatch.setattr(base, "entry_points", lambda group: eps if group == base.ENTRY_POINT_GROUP else [])
    specs = base.driver_specs()
    assert specs["Volume"] == "tests.unit.fakes:FakeDriver"
    assert specs["Gadget"] == "tests.unit.test_registry:GadgetDriver"
    assert specs["Network"] == _declared()["Network"]
    (gadget,) = base.driver_classes(kinds=["Gadget"]).values()
    assert isinstance(gadget(DriverContext("p", tmp_path)), GadgetDriver)


def test_driver_that_misses_hooks_is_left_out(monkeypatch, tmp_path) -> None:
    """A class that does not meet the contract (no BaseDriver, hooks missing) is refused with the hooks named."""
    from structlog.testing import capture_logs

    eps = _installed_and(
        _EP(name="Half", value="tests.unit.test_registry:HalfDriver", dist=SimpleNamespace(name="acme"))
    )
    monkeypatch.setattr(base, "entry_points", lambda group: eps)
    with capture_logs() as logs:
        classes = base.driver_classes(log=__import__("structlog").get_logger())
    assert "Half" not in classes and "Volume" in classes
    (entry,) = [e for e in logs if e.get("kind") == "Half"]
    assert "lacks" in entry["error"] and "observe" in entry["error"]


class HalfDriver:
    kind = "Half"
    rank = 1

    def normalize(self, resource):  # type: ignore[no-untyped-def]
        raise NotImplementedError


def test_unloadable_driver_is_left_out(monkeypatch, tmp_path) -> None:
    """A driver whose module cannot be imported is skipped with a warning instead of breaking every command."""
    eps = _installed_and(_EP(name="Broken", value="no.such.module:Driver", dist=SimpleNamespace(name="acme")))
    monkeypatch.setattr(base, "entry_points", lambda group: eps)
    classes = base.driver_classes()
    assert "Broken" not in classes and "Volume" in classes


def test_installed_package_registers_builtin_kinds() -> None:
    """The installed distribution's entry points name a driver for every built-in kind, and each one loads."""
    classes = base.driver_classes()
    assert set(classes) == set(_declared())


class GadgetDriver(BaseDriver):
    kind = "Gadget"
    rank = 1
    schema = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "additionalProperties": False,
        "properties": {
            "apiVersion": {"$ref": "common.schema.json#/$defs/apiVersion"},
            "kind": {"const": "Gadget"},
            "metadata": {"$ref": "common.schema.json#/$defs/metadata"},
            "spec": {
                "type": "object",
                "additionalProperties": False,
                "properties": {"size": {"type": "integer"}},
            },
        },
    }

    def __init__(self, ctx: DriverContext) -> None:
        self.ctx = ctx


def test_plugin_kind_validates_against_the_schema_its_driver_ships(monkeypatch, tmp_path) -> None:
    """A third-party kind's documents are checked against its driver's schema (which may use common.schema.json)."""
    from reconciler.core.project import ProjectRunner

    eps = [_EP(name="Gadget", value="tests.unit.test_registry:GadgetDriver", dist=SimpleNamespace(name="acme"))]
    monkeypatch.setattr(base, "entry_points", lambda group: eps)
    doc = "apiVersion: reconciler/v1\nkind: Gadget\nmetadata: {name: g1}\nspec: {size: %s}\n"
    (tmp_path / "g.yaml").write_text(doc % "3")
    runner = ProjectRunner("p", tmp_path)
    found, problems = load_directory(tmp_path)
    assert problems == [] and [r.kind for r in found] == ["Gadget"]
    (tmp_path / "g.yaml").write_text(doc % "big")
    _, problems = load_directory(tmp_path)
    assert [str(p) for p in problems] == ["g.yaml:4: Gadget/g1: spec.size: must be an integer, not a string"]
    assert runner.drivers["Gadget"].kind == "Gadget"
