"""Latency of `reconcile watch` repairing a removed container: from `docker rm -f` to a new one running.

`watch` runs on N Containers (busybox `sleep`, no network) with the resync far away, so every repair comes from
the engine's event stream. Each repetition removes another of them with force (watch holds an object back after
5 repairs in 300 s, a repair storm) and polls the engine until a container of that name runs again with a new
ID. For comparison the same remove + create + start is timed directly with docker-py. This is the figure
tests/integration/test_watch.py used to assert (under 2 s); the test now checks only that the repair happens, from
an event.

Known: when the `destroy` event of a removal comes after the pass its `kill`/`die` events started, watch tries to
start the container being removed, fails ("marked for removal") and holds the object as failing permanently; the
run then times out on that container (seen on a loaded machine).

Usage:  .venv/bin/python bench/repair_latency.py [-n 10] [--json]
Needs the engine of scripts/testenv.sh (DOCKER_HOST or .testenv/env) and its base image
(RECONCILER_TEST_BASE_IMAGE, default 127.0.0.1:5000/reconciler/busybox:1.35). Creates only objects of a unique
project `bench-<hex>` and removes them at the end. Not a test: it asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
import tempfile
import time
from pathlib import Path

import docker
from docker.errors import NotFound
from engine_address import docker_host
from watch_latency import report
from watchproc import start_watch

POLL = 0.005
TIMEOUT = 60.0
IMAGE = os.environ.get("RECONCILER_TEST_BASE_IMAGE", "127.0.0.1:5000/reconciler/busybox:1.35")


def manifest(names: list[str]) -> str:
    return "---\n".join(
        "apiVersion: reconciler/v1\nkind: Container\n"
        f"metadata: {{name: {name}}}\n"
        f'spec:\n  image: {IMAGE}\n  command: ["sleep", "3600"]\n  networkMode: none\n  stopTimeout: 1\n'
        for name in names
    )


def running_id(api: docker.APIClient, name: str) -> str | None:
    try:
        info = api.inspect_container(name)
    except NotFound:
        return None
    return info["Id"] if info["State"]["Running"] else None


def wait_new(api: docker.APIClient, name: str, old: str | None) -> tuple[str, float]:
    deadline = time.monotonic() + TIMEOUT
    while True:
        cid = running_id(api, name)
        if cid is not None and cid != old:
            return cid, time.monotonic()
        if time.monotonic() > deadline:
            raise TimeoutError(f"{name} was not running again within {TIMEOUT:g}s")
        time.sleep(POLL)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=10, help="repetitions (default 10)")
    parser.add_argument("--json", action="store_true", help="print the numbers as JSON")
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    args = parser.parse_args()

    host = docker_host()
    api = docker.APIClient(base_url=host, version="auto", timeout=60)
    project = f"bench-{secrets.token_hex(4)}"
    names, direct = [f"{project}-web{i}" for i in range(args.n)], f"{project}-direct"
    labels = {"io.reconciler.project": project}
    workdir = Path(tempfile.mkdtemp(prefix="repair-bench-"))
    manifests = workdir / "m"
    manifests.mkdir()
    (manifests / "web.yaml").write_text(manifest(names))
    log_path = workdir / "watch.log"
    env = {**os.environ, "DOCKER_HOST": host, "RECONCILER_LOCK_DIR": str(workdir / "locks")}
    watch = start_watch(project, manifests, env, log_path, "--resync", "600")
    through_watch: list[float] = []
    engine_only: list[float] = []
    try:
        ids = [wait_new(api, name, None)[0] for name in names]
        watch.wait_passes(1)  # converged: the creates' settle window is over
        time.sleep(1.0)  # and the passes the new containers' own events ask for
        for rep, (name, cid) in enumerate(zip(names, ids, strict=True), 1):
            started = time.monotonic()
            api.remove_container(name, force=True)
            _, done = wait_new(api, name, cid)
            through_watch.append(done - started)
            watch.wait_log("object.repaired", rep)
            time.sleep(1.0)  # the passes the new container's own events ask for are over before the next removal

        create = {"command": ["sleep", "3600"], "labels": labels, "network_disabled": True}
        api.start(api.create_container(IMAGE, name=direct, **create)["Id"])
        for _ in range(args.n):
            started = time.monotonic()
            api.remove_container(direct, force=True)
            api.start(api.create_container(IMAGE, name=direct, **create)["Id"])
            engine_only.append(time.monotonic() - started)
    finally:
        watch.stop()
        for c in api.containers(all=True, filters={"label": f"io.reconciler.project={project}"}):
            api.remove_container(c["Id"], force=True)
        api.close()

    operation = "docker rm -f of a managed container until a new one runs"
    report(args, operation, ("removed_to_running", "removed -> running", through_watch), engine_only, 2000, log_path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
