"""`reconcile validate` on generated trees of N Container manifests: wall time, per-object cost, peak RSS.

Each tree holds one Network and N Containers, one manifest file per container in 100 sub-directories; every
container has `env`, a network, a memory limit and a restart policy. No engine is needed (validate touches none).

Usage:  .venv/bin/python bench/validate_scale.py [-n 1000 5000 20000] [--runs 3] [--json] [--out F] [--profile N]
Each figure is the median of `--runs` runs of the whole command in a subprocess (Python start-up included); peak
RSS is the child's maximum resident set size. `--profile N` prints a cProfile summary of one run at N instead.
A measurement, not a test: nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from engine_address import compile_reconciler

REPO = Path(__file__).resolve().parent.parent
IMAGE = "127.0.0.1:5000/reconciler/busybox:1.35"


def write_tree(root: Path, n: int) -> None:
    """One Network `net` and containers c0..c{n-1}, in sub-directories of at most 100 files."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "network.yaml").write_text("apiVersion: reconciler/v1\nkind: Network\nmetadata: {name: net}\n")
    for i in range(n):
        sub = root / f"d{i // 100:04d}"
        sub.mkdir(exist_ok=True)
        (sub / f"c{i}.yaml").write_text(
            "apiVersion: reconciler/v1\n"
            "kind: Container\n"
            "metadata:\n"
            f"  name: c{i}\n"
            "  labels: {tier: bench}\n"
            "spec:\n"
            f"  image: {IMAGE}\n"
            "  command: [sleep, '3600']\n"
            "  env:\n"
            f"    INDEX: '{i}'\n"
            "    LOG_LEVEL: info\n"
            "  networks:\n"
            "    - name: net\n"
            "  resources: {memory: 64m}\n"
            "  restartPolicy: {name: unless-stopped}\n"
        )


def reconcile_cmd() -> list[str]:
    exe = REPO / ".venv" / "bin" / "reconcile"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "reconciler.cli"]


def run_once(directory: Path) -> tuple[float, int]:
    """Wall seconds and peak RSS (KiB) of one `reconcile validate DIR` in a child process."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    with tempfile.TemporaryFile() as out:
        start = time.perf_counter()
        proc = subprocess.Popen([*reconcile_cmd(), "validate", str(directory)], stdout=out, stderr=out, env=env)
        _, status, usage = os.wait4(proc.pid, 0)
        elapsed = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            out.seek(0)
            sys.exit(f"validate failed ({proc.returncode}): {out.read().decode()[-2000:]}")
    return elapsed, usage.ru_maxrss


def measure(directory: Path, runs: int) -> dict[str, float]:
    times, peaks = [], []
    for _ in range(runs):
        elapsed, rss = run_once(directory)
        times.append(elapsed)
        peaks.append(rss)
    median = statistics.median(times)
    return {"median_s": median, "min_s": min(times), "max_s": max(times), "peak_rss_mib": max(peaks) / 1024}


def profile(directory: Path, top: int = 25) -> None:
    code = (
        "import cProfile, pstats, sys\n"
        "from reconciler.cli.main import main\n"
        "p = cProfile.Profile(); p.enable()\n"
        f"rc = main(['validate', {str(directory)!r}])\n"
        "p.disable()\n"
        f"pstats.Stats(p).sort_stats(sys.argv[1] if len(sys.argv) > 1 else 'tottime').print_stats({top})\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ, "PYTHONPATH": str(REPO)})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, nargs="+", default=[1000, 5000, 20000], help="tree sizes")
    parser.add_argument("--runs", type=int, default=3, help="runs per size (the median is reported)")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    parser.add_argument("--profile", type=int, metavar="N", help="print a cProfile summary of one run at N")
    args = parser.parse_args()
    compile_reconciler()
    with tempfile.TemporaryDirectory(prefix="validate-scale-") as tmp:
        if args.profile:
            tree = Path(tmp) / f"n{args.profile}"
            write_tree(tree, args.profile)
            profile(tree)
            return
        rows = []
        for n in args.n:
            tree = Path(tmp) / f"n{n}"
            write_tree(tree, n)
            figures = measure(tree, args.runs)
            rows.append({"n": n, **figures, "per_object_ms": figures["median_s"] / n * 1000})
        if args.out:
            args.out.write_text(json.dumps(rows, indent=2))
        if args.json:
            print(json.dumps(rows, indent=2))
            return
        print(f"{'N':>7}  {'median':>9}  {'min':>8}  {'max':>8}  {'per object':>11}  {'peak RSS':>9}")
        for r in rows:
            print(
                f"{r['n']:>7}  {r['median_s']:>8.2f}s  {r['min_s']:>7.2f}s  {r['max_s']:>7.2f}s  "
                f"{r['per_object_ms']:>9.3f}ms  {r['peak_rss_mib']:>6.0f} MiB"
            )


if __name__ == "__main__":
    main()
