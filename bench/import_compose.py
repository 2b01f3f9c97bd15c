"""`reconcile import compose` of a generated 70-service file (the size of sentry's): wall time of the import.

The file is shaped like a real self-hosted stack: services with environment, ports, named volumes and binds,
healthchecks, depends_on, resources, logging, ulimits and labels, on two networks, with YAML anchors merged in
as Compose files often use them. Each figure is one import in this process (loading, interpolation, mapping,
validation of every manifest, writing), after one warm-up run; the median and the range of `--runs` runs are
printed, and the whole command once in a subprocess (Python start-up included). No engine is needed.

Usage:  .venv/bin/python bench/import_compose.py [-n 70] [--runs 5] [--json]
A measurement, not a test: nothing is asserted (issue 21 asks for under 1 s at 50 services).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from reconciler.compose import run_import  # noqa: E402  (after the path, so the tree being measured is used)

HEADER = """\
x-defaults: &defaults
  restart: unless-stopped
  logging: {driver: json-file, options: {max-size: 10m, max-file: "3"}}
  ulimits: {nofile: {soft: 1024, hard: 2048}}
  environment: &env
    TZ: UTC
    LOG_LEVEL: ${LOG_LEVEL:-info}
services:
"""

SERVICE = """\
  svc{i}:
    <<: *defaults
    image: registry.example/stack/svc{i}:1.{i}
    command: ["run", "--worker", "{i}"]
    environment:
      <<: *env
      SERVICE_INDEX: "{i}"
      UPSTREAM: http://svc{upstream}:8080
    ports: ["127.0.0.1:{port}:8080"]
    volumes:
      - data{i}:/var/lib/svc
      - ./conf:/etc/svc:ro
    healthcheck:
      test: ["CMD", "wget", "-q", "-O-", "http://localhost:8080/health"]
      interval: 30s
      timeout: 5s
      retries: 3
{depends}    networks: [front, back]
    mem_limit: 256m
    cpus: 0.5
    labels: {{com.example.index: "{i}"}}
"""


def write_project(root: Path, n: int) -> Path:
    (root / "conf").mkdir()
    parts = [HEADER]
    for i in range(n):
        # each service waits for the one before it, as a chain of real dependencies would
        depends = f"    depends_on:\n      svc{i - 1}: {{condition: service_started}}\n" if i else ""
        parts.append(SERVICE.format(i=i, upstream=(i + 1) % n, port=20000 + i, depends=depends))
    parts.append("networks:\n  front: {}\n  back: {internal: true}\nvolumes:\n")
    parts.extend(f"  data{i}: {{}}\n" for i in range(n))
    path = root / "compose.yaml"
    path.write_text("".join(parts))
    return path


def one_import(compose_file: Path, out: Path) -> float:
    start = time.perf_counter()
    outcome = run_import([compose_file], out, "bench", (), io.StringIO(), stderr := io.StringIO())
    elapsed = time.perf_counter() - start
    if outcome.exit_code not in (0, 2):
        raise SystemExit(f"the import failed:\n{stderr.getvalue()}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-n", type=int, default=70, help="services in the generated file (default 70)")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-import-") as tmp:
        root = Path(tmp)
        compose_file = write_project(root, args.n)
        one_import(compose_file, root / "warm-up")
        times = [one_import(compose_file, root / f"out{run}") for run in range(args.runs)]
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        start = time.perf_counter()
        cli = subprocess.run(
            [
                sys.executable,
                "-m",
                "reconciler.cli",
                "import",
                "compose",
                str(compose_file),
                "--out",
                str(root / "cli"),
            ],
            cwd=root,
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        command = time.perf_counter() - start
        if cli.returncode not in (0, 2):
            raise SystemExit(f"reconcile import compose failed:\n{cli.stderr}")
    result = {
        "services": args.n,
        "runs": args.runs,
        "median_s": round(statistics.median(times), 3),
        "min_s": round(min(times), 3),
        "max_s": round(max(times), 3),
        "command_s": round(command, 3),
    }
    if args.json:
        print(json.dumps(result))
        return
    print(
        f"import compose, {args.n} services: median {result['median_s']:.3f} s "
        f"(min {result['min_s']:.3f}, max {result['max_s']:.3f}, {args.runs} runs in process); "
        f"the whole command {result['command_s']:.3f} s"
    )


if __name__ == "__main__":
    main()
