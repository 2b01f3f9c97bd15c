"""Containers that run to completion (`state: completed`, Compose's `service_completed_successfully` targets):
started once for the current spec, waited for until they exit 0, never restarted; an exit 0 is their goal, not
drift. A non-zero exit fails the apply with the exit code and the container's last output lines.

How an inspected container ran (`outcome`), the run itself (`run_to_completion`) and the wait of a dependent on
one (`completion_reached`, used by apply.wait_for).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from reconciler.errors import PermanentError

COMPLETED = "completed"
DEFAULT_COMPLETION_TIMEOUT_NS = 10 * 60 * 10**9
POLL_SECONDS = 0.25
NEVER_STARTED = "0001-01-01T00:00:00Z"  # the engine's StartedAt of a container that never ran


def outcome(info: Mapping[str, Any]) -> str | None:
    """How a container that is not running ended: `completed` (exited 0 after a start), `exit code N`, `never
    started`; None while it runs, is paused or restarts."""
    state = info.get("State") or {}
    if state.get("Running") or state.get("Paused") or state.get("Restarting"):
        return None
    started = str(state.get("StartedAt") or NEVER_STARTED)
    if state.get("Status") == "created" or started.startswith("0001-"):
        return "never started"
    code = state.get("ExitCode")
    return COMPLETED if code == 0 and state.get("Status") == "exited" else f"exit code {code}"


def completion_reached(name: str, info: Mapping[str, Any]) -> bool:
    """True once `name` exited 0; raises when it ended otherwise (a non-zero exit, dead); False while it runs
    or has not started yet (its own change starts it before this one's, in dependency order)."""
    ended = outcome(info)
    if ended is None or ended == "never started":
        return False
    if ended == COMPLETED:
        return True
    raise PermanentError(f"dependency {name} did not complete successfully ({ended})")


def run_to_completion(
    api: Any,
    cid: str,
    timeout_ns: int,
    tail: Callable[[str], tuple[str, ...]],
    start: bool = True,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Start container `cid` (unless `start` is False: it runs already) and wait, at most `timeout_ns`, until it
    exits 0. A non-zero exit raises a PermanentError naming the code, with its last output lines (`tail`); running
    out of time raises one too and leaves it running (the next apply waits for it again, never starts it twice)."""
    if start:
        api.start(cid)
    deadline = time.monotonic() + timeout_ns / 1e9
    while True:
        info = api.inspect_container(cid)
        ended = outcome(info)
        if ended == COMPLETED:
            return
        if ended is not None and ended != "never started":
            state = info.get("State") or {}
            reason = f"{ended}: {state['Error']}" if state.get("Error") else ended
            error = PermanentError(f"it did not complete successfully ({reason})")
            error.log_tail = tail(cid)
            raise error
        if time.monotonic() >= deadline:
            raise PermanentError(f"it did not complete within {timeout_ns / 1e9:g}s (completionTimeout); still running")
        sleep(POLL_SECONDS)
