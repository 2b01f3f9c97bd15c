"""Every driver package has one shape (docs/drivers.md, "A driver package"): spec.py and driver.py always, the
roles observe/diff/apply under those names only, and the kind's entry point names the class in driver.py."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DRIVERS = REPO / "reconciler" / "drivers"
SHARED = {"engine"}  # not a kind: what the engine kinds share
REQUIRED = ("spec.py", "driver.py")
ROLES = ("spec.py", "observe.py", "diff.py", "apply.py", "driver.py")
# Names that once meant one of the roles: the role's own name is the only one.
OTHER_NAMES_OF_ROLES = {"readback.py": "observe.py", "ops.py": "apply.py", "units.py": "values.py"}


def _packages() -> list[Path]:
    return sorted(p for p in DRIVERS.iterdir() if (p / "__init__.py").exists() and p.name not in SHARED)


def test_the_kinds_packages_are_found() -> None:
    assert {p.name for p in _packages()} >= {"container", "image", "network", "volume", "firewall", "swarm"}


@pytest.mark.parametrize("package", _packages(), ids=lambda p: p.name)
def test_package_has_the_shape(package: Path) -> None:
    files = {p.name for p in package.glob("*.py")}
    assert set(REQUIRED) <= files
    for role in ROLES:
        if role in files:
            assert (package / role).read_text().strip(), f"{package.name}/{role} is empty: leave the role out"
    misnamed = {name: role for name, role in OTHER_NAMES_OF_ROLES.items() if name in files}
    assert misnamed == {}, "name the module for its role"


def test_entry_points_name_the_class_in_driver_py() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    shaped = {p.name for p in _packages()}
    for kind, target in project["entry-points"]["reconciler.drivers"].items():
        module = target.partition(":")[0]
        package = module.split(".")[2]
        if package in shaped:
            assert module == f"reconciler.drivers.{package}.driver", kind
