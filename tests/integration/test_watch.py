"""`reconcile watch` on the real engine: manifests added, edited, broken, fixed and deleted; repairs via events;
the single-writer lock; metrics; SIGTERM."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import urllib.request

import pytest
from docker.errors import NotFound

from tests.helpers import (
    CHANGE_TIMEOUT,
    REPO,
    START_TIMEOUT,
    configured_docker_host,
    free_port,
    volume_exists,
    volume_manifest,
    wait_for,
)

pytestmark = pytest.mark.engine


def network(name: str, version: str) -> str:
    return f"""
    apiVersion: reconciler/v1
    kind: Network
    metadata:
      name: {name}
      labels: {{version: "{version}"}}
    spec: {{}}
    """


def network_info(api, name: str) -> dict | None:
    try:
        return api.inspect_network(name)
    except NotFound:
        return None


def container_running(api, name: str) -> bool:
    import docker.errors

    try:
        return bool(api.inspect_container(name)["State"]["Running"])
    except docker.errors.NotFound:
        return False


def test_watch_follows_manifest_edits_and_refuses_a_second_writer(
    api, project_name, tmp_manifests, watch, reconcile, lock_env
):
    """Add creates, edit changes, a broken edit changes nothing and names file:line, the fix applies, deleting
    the file prunes, a second apply is refused naming watch's PID, metrics are served, SIGTERM exits 0."""
    keep, net = f"{project_name}-keep", f"{project_name}-net"
    tmp_manifests("keep.yaml", volume_manifest(keep))
    port = free_port()
    w = watch(tmp_manifests.dir, "--resync", "30", "--metrics-addr", f"127.0.0.1:{port}")
    wait_for(lambda: volume_exists(api, keep), START_TIMEOUT, "the volume of the startup pass")

    tmp_manifests("net.yaml", network(net, "1"))
    first = wait_for(lambda: network_info(api, net), CHANGE_TIMEOUT, "the added network")
    assert first["Labels"]["io.reconciler.project"] == project_name

    tmp_manifests("net.yaml", network(net, "2"))
    second = wait_for(
        lambda: (info := network_info(api, net)) and info["Labels"].get("version") == "2" and info,
        CHANGE_TIMEOUT,
        "the edited network",
    )
    assert second["Id"] != first["Id"]  # a network change is a replace

    refused = reconcile("apply", str(tmp_manifests.dir), env=lock_env, timeout=60)
    assert refused.returncode == 1
    assert f"PID {w.pid}" in refused.stderr

    mark = len(w.stderr())
    (tmp_manifests.dir / "net.yaml").write_text(
        f"apiVersion: reconciler/v1\nkind: Network\nmetadata:\n  name: {net}\n  labels: {{version: '3'}}\nspec: [\n"
    )
    w.wait_log("manifest.invalid", after=mark)
    assert "net.yaml:" in w.stderr()[mark:]
    w.wait_log("pass.done", after=mark)  # the pass that read the broken file is over: a wrong teardown is done
    still = network_info(api, net)
    assert still is not None and still["Id"] == second["Id"]

    tmp_manifests("net.yaml", network(net, "3"))
    wait_for(
        lambda: (info := network_info(api, net)) and info["Labels"].get("version") == "3",
        CHANGE_TIMEOUT,
        "the fixed network",
    )

    def metrics() -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
            return resp.read().decode()

    # the counters are updated when the pass ends, a moment after the engine shows the change
    replaced = 'reconcile_changes_applied_total{kind="Network",action="replace"} 2'
    wait_for(lambda: replaced in metrics(), 5, "the replace counter")
    assert 'reconcile_changes_applied_total{kind="Volume",action="create"} 1' in metrics()
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=5) as resp:
        assert json.loads(resp.read())["status"] == "ok"

    (tmp_manifests.dir / "net.yaml").unlink()
    wait_for(lambda: network_info(api, net) is None, CHANGE_TIMEOUT, "the pruned network")
    assert volume_exists(api, keep)

    assert w.stop() == 0
    assert "watch.stopped" in w.stderr()


def test_no_spelling_of_the_engine_socket_bypasses_the_lock(project_name, tmp_manifests, watch, reconcile, lock_env):
    """Issue 24, defect 3: with watch on `unix:///run/x.sock`, an apply on `unix:/run/x.sock` or
    `unix://run/x.sock` (the same socket to docker-py) took a lock of its own and ran at once."""
    host = configured_docker_host() or ""
    if not host.startswith("unix:///"):
        pytest.fail(f"this test needs the test engine on a unix socket, not {host!r}")
    socket_path = host[len("unix://") :]
    tmp_manifests("v.yaml", volume_manifest(f"{project_name}-data"))
    w = watch(tmp_manifests.dir, "--resync", "30", docker_host=f"unix://{socket_path}")
    w.wait_log("pass.done", timeout=START_TIMEOUT)
    for spelling in (f"unix:{socket_path}", f"unix://{socket_path.lstrip('/')}", f"unix://{socket_path}/"):
        refused = reconcile("apply", str(tmp_manifests.dir), env={**lock_env, "DOCKER_HOST": spelling}, timeout=60)
        assert refused.returncode == 1, (spelling, refused.stderr)
        assert f"PID {w.pid}" in refused.stderr, (spelling, refused.stderr)
    assert w.stop() == 0


