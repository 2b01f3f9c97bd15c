"""docs/drivers.md tells the contract as reconciler/contract.py declares it: its hook and attribute tables list
exactly the names of `Driver` (HOOKS, ATTRIBUTES), with the defaults `BaseDriver` has."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any
from unittest.mock import MagicMock

import pytest

from reconciler.contract import ATTRIBUTES, HOOKS, BaseDriver, DriverContext, UpdateCheck

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
    if result is None or isinstance(result, bool):
        return f"`{result}`"
    if result is first:
        return "unchanged"
    if isinstance(result, UpdateCheck):  # `updates`: nothing found and no problem
        result = [*result.found, *result.problems]
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


def _excerpts() -> list[tuple[str, str]]:
    """(file, code) for every fenced block of docs/drivers.md that follows a line naming a file (`path`:)."""
    found = []
    current = None
    lines = DOC.read_text().splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        named = re.fullmatch(r"\s*`([\w./-]+\.(?:py|toml))`:", line)
        if named:
            current = named.group(1)
        elif line.strip().startswith("```") and line.strip() != "```":
            indent = line[: len(line) - len(line.lstrip())]
            end = next(j for j in range(i + 1, len(lines)) if lines[j].strip() == "```")
            if current is not None:
                found.append((current, "\n".join(text.removeprefix(indent) for text in lines[i + 1 : end])))
            i = end
        elif line.startswith("#") or (line and not line.startswith(" ") and not line[0].isdigit()):
            current = None  # a new paragraph or section: excerpts must name their file again
        i += 1
    return found


def test_walkthrough_excerpts_are_the_code_they_name() -> None:
    """The walkthrough builds the Volume package as it is: each excerpt is still in the file it names."""
    excerpts = _excerpts()
    assert {file for file, _ in excerpts} >= {
        f"reconciler/drivers/volume/{name}.py" for name in ("spec", "observe", "diff", "apply", "driver")
    }
    for file, code in excerpts:
        assert code in (DOC.parents[1] / file).read_text(), f"{file} no longer has:\n{code}"
