"""Fixtures shared by several integration modules (the engine and project fixtures are in tests/conftest.py, plain
helpers in tests/helpers.py)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.helpers import Stack, WatchProcess, configured_docker_host


@pytest.fixture
def stack(project_name: str, tmp_manifests: Any, base_image: str) -> Stack:
    """The three-tier container stack of tests.helpers.Stack under this test's project name (not yet written)."""
    return Stack(project_name, tmp_manifests, base_image)


@pytest.fixture
def local_refs(api: Any) -> Iterator[list[str]]:
    """References a test creates on the engine without project labels; untagged afterwards, whatever happens."""
    from docker.errors import NotFound

    refs: list[str] = []
    yield refs
    for ref in refs:
        with contextlib.suppress(NotFound):
            api.remove_image(ref, force=True)  # our own unique tag: only this reference goes


@pytest.fixture
def lock_env(tmp_path: Path) -> dict[str, str]:
    """Lock and state files of this test in its own directory (watch and apply must share it)."""
    return {"RECONCILER_LOCK_DIR": str(tmp_path / "locks")}


@pytest.fixture
def watch(project_name: str, tmp_path: Path, lock_env: dict[str, str]) -> Iterator[Callable[..., WatchProcess]]:
    """Starts `reconcile watch DIR ARGS` (DOCKER_HOST of the test engine unless `docker_host` is given); every
    process still running at the end is killed before the project's objects are removed."""
    started: list[WatchProcess] = []

    def start(directory: Path, *args: str, docker_host: str | None = None) -> WatchProcess:
        env = {**os.environ, **lock_env, "DOCKER_HOST": docker_host or configured_docker_host() or ""}
        process = WatchProcess(project_name, directory, env, tmp_path / f"watch-{len(started)}.log", *args)
        started.append(process)
        return process

    yield start
    for process in started:
        process.kill()