def test_emptied_directory_prunes_nothing(api, project_name, tmp_manifests, watch):
    """Removing every manifest (a failed checkout) leaves the objects in place without --allow-empty."""
    name = f"{project_name}-data"
    tmp_manifests("v.yaml", volume_manifest(name))
    w = watch(tmp_manifests.dir, "--resync", "30")
    wait_for(lambda: volume_exists(api, name), START_TIMEOUT, "the volume")
    mark = len(w.stderr())
    (tmp_manifests.dir / "v.yaml").unlink()
    w.wait_log("manifests.empty", after=mark)
    w.wait_log("pass.done", after=mark)  # the pass that found no manifests is over
    assert volume_exists(api, name)
    assert w.stop() == 0


def test_second_writer_with_wait_runs_after_watch_ends(api, project_name, tmp_manifests, watch, lock_env, tmp_path):
    """`apply --wait` blocks while watch holds the lock, proceeds once watch exits on SIGTERM, and applies the
    directory as it is then (an edit made while it waited), never the one it saw when it started."""
    tmp_manifests("v.yaml", volume_manifest(f"{project_name}-data"))
    w = watch(tmp_manifests.dir, "--resync", "30")
    w.wait_log("pass.done", timeout=START_TIMEOUT)
    env = {**os.environ, **lock_env, "DOCKER_HOST": configured_docker_host() or ""}
    errors = (tmp_path / "apply.stderr").open("w+")
    waiting = subprocess.Popen(
        [sys.executable, "-m", "reconciler.cli", "--project", project_name, "apply", "--wait", str(tmp_manifests.dir)],
        cwd=REPO,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=errors,
        text=True,
    )
    try:
        wait_for(lambda: "lock.waiting" in (tmp_path / "apply.stderr").read_text(), START_TIMEOUT, "apply to wait")
        assert waiting.poll() is None, "apply --wait did not wait for watch"
        tmp_manifests("v.yaml", volume_manifest(f"{project_name}-edited"))
        assert w.stop() == 0
        waiting.wait(timeout=60)
        assert waiting.returncode == 0, (tmp_path / "apply.stderr").read_text()
        assert volume_exists(api, f"{project_name}-edited") and not volume_exists(api, f"{project_name}-data")
    finally:
        if waiting.poll() is None:
            waiting.kill()
            waiting.wait(timeout=10)
        errors.close()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_watch_waiting_for_the_lock_exits_0_on_a_signal(project_name, tmp_manifests, watch, sig):
    """`watch --wait` behind another watch: SIGTERM/SIGINT while it waits ends it cleanly with exit 0."""
    tmp_manifests("v.yaml", volume_manifest(f"{project_name}-data"))
    holder = watch(tmp_manifests.dir, "--resync", "30")
    holder.wait_log("pass.done", timeout=START_TIMEOUT)
    waiting = watch(tmp_manifests.dir, "--wait", "--resync", "30")
    waiting.wait_log("lock.waiting", timeout=START_TIMEOUT)  # its signal handlers are in place from here on
    assert waiting.proc.poll() is None, "watch --wait did not wait for the lock"
    assert waiting.stop(sig) == 0, waiting.stderr()
    assert "stopped while waiting for the lock" in waiting.stderr()
    assert holder.stop() == 0


def test_removed_container_is_repaired_from_the_event_stream(api, project_name, tmp_manifests, watch, base_image):
    """`docker rm -f` of a managed container is repaired via the event stream (resync is far away). How fast is
    measured by bench/repair_latency.py; here only that it happens, by an event, long before the resync."""
    name = f"{project_name}-web"
    tmp_manifests(
        "web.yaml",
        f"""
        apiVersion: reconciler/v1
        kind: Container
        metadata: {{name: {name}}}
        spec:
          image: {base_image}
          command: ["sleep", "3600"]
          networkMode: none
        """,
    )
    w = watch(tmp_manifests.dir, "--resync", "300")

    def running_id() -> str | None:
        try:
            info = api.inspect_container(name)
        except NotFound:
            return None
        return info["Id"] if info["State"]["Running"] else None

    old = wait_for(running_id, START_TIMEOUT, "the container to run")
    w.wait_log("engine.events_connected", timeout=START_TIMEOUT)
    # converged first: a create is only done once the new container has stayed up (the settle window)
    w.wait_log("pass.done", timeout=START_TIMEOUT)
    mark = len(w.stderr())
    api.remove_container(name, force=True)
    new = wait_for(lambda: (cid := running_id()) and cid != old and cid, CHANGE_TIMEOUT, "the repaired container")
    assert new != old
    w.wait_log("object.repaired", after=mark)  # logged when the pass ends, just after the container runs
    repair = w.stderr()[mark:]
    assert "engine.event" in repair
    # the pass that made the new container was started by the engine's events, not by the resync or a timer (a
    # pass started by the kill alone may try the container being removed, fail temporarily and leave a retry)
    created = repair.index("container.created")
    started = re.findall(r"pass\.started\s.*?reasons=(\S+)", repair[:created])
    assert started and started[-1].startswith("event:"), started
    assert "resync" not in repair, started
    assert w.stop() == 0


