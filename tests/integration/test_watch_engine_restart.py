"""`reconcile watch` survives its engine stopping and coming back.

The shared test dockerd must never be stopped (others run tests on it), so this test starts a second, private
dockerd for itself: own socket, data root, exec root, pidfile and containerd namespace, its own bridge, no
iptables, vfs storage (no mounts), an empty daemon config. It is stopped, restarted and removed by the test.
Not `--bridge=none`: a dockerd without a bridge deletes the host's `docker0`, which the shared engine owns.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.helpers import START_TIMEOUT, volume_exists, volume_manifest, wait_for

pytestmark = pytest.mark.engine

ENGINE_START_TIMEOUT = 60.0


class PrivateEngine:
    """A throw-away dockerd under /tmp/rwe-<hex> (short: containerd socket paths are limited to 108 bytes)."""

    def __init__(self) -> None:
        self.tag = secrets.token_hex(4)
        self.root = Path(f"/tmp/rwe-{self.tag}")
        self.root.mkdir(mode=0o700)
        (self.root / "daemon.json").write_text("{}\n")
        self.url = f"unix://{self.root}/docker.sock"
        self.proc: subprocess.Popen[bytes] | None = None
        self.bridge = f"rwe{self.tag}"
        subprocess.run(["ip", "link", "add", self.bridge, "type", "bridge"], check=True, timeout=10)
        subprocess.run(
            ["ip", "addr", "add", f"10.254.{secrets.randbelow(250)}.1/24", "dev", self.bridge], check=True, timeout=10
        )

    def command(self) -> list[str]:
        return [
            shutil.which("dockerd") or "dockerd",
            f"--host={self.url}",
            f"--data-root={self.root}/data",
            f"--exec-root={self.root}/exec",
            f"--pidfile={self.root}/docker.pid",
            f"--config-file={self.root}/daemon.json",
            f"--containerd-namespace=rwe-{self.tag}",
            f"--containerd-plugins-namespace=rwe-{self.tag}-plugins",
            f"--bridge={self.bridge}",
            "--iptables=false",
            "--ip-masq=false",
            "--storage-driver=vfs",
        ]

    def client(self):  # docker imported lazily: collecting the unit tests needs no SDK
        import docker

        return docker.APIClient(base_url=self.url, version="auto", timeout=10)

    def answers(self) -> bool:
        """GET /_ping over the socket by hand: docker-py leaks a socket when its version probe is refused."""
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
                sock.settimeout(2)
                sock.connect(self.url.removeprefix("unix://"))
                sock.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
                return b" 200 " in sock.recv(64).split(b"\r\n", 1)[0] + b" "
        except OSError:
            return False

    def start(self) -> None:
        log = (self.root / "dockerd.log").open("ab")
        self.proc = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        log.close()
        wait_for(self.answers, ENGINE_START_TIMEOUT, "the private dockerd to answer", interval=0.2)

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def remove(self) -> None:
        self.stop()
        # vfs storage makes no mounts, but be sure nothing under the root stays mounted before deleting it
        with open("/proc/mounts") as mounts:
            points = [line.split()[1] for line in mounts if line.split()[1].startswith(str(self.root))]
        for point in sorted(points, reverse=True):
            subprocess.run(["umount", "-l", point], check=False, timeout=10)
        shutil.rmtree(self.root, ignore_errors=True)
        subprocess.run(["ip", "link", "del", self.bridge], check=False, timeout=10, capture_output=True)


@pytest.fixture
def private_engine() -> Iterator[PrivateEngine]:
    """A private dockerd, running; stopped and deleted with all its data afterwards."""
    if os.geteuid() != 0 or shutil.which("dockerd") is None:
        pytest.fail("this test needs root and dockerd (run scripts/testenv.sh first)")
    engine = PrivateEngine()
    try:
        engine.start()
        yield engine
    finally:
        engine.remove()


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
