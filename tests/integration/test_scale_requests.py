"""How engine requests grow with the number of containers N (issue 25), counted by bench/counting_proxy.py at two
sizes (5 and 20): the behaviour behind the N=500/1,000 figures of bench/compose_peer.py, held without timing.

* a no-op `plan`: a constant plus exactly one request per container (its inspect);
* a `watch` pass that no engine event asked for (the manifest saved unchanged): the same requests at both
  sizes, none of them about one object;
* the timer's resync on a quiet engine: the same requests at both sizes, none of them about one object (it
  replays the engine's event log instead of inspecting everything, see docs/watch.md).
"""

from __future__ import annotations

import os
import re
import subprocess
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.counting import counting_proxy, stack
from tests.helpers import WatchProcess

pytestmark = pytest.mark.engine

SIZES = (5, 20)
INSPECT = "GET /containers/{}/json"


@pytest.fixture
def proxy(engine_host: str) -> Iterator[object]:
    with counting_proxy().CountingProxy(engine_host) as counting:
        yield counting


@pytest.fixture
def converged(reconcile, project_name, tmp_manifests, base_image, tmp_path) -> Callable[[int], Path]:
    """converged(n): the project applied with n containers (directly, not through the proxy); its manifest."""

    def at(n: int) -> Path:
        path = tmp_manifests("stack.yaml", stack(project_name, n, base_image))
        done = reconcile("apply", tmp_manifests.dir, env={"RECONCILER_LOCK_DIR": str(tmp_path / "locks")})
        assert done.returncode == 0, done.stdout + done.stderr
        return path

    return at


@pytest.fixture
def watching(project_name, tmp_manifests, proxy, tmp_path) -> Iterator[Callable[..., WatchProcess]]:
    """watching(*args): `reconcile watch` through the proxy, once its startup pass is done and its event stream
    connected; stopped afterwards."""
    started: list[WatchProcess] = []

    def start(*args: str) -> WatchProcess:
        env = {**os.environ, "RECONCILER_LOCK_DIR": str(tmp_path / "locks"), "DOCKER_HOST": proxy.url}
        w = WatchProcess(project_name, tmp_manifests.dir, env, tmp_path / f"w{len(started)}.log", *args)
        started.append(w)
        w.wait_passes(1, timeout=120)
        w.wait_log("engine.events_connected")
        return w

    yield start
    for w in started:
        if w.proc.poll() is None:
            try:
                w.stop()
            except subprocess.TimeoutExpired:
                w.kill()


def pass_reasons(watch: WatchProcess) -> list[str]:
    return re.findall(r"pass\.started\s.*?reasons=(\S+)", watch.stderr())


def test_a_noop_plan_is_a_constant_plus_one_inspect_per_container(reconcile, converged, tmp_manifests, proxy):
    made = {}
    for n in SIZES:
        converged(n)
        mark = proxy.mark()
        plan = reconcile("plan", tmp_manifests.dir, env={"DOCKER_HOST": proxy.url})
        assert plan.returncode == 0, plan.stdout + plan.stderr
        made[n] = proxy.summary(proxy.since(mark))
        assert made[n][INSPECT] == n, made[n]
    small, large = made[SIZES[0]], made[SIZES[1]]
    # everything but the container inspects is the same at both sizes: the constant (listings, version, info,
    # the image), one request per kind, never per object
    assert large - Counter({INSPECT: large[INSPECT]}) == small - Counter({INSPECT: small[INSPECT]}), (small, large)


def test_a_watch_pass_no_event_asked_for_makes_the_same_requests_whatever_n(converged, watching, proxy):
    made = {}
    for n in SIZES:
        path = converged(n)
        watch = watching("--resync", "600")
        mark = proxy.mark()
        tmp = path.with_name(".stack.yaml.tmp")
        tmp.write_text(path.read_text())
        os.replace(tmp, path)  # saved again, unchanged: the directory watcher asks for a pass
        watch.wait_passes(2, timeout=120)
        assert "event:" not in pass_reasons(watch)[1], pass_reasons(watch)
        entries = proxy.since(mark)
        made[n] = proxy.summary(entries)
        assert not [e for e in entries if counting_proxy().is_per_object(e)], made[n]
        watch.stop()
    assert made[SIZES[0]] == made[SIZES[1]], made


def test_the_resync_on_a_quiet_engine_makes_the_same_requests_whatever_n(converged, watching, proxy):
    made = {}
    for n in SIZES:
        converged(n)
        watch = watching("--resync", "3")
        mark = proxy.mark()
        watch.wait_passes(2, timeout=120)
        assert pass_reasons(watch)[1] == "resync", pass_reasons(watch)
        entries = proxy.since(mark)
        made[n] = proxy.summary(entries)
        assert not [e for e in entries if counting_proxy().is_per_object(e)], made[n]
        watch.stop()
    assert made[SIZES[0]] == made[SIZES[1]], made
