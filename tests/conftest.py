"""Shared fixtures: the real test engine of scripts/testenv.sh, per-test projects that clean up after themselves.

The engine is found through DOCKER_HOST, else `.testenv/env` (written by scripts/testenv.sh). Tests that need it
fail with a clear message when it does not answer: an unreachable engine is never a silent skip.
Plain helper functions (no fixtures) are in tests/helpers.py; fixtures only the integration modules share are in
tests/integration/conftest.py.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.helpers import (
    BASE_IMAGE,
    REPO,
    TESTENV_FILE,
    configured_docker_host,
    remove_project_objects,
    unique_suffix,
)

if TYPE_CHECKING:
    import docker

CLI_TIMEOUT = 300
ENGINE_TIMEOUT = 60
SETUP_HINT = "run `scripts/testenv.sh` (as root) to start the test engine, or set DOCKER_HOST"


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    """Under CI (`CI=true`, as .ci/run runs) a skipped test fails: scripts/testenv.sh provides everything the
    suite needs, so a skip there is a broken environment or a test that proves nothing, never a pass."""
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]
    if report.skipped and _in_ci() and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"skipped under CI, where nothing may skip: {reason}"


def _client(base_url: str) -> docker.APIClient:
    import docker  # imported here so unit tests never need the SDK loaded

    return docker.APIClient(base_url=base_url, version="auto", timeout=ENGINE_TIMEOUT)


@pytest.fixture(scope="session")
def engine_host() -> str:
    """The URL of the test engine; fails the test (not skips) when none is configured or it does not answer."""
    host = configured_docker_host()
    if not host:
        pytest.fail(f"no Docker engine configured: DOCKER_HOST is unset and {TESTENV_FILE} is missing; {SETUP_HINT}")
    reason = _unreachable_reason(host)
    if reason is not None:
        pytest.fail(f"the test engine at {host} does not answer ({reason}); {SETUP_HINT}")
    return host


def _unreachable_reason(host: str) -> str | None:
    """None when the engine at `host` answers a ping, else a one-line reason."""
    import docker

    # A fixed version makes the constructor connect to nothing, so the client can always be closed
    # (a socket left to the garbage collector is a ResourceWarning, an error under our pytest config).
    client = docker.APIClient(base_url=host, version="1.24", timeout=10)
    try:
        client.ping()
    except Exception as exc:
        text = str(exc)
        return text.splitlines()[0] if text else type(exc).__name__
    finally:
        client.close()
    return None


@pytest.fixture(scope="session")
def api(engine_host: str) -> Iterator[docker.APIClient]:
    """A low-level docker-py client of the test engine (API version negotiated)."""
    client = _client(engine_host)
    yield client
    client.close()


@pytest.fixture(scope="session")
def base_image(api: docker.APIClient) -> str:
    """The busybox base image reference, present in the engine (pulled from the local registry if needed)."""
    import docker.errors

    try:
        api.inspect_image(BASE_IMAGE)
    except docker.errors.NotFound:
        try:
            api.pull(BASE_IMAGE)
            api.inspect_image(BASE_IMAGE)
        except docker.errors.DockerException as exc:
            pytest.fail(f"base image {BASE_IMAGE} is not available ({exc}); {SETUP_HINT}")
    return BASE_IMAGE


@pytest.fixture
def unique_name() -> Callable[..., str]:
    """A callable `unique_name(prefix="t") -> "<prefix>-<8 hex>"`, a valid and unused object name."""

    def make(prefix: str = "t") -> str:
        return f"{prefix}-{unique_suffix()}"

    return make


@pytest.fixture
def project_name() -> Iterator[str]:
    """A fresh project name `t-<8 hex>`; afterwards every engine object labelled with it is removed."""
    name = f"t-{unique_suffix()}"
    yield name
    host = configured_docker_host()
    if host is None or _unreachable_reason(host) is not None:
        return  # no engine: this test cannot have created anything, and tests that needed one failed already
    client = _client(host)
    try:
        remove_project_objects(client, name)
    finally:
        client.close()


@pytest.fixture
def reconcile(project_name: str) -> Callable[..., subprocess.CompletedProcess[str]]:
    """A callable running the CLI: `reconcile("plan", dir, "--output", "json")` -> CompletedProcess (text).

    Runs `python -m reconciler.cli --project <project_name> ARGS` in the repo with the test engine's
    DOCKER_HOST (when one is configured; `validate` needs none), timeout 300 s. Keyword `env` adds variables.
    """
    host = configured_docker_host()

    def run(
        *args: object,
        env: dict[str, str] | None = None,
        timeout: float = CLI_TIMEOUT,
    ) -> subprocess.CompletedProcess[str]:
        full_env = {**os.environ, **(env or {})}
        if host is not None and "DOCKER_HOST" not in (env or {}):
            full_env["DOCKER_HOST"] = host
        return subprocess.run(
            [sys.executable, "-m", "reconciler.cli", "--project", project_name, *map(str, args)],
            cwd=REPO,
            env=full_env,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            check=False,
        )

    return run


class ManifestWriter:
    """Writes manifest files into one per-test directory (`.dir`); call it as `write(relpath, text) -> Path`."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory

    def __call__(self, relpath: str, text: str | bytes) -> Path:
        """Write `text` (dedented; bytes are written as they are) to `relpath` under `.dir`, parents created."""
        path = self.dir / relpath
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
        return path


