"""The import contracts in pyproject.toml cover every core module (a new module cannot slip past them)."""

from __future__ import annotations

import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_every_core_module_is_under_the_no_docker_contract() -> None:
    config = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    contracts = config["tool"]["importlinter"]["contracts"]
    (forbidden,) = [c for c in contracts if c["type"] == "forbidden"]
    root = REPO / "reconciler"
    core = {f"reconciler.{p.stem}" for p in root.glob("*.py") if p.stem != "__init__"}
    core |= {f"reconciler.{p.name}" for p in root.iterdir() if (p / "__init__.py").exists() and p.name != "drivers"}
    assert core == set(forbidden["source_modules"])
    assert {"docker", "iptc", "pyroute2", "reconciler.drivers"} <= set(forbidden["forbidden_modules"])


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
