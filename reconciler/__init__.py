"""reconciler: declarative reconciliation controller for Docker hosts."""

import sys

__version__ = "0.1.0"


def _import_structlog_without_rich() -> None:
    """structlog imports rich (~70 ms, a seventh of a no-op `plan`) to pretty-print tracebacks whenever it is
    installed; reconcile formats tracebacks plainly (reconciler.cli.logs) and imports rich only to draw its live view.
    Imported once with rich hidden, structlog keeps its plain formatter; rich stays importable afterwards."""
    if "structlog" in sys.modules or "rich" in sys.modules:
        return
    sys.modules["rich"] = None  # type: ignore[assignment]  # makes `import rich` raise ImportError
    try:
        import structlog  # noqa: F401
    finally:
        del sys.modules["rich"]


_import_structlog_without_rich()
