"""What `watch` leaves for `status` to read: per object, the last error and the next retry time."""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any

from reconciler.lock import lock_path
from reconciler.model import Outcome, Result


def state_path(project: str, engine: str) -> Path:
    return lock_path(project, engine).with_suffix(".state.json")


def write_failures(project: str, engine: str, failures: dict[str, dict[str, Any]]) -> None:
    path = state_path(project, engine)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(failures, indent=1, sort_keys=True))
    os.replace(tmp, path)  # readers never see half a file


def read_failures(project: str, engine: str) -> dict[str, dict[str, Any]]:
    try:
        return json.loads(state_path(project, engine).read_text())
    except (OSError, ValueError):
        return {}


def record_failures(project: str, engine: str, results: list[Result]) -> None:
    """After an `apply`: what failed, was blocked or skipped, for `status` to show (no retry: nobody retries)."""
    failures = {
        r.change.subject: {
            "status": "failing" if r.outcome is Outcome.FAILED else "blocked",
            "error": r.error,
            "nextRetry": None,
        }
        for r in results
        if r.outcome in (Outcome.FAILED, Outcome.BLOCKED, Outcome.SKIPPED)
    }
    with contextlib.suppress(OSError):  # status then shows less; the apply already reported every outcome
        write_failures(project, engine, failures)
