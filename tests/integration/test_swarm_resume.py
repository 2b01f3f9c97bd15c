"""`apply` killed (SIGKILL) during swarm rollouts, at 11 points of a failing and a succeeding rollout: the next
`apply` resumes what it finds and never reports an unfinished or failed rollout as done (issue 24, defect 1).

The service: 2 replicas mounting a Secret, `update: {order: start-first, failureAction: pause, monitor: 3s}`.
A failing rollout changes the secret's content and the command to one that exits 3 after 1 s; a succeeding one
changes the secret only. After each kill the test runs `apply` again and checks its exit code (0 only when
converged, 1 when the rollout failed, paused or was rolled back), the service's running tasks, that every secret
version the service's current or previous spec refers to still exists, and that `status` agrees.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ManifestWriter, configured_docker_host
from tests.helpers import REPO, wait_for
from tests.swarmhelpers import SLEEPER, doc, exec_output, remove_swarm_objects, running_tasks, task_container, write

pytestmark = pytest.mark.engine

FAILING = "trap 'exit 0' TERM; sleep 1; exit 3"  # fails well inside the 3 s monitor window
GOOD_SECRET = "good-secret\n"
# (log event after which to kill, seconds after it); None: seconds after the process started
FAILING_KILLS = [
    (None, 0.5),
    ("secret.created", 0.0),
    ("service.updated", 0.0),
    ("service.updated", 1.0),
    ("service.updated", 2.5),
    ("service.rolling_back", 0.3),
]
SUCCEEDING_KILLS = [
    ("secret.created", 0.0),
    ("service.updated", 0.0),
    ("service.updated", 1.0),
    ("service.updated", 2.0),
    ("service.waiting", 3.0),
]


@pytest.fixture
def swarm_project(api: Any, project_name: str) -> Iterator[str]:
    info = api.info().get("Swarm") or {}
    if info.get("LocalNodeState") != "active" or not info.get("ControlAvailable"):
        pytest.fail("the test engine is not a swarm manager; run scripts/testenv.sh up")
    yield project_name
    remove_swarm_objects(api, project_name)


def manifests(tmp_manifests: Any, image: str, name: str, command: str, secret: str) -> Path:
    tmp_manifests("pw.txt", secret)
    spec = {
        "image": image,
        "replicas": 2,
        "command": ["sh", "-c", command],
        "stopGracePeriod": "2s",
        "secrets": [{"name": f"{name}-sec", "target": "pw"}],
        "update": {"order": "start-first", "failureAction": "pause", "monitor": "3s"},
        "rollback": {"monitor": "1s"},
    }
    return write(tmp_manifests, [doc("Secret", f"{name}-sec", {"file": "./pw.txt"}), doc("Service", name, spec)])


def cli(project: str, *args: object) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DOCKER_HOST": configured_docker_host() or ""}
    return subprocess.run(
        [sys.executable, "-m", "reconciler.cli", "--project", project, *map(str, args)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def killed_apply(project: str, directory: Path, event: str | None, delay: float) -> str:
    """Start `apply`, SIGKILL it `delay` seconds after it logs `event` (or after its start); its output so far."""
    env = {**os.environ, "DOCKER_HOST": configured_docker_host() or ""}
    proc = subprocess.Popen(
        [sys.executable, "-m", "reconciler.cli", "--project", project, "apply", str(directory)],
        cwd=REPO,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    lines: list[str] = []
    seen = threading.Event()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)
            if event is not None and f" {event} " in line:
                seen.set()
        seen.set()  # the process ended before the event: nothing left to kill

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    if event is not None:
        assert seen.wait(60), f"apply never logged {event}: {''.join(lines)}"
    time.sleep(delay)
    proc.kill()
    proc.wait(timeout=30)
    reader.join(timeout=10)
    assert proc.stdout is not None
    proc.stdout.close()
    return "".join(lines)


def referenced_secrets(api: Any, name: str) -> set[str]:
    info = api.inspect_service(name)
    found = set()
    for key in ("Spec", "PreviousSpec"):
        for ref in ((info.get(key) or {}).get("TaskTemplate") or {}).get("ContainerSpec", {}).get("Secrets") or []:
            found.add(ref["SecretID"])
    return found


def check_secrets_exist(api: Any, name: str) -> None:
    existing = {s["ID"] for s in api.secrets()}
    missing = referenced_secrets(api, name) - existing
    assert not missing, f"secret versions a spec of {name} refers to are gone: {missing}"


def status_of(project: str, directory: Path, name: str) -> tuple[int, str]:
    proc = cli(project, "status", directory)
    row = next((line for line in proc.stdout.splitlines() if f"Service/{name}" in line), "")
    return proc.returncode, row


def failing_rollouts(
    api: Any, p: str, tmp_manifests: Any, base_image: str, kills: list[tuple[int, tuple[str | None, float]]]
) -> None:
    """From the good spec, each of `kills` ((number, kill point)): a failing rollout killed there, the next apply
    says it failed, then back to the good spec."""
    name = f"{p}-svc"
    good = manifests(tmp_manifests, base_image, name, SLEEPER, GOOD_SECRET)
    proc = cli(p, "apply", good)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for i, (event, delay) in kills:
        point = f"failing rollout, kill {delay}s after {event or 'the start'}"
        directory = manifests(tmp_manifests, base_image, name, FAILING, f"bad-secret-{i}\n")
        killed = killed_apply(p, directory, event, delay)
        proc = cli(p, "apply", directory)
        assert proc.returncode == 1, f"{point}: the next apply said {proc.returncode}:\n{killed}\n{proc.stdout}"
        assert f"service {name}" in proc.stdout and "rolled back" in proc.stdout, f"{point}: {proc.stdout}"
        state = (api.inspect_service(name).get("UpdateStatus") or {}).get("State")
        assert state == "rollback_completed", f"{point}: the service was left {state}"
        wait_for(lambda: len(running_tasks(api, name)) == 2, 60, f"{point}: 2 tasks running again")
        check_secrets_exist(api, name)
        rc, row = status_of(p, directory, name)
        assert rc == 2 and "in sync" not in row, f"{point}: status says {row!r}"
        # back to the good spec (the service runs it already: nothing rolls)
        proc = cli(p, "apply", manifests(tmp_manifests, base_image, name, SLEEPER, GOOD_SECRET))
        assert proc.returncode == 0, f"{point}: back to the good spec: {proc.stdout}"
        check_secrets_exist(api, name)


def succeeding_rollouts(api: Any, p: str, tmp_manifests: Any, base_image: str) -> None:
    name = f"{p}-svc"
    good = manifests(tmp_manifests, base_image, name, SLEEPER, GOOD_SECRET)
    proc = cli(p, "apply", good)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for i, (event, delay) in enumerate(SUCCEEDING_KILLS):
        point = f"succeeding rollout, kill {delay}s after {event or 'the start'}"
        content = f"new-secret-{i}\n"
        directory = manifests(tmp_manifests, base_image, name, SLEEPER, content)
        killed = killed_apply(p, directory, event, delay)
        check_secrets_exist(api, name)
        proc = cli(p, "apply", directory)
        assert proc.returncode == 0, f"{point}: the next apply said {proc.returncode}:\n{killed}\n{proc.stdout}"
        assert (api.inspect_service(name).get("UpdateStatus") or {}).get("State") == "completed", point
        tasks = running_tasks(api, name)
        assert len(tasks) == 2, f"{point}: {len(tasks)} tasks running after the apply said converged"
        assert exec_output(api, task_container(api, name), "cat", "/run/secrets/pw") == content, point
        check_secrets_exist(api, name)
        rc, row = status_of(p, directory, name)
        assert rc == 0 and row.startswith("in sync"), f"{point}: status says {row!r}"


def test_interrupted_rollouts_are_resumed_never_reported_healthy(
    api: Any, swarm_project: str, tmp_manifests: Any, base_image: str, unique_name: Any
) -> None:
    """Three sweeps side by side, each with its own project and service starting from its own good apply: the
    failing kill points in two halves (every failing point starts from the good spec anyway: the one before
    ends by going back to it) and the succeeding ones (which started from the failing sweep's last good spec).
    A rollout mostly waits on swarm's monitor window; every kill point is still taken and checked the same way."""
    import docker

    failing = list(enumerate(FAILING_KILLS))
    others = [unique_name("t"), unique_name("t")]
    directories = []
    for other in others:
        directories.append(ManifestWriter(tmp_manifests.dir.parent / other))
        directories[-1].dir.mkdir()
    clients = [docker.APIClient(base_url=configured_docker_host(), version="auto", timeout=60) for _ in others]
    try:
        with ThreadPoolExecutor(max_workers=3) as pool:
            runs = [
                pool.submit(failing_rollouts, api, swarm_project, tmp_manifests, base_image, failing[::2]),
                pool.submit(failing_rollouts, clients[0], others[0], directories[0], base_image, failing[1::2]),
                pool.submit(succeeding_rollouts, clients[1], others[1], directories[1], base_image),
            ]
            for run in runs:
                run.result()
    finally:
        for other, client in zip(others, clients, strict=True):
            remove_swarm_objects(client, other)
            client.close()


def test_scaling_to_zero_waits_until_the_tasks_are_gone(
    api: Any, swarm_project: str, tmp_manifests: Any, base_image: str
) -> None:
    """Issue 24, defect 10: a scale to 0 returned while 3 tasks still ran; apply waits after a replicas change,
    so when it returns no task container of the service runs (these ignore SIGTERM: they stop after the grace
    period)."""
    name = f"{swarm_project}-scaled"
    spec = {"image": base_image, "command": ["sleep", "3600"], "stopGracePeriod": "4s", "replicas": 3}
    directory = write(tmp_manifests, [doc("Service", name, spec)])
    proc = cli(swarm_project, "apply", directory)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert len(running_tasks(api, name)) == 3
    directory = write(tmp_manifests, [doc("Service", name, {**spec, "replicas": 0})])
    proc = cli(swarm_project, "apply", directory)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    left = api.containers(filters={"label": f"com.docker.swarm.service.name={name}"})
    assert left == [], f"{len(left)} task container(s) still run after apply returned"
    rc, row = status_of(swarm_project, directory, name)
    assert rc == 0 and row.startswith("in sync"), row
