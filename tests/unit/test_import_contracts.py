"""The import contracts in pyproject.toml cover every module outside drivers/ (a new one cannot slip past them)."""

from __future__ import annotations

import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _top_level_outside_drivers() -> set[str]:
    root = REPO / "reconciler"
    names = {f"reconciler.{p.stem}" for p in root.glob("*.py") if p.stem != "__init__"}
    return names | {
        f"reconciler.{p.name}" for p in root.iterdir() if (p / "__init__.py").exists() and p.name != "drivers"
    }


def _contracts() -> list[dict]:
    return tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["importlinter"]["contracts"]


def test_every_module_outside_drivers_is_under_the_no_docker_contract() -> None:
    (forbidden,) = [c for c in _contracts() if c["type"] == "forbidden"]
    assert _top_level_outside_drivers() == set(forbidden["source_modules"])
    assert {"docker", "iptc", "pyroute2", "reconciler.drivers"} <= set(forbidden["forbidden_modules"])


def test_every_module_outside_drivers_has_a_layer() -> None:
    (layers,) = [c for c in _contracts() if c["type"] == "layers"]
    named = {m.strip() for layer in layers["layers"] for m in layer.split("|")}
    assert _top_level_outside_drivers() == named


def test_every_driver_package_is_independent_of_the_others() -> None:
    config = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    contracts = config["tool"]["importlinter"]["contracts"]
    (independence,) = [c for c in contracts if c["type"] == "independence"]
    packages = {
        f"reconciler.drivers.{p.name}"
        for p in (REPO / "reconciler" / "drivers").iterdir()
        if p.is_dir() and (p / "__init__.py").exists() and p.name != "engine"
    }
    assert packages == set(independence["modules"])
