"""Plain helpers shared by test modules; fixtures live in tests/conftest.py (engine, projects, CLI) and
tests/integration/conftest.py (shared by the integration modules). Test modules import helpers from here and
never from one another.

- the test engine: `configured_docker_host`, `remove_project_objects` (the `project_name` teardown)
- manifests as documents: `doc`, `write`, `sleeper` / `SLEEPER`, `image_manifest`, `volume_manifest`, `Stack`
- the CLI and its plan: `plan_json` (exit 0 or 2), `plan_json_any` (exit 0, 1 or 2), `changes_of`, `apply_ok`,
  `in_sync`, `cli` (a private pulled-images state directory)
- waiting: `wait_for`, `fetch`, `free_port`; `WatchProcess` for `reconcile watch` in the background
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml

if TYPE_CHECKING:
    import docker

REPO = Path(__file__).resolve().parent.parent
TESTENV_FILE = REPO / ".testenv" / "env"
BASE_IMAGE = "127.0.0.1:5000/reconciler/busybox:1.35"
LABEL_PROJECT = "io.reconciler.project"
# a shell that exits at once on SIGTERM, so stops do not wait for the stop timeout
SLEEPER = 'trap "exit 0" TERM; while :; do sleep 1; done'
START_TIMEOUT = 20.0  # for watch to make its first pass
CHANGE_TIMEOUT = 15.0  # for watch to act on a change


# --- the test engine ---------------------------------------------------------------------------------------------


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


def unique_suffix() -> str:
    """Eight random hex digits: enough to keep concurrent test runs on one engine apart."""
    return secrets.token_hex(4)


def remove_project_objects(client: docker.APIClient, project: str) -> None:
    """Remove containers, networks (local and swarm scope), volumes and images labelled with `project`.

    Order matters: containers hold networks and volumes, and images are in use while containers exist.
    Objects already gone (404) are fine; anything left after bounded retries fails the teardown loudly.
    """
    import docker.errors
    import requests

    label = {"label": [f"{LABEL_PROJECT}={project}"]}
    leftovers: list[str] = []

    def attempt(what: str, remove: Callable[[], object], tries: int = 10) -> None:
        # Removal right after a container stops can meet a 409 (endpoint still attached, volume in use): retry.
        last: Exception | None = None
        for _ in range(tries):
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
        containers = client.containers(all=True, filters=label)
        with ThreadPoolExecutor(max_workers=8) as pool:  # a stack of 20 removed one by one took seconds
            list(
                pool.map(
                    lambda c: attempt(
                        f"container {c['Id'][:12]}", lambda: client.remove_container(c["Id"], v=True, force=True)
                    ),
                    containers,
                )
            )
        networks = {n["Id"]: n for n in client.networks(filters=label)}
        # Swarm-scoped (overlay) networks are listed by the manager; ask for them explicitly as well.
        networks.update({n["Id"]: n for n in client.networks(filters={**label, "scope": ["swarm"]})})
        for net_id, net in networks.items():
            # the engine's count of a network's endpoints can lag its containers' removal by more than 5 s on a
            # busy machine ("has active endpoints", seen once in CI): a network gets 20 s
            attempt(f"network {net['Name']}", lambda net_id=net_id: client.remove_network(net_id), tries=40)
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


# --- manifests -----------------------------------------------------------------------------------------------


def doc(kind: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": "reconciler/v1", "kind": kind, "metadata": {"name": name}, "spec": spec}


def write(tmp_manifests: Any, docs: list[dict[str, Any]]) -> Path:
    """`docs` as one manifest file `m.yaml` of the `tmp_manifests` directory; returns the directory."""
    return tmp_manifests("m.yaml", yaml.safe_dump_all(docs, sort_keys=False)).parent


def sleeper(image: str, **extra: Any) -> dict[str, Any]:
    """A container spec that runs until stopped and stops at once."""
    return {"image": image, "command": ["sh", "-c", SLEEPER], "stopTimeout": 1, **extra}


def image_manifest(name: str, reference: str, policy: str | None = None, extra: str = "") -> str:
    policy_line = f"pullPolicy: {policy}" if policy else ""
    return f"""
    apiVersion: reconciler/v1
    kind: Image
    metadata: {{name: {name}}}
    spec:
      reference: {reference}
      {policy_line}
      {extra}
    """


def volume_manifest(name: str, extra: str = "") -> str:
    """A Volume with reclaimPolicy Delete (so pruning it removes it); `extra` goes inside its spec mapping."""
    return f"""
    apiVersion: reconciler/v1
    kind: Volume
    metadata: {{name: {name}}}
    spec: {{reclaimPolicy: Delete{extra}}}
    """


class Stack:
    """The three-tier stack under unique names: `<p>-db` (volume, healthcheck), `<p>-api` (dependsOn db healthy),
    `<p>-web` (httpd on 127.0.0.1:<port>), on network `<p>-net`. Edit `specs` and call `write()`."""

    def __init__(self, project: str, write: Callable[[str, str], Path], image: str) -> None:
        self.p = project
        self._write = write
        self.port = free_port()
        self.www = write("www/index.html", f"hello from {project}\n").parent
        self.image = image
        self.specs: dict[str, dict[str, Any]] = {
            "db": {
                "image": image,
                "command": ["sh", "-c", f"date > /data/started; {SLEEPER}"],
                "mounts": [{"type": "volume", "source": self.name("data"), "target": "/data"}],
                "networks": [{"name": self.name("net"), "aliases": ["database"]}],
                "healthcheck": {"test": ["CMD-SHELL", "test -s /data/started"], "interval": "1s", "retries": 3},
                "stopTimeout": 1,
            },
            "api": {
                "image": image,
                "command": ["sh", "-c", SLEEPER],
                "env": {"DB_HOST": "database"},
                "networks": [{"name": self.name("net"), "aliases": ["api"]}],
                "dependsOn": [{"name": self.name("db"), "condition": "healthy", "timeout": "30s"}],
                "resources": {"memory": "32m"},
                "stopTimeout": 1,
            },
            "web": {
                "image": image,
                "command": "httpd -f -p 80 -h /www",
                "ports": [{"containerPort": 80, "hostPort": self.port, "hostIP": "127.0.0.1"}],
                "mounts": [{"type": "bind", "source": "./www", "target": "/www", "readOnly": True}],
                "networks": [{"name": self.name("net")}],
                "dependsOn": [{"name": self.name("api")}],
                "restartPolicy": {"name": "unless-stopped"},
                "stopTimeout": 1,
            },
        }
        self.extra: list[dict[str, Any]] = [doc("Network", self.name("net"), {}), doc("Volume", self.name("data"), {})]

    def name(self, short: str) -> str:
        return f"{self.p}-{short}"

    def write(self) -> Path:
        docs = [*self.extra, *(doc("Container", self.name(k), v) for k, v in self.specs.items())]
        path = self._write("stack.yaml", yaml.safe_dump_all(docs, sort_keys=False))
        return path.parent


# --- the CLI and its plan ----------------------------------------------------------------------------------------


def plan_json(reconcile: Callable[..., Any], directory: Path) -> tuple[int, dict[str, Any]]:
    """`plan --output json` that must succeed: exit 0 (in sync) or 2 (changes pending), and the plan."""
    proc = reconcile("plan", directory, "--output", "json")
    assert proc.returncode in (0, 2), proc.stderr
    return proc.returncode, json.loads(proc.stdout)


def plan_json_any(run: Callable[..., subprocess.CompletedProcess[str]], directory: Path) -> tuple[int, dict]:
    """`plan --output json` that may also fail (exit 1): the exit status and the plan ({} when none printed)."""
    proc = run("plan", str(directory), "--output", "json")
    assert proc.returncode in (0, 1, 2), proc.stderr
    return proc.returncode, json.loads(proc.stdout) if proc.stdout.strip() else {}


def changes_of(plan: dict[str, Any]) -> dict[str, tuple[str, list[str]]]:
    """name -> (action, changed field paths) of every change of a JSON plan."""
    return {c["name"]: (c["action"], [f["path"] for f in c["fields"]]) for c in plan["changes"]}


def apply_ok(reconcile: Callable[..., Any], directory: Path) -> None:
    proc = reconcile("apply", directory)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def in_sync(reconcile: Callable[..., Any], directory: Path) -> None:
    rc, plan = plan_json(reconcile, directory)
    assert rc == 0, json.dumps(plan["changes"], indent=1)


def cli(reconcile: Callable[..., subprocess.CompletedProcess[str]], tmp_path: Path) -> Callable[..., Any]:
    """The reconcile fixture with this test's own pulled-images state directory."""
    env = {"RECONCILER_STATE_DIR": str(tmp_path / "state")}
    return lambda *args: reconcile(*args, env=env)


