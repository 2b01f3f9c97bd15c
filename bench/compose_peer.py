"""reconcile vs Docker Compose (v1, Debian's docker-compose) on the same N-container stack, side by side.

Phases, each timed as wall clock of the whole command, with the peak RSS of the process:
  converge   from empty: one network + N containers created and started
  no-op      nothing changed: `reconcile apply` vs `docker-compose up -d`
  plan       nothing changed: `reconcile plan` (compose has no plan; `docker-compose ps` is shown instead)
  one-change one container's env edited: reconcile replaces it; compose recreates it
  teardown   manifests gone: `reconcile apply --allow-empty` (prune) vs `docker-compose down`

Usage:  .venv/bin/python bench/compose_peer.py [-n 20] [--json]
Needs the engine of scripts/testenv.sh (DOCKER_HOST or .testenv/env) and docker-compose (installed with apt when
missing). Containers: busybox `sleep` with a 1 s stop timeout. Every object belongs to a unique project name and
is removed at the end. A measurement, not a test: nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from engine_address import REPO, docker_host

IMAGE = "127.0.0.1:5000/reconciler/busybox:1.35"


def ensure_compose() -> str:
    found = shutil.which("docker-compose")
    if found:
        return found
    subprocess.run(
        ["apt-get", "install", "-y", "-qq", "docker-compose"],
        check=True,
        env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
        stdout=subprocess.DEVNULL,
    )
    return shutil.which("docker-compose") or sys.exit("docker-compose could not be installed")


def write_stack(directory: Path, project: str, n: int, rev: int) -> None:
    """The same stack for both tools: network `net`, containers c0..c{n-1}; c0's env carries `rev`."""
    for old in directory.glob("*.yaml"):
        old.unlink()
    docs = [f"apiVersion: reconciler/v1\nkind: Network\nmetadata: {{name: {project}-net}}\n"]
    services = []
    for i in range(n):
        value = rev if i == 0 else 0
        docs.append(
            "apiVersion: reconciler/v1\nkind: Container\n"
            f"metadata: {{name: {project}-c{i}}}\n"
            f"spec:\n  image: {IMAGE}\n  command: [sleep, '3600']\n  env: {{REV: '{value}'}}\n"
            f"  networks: [{{name: {project}-net}}]\n  stopTimeout: 1\n"
        )
        services.append(
            f"  c{i}:\n    image: {IMAGE}\n    container_name: {project}-k{i}\n    command: [sleep, '3600']\n"
            f"    environment: {{REV: '{value}'}}\n    stop_grace_period: 1s\n"
        )
    (directory / "stack.yaml").write_text("---\n".join(docs))
    (directory.parent / "compose" / "docker-compose.yml").write_text("version: '3.7'\nservices:\n" + "".join(services))


def run(cmd: list[str], cwd: Path, env: dict[str, str]) -> tuple[float, int, int]:
    """(seconds, exit status, peak RSS in MiB) of one command."""
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - started
    assert proc.stderr is not None
    err = proc.stderr.read()
    proc.stderr.close()
    code = os.waitstatus_to_exitcode(status)
    if code not in (0, 2):
        print(f"  ! {' '.join(cmd[:4])}… exited {code}: {err.decode(errors='replace')[-400:]}", file=sys.stderr)
    return seconds, code, usage.ru_maxrss // 1024


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=20, help="containers in the stack (default 20)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    host = docker_host()
    compose = ensure_compose()
    env = {**os.environ, "DOCKER_HOST": host, "COMPOSE_HTTP_TIMEOUT": "300"}
    project = "bench" + secrets.token_hex(3)
    root = Path(tempfile.mkdtemp(prefix="bench-peer-"))
    manifests, compose_dir = root / "manifests", root / "compose"
    manifests.mkdir()
    compose_dir.mkdir()
    reconcile = [sys.executable, "-m", "reconciler.cli", "--project", project]
    dc = [compose, "-p", project]
    rows: list[dict[str, object]] = []

    def phase(name: str, ours: list[str], theirs: list[str]) -> None:
        r = run(reconcile + ours, REPO, env)
        c = run(dc + theirs, compose_dir, env)
        rows.append(
            {
                "phase": name,
                "reconcile_s": r[0],
                "compose_s": c[0],
                "reconcile_rss_mib": r[2],
                "compose_rss_mib": c[2],
                "ratio": c[0] / r[0] if r[0] else None,
            }
        )

    try:
        write_stack(manifests, project, args.n, rev=1)
        phase("converge", ["apply", str(manifests)], ["up", "-d"])
        phase("no-op", ["apply", str(manifests)], ["up", "-d"])
        phase("plan / ps", ["plan", str(manifests)], ["ps"])
        write_stack(manifests, project, args.n, rev=2)
        phase("one change", ["apply", str(manifests)], ["up", "-d"])
        for f in manifests.glob("*.yaml"):
            f.unlink()
        phase("teardown", ["apply", "--allow-empty", str(manifests)], ["down", "-t", "1"])
    finally:
        run([*dc, "down", "-t", "1"], compose_dir, env)
        run([*reconcile, "apply", "--allow-empty", str(manifests)], REPO, env)
        shutil.rmtree(root, ignore_errors=True)

    if args.json:
        print(json.dumps({"containers": args.n, "rows": rows}, indent=2))
        return 0
    print(f"{args.n} containers + 1 network, Docker engine at {host}")
    print(f"{'phase':<12} {'reconcile':>10} {'compose v1':>11} {'compose/reconcile':>18} {'RSS (MiB) r / c':>16}")
    for row in rows:
        print(
            f"{row['phase']:<12} {row['reconcile_s']:>9.2f}s {row['compose_s']:>10.2f}s "
            f"{row['ratio']:>17.1f}x {row['reconcile_rss_mib']:>7} / {row['compose_rss_mib']:<6}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
