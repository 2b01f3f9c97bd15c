"""One-shot containers (`state: completed`): how an inspected container ended, the wait of a dependent on one, and
the run that fails with the exit code and the container's output."""

from __future__ import annotations

from typing import Any

import pytest

from reconciler.drivers.container.apply import wait_for
from reconciler.drivers.container.oneshot import outcome, run_to_completion
from reconciler.errors import PermanentError

STARTED = "2026-12-06T05:00:00Z"


def info(status: str, code: int = 0, started: str = STARTED, running: bool = False) -> dict[str, Any]:
    return {"State": {"Status": status, "ExitCode": code, "StartedAt": started, "Running": running}}


def test_outcome_tells_success_from_failure_and_never_started() -> None:
    """Exit 0 after a start is `completed`; a non-zero exit names its code; a created one never ran."""
    assert outcome(info("exited", 0)) == "completed"
    assert outcome(info("exited", 3)) == "exit code 3"
    assert outcome(info("created", 0, started="0001-01-01T00:00:00Z")) == "never started"
    assert outcome(info("running", running=True)) is None


def test_a_dependent_waits_until_the_one_shot_exited_0() -> None:
    """`condition: completed` polls past the running state and returns at exit 0."""
    seen = iter([info("running", running=True), info("running", running=True), info("exited", 0)])
    wait_for(lambda name: next(seen), "job", "completed", 10**9, sleep=lambda s: None)


def test_a_dependent_fails_at_once_when_the_one_shot_failed() -> None:
    """A non-zero exit of the dependency fails the wait without waiting out its timeout."""
    with pytest.raises(PermanentError, match="job did not complete successfully \\(exit code 2\\)"):
        wait_for(lambda name: info("exited", 2), "job", "completed", 60 * 10**9, sleep=lambda s: None)


class Api:
    def __init__(self, states: list[dict[str, Any]]) -> None:
        self.states, self.started = iter(states), 0

    def start(self, cid: str) -> None:
        self.started += 1

    def inspect_container(self, cid: str) -> dict[str, Any]:
        return next(self.states)


def test_a_failed_run_names_the_exit_code_and_keeps_the_output() -> None:
    """Started once, waited for; the error carries the code and the log tail."""
    api = Api([info("running", running=True), info("exited", 3)])
    with pytest.raises(PermanentError, match="exit code 3") as caught:
        run_to_completion(api, "c1", 10**9, lambda cid: ("boom",), sleep=lambda s: None)
    assert api.started == 1 and caught.value.log_tail == ("boom",)


def test_a_running_one_shot_is_waited_for_not_started_again() -> None:
    """`start=False` (it runs already) never starts it a second time."""
    api = Api([info("running", running=True), info("exited", 0)])
    run_to_completion(api, "c1", 10**9, lambda cid: (), start=False, sleep=lambda s: None)
    assert api.started == 0