# --- waiting ------------------------------------------------------------------------------------------------------


def wait_for(predicate: Callable[[], object], timeout: float, what: str, interval: float = 0.05) -> object:
    """Poll `predicate` until it returns something truthy; fail naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def fetch(port: int, timeout: float = 10.0) -> str:
    """GET http://127.0.0.1:port/ until it answers (bounded)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as resp:
                return resp.read().decode()
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def volume_exists(api: Any, name: str) -> bool:
    import docker.errors

    try:
        api.inspect_volume(name)
    except docker.errors.NotFound:
        return False
    return True


class WatchProcess:
    """`reconcile watch` as a subprocess; its stderr goes to a file the test can read at any time."""

    def __init__(self, project: str, directory: Path, env: dict[str, str], log: Path, *args: str) -> None:
        self.log = log
        self._err = log.open("w")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "reconciler.cli", "--project", project, "watch", str(directory), *args],
            cwd=REPO,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=self._err,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stderr(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_log(self, text: str, timeout: float = CHANGE_TIMEOUT, after: int = 0) -> None:
        wait_for(lambda: text in self.stderr()[after:], timeout, f"{text!r} in the watch log")

    def passes_done(self) -> int:
        return self.stderr().count("pass.done")

    def wait_passes(self, count: int, timeout: float = 30.0) -> None:
        """Until `count` passes are done; fails (with the log's end) on timeout or when watch exits first."""
        deadline = time.monotonic() + timeout
        while self.passes_done() < count:
            if self.proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"watch did not finish pass {count}: {self.stderr()[-2000:]}")
            time.sleep(0.05)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int:
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=timeout)
        finally:
            self._err.close()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self._err.close()


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

    def bridges(self) -> list[str]:
        """The host links of this engine's bridge networks: they share the host's namespace and outlive dockerd."""
        if self.proc is None or self.proc.poll() is not None or not self.answers():
            return []
        api = self.client()
        try:
            networks = api.networks()
        except Exception:  # best effort: a hung engine must not fail the test's teardown
            return []
        finally:
            api.close()
        return [f"br-{n['Id'][:12]}" for n in networks if n.get("Driver") == "bridge" and n["Name"] != "bridge"]

    def leftovers(self) -> list[int]:
        """Processes of this engine still alive after it stopped: a containerd shim whose task dockerd did not
        clean up (its containerd namespace carries this engine's tag, so nothing else is ever matched)."""
        mark = f"rwe-{self.tag}".encode()
        found = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            try:
                if mark in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
        return found

    def remove(self) -> None:
        links = self.bridges()
        self.stop()
        for pid in self.leftovers():
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        for link in links:  # left behind, they use up the default address pools of every later engine here
            subprocess.run(["ip", "link", "del", link], check=False, timeout=10, capture_output=True)
        # vfs storage makes no mounts, but be sure nothing under the root stays mounted before deleting it
        with open("/proc/mounts") as mounts:
            points = [line.split()[1] for line in mounts if line.split()[1].startswith(str(self.root))]
        for point in sorted(points, reverse=True):
            subprocess.run(["umount", "-l", point], check=False, timeout=10)
        shutil.rmtree(self.root, ignore_errors=True)
        subprocess.run(["ip", "link", "del", self.bridge], check=False, timeout=10, capture_output=True)
