"""The engine alone: how fast can anything converge and tear down compose_peer.py's stack on this engine?

Creates one network and N busybox `sleep` containers (1 s stop timeout, as in compose_peer.py) with docker-py's
low-level client, doing nothing but the engine calls (create + start; stop + remove) from K threads at once, and
times the two phases. No settle window, no checks, no Python start-up: a floor under any tool's converge and
teardown on this engine. Run for K = 8 (reconcile's default `--parallel`) and K = N (every container at once,
as Compose does with its parallel limit above N).

Usage:  .venv/bin/python bench/engine_floor.py [--sizes 50] [--reps 3] [--concurrency 8,N] [--json] [--out FILE]
Needs the engine of scripts/testenv.sh (DOCKER_HOST or .testenv/env). Everything belongs to a unique project
label `floor-<hex>` and is removed at the end. A measurement, not a test: nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import secrets
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import docker
from engine_address import docker_host

IMAGE = "127.0.0.1:5000/reconciler/busybox:1.35"
LABEL = "io.reconciler.bench"


def converge(api: Any, project: str, n: int, k: int) -> float:
    started = time.monotonic()
    api.create_network(f"{project}-net", labels={LABEL: project})

    def one(i: int) -> None:
        name = f"{project}-c{i}"
        cid = api.create_container(
            IMAGE,
            ["sleep", "3600"],
            name=name,
            stop_timeout=1,
            labels={LABEL: project},
            environment={"REV": "0"},
            host_config=api.create_host_config(),
            networking_config=api.create_networking_config({f"{project}-net": api.create_endpoint_config()}),
        )["Id"]
        api.start(cid)

    with ThreadPoolExecutor(max_workers=k) as pool:
        list(pool.map(one, range(n)))
    return time.monotonic() - started


def teardown(api: Any, project: str, k: int) -> float:
    started = time.monotonic()
    found = api.containers(all=True, filters={"label": f"{LABEL}={project}"})

    def one(summary: dict[str, Any]) -> None:
        api.stop(summary["Id"], timeout=1)
        try:
            api.remove_container(summary["Id"], v=True)
        except docker.errors.APIError as exc:
            # at N=1,000 on 2 cores (load average ~190) a stop can return before the killed process is reaped:
            # wait for it, as a client that stops then removes must
            if "running container" not in str(exc):
                raise
            api.wait(summary["Id"], timeout=120)
            api.remove_container(summary["Id"], v=True)

    with ThreadPoolExecutor(max_workers=k) as pool:
        list(pool.map(one, found))
    remove_networks(api, project)
    return time.monotonic() - started


def remove_networks(api: Any, project: str) -> None:
    """Remove the project's network. Docker 20.10 sometimes keeps a stale endpoint count after hundreds of
    containers left a network at once and refuses ("has active endpoints") until the daemon restarts: that is
    reported and the network left, as compose_peer.py does for the tools' own networks."""
    for net in api.networks(filters={"label": f"{LABEL}={project}"}):
        try:
            api.remove_network(net["Id"])
        except docker.errors.APIError as exc:
            if "active endpoints" not in str(exc):
                raise
            print(
                f"  ! could not remove network {net['Name']}: the engine says it has active endpoints", file=sys.stderr
            )


def cleanup(api: Any, project: str) -> None:
    for summary in api.containers(all=True, filters={"label": f"{LABEL}={project}"}):
        api.remove_container(summary["Id"], force=True, v=True)
    remove_networks(api, project)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="50")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--concurrency", default="8,N", help="thread counts; N means the size")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    args = parser.parse_args()
    api = docker.APIClient(base_url=docker_host(), version="auto", timeout=300, max_pool_size=256)
    rows = []
    for n in [int(s) for s in args.sizes.split(",")]:
        for k_text in args.concurrency.split(","):
            k = n if k_text == "N" else int(k_text)
            up, down = [], []
            for _ in range(args.reps):
                project = f"floor-{secrets.token_hex(4)}"
                try:
                    up.append(converge(api, project, n, k))
                    down.append(teardown(api, project, k))
                finally:
                    cleanup(api, project)
            rows.append({"n": n, "threads": k, "converge": up, "teardown": down})
    if args.out:
        args.out.write_text(json.dumps(rows, indent=2))
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(f"{'N':>4} {'threads':>7} {'converge (median)':>18} {'teardown (median)':>18}   all runs")
    for row in rows:
        ups = ", ".join(f"{t:.2f}" for t in row["converge"])
        downs = ", ".join(f"{t:.2f}" for t in row["teardown"])
        print(
            f"{row['n']:>4} {row['threads']:>7} {statistics.median(row['converge']):>17.2f}s "
            f"{statistics.median(row['teardown']):>17.2f}s   up {ups}; down {downs}"
        )


if __name__ == "__main__":
    main()
