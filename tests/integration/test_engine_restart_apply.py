"""dockerd restarted in the middle of `apply` and in the middle of a `watch` pass: converged afterwards, within
a stated time (RECOVERY_SECONDS after the engine answers again), with nothing duplicated. Uses the private
dockerd of test_watch_engine_restart.py (the shared test engine is never restarted)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable

import docker.errors
import pytest

from tests.helpers import BASE_IMAGE, LABEL_PROJECT, REPO, START_TIMEOUT, PrivateEngine, wait_for

pytestmark = pytest.mark.engine

RECOVERY_SECONDS = 60.0  # the promise: converged within this long after the engine is back
SLEEPER = 'trap "exit 0" TERM; while :; do sleep 1; done'
APPS = ("a", "b", "c")


def write_stack(write, p: str, version: str) -> None:
    docs = [
        f"apiVersion: reconciler/v1\nkind: Volume\nmetadata: {{name: {p}-data}}\nspec: {{reclaimPolicy: Delete}}\n",
        f"apiVersion: reconciler/v1\nkind: Network\nmetadata: {{name: {p}-net}}\nspec: {{}}\n",
    ]
    for app in APPS:
        docs.append(
            f"apiVersion: reconciler/v1\nkind: Container\nmetadata: {{name: {p}-{app}}}\nspec:\n"
            f"  image: {BASE_IMAGE}\n  command: [sh, -c, {json.dumps(SLEEPER)}]\n"
            f'  env: {{VERSION: "{version}"}}\n'
            f"  mounts: [{{type: volume, source: {p}-data, target: /data}}]\n"
            f"  networks: [{{name: {p}-net}}]\n  stopTimeout: 1\n"
        )
    write("stack.yaml", "---\n".join(docs))


def converged(api, p: str, version: str) -> bool:
    label = {"label": [f"{LABEL_PROJECT}={p}"]}
    try:
        running = api.containers(filters=label)
        every = api.containers(all=True, filters=label)
        networks = api.networks(filters=label)
        volumes = api.volumes(filters=label).get("Volumes") or []
    except Exception:
        return False
    names = sorted(c["Names"][0].lstrip("/") for c in running)
    if names != sorted(f"{p}-{a}" for a in APPS) or len(every) != len(APPS):
        return False
    if [n["Name"] for n in networks] != [f"{p}-net"] or [v["Name"] for v in volumes] != [f"{p}-data"]:
        return False
    envs = [api.inspect_container(c["Id"])["Config"]["Env"] for c in running]
    return all(f"VERSION={version}" in env for env in envs)


def replace_begun(api, p: str) -> bool:
    """A container renamed aside, or one on version 2, or one gone between the listing and its inspect (the
    replace removed it)."""
    for c in api.containers(all=True, filters={"label": [f"{LABEL_PROJECT}={p}"]}):
        if c["Names"][0].endswith("__reconciler_old"):
            return True
        try:
            if "VERSION=2" in api.inspect_container(c["Id"])["Config"]["Env"]:
                return True
        except docker.errors.NotFound:
            return True
    return False


def start_cli(engine: PrivateEngine, project: str, env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    """The CLI in the background (read its end with `communicate`)."""
    return subprocess.Popen(
        [sys.executable, "-m", "reconciler.cli", "--project", project, *args],
        cwd=REPO,
        env={**os.environ, **env, "DOCKER_HOST": engine.url},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def run_cli(
    engine: PrivateEngine, project: str, env: dict[str, str], *args: str, timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "reconciler.cli", "--project", project, *args],
        cwd=REPO,
        env={**os.environ, **env, "DOCKER_HOST": engine.url},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def restart(engine: PrivateEngine) -> float:
    """Stop and start the private dockerd; the time it answers again."""
    engine.stop()
    engine.start()
    return time.monotonic()


def test_dockerd_restarted_during_apply(
    private_engine: PrivateEngine,
    project_name,
    tmp_manifests,
    lock_env,
) -> None:
    p = project_name
    api = private_engine.client()
    write_stack(tmp_manifests, p, "1")
    first = run_cli(private_engine, p, lock_env, "apply", str(tmp_manifests.dir))  # also pulls the base image
    assert first.returncode == 0, first.stderr[-3000:]
    assert converged(api, p, "1")

    write_stack(tmp_manifests, p, "2")  # a replace of every container, interrupted by the restart
    during = start_cli(private_engine, p, lock_env, "apply", str(tmp_manifests.dir))
    try:
        wait_for(lambda: replace_begun(api, p), 60, "the replace to begin", interval=0.05)
        api.close()
        back = restart(private_engine)
        _, err = during.communicate(timeout=120)
    finally:
        if during.poll() is None:  # the test failed before the apply ended: never leave it running
            during.kill()
            during.communicate()
    assert during.returncode in (0, 1) and "Traceback" not in err, err[-3000:]

    api = private_engine.client()
    again = run_cli(private_engine, p, lock_env, "apply", str(tmp_manifests.dir), timeout=RECOVERY_SECONDS)
    assert again.returncode == 0, again.stderr[-3000:]
    seconds = time.monotonic() - back
    assert converged(api, p, "2"), "not converged after the engine restart"
    assert seconds < RECOVERY_SECONDS
    assert run_cli(private_engine, p, lock_env, "plan", str(tmp_manifests.dir)).returncode == 0
    print(f"converged {seconds:.1f} s after the engine answered again")
    api.close()


def test_dockerd_restarted_during_a_watch_pass(
    private_engine: PrivateEngine,
    project_name,
    tmp_manifests,
    watch: Callable,
) -> None:
    p = project_name
    api = private_engine.client()
    write_stack(tmp_manifests, p, "1")
    w = watch(tmp_manifests.dir, "--resync", "600", docker_host=private_engine.url)
    wait_for(lambda: converged(api, p, "1"), 180, "the first pass (pulls the base image)", interval=0.5)
    w.wait_log("engine.events_connected", timeout=START_TIMEOUT)

    mark = len(w.stderr())
    write_stack(tmp_manifests, p, "2")
    w.wait_log("change.started", timeout=20, after=mark)  # the pass is applying the edit
    api.close()
    back = restart(private_engine)
    api = private_engine.client()
    try:
        wait_for(lambda: converged(api, p, "2"), RECOVERY_SECONDS, "watch to converge after the engine restart", 0.5)
    except pytest.fail.Exception as e:
        pytest.fail(f"{e}\n--- the watch log's end:\n{w.stderr()[-6000:]}")
    seconds = time.monotonic() - back
    assert w.proc.poll() is None, "watch exited"
    print(f"converged {seconds:.1f} s after the engine answered again")
    api.close()
    assert w.stop() == 0
