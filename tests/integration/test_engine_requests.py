"""How many engine requests a no-op costs, counted by bench/counting_proxy.py (behaviour, not time).

A no-op `plan` is a constant number of requests (version, info, one listing per kind, the image inspects) plus one
inspect per container; a watch pass inspects only what an engine event (or its own change) named since the last
pass, and the resync only what the engine's event log names since the last one (nothing on a quiet engine).
"""

from __future__ import annotations

import os
import re
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.counting import counting_proxy, stack
from tests.helpers import WatchProcess

pytestmark = pytest.mark.engine

# version, info (twice: the network driver asks whether swarm is active, the image driver for the engine ID), one
# listing per kind (containers, networks, volumes, images; with the swarm kinds also services, secrets, configs),
# the inspects of the one image by ID and by reference: 9, or 12 with the swarm kinds; 2 to spare
NOOP_CONSTANT = 14


@pytest.fixture
def proxy(engine_host: str) -> Iterator[object]:
    """A counting proxy in front of the test engine: DOCKER_HOST=proxy.url, read proxy.since(mark)."""
    with counting_proxy().CountingProxy(engine_host) as counting:
        yield counting


def per_object(entries: list[tuple[str, str]]) -> list[tuple[str, str]]:
    return [e for e in entries if counting_proxy().is_per_object(e)]


def test_noop_plan_is_a_constant_plus_one_inspect_per_container(
    reconcile, project_name, tmp_manifests, base_image, proxy
):
    counts = {}
    for n in (2, 7):
        tmp_manifests("stack.yaml", stack(project_name, n, base_image))
        done = reconcile("apply", tmp_manifests.dir)
        assert done.returncode == 0, done.stderr
        mark = proxy.mark()
        plan = reconcile("plan", tmp_manifests.dir, env={"DOCKER_HOST": proxy.url})
        assert plan.returncode == 0, plan.stdout + plan.stderr  # 0: in sync (2 would be pending changes)
        made = proxy.since(mark)
        counts[n] = made
        summary = proxy.summary(made)
        assert len(made) <= NOOP_CONSTANT + n, summary
        assert summary["GET /containers/{}/json"] <= n, summary  # no container inspected twice
        # two filtered listings, never one per object: the project's containers, and the Compose project's that an
        # interrupted `apply --adopt` parked (drivers/container/parked.py)
        assert summary["GET /containers/json"] == 2, summary
    grown = len(counts[7]) - len(counts[2])
    assert grown <= 7 - 2, (proxy.summary(counts[2]), proxy.summary(counts[7]))


def test_a_converge_asks_about_the_image_once_and_looks_at_each_new_container_a_few_times(
    reconcile, project_name, tmp_manifests, base_image, proxy
):
    n = 6
    tmp_manifests("stack.yaml", stack(project_name, n, base_image))
    mark = proxy.mark()
    done = reconcile("apply", tmp_manifests.dir, env={"DOCKER_HOST": proxy.url})
    assert done.returncode == 0, done.stdout + done.stderr
    summary = proxy.summary(proxy.since(mark))
    assert summary["POST /containers/create"] == n and summary["POST /containers/{}/start"] == n, summary
    assert summary["GET /images/{}/json"] <= 2, summary  # not one per container
    assert summary["GET /containers/{}/json"] <= 5 * n, summary  # the settle window's looks: 4 each


@pytest.fixture
def watch_in_sync(
    reconcile, project_name, tmp_manifests, base_image, proxy, tmp_path
) -> Iterator[Callable[[], tuple[WatchProcess, Path]]]:
    """A converged 4-container project and a `watch` on it (through the proxy) that finished its startup pass."""
    started: list[WatchProcess] = []

    def start() -> tuple[WatchProcess, Path]:
        path = tmp_manifests("stack.yaml", stack(project_name, 4, base_image))
        env = {"RECONCILER_LOCK_DIR": str(tmp_path / "locks")}
        done = reconcile("apply", tmp_manifests.dir, env=env)
        assert done.returncode == 0, done.stderr
        environ = {**os.environ, **env, "DOCKER_HOST": proxy.url}
        w = WatchProcess(project_name, tmp_manifests.dir, environ, tmp_path / "w.log", "--resync", "600")
        started.append(w)
        # requests are counted before they are sent, so nothing of the startup pass comes after its pass.done; the
        # event stream's request may (it is given a moment before the first pass, not waited for)
        w.wait_passes(1)
        w.wait_log("engine.events_connected")
        return w, path

    yield start
    for w in started:
        stop(w)


def stop(w: WatchProcess) -> None:
    """SIGTERM, as a user would stop it; killed when it does not end in time."""
    if w.proc.poll() is None:
        try:
            w.stop()
        except subprocess.TimeoutExpired:
            w.kill()


