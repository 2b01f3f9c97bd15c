"""docs/drivers.md tells the contract as reconciler/contract.py declares it: its hook and attribute tables list
exactly the names of `Driver` (HOOKS, ATTRIBUTES), with the defaults `BaseDriver` has."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from unittest.mock import MagicMock

import pytest

from reconciler.contract import ATTRIBUTES, HOOKS, BaseDriver, DriverContext

DOC = Path(__file__).resolve().parents[2] / "docs" / "drivers.md"


def _table(header: str) -> list[list[str]]:
    """The rows (cells stripped) of the markdown table whose header line starts with `header`."""
    lines = DOC.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip().strip("|").split(" | ")])
    return rows


def _name(cell: str) -> str:
    """`normalize(resource) -> Desired` -> normalize."""
    found = re.match(r"`(\w+)", cell)
    assert found, cell
    return found.group(1)


def _hook_default(name: str, tmp_path: Path) -> str:
    """How the docs write what `BaseDriver`'s hook does when a driver does not override it."""
    driver = BaseDriver(DriverContext("p", tmp_path))
    hook = getattr(driver, name)
    first = MagicMock(name="first")
    args = [first] + [MagicMock() for _ in range(hook.__code__.co_argcount - 2)]
    try:
        result = hook(*args)
    except NotImplementedError:
        return "—"  # must be overridden
    if result is None:
        return "`None`"
    if result is first:
        return "unchanged"
    assert list(result) == [], name
    return "none"


def _attribute_default(value: Any) -> str:
    if value == "":
        return "—"
    if isinstance(value, type):
        return f"`{value.__name__}`"
    if value is None or isinstance(value, bool):
        return f"`{value}`"
    return str(value)


def test_hook_table_lists_every_hook_with_its_default(tmp_path: Path) -> None:
    rows = _table("| hook |")
    names = [_name(row[0]) for row in rows]
    assert sorted(names) == sorted(HOOKS) and len(names) == len(set(names))
    for row in rows:
        name = _name(row[0])
        assert row[1] == _hook_default(name, tmp_path), name


def test_attribute_table_lists_every_attribute_with_its_default() -> None:
    rows = _table("| attribute |")
    assert [_name(row[0]) for row in rows] == list(ATTRIBUTES)
    for row in rows:
        name = _name(row[0])
        assert row[1] == _attribute_default(getattr(BaseDriver, name)), name


@pytest.mark.parametrize("name", HOOKS)
def test_every_hook_has_a_docstring(name: str) -> None:
    """The contract's one definition says what each hook does (the docs table is the guide to it)."""
    assert (getattr(BaseDriver, name).__doc__ or "").strip()
