"""`reconcile watch` over N declared containers (issue 25, item 4): what it costs idle, how fast it applies an
edit, how fast it repairs a `docker rm -f`, and which engine requests it makes meanwhile.

The stack is N busybox `sleep` containers without a network (`networkMode: none`, 1 s stop timeout), in one
manifest file, converged by `reconcile apply` first. Then `reconcile watch` runs on it through
bench/counting_proxy.py with the default resync (300 s, +-10 %; `--resync`):

1. **idle**: CPU time of the watch process (/proc) over `--idle` seconds with no event and no file change,
   the passes it ran in that window and every engine request it made (object-addressed ones named apart);
   then, once the timer's resync has run, that pass's own CPU time, duration and requests, so the idle
   figure can be given with and without one resync per window.
2. **edit**: `--reps` times, one container's `restartPolicy` flipped between `no` and `always` in the manifest
   file (saved atomically, as editors and git do: an in-place `docker update`), timed from the save until the
   engine's inspect shows the new policy.
3. **repair**: `--reps` times, another container removed with `docker rm -f` (watch holds an object back after
   5 repairs in 300 s, so each repetition takes a new one), timed until a container of that name runs again.

Usage:  .venv/bin/python bench/watch_scale.py [-n 1000] [--idle 300] [--reps 20] [--json] [--out FILE]
Needs the engine of scripts/testenv.sh. Creates only objects of a unique project `ws<hex>` and removes them at
the end. Not a test: it asserts nothing.
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
from collections import Counter
from pathlib import Path
from typing import Any

import docker
from compose_peer import IMAGE, Proxy, machine, run
from counting_proxy import normalize
from docker.errors import NotFound
from engine_address import REPO, compile_reconciler, docker_host
from repair_latency import running_id
from watch_latency import save
from watchproc import start_watch

POLL = 0.01
TIMEOUT = 60.0


def manifest(project: str, n: int, policies: dict[int, str]) -> str:
    return "---\n".join(
        "apiVersion: reconciler/v1\nkind: Container\n"
        f"metadata: {{name: {project}-c{i}}}\n"
        f"spec:\n  image: {IMAGE}\n  command: [sleep, '3600']\n  networkMode: none\n  stopTimeout: 1\n"
        f"  restartPolicy: {{name: '{policies.get(i, 'no')}'}}\n"
        for i in range(n)
    )


def policy_of(api: docker.APIClient, name: str) -> str | None:
    try:
        return str(api.inspect_container(name)["HostConfig"]["RestartPolicy"]["Name"] or "no")
    except NotFound:
        return None


def until(predicate: Any, what: str) -> float:
    deadline = time.monotonic() + TIMEOUT
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(POLL)
    return time.monotonic()


def summary(lines: list[str]) -> dict[str, Any]:
    """Requests as the proxy logged them ("METHOD /path"): total, per endpoint, and those naming one object."""
    shapes = Counter(f"{m} {normalize(p)}" for m, _, p in (line.partition(" ") for line in lines))
    per_object = sum(count for shape, count in shapes.items() if "{}" in shape)
    return {"total": len(lines), "per_object": per_object, "by_endpoint": dict(shapes.most_common())}


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def latency(values: list[float]) -> dict[str, Any]:
    return {
        "runs": len(values),
        "median_s": round(statistics.median(values), 3),
        "p95_s": round(pct(values, 0.95), 3),
        "max_s": round(max(values), 3),
        "all_s": [round(v, 3) for v in values],
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=1000, help="declared containers (default 1000)")
    parser.add_argument("--idle", type=float, default=300.0, help="seconds of the idle window (default 300)")
    parser.add_argument("--resync", type=float, default=300.0, help="watch's --resync (default 300, its own)")
    parser.add_argument("--reps", type=int, default=20, help="edits and repairs each (default 20)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a summary")
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    args = parser.parse_args()
    if args.reps * 2 > args.n:
        sys.exit("--reps may be at most half of -n (each edit and each repair takes its own container)")

    compile_reconciler()
    host = docker_host()
    api = docker.APIClient(base_url=host, version="auto", timeout=120)
    project = f"ws{secrets.token_hex(4)}"
    root = Path(tempfile.mkdtemp(prefix="watch-scale-"))
    manifests = root / "m"
    manifests.mkdir()
    stack = manifests / "stack.yaml"
    policies: dict[int, str] = {}
    stack.write_text(manifest(project, args.n, policies))
    proxy = Proxy(host, root)
    env = {**os.environ, "DOCKER_HOST": proxy.url, "RECONCILER_LOCK_DIR": str(root / "locks")}
    result: dict[str, Any] = {"machine": machine(), "n": args.n, "load_before": os.getloadavg()}
    watch = None
    try:
        converge = run(
            [sys.executable, "-m", "reconciler.cli", "--project", project, "apply", str(manifests)], REPO, env
        )
        result["converge_s"] = round(converge.seconds, 2)
        if converge.code != 0:
            sys.exit(f"the first apply failed ({converge.code})")
        print(f"converged {args.n} containers in {converge.seconds:.1f} s", file=sys.stderr)

        watch = start_watch(project, manifests, env, root / "watch.log", "--resync", str(args.resync))
        started = time.monotonic()
        watch.wait_passes(1, timeout=600)
        watch.wait_log("engine.events_connected", timeout=60)
        result["first_pass_s"] = watch.pass_seconds()[0]
        time.sleep(2.0)  # a pass its own connect asked for (if any) is over
        passes, mark, cpu, since = len(watch.reasons()), len(proxy.lines()), watch.cpu_seconds(), time.monotonic()
        time.sleep(args.idle)
        idle_cpu, idle_seconds = watch.cpu_seconds() - cpu, time.monotonic() - since
        reasons = watch.reasons()[passes:]
        finished = watch.pass_seconds()
        in_window = [
            finished[passes + k] for k, r in enumerate(reasons) if "resync" in r and passes + k < len(finished)
        ]
        result["idle"] = {
            "seconds": round(idle_seconds, 1),
            "cpu_s": round(idle_cpu, 3),
            "cpu_pct_of_a_core": round(100 * idle_cpu / idle_seconds, 3),
            "passes": reasons,
            "resync_pass_s": in_window,
            "requests": summary(proxy.lines()[mark:]),
        }
        print(
            f"idle {idle_seconds:.0f} s: {100 * idle_cpu / idle_seconds:.3f} % of a core, passes {reasons}",
            file=sys.stderr,
        )

        if "resync" not in reasons:  # the timer's resync, measured on its own
            done = len(watch.pass_seconds())
            mark, cpu = len(proxy.lines()), watch.cpu_seconds()
            deadline = started + args.resync * 1.2 + 60
            while "resync" not in watch.reasons()[passes:] and time.monotonic() < deadline:
                time.sleep(0.2)
            watch.wait_passes(done + 1, timeout=120)
            time.sleep(0.5)
            result["resync"] = {
                "seconds": watch.pass_seconds()[done],
                "cpu_s": round(watch.cpu_seconds() - cpu, 3),
                "requests": summary(proxy.lines()[mark:]),
            }
            every = (result["idle"]["cpu_s"] + result["resync"]["cpu_s"]) / idle_seconds
            result["idle"]["cpu_pct_with_one_resync"] = round(100 * every, 3)
            print(f"resync {result['resync']}", file=sys.stderr)

        edits: list[float] = []
        for rep in range(args.reps):
            i = rep + 1
            policies[i] = "always"
            name = f"{project}-c{i}"
            saved = time.monotonic()
            save(stack, manifest(project, args.n, policies))
            edits.append(until(lambda n=name: policy_of(api, n) == "always", f"{name} never got its policy") - saved)
            time.sleep(1.0)  # the pass the update's own event asks for is over
        result["edit"] = latency(edits)
        print(f"edit applied: {result['edit']}", file=sys.stderr)

        repairs: list[float] = []
        for rep in range(args.reps):
            name = f"{project}-c{args.n - 1 - rep}"
            old = running_id(api, name)
            removed = time.monotonic()
            api.remove_container(name, force=True)
            repairs.append(
                until(lambda n=name, o=old: running_id(api, n) not in (None, o), f"{name} never ran again") - removed
            )
            time.sleep(1.0)
        result["repair"] = latency(repairs)
        print(f"repaired: {result['repair']}", file=sys.stderr)
        result["watch_peak_rss_mib"] = round(watch.peak_rss_mib(), 1)
    finally:
        if watch is not None:
            watch.stop()
        proxy.close()
        for c in api.containers(all=True, filters={"label": f"io.reconciler.project={project}"}):
            api.remove_container(c["Id"], force=True)
        api.close()
    result["load_after"] = os.getloadavg()
    text = json.dumps(result, indent=2)
    if args.out:
        args.out.write_text(text + "\n")
    print(text if args.json else f"written: {args.out or '(use --out)'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
