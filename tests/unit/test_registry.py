"""Driver registry: built-ins, entry points of other distributions replacing or adding kinds."""

from __future__ import annotations

from types import SimpleNamespace

import reconciler.core.plugins as base
from reconciler.contract import BaseDriver, DriverContext
from reconciler.core.manifests import load_directory


class _EP(SimpleNamespace):
    pass


def test_third_party_entry_point_replaces_builtin_and_adds_kind(monkeypatch, tmp_path) -> None:
    """An entry point from another distribution wins over the built-in driver; a new name adds a kind."""
    eps = [
        _EP(
            name="Volume",
            value="reconciler.drivers.volume.driver:VolumeDriver",
            dist=SimpleNamespace(name="reconciler"),
        ),
        _EP(name="Volume", value="tests.unit.fakes:FakeDriver", dist=SimpleNamespace(name="acme-volumes")),
        _EP(name="Gadget", value="tests.unit.test_registry:GadgetDriver", dist=SimpleNamespace(name="acme-gadgets")),
    ]
    monkeypatch.setattr(base, "entry_points", lambda group: eps if group == base.ENTRY_POINT_GROUP else [])
    specs = base.driver_specs()
    assert specs["Volume"] == "tests.unit.fakes:FakeDriver"
    assert specs["Gadget"] == "tests.unit.test_registry:GadgetDriver"
    assert specs["Network"] == base.BUILTIN_DRIVERS["Network"]
    (gadget,) = base.driver_classes(kinds=["Gadget"]).values()
    assert isinstance(gadget(DriverContext("p", tmp_path)), GadgetDriver)


def test_driver_that_misses_hooks_is_left_out(monkeypatch, tmp_path) -> None:
    """A class that does not meet the contract (no BaseDriver, hooks missing) is refused with the hooks named."""
    from structlog.testing import capture_logs

    eps = [_EP(name="Half", value="tests.unit.test_registry:HalfDriver", dist=SimpleNamespace(name="acme"))]
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
    eps = [_EP(name="Broken", value="no.such.module:Driver", dist=SimpleNamespace(name="acme"))]
    monkeypatch.setattr(base, "entry_points", lambda group: eps)
    classes = base.driver_classes()
    assert "Broken" not in classes and "Volume" in classes


def test_installed_package_registers_builtin_kinds() -> None:
    """The installed distribution's entry points name a driver for every kind of the contract."""
    classes = base.driver_classes()
    assert {"Image", "Volume", "Network", "Container", "FirewallAllowList"} <= set(classes)


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