@pytest.fixture
def tmp_manifests(tmp_path: Path) -> ManifestWriter:
    """An empty manifest directory for this test, with a writer: `tmp_manifests("a/b.yaml", text)`."""
    directory = tmp_path / "manifests"
    directory.mkdir()
    return ManifestWriter(directory)


@pytest.fixture
def free_subnet(api: docker.APIClient) -> Callable[[], str]:
    """A callable returning a /24 under 10.200.0.0/13 that no network on the engine uses (nor an earlier call):
    fixed subnets collide with whatever else runs against the shared test engine."""
    import ipaddress
    import random

    taken = [
        ipaddress.ip_network(cfg["Subnet"], strict=False)
        for net in api.networks()
        for cfg in (net.get("IPAM") or {}).get("Config") or []
        if cfg.get("Subnet") and ":" not in cfg["Subnet"]
    ]

    def pick() -> str:
        for _ in range(200):
            candidate = ipaddress.ip_network(f"10.{random.randint(200, 207)}.{random.randint(0, 255)}.0/24")
            if not any(candidate.overlaps(t) for t in taken):
                taken.append(candidate)
                return str(candidate)
        pytest.fail("no free /24 under 10.200.0.0/13 on the test engine")

    return pick


@pytest.fixture(autouse=True, scope="session")
def _private_state_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Every CLI the tests run keeps its state (pulled images, volume policies) in a throw-away directory, not
    in the host's /var/lib/reconciler."""
    previous = os.environ.get("RECONCILER_STATE_DIR")
    os.environ["RECONCILER_STATE_DIR"] = str(tmp_path_factory.mktemp("state"))
    yield
    if previous is None:
        os.environ.pop("RECONCILER_STATE_DIR", None)
    else:
        os.environ["RECONCILER_STATE_DIR"] = previous


def _fleet_session(swarm: bool) -> Iterator[object]:
    from tests import fleetenv

    if os.geteuid() != 0:
        pytest.fail("the fleet test environment needs root (network namespaces, dockerd)")
    try:
        with fleetenv.session(swarm=swarm) as fleet:
            yield fleet
    except fleetenv.FleetError as exc:
        pytest.fail(str(exc))


@pytest.fixture(scope="session")
def fleet_env() -> Iterator[object]:
    """The namespace engines of scripts/fleetenv.sh (a over TLS, b over ssh), started once for the session and
    taken down afterwards when this session started them; fails (never skips) when they cannot be started."""
    yield from _fleet_session(swarm=False)


@pytest.fixture(scope="session")
def fleet_swarm_env() -> Iterator[object]:
    """`fleet_env` with the fleet's own swarm: engine a the manager, the others workers."""
    yield from _fleet_session(swarm=True)
