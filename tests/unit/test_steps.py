"""Plan steps are what apply runs: a driver's apply follows the steps of the change it is given."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from reconciler.contract import DriverContext, run_steps
from reconciler.drivers.container.diff import diff_container
from reconciler.drivers.container.driver import ContainerDriver
from reconciler.drivers.container.spec import normalize_container
from reconciler.errors import PermanentError
from reconciler.model import Action, Change, Resource, Source, Step

IMAGE = "127.0.0.1:5000/reconciler/busybox:1.35"


class RecordingApi:
    """Answers every call with a harmless value and records its name."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def create_container(self, **_: Any) -> dict[str, str]:
        self.calls.append("create_container")
        return {"Id": "f" * 64}

    def inspect_container(self, _: str) -> dict[str, Any]:
        self.calls.append("inspect_container")
        return {"Id": "f" * 64, "Name": "/web", "State": {"Running": True, "Status": "running"}, "Config": {}}

    def __getattr__(self, name: str) -> Any:
        def call(*_: Any, **__: Any) -> dict[str, Any]:
            self.calls.append(name)
            return {}

        return call


def _create_change() -> Change:
    spec = {"image": IMAGE, "command": ["sleep", "1"]}
    desired = normalize_container(Resource("Container", "web", spec, {}, Source("w.yaml", 1, Path("/tmp/w.yaml"))))
    return diff_container(desired, None)


def test_a_create_runs_the_steps_its_plan_shows(monkeypatch: pytest.MonkeyPatch) -> None:
    import reconciler.drivers.container.driver as module

    monkeypatch.setattr(module, "settle", lambda inspect, cid, output=None: None)
    change = _create_change()
    assert list(change.steps) == ["create web", "start web"]
    api = RecordingApi()
    ContainerDriver(DriverContext("p", Path("."), engine_factory=lambda: api)).apply(change)
    assert "create_container" in api.calls and "start" in api.calls


def test_apply_does_not_do_a_step_the_plan_does_not_show(monkeypatch: pytest.MonkeyPatch) -> None:
    """Take the start step out of the plan: apply creates the container and does not start it."""
    import dataclasses

    import reconciler.drivers.container.driver as module

    monkeypatch.setattr(module, "settle", lambda inspect, cid, output=None: None)
    change = _create_change()
    change = dataclasses.replace(change, steps=tuple(s for s in change.steps if s.op != "start"))
    api = RecordingApi()
    ContainerDriver(DriverContext("p", Path("."), engine_factory=lambda: api)).apply(change)
    assert "create_container" in api.calls and "start" not in api.calls


def test_a_step_without_a_handler_stops_before_anything_is_done() -> None:
    done: list[str] = []
    change = Change("Kind", "x", Action.CREATE, steps=(Step("first", "known"), Step("second", "unknown")))
    with pytest.raises(PermanentError, match="no handler for step"):
        run_steps(change, {"known": lambda: done.append("known")})
    assert done == []


def test_steps_print_as_their_text_and_survive_copying() -> None:
    import copy
    import json
    import pickle

    step = Step("remove tag a:1", "remove", "a:1")
    assert str(step) == "remove tag a:1" and json.dumps([step]) == '["remove tag a:1"]'
    for clone in (copy.deepcopy(step), pickle.loads(pickle.dumps(step))):
        assert clone == step and clone.op == "remove" and clone.args == ("a:1",)
