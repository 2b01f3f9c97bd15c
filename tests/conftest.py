"""Shared fixtures: the real test engine of scripts/testenv.sh, per-test projects that clean up after themselves.

The engine is found through DOCKER_HOST, else `.testenv/env` (written by scripts/testenv.sh). Tests that need it
fail with a clear message when it does not answer: an unreachable engine is never a silent skip.
"""

from __future__ import annotations

import os
import re
import secrets
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    import docker

REPO = Path(__file__).resolve().parent.parent
TESTENV_FILE = REPO / ".testenv" / "env"
BASE_IMAGE = "127.0.0.1:5000/reconciler/busybox:1.35"
LABEL_PROJECT = "io.reconciler.project"
CLI_TIMEOUT = 300
ENGINE_TIMEOUT = 60
SETUP_HINT = "run `scripts/testenv.sh` (as root) to start the test engine, or set DOCKER_HOST"


def configured_docker_host() -> str | None:
    """DOCKER_HOST from the environment, else the `export DOCKER_HOST=...` line of .testenv/env, else None."""
    if os.environ.get("DOCKER_HOST"):
        return os.environ["DOCKER_HOST"]
    try:
        text = TESTENV_FILE.read_text(encoding="utf-8")
    except OSError:
        return None
    match = re.search(r"^\s*(?:export\s+)?DOCKER_HOST=['\"]?([^'\"\s]+)", text, re.MULTILINE)
    return match.group(1) if match else None


def _client(base_url: str) -> docker.APIClient:
    import docker  # imported here so unit tests never need the SDK loaded

    return docker.APIClient(base_url=base_url, version="auto", timeout=ENGINE_TIMEOUT)


def unique_suffix() -> str:
    """Eight random hex digits: enough to keep concurrent test runs on one engine apart."""
    return secrets.token_hex(4)


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


def remove_project_objects(client: docker.APIClient, project: str) -> None:
    """Remove containers, networks (local and swarm scope), volumes and images labelled with `project`.

    Order matters: containers hold networks and volumes, and images are in use while containers exist.
    Objects already gone (404) are fine; anything left after bounded retries fails the teardown loudly.
    """
    import docker.errors
    import requests

    label = {"label": [f"{LABEL_PROJECT}={project}"]}
    leftovers: list[str] = []

    def attempt(what: str, remove: Callable[[], object]) -> None:
        # Removal right after a container stops can meet a 409 (endpoint still attached, volume in use): retry.
        last: Exception | None = None
        for _ in range(10):
            try:
                remove()
                return
            except docker.errors.NotFound:
                return
            except docker.errors.APIError as exc:
                last = exc
                time.sleep(0.5)
        leftovers.append(f"{what}: {last}")

    try:
        for c in client.containers(all=True, filters=label):
            attempt(f"container {c['Id'][:12]}", lambda c=c: client.remove_container(c["Id"], v=True, force=True))
        networks = {n["Id"]: n for n in client.networks(filters=label)}
        # Swarm-scoped (overlay) networks are listed by the manager; ask for them explicitly as well.
        networks.update({n["Id"]: n for n in client.networks(filters={**label, "scope": ["swarm"]})})
        for net_id, net in networks.items():
            attempt(f"network {net['Name']}", lambda net_id=net_id: client.remove_network(net_id))
        for v in client.volumes(filters=label).get("Volumes") or []:
            attempt(f"volume {v['Name']}", lambda v=v: client.remove_volume(v["Name"], force=True))
        # Top-level images first: the classic builder leaves labelled intermediate parents, which cannot go
        # while a child image exists.
        for listing in (False, True):
            for image in client.images(all=listing, filters=label):
                attempt(f"image {image['Id'][:19]}", lambda image=image: client.remove_image(image["Id"], force=True))
    except (docker.errors.DockerException, requests.RequestException) as exc:
        pytest.fail(f"cleanup of project {project} could not list its objects: {exc}")
    if leftovers:
        pytest.fail(f"cleanup of project {project} left objects behind: {'; '.join(leftovers)}")


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


@pytest.fixture(scope="session")
def fleet_env() -> Iterator[object]:
    """The namespace engines of scripts/fleetenv.sh (a over TLS, b over ssh), started once for the session and
    taken down afterwards when this session started them; fails (never skips) when they cannot be started."""
    from tests import fleetenv

    if os.geteuid() != 0:
        pytest.fail("the fleet test environment needs root (network namespaces, dockerd)")
    try:
        with fleetenv.session() as fleet:
            yield fleet
    except fleetenv.FleetError as exc:
        pytest.fail(str(exc))
