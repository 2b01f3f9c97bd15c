"""Latency of `reconcile watch`: from saving a manifest to the change being visible on the engine.

Each repetition edits a label of a Volume (reclaimPolicy: Delete, so a label change is a replace: remove +
create), saves the file atomically (write + rename, as editors and git do) and polls the engine until the
new label is there. The engine's own time for the same operation (remove_volume + create_volume through
docker-py) is measured alongside, so the overhead of watch (debounce, reload, plan, apply) stands out.

Usage:  .venv/bin/python bench/watch_latency.py [-n 20] [--json]
Needs the engine of scripts/testenv.sh (DOCKER_HOST or .testenv/env). Creates only objects of a unique
project `bench-<hex>` and removes them at the end. Not a test: it asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import statistics
import sys
import tempfile
import time
from pathlib import Path

import docker
from docker.errors import NotFound
from engine_address import docker_host
from watchproc import start_watch

POLL = 0.005
TIMEOUT = 30.0


def manifest(name: str, rev: int) -> str:
    return (
        "apiVersion: reconciler/v1\nkind: Volume\n"
        f"metadata:\n  name: {name}\n  labels: {{rev: '{rev}'}}\n"
        "spec: {reclaimPolicy: Delete}\n"
    )


def save(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")  # hidden: the watcher ignores it until the rename
    tmp.write_text(text)
    os.replace(tmp, path)


def label_of(api: docker.APIClient, name: str) -> str | None:
    try:
        return (api.inspect_volume(name).get("Labels") or {}).get("rev")
    except NotFound:
        return None


def wait_label(api: docker.APIClient, name: str, rev: int) -> float:
    deadline = time.monotonic() + TIMEOUT
    while label_of(api, name) != str(rev):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{name} never got rev={rev}")
        time.sleep(POLL)
    return time.monotonic()


def summary(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    p90 = ordered[min(len(ordered) - 1, round(0.9 * (len(ordered) - 1)))]
    return {"median": statistics.median(ordered), "p90": p90, "min": ordered[0], "max": ordered[-1]}


def report(
    args: argparse.Namespace,
    operation: str,
    measured: tuple[str, str, list[float]],
    engine_only: list[float],
    target_ms: int,
    log: Path,
) -> None:
    """Print the figures of a latency benchmark (`measured`: JSON key, label, seconds) beside the engine alone,
    as text or (`--json`) JSON."""
    key, label, values = measured
    result: dict[str, object] = {
        "repetitions": args.n,
        "operation": operation,
        key: summary(values),
        "engine_only": summary(engine_only),
    }
    overhead = summary(values)["median"] - summary(engine_only)["median"]
    result["median_overhead"] = overhead
    if args.out:
        args.out.write_text(json.dumps(result, indent=2))
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"{args.n} repetitions of: {operation}")
    print(f"{'':24}{'median':>10}{'p90':>10}{'min':>10}{'max':>10}")
    for name, numbers in ((label, values), ("engine alone", engine_only)):
        s = summary(numbers)
        print(f"{name:24}" + "".join(f"{s[k] * 1000:>8.0f}ms" for k in ("median", "p90", "min", "max")))
    print(f"median overhead of watch: {overhead * 1000:.0f} ms (target: < {target_ms} ms)")
    print(f"watch log: {log}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=20, help="repetitions (default 20)")
    parser.add_argument("--json", action="store_true", help="print the numbers as JSON")
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    args = parser.parse_args()

    host = docker_host()
    api = docker.APIClient(base_url=host, version="auto", timeout=60)
    project = f"bench-{secrets.token_hex(4)}"
    name, direct = f"{project}-v", f"{project}-direct"
    workdir = Path(tempfile.mkdtemp(prefix="watch-bench-"))
    manifests = workdir / "m"
    manifests.mkdir()
    path = manifests / "volume.yaml"
    save(path, manifest(name, 0))
    env = {**os.environ, "DOCKER_HOST": host, "RECONCILER_LOCK_DIR": str(workdir / "locks")}
    watch = start_watch(project, manifests, env, workdir / "watch.log", "--resync", "600")
    through_watch: list[float] = []
    engine_only: list[float] = []
    try:
        wait_label(api, name, 0)
        time.sleep(0.5)  # let the startup pass and its own events settle
        for rev in range(1, args.n + 1):
            started = time.monotonic()
            save(path, manifest(name, rev))
            through_watch.append(wait_label(api, name, rev) - started)
            time.sleep(0.4)  # the replace's own destroy event causes one more (empty) pass; do not overlap it

        labels = {"io.reconciler.project": project}
        api.create_volume(name=direct, labels={**labels, "rev": "0"})
        for rev in range(1, args.n + 1):
            started = time.monotonic()
            api.remove_volume(direct)
            api.create_volume(name=direct, labels={**labels, "rev": str(rev)})
            engine_only.append(time.monotonic() - started)
    finally:
        watch.stop()
        for vol in api.volumes(filters={"label": [f"io.reconciler.project={project}"]}).get("Volumes") or []:
            api.remove_volume(vol["Name"], force=True)
        api.close()

    operation = "Volume label change (replace: remove + create)"
    measured = ("save_to_applied", "file save -> applied", through_watch)
    report(args, operation, measured, engine_only, 1000, workdir / "watch.log")
    return 0


if __name__ == "__main__":
    sys.exit(main())
