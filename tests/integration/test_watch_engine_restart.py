"""`reconcile watch` survives its engine stopping and coming back.

The shared test dockerd must never be stopped (others run tests on it), so this test starts a second, private
dockerd for itself: own socket, data root, exec root, pidfile and containerd namespace, its own bridge, no
iptables, vfs storage (no mounts), an empty daemon config. It is stopped, restarted and removed by the test.
Not `--bridge=none`: a dockerd without a bridge deletes the host's `docker0`, which the shared engine owns.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from tests.helpers import START_TIMEOUT, PrivateEngine, volume_exists, volume_manifest, wait_for

pytestmark = pytest.mark.engine


def test_watch_survives_engine_stop_and_restart(
    private_engine: PrivateEngine,
    project_name: str,
    tmp_manifests,
    watch: Callable,
) -> None:
    """With its engine stopped watch keeps running and says so; once the engine is back it converges again."""
    api = private_engine.client()
    first, second = f"{project_name}-one", f"{project_name}-two"
    tmp_manifests("one.yaml", volume_manifest(first))
    w = watch(tmp_manifests.dir, "--resync", "60", docker_host=private_engine.url)
    wait_for(lambda: volume_exists(api, first), START_TIMEOUT, "the first volume on the private engine")
    w.wait_log("engine.events_connected", timeout=START_TIMEOUT)

    mark = len(w.stderr())
    private_engine.stop()
    w.wait_log("engine.events_lost", timeout=20, after=mark)
    tmp_manifests("two.yaml", volume_manifest(second))  # a change made while the engine is away
    w.wait_log("engine.unavailable", timeout=20, after=mark)
    time.sleep(2)
    assert w.proc.poll() is None, "watch exited while the engine was away"

    private_engine.start()
    api.close()
    api = private_engine.client()
    wait_for(lambda: volume_exists(api, second), 60, "the second volume after the engine came back")
    assert volume_exists(api, first)
    assert "engine.available" in w.stderr()[mark:]

    api.remove_volume(first)  # drift after the restart is still repaired via the (reconnected) event stream
    wait_for(lambda: volume_exists(api, first), 10, "the removed volume to be repaired")
    api.close()
    assert w.stop() == 0
