"""Finding the drivers and the engine. Every driver, built-in or not, is registered in one place: an entry point
of the group `reconciler.drivers` (the built-in kinds in this project's pyproject.toml; a unit test checks that
list against the kinds of schemas/). The engine is named here by module path.

Modules are imported only when their kind is used, by name, so the core has no import of any driver package.
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable
from importlib.metadata import entry_points
from typing import Any

from reconciler.contract import Driver, Engine, missing_hooks

ENTRY_POINT_GROUP = "reconciler.drivers"

BUILTIN_ENGINE = "reconciler.drivers.engine.session:DockerEngine"


def load(spec: str) -> Any:
    """The object named by `module.path:attribute`."""
    module, _, attr = spec.partition(":")
    return getattr(importlib.import_module(module), attr)


def driver_specs() -> dict[str, str]:
    """Kind -> `module:Class`, from the entry points. Those of other distributions override the built-in ones."""
    found: dict[str, str] = {}
    overrides: dict[str, str] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        dist = ep.dist.name if ep.dist is not None else ""
        if dist == "reconciler":
            found[ep.name] = ep.value
        else:
            overrides[ep.name] = ep.value
    found.update(overrides)
    return found


def driver_classes(kinds: Iterable[str] | None = None, log: Any = None) -> dict[str, type[Driver]]:
    """Kind -> driver class, for the `kinds` asked for (default all). A class that cannot be imported, or does
    not meet the contract, is left out with a warning: its kind is then neither planned nor pruned, and a
    manifest of that kind is a validation error."""
    wanted = set(kinds) if kinds is not None else None
    classes: dict[str, type[Driver]] = {}
    for kind, spec in sorted(driver_specs().items()):
        if wanted is not None and kind not in wanted:
            continue
        try:
            cls = load(spec)
        except (ImportError, AttributeError) as exc:
            if log is not None:
                log.warning("driver.unavailable", kind=kind, driver=spec, error=str(exc))
            continue
        lacking = missing_hooks(cls)
        if lacking:
            if log is not None:
                log.warning("driver.unavailable", kind=kind, driver=spec, error=f"lacks {', '.join(lacking)}")
            continue
        classes[kind] = cls
    return classes


def engine_class(spec: str = BUILTIN_ENGINE) -> type[Engine]:
    cls: type[Engine] = load(spec)
    return cls