def test_an_idle_watch_makes_no_engine_request(watch_in_sync, proxy):
    watch, _ = watch_in_sync()
    mark = proxy.mark()
    # not a synchronisation but the claim itself: nothing over a window longer than the loop's 5 s wake-up
    time.sleep(6)
    assert proxy.since(mark) == []
    assert watch.passes_done() == 1


def test_a_watch_pass_without_events_inspects_no_object(watch_in_sync, proxy):
    watch, path = watch_in_sync()
    mark = proxy.mark()
    tmp = path.with_name(".stack.yaml.tmp")
    tmp.write_text(path.read_text())
    os.replace(tmp, path)  # saved again, unchanged: the directory watcher asks for a pass
    watch.wait_passes(2)
    made = proxy.since(mark)
    assert per_object(made) == [], proxy.summary(made)


def inspects(entries: list[tuple[str, str]]) -> int:
    return sum(e == ("GET", "/containers/{}/json") for e in entries)


def pass_reasons(watch: WatchProcess) -> list[str]:
    return re.findall(r"pass\.started\s.*?reasons=(\S+)", watch.stderr())


def wait_own_event_pass(watch: WatchProcess, passes: int) -> None:
    """Until the pass that the engine event of watch's own change asks for is done: the change was made in pass
    `passes`, so that is pass `passes + 1`, started by an event."""
    watch.wait_passes(passes + 1)
    assert pass_reasons(watch)[passes].startswith("event:"), pass_reasons(watch)


def test_a_change_told_only_by_an_event_is_repaired_inspecting_that_container(watch_in_sync, proxy, api, project_name):
    watch, _ = watch_in_sync()
    target = f"{project_name}-c2"
    mark = proxy.mark()
    # nothing in a container listing shows a restart policy: only the engine's `update` event tells of it
    api.update_container(target, restart_policy={"Name": "always"})
    deadline = time.monotonic() + 20
    while api.inspect_container(target)["HostConfig"]["RestartPolicy"]["Name"] != "no":
        assert time.monotonic() < deadline, watch.stderr()[-2000:]
        time.sleep(0.1)
    wait_own_event_pass(watch, 2)  # pass 2 repaired it (told by the event of our update)
    made = proxy.since(mark)
    # the repair pass inspects c2, the pass its own update's event asks for inspects it again: never the other 3
    assert 1 <= inspects(made) <= 3, proxy.summary(made)
    assert "object.repaired" in watch.stderr()


def test_after_its_own_update_a_pass_sees_the_new_state_not_a_remembered_one(
    watch_in_sync, proxy, api, project_name, base_image
):
    watch, path = watch_in_sync()
    policy = "  stopTimeout: 1\n  restartPolicy: {name: on-failure}\n"
    edited = path.read_text().replace("  stopTimeout: 1\n", policy, 1)
    path.write_text(edited)  # c0 only: updated in place
    target = f"{project_name}-c0"
    deadline = time.monotonic() + 20
    while api.inspect_container(target)["HostConfig"]["RestartPolicy"]["Name"] != "on-failure":
        assert time.monotonic() < deadline, watch.stderr()[-2000:]
        time.sleep(0.1)
    wait_own_event_pass(watch, 2)  # pass 2 applied the edit
    updates = watch.stderr().count("container.updated")
    passes = watch.passes_done()
    mark = proxy.mark()
    tmp = path.with_name(".stack.yaml.tmp")
    tmp.write_text(edited)
    os.replace(tmp, path)  # saved again, unchanged
    watch.wait_passes(passes + 1)  # a pass that changes nothing: no event of its own asks for another one
    text = watch.stderr()
    assert text.count("container.updated") == updates, text[-3000:]  # in sync: nothing applied again
    assert per_object(proxy.since(mark)) == [], proxy.summary(proxy.since(mark))


def test_a_resync_on_a_quiet_engine_inspects_nothing(
    reconcile, project_name, tmp_manifests, base_image, proxy, tmp_path
):
    """The resync replays the engine's event log since the last one instead of inspecting every container:
    nothing happened to the 3 containers, so nothing about one of them is asked (docs/watch.md)."""
    path = tmp_manifests("stack.yaml", stack(project_name, 3, base_image))
    env = {"RECONCILER_LOCK_DIR": str(tmp_path / "locks")}
    assert reconcile("apply", tmp_manifests.dir, env=env).returncode == 0
    environ = {**os.environ, **env, "DOCKER_HOST": proxy.url}
    w = WatchProcess(project_name, tmp_manifests.dir, environ, tmp_path / "w.log", "--resync", "2")
    try:
        w.wait_passes(1)
        mark = proxy.mark()
        w.wait_passes(3)  # two resyncs
        assert pass_reasons(w)[1:3] == ["resync", "resync"], pass_reasons(w)
        made = proxy.since(mark)
        assert per_object(made) == [], proxy.summary(made)
        assert made.count(("GET", "/events")) == 2, proxy.summary(made)  # one replay each
    finally:
        stop(w)
    assert path.exists()