def test_invalid_edit_leaves_the_running_container_untouched(api, project_name, tmp_manifests, watch, base_image):
    """A broken edit of a container's manifest keeps the running container; the fixed edit replaces it."""
    name = f"{project_name}-app"

    def container(command: str) -> str:
        return f"""
        apiVersion: reconciler/v1
        kind: Container
        metadata: {{name: {name}}}
        spec:
          image: {base_image}
          command: ["sleep", "{command}"]
          networkMode: none
          stopTimeout: 1
        """

    tmp_manifests("app.yaml", container("3600"))
    w = watch(tmp_manifests.dir, "--resync", "30")

    def info() -> dict | None:
        try:
            return api.inspect_container(name)
        except NotFound:
            return None

    first = wait_for(lambda: (i := info()) and i["State"]["Running"] and i, START_TIMEOUT, "the container")
    mark = len(w.stderr())
    tmp_manifests("app.yaml", container("3601").replace("command:", "command: [broken"))
    w.wait_log("manifest.invalid", after=mark)
    assert "app.yaml:" in w.stderr()[mark:]
    w.wait_log("pass.done", after=mark)  # the pass that read the broken file is over
    now = info()
    assert now is not None and now["Id"] == first["Id"] and now["State"]["Running"]

    tmp_manifests("app.yaml", container("3602"))
    fixed = wait_for(
        lambda: (i := info()) and i["Config"]["Cmd"] == ["sleep", "3602"] and i["State"]["Running"] and i,
        CHANGE_TIMEOUT,
        "the replaced container",
    )
    assert fixed["Id"] != first["Id"]
    assert w.stop() == 0


def test_failing_object_is_retried_and_reported_by_status(
    api, project_name, tmp_manifests, watch, reconcile, lock_env, base_image
):
    """An object that cannot be created (its image is in no registry: a permanent failure) is held and shown as
    failing with the error's class; what depends on it is blocked; the rest of the project converges; fixing the
    manifest retries it at once."""
    good, bad, waiting = f"{project_name}-data", f"{project_name}-bad", f"{project_name}-after"
    registry = base_image.split("/", 1)[0]
    tmp_manifests("good.yaml", volume_manifest(good))
    tmp_manifests(
        "bad.yaml",
        f"""
        apiVersion: reconciler/v1
        kind: Container
        metadata: {{name: {bad}}}
        spec:
          image: {registry}/reconciler/absent-{project_name}:1
          command: ["sleep", "3600"]
          networkMode: none
        """,
    )
    tmp_manifests(
        "after.yaml",
        f"""
        apiVersion: reconciler/v1
        kind: Container
        metadata: {{name: {waiting}}}
        spec:
          image: {base_image}
          command: ["sleep", "3600"]
          networkMode: none
          dependsOn: [{{name: {bad}}}]
        """,
    )
    w = watch(tmp_manifests.dir, "--resync", "30")
    wait_for(lambda: volume_exists(api, good), START_TIMEOUT, "the good volume")
    w.wait_log("object.held", timeout=CHANGE_TIMEOUT)
    w.wait_log("error_class=permanent", timeout=CHANGE_TIMEOUT)

    proc = reconcile("status", str(tmp_manifests.dir), "--output", "json", env=lock_env, timeout=60)
    assert proc.returncode == 2, proc.stderr
    rows = {r["name"]: r for r in json.loads(proc.stdout)["objects"]}
    assert rows[good]["status"] == "in sync"
    assert rows[bad]["status"] == "failing"
    assert rows[bad]["lastError"] and rows[bad]["errorClass"] == "permanent" and rows[bad]["nextRetry"] is None
    assert rows[waiting]["status"] == "blocked"

    # the fix is an edit: tried at once, and what waited for it follows
    (tmp_manifests.dir / "bad.yaml").write_text(
        (tmp_manifests.dir / "bad.yaml")
        .read_text()
        .replace(f"{registry}/reconciler/absent-{project_name}:1", base_image)
    )
    wait_for(lambda: container_running(api, waiting), CHANGE_TIMEOUT, "the dependent container after the fix")
    assert w.stop() == 0
