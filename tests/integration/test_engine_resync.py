"""The watch's resync on the real engine: an event the stream never delivered is found in the engine's own event
log, so the kept inspect answer it made untrue is dropped; a quiet log keeps every answer. The stream is
connected but never read, which is what a dropped event looks like to the process."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from reconciler.drivers.engine.session import DockerEngine, EngineOptions
from tests.helpers import LABEL_PROJECT

pytestmark = pytest.mark.engine


def test_an_event_the_stream_did_not_deliver_is_found_by_the_resync(
    api: Any, engine_host: str, project_name: str, base_image: str
) -> None:
    cid = api.create_container(
        base_image, ["sleep", "3600"], name=f"{project_name}-web", labels={LABEL_PROJECT: project_name}
    )["Id"]
    engine = DockerEngine(EngineOptions(docker_host=engine_host))
    asked: list[str] = []

    def inspect(ids: list[str]) -> Mapping[str, Mapping[str, Any]]:
        asked.extend(ids)
        return {i: engine.client().inspect_container(i) for i in ids}

    def observe() -> Mapping[str, Any]:
        listed = api.containers(all=True, filters={"label": f"{LABEL_PROJECT}={project_name}"})
        return engine.remembered.containers(listed, inspect)[cid]

    try:
        engine.events()  # connected, and never read from: nothing it carries reaches the process
        observe()
        engine.resync()  # nothing happened to it since: kept
        observe()
        assert asked == [cid]

        api.update_container(cid, restart_policy={"Name": "always"})  # its `update` event stays in the stream
        assert observe()["HostConfig"]["RestartPolicy"]["Name"] in ("", "no")  # the kept answer, now untrue
        engine.resync()
        assert observe()["HostConfig"]["RestartPolicy"]["Name"] == "always"
        assert asked == [cid, cid]
    finally:
        engine.close()
