"""What `watch` leaves for `status` to read: per object, the last error and the next retry time."""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any

from reconciler.core.lock import lock_path
from reconciler.model import Outcome, Result
from reconciler.statefile import read_json, write_json


def state_path(project: str, engine: str) -> Path:
    return lock_path(project, engine).with_suffix(".state.json")


def write_failures(project: str, engine: str, failures: dict[str, dict[str, Any]]) -> None:
    write_json(state_path(project, engine), failures)


def read_failures(project: str, engine: str) -> dict[str, dict[str, Any]]:
    found = read_json(state_path(project, engine))
    return found if isinstance(found, dict) else {}


def record_failures(project: str, engine: str, results: list[Result]) -> None:
    """After an `apply`: what failed, was blocked or skipped, for `status` to show (no retry: nobody retries)."""
    failures = {
        r.change.subject: {
            "status": "failing" if r.outcome is Outcome.FAILED else "blocked",
            "error": r.error,
            "nextRetry": None,
            **({"logTail": list(r.log_tail)} if r.log_tail else {}),
        }
        for r in results
        if r.outcome in (Outcome.FAILED, Outcome.BLOCKED, Outcome.SKIPPED)
    }
    with contextlib.suppress(OSError):  # status then shows less; the apply already reported every outcome
        write_failures(project, engine, failures)
