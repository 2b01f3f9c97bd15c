"""The test tree keeps its shape: no test module imports another (shared code lives in tests/helpers.py, shared
fixtures in a conftest)."""

from __future__ import annotations

import ast
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]


def imported_modules(path: Path, source: str | None = None) -> list[str]:
    """Dotted names of every module the file `path` (or `source` as if it were that file) imports from, relative
    imports resolved inside tests/."""
    package = ".".join(path.relative_to(TESTS.parent).parent.parts)
    text = path.read_text(encoding="utf-8") if source is None else source
    found = []
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Import):
            found.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = package.rsplit(".", node.level - 1)[0] if node.level else ""
            module = ".".join(part for part in (base, node.module or "") if part)
            found.append(module)
            found.extend(f"{module}.{alias.name}" for alias in node.names)  # `from . import test_x`
    return found


def test_no_test_module_imports_another() -> None:
    offenders = [
        f"{path.relative_to(TESTS.parent)} imports {module}"
        for path in sorted(TESTS.rglob("*.py"))
        for module in imported_modules(path)
        if module.startswith("tests.") and module.rsplit(".", 1)[-1].startswith("test_")
    ]
    assert offenders == [], "move shared code to tests/helpers.py (fixtures to a conftest)"


def test_the_check_sees_relative_and_absolute_imports() -> None:
    source = (
        "from .test_a import x\nfrom tests.unit.test_b import y\nfrom tests.helpers import z\nfrom . import test_c\n"
    )
    modules = imported_modules(TESTS / "integration" / "test_probe.py", source)
    assert {"tests.integration.test_a", "tests.unit.test_b", "tests.helpers", "tests.integration.test_c"} <= set(
        modules
    )
