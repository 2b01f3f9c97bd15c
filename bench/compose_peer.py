"""reconcile vs Docker Compose v1 (Debian's docker-compose 1.29.2) on the same N-container stack, alternating.

For each N (default 10, 50, 200) and each repetition, the two tools run one after the other, scenario by
scenario, with the order of the tools flipped every repetition (so a load change on the shared machine hits
both); each tool has its own unique project. Scenarios, each timed as the wall clock of the whole command:

  converge     from empty: one network + N busybox `sleep` containers (1 s stop timeout) created and started
  no-op        nothing changed: `reconcile apply` vs `docker-compose up -d`
  no-op plan   nothing changed: `reconcile plan` (compared with Compose's no-op `up -d`: Compose has no plan)
  env change   container 0's env edited: reconcile replaces it (old one kept until the new one settled),
               Compose recreates it; the downtime of that name (no running container under it, polled on the
               engine every few ms) is measured for both
  teardown     manifests gone: `reconcile apply --allow-empty` (prune) vs `docker-compose down -v -t 1`
  watch resync `reconcile watch --resync S` on the converged stack (no Compose peer): its startup pass, then
               S seconds with no event (the CPU it uses meanwhile, as a share of one core), then the resync
               pass (its duration as watch logs it, its engine requests); RSS is the watch's peak (VmHWM)

With `--floor K` (default N) each repetition also runs bench/engine_floor.py's converge and teardown of the same
stack from K threads (the engine alone: no tool, no settle window), just before the two tools, and reports
reconcile's time over that floor (the median of the per-repetition ratios) beside the ratio to Compose.

Printed per N and scenario: medians of both tools, the median of the per-repetition reconcile/compose ratios
(each from an adjacent pair of runs), reconcile's peak RSS (the child's ru_maxrss from os.wait4) and its number
of engine requests, counted by bench/counting_proxy.py (reconcile talks to the engine through it; Compose
directly, so the proxy's small cost is on reconcile's side).

Usage:  .venv/bin/python bench/compose_peer.py [--sizes 10,50,200] [--reps 3] [--large-reps 2] [--json] [--out F]
                [--floor N|K|0] [--watch-idle S (0: no watch scenario)] [--compose-max N] [--command-timeout S]
Needs the engine of scripts/testenv.sh (DOCKER_HOST or .testenv/env); docker-compose is installed with apt when
missing. Every object belongs to one of the run's unique projects and is removed at the end (`down -v` for
Compose, a prune for reconcile); nothing else is touched. A measurement, not a test: nothing is asserted.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import engine_floor
from docker.errors import NotFound
from engine_address import REPO, compile_reconciler, docker_host
from watchproc import start_watch

IMAGE = "127.0.0.1:5000/reconciler/busybox:1.35"
HERE = Path(__file__).resolve().parent
POLL = 0.005
SCENARIOS = ("converge", "no-op", "no-op plan", "env change", "watch resync", "teardown")
TOOLS = ("reconcile", "compose", "floor")


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


def write_reconcile(directory: Path, project: str, n: int, rev: int) -> None:
    """Network `<project>-net` and containers `<project>-c0..`; c0's env carries `rev`."""
    docs = [f"apiVersion: reconciler/v1\nkind: Network\nmetadata: {{name: {project}-net}}\n"]
    for i in range(n):
        docs.append(
            "apiVersion: reconciler/v1\nkind: Container\n"
            f"metadata: {{name: {project}-c{i}}}\n"
            f"spec:\n  image: {IMAGE}\n  command: [sleep, '3600']\n  env: {{REV: '{rev if i == 0 else 0}'}}\n"
            f"  networks: [{{name: {project}-net}}]\n  stopTimeout: 1\n"
        )
    (directory / "stack.yaml").write_text("---\n".join(docs))


def write_compose(directory: Path, project: str, n: int, rev: int) -> None:
    """The same stack for Compose: its default network, containers `<project>-k0..`; k0's env carries `rev`."""
    services = [
        f"  c{i}:\n    image: {IMAGE}\n    container_name: {project}-k{i}\n    command: [sleep, '3600']\n"
        f"    environment: {{REV: '{rev if i == 0 else 0}'}}\n    stop_grace_period: 1s\n"
        for i in range(n)
    ]
    (directory / "docker-compose.yml").write_text("version: '3.7'\nservices:\n" + "".join(services))


@dataclass
class Run:
    seconds: float
    code: int
    rss_mib: float
    requests: int | None = None
    downtime: float | None = None
    calls: Counter[str] = field(default_factory=Counter)
    idle_cpu: float | None = None  # watch: CPU seconds per second while no pass ran


class Downtime:
    """Polls the engine (directly, not counted) for a running container named `name`; sums the time without."""

    def __init__(self, host: str, name: str) -> None:
        self.api = docker.APIClient(base_url=host, version="auto", timeout=60)
        self.name = name
        self.samples: list[tuple[float, bool]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def running(self) -> bool:
        try:
            info = self.api.inspect_container(self.name)
        except NotFound:
            return False
        return bool(info["State"]["Running"]) and info["Name"].lstrip("/") == self.name

    def _poll(self) -> None:
        while not self._stop.is_set():
            self.samples.append((time.perf_counter(), self.running()))
            time.sleep(POLL)

    def __enter__(self) -> Downtime:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        time.sleep(0.1)  # a last sample or two after the command ended
        self._stop.set()
        self._thread.join()
        self.api.close()

    def seconds(self) -> float:
        """Time from each sample without a running container to the next sample."""
        return sum(t1 - t0 for (t0, up), (t1, _) in zip(self.samples, self.samples[1:], strict=False) if not up)


class Proxy:
    """bench/counting_proxy.py as a separate process (its GIL is not the bench's), counting into a log file."""

    def __init__(self, upstream: str, root: Path) -> None:
        self.log = root / "requests.log"
        self.log.touch()
        sock = root / "engine.sock"
        self.proc = subprocess.Popen(
            [
                sys.executable,
                str(HERE / "counting_proxy.py"),
                *("--upstream", upstream, "--listen", str(sock)),
                "--log",
                str(self.log),
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        if self.proc.stdout.readline().strip() != "ready":
            sys.exit("the counting proxy did not start")
        self.url = f"unix://{sock}"

    def lines(self) -> list[str]:
        return self.log.read_text().splitlines()

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


COMMAND_TIMEOUT = 3600.0  # a command still running after this is ended (SIGTERM) and counted as failed


def run(cmd: list[str], cwd: Path, env: dict[str, str], timeout: float = COMMAND_TIMEOUT) -> Run:
    """Wall clock, exit status and peak RSS (ru_maxrss of the child) of one command; one that runs longer than
    `timeout` seconds (Compose 1.29 can hang for good) is ended, so an unattended run goes on."""
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    overdue = threading.Timer(timeout, proc.terminate)
    overdue.start()
    try:
        err = proc.stderr.read()  # the child exits only once its stderr is read (a pipe may fill)
        _, status, usage = os.wait4(proc.pid, 0)
    except BaseException:  # interrupted: the command ends (gracefully) before the bench cleans up after it
        proc.terminate()
        proc.wait()
        raise
    finally:
        overdue.cancel()
    seconds = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    proc.stderr.close()
    if proc.returncode not in (0, 2):
        print(
            f"  ! {' '.join(cmd[-3:])} exited {proc.returncode}: {err.decode(errors='replace')[-600:]}", file=sys.stderr
        )
    return Run(seconds, proc.returncode, usage.ru_maxrss / 1024)


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.host = docker_host()
        self.compose = ensure_compose()
        self.root = Path(tempfile.mkdtemp(prefix="bench-peer-"))
        self.proxy = None if args.no_count else Proxy(self.host, self.root)
        self.api = docker.APIClient(base_url=self.host, version="auto", timeout=120)
        self.token = secrets.token_hex(3)
        base = {**os.environ, "RECONCILER_LOCK_DIR": str(self.root / "locks"), "COMPOSE_HTTP_TIMEOUT": "300"}
        self.env_direct = {**base, "DOCKER_HOST": self.host}
        self.env_reconcile = {**base, "DOCKER_HOST": self.proxy.url if self.proxy else self.host}
        self.samples: dict[int, dict[str, dict[str, list[Run]]]] = {}
        self.created: list[tuple[str, str, Path, Path]] = []

    def reconcile(self, project: str, *args: str) -> Run:
        before = len(self.proxy.lines()) if self.proxy else 0
        parallel = ["--parallel", str(self.args.parallel)] if self.args.parallel and args[0] == "apply" else []
        cmd = [sys.executable, "-m", "reconciler.cli", "--project", project, *args[:1], *parallel, *args[1:]]
        result = run(cmd, REPO, self.env_reconcile, self.args.command_timeout)
        if self.proxy:
            lines = self.proxy.lines()[before:]
            result.requests = len(lines)
            result.calls = Counter(lines)
        return result

    def compose_cmd(self, project: str, directory: Path, *args: str, services: int = 0) -> Run:
        # Compose 1.29 nests a parallel run per service inside the parallel run over services, both under one
        # limit (COMPOSE_PARALLEL_LIMIT, default 64): with more services than the limit every slot is held by
        # an outer task waiting for an inner one and `up` hangs for good. A limit above the number of services
        # avoids that (it is then as parallel as it is below 64 services).
        env = {**self.env_direct, "COMPOSE_PARALLEL_LIMIT": str(max(64, 2 * services + 8))}
        return run([self.compose, "-p", project, *args], directory, env, self.args.command_timeout)

    def running(self, label: str) -> int:
        return len(self.api.containers(filters={"label": [label], "status": ["running"]}))

    def size(self, n: int, reps: int) -> None:
        rp, cp = f"bp{self.token}r{n}", f"bp{self.token}c{n}"
        rdir, cdir = self.root / f"r{n}", self.root / f"c{n}"
        rdir.mkdir()
        cdir.mkdir()
        self.created.append((rp, cp, rdir, cdir))
        samples: dict[str, dict[str, list[Run]]] = {s: {t: [] for t in TOOLS} for s in SCENARIOS}
        self.samples[n] = samples

        def both(scenario: str, order: list[str], ours: tuple[str, ...], theirs: tuple[str, ...], watch: bool) -> None:
            for tool in order:
                name = f"{rp}-c0" if tool == "reconcile" else f"{cp}-k0"
                if watch:
                    with Downtime(self.host, name) as down:
                        got = (
                            self.reconcile(rp, *ours)
                            if tool == "reconcile"
                            else self.compose_cmd(cp, cdir, *theirs, services=n)
                        )
                    got.downtime = down.seconds()
                else:
                    got = (
                        self.reconcile(rp, *ours)
                        if tool == "reconcile"
                        else self.compose_cmd(cp, cdir, *theirs, services=n)
                    )
                samples[scenario][tool].append(got)

        for rep in range(reps):
            order = ["reconcile", "compose"] if rep % 2 == 0 else ["compose", "reconcile"]
            print(f"N={n} repetition {rep + 1}/{reps} ({' then '.join(order)})", file=sys.stderr, flush=True)
            if self.args.floor != "0":
                self.floor(n, samples)
            write_reconcile(rdir, rp, n, rev=0)
            write_compose(cdir, cp, n, rev=0)
            compose_too = n <= self.args.compose_max
            both("converge", order if compose_too else ["reconcile"], ("apply", str(rdir)), ("up", "-d"), False)
            for tool, label in (
                ("reconcile", f"io.reconciler.project={rp}"),
                *([("compose", f"com.docker.compose.project={cp}")] if compose_too else []),
            ):
                if self.running(label) != n:
                    print(
                        f"  ! {tool}: {self.running(label)} of {n} containers running after converge", file=sys.stderr
                    )
            if not compose_too:
                order = ["reconcile"]
            for _ in range(self.args.noop_reps):
                both("no-op", order, ("apply", str(rdir)), ("up", "-d"), False)
                samples["no-op plan"]["reconcile"].append(self.reconcile(rp, "plan", str(rdir)))
            if self.args.watch_idle > 0:
                samples["watch resync"]["reconcile"].append(self.watch_resync(rp, rdir, n))
            write_reconcile(rdir, rp, n, rev=rep + 1)
            write_compose(cdir, cp, n, rev=rep + 1)
            both("env change", order, ("apply", str(rdir)), ("up", "-d"), True)
            (rdir / "stack.yaml").unlink()
            both("teardown", order, ("apply", "--allow-empty", str(rdir)), ("down", "-v", "-t", "1"), False)

    def floor(self, n: int, samples: dict[str, dict[str, list[Run]]]) -> None:
        """The engine alone on the same stack (bench/engine_floor.py), from `--floor` threads."""
        k = n if self.args.floor == "N" else int(self.args.floor)
        project = f"floor-{secrets.token_hex(4)}"
        api = docker.APIClient(base_url=self.host, version="auto", timeout=300, max_pool_size=max(256, k))
        try:
            up = engine_floor.converge(api, project, n, k)
            down = engine_floor.teardown(api, project, k)
        finally:
            engine_floor.cleanup(api, project)
            api.close()
        samples["converge"]["floor"].append(Run(up, 0, 0.0))
        samples["teardown"]["floor"].append(Run(down, 0, 0.0))

    def watch_resync(self, project: str, directory: Path, n: int) -> Run:
        """`reconcile watch` on the converged stack: idle for --watch-idle seconds, then its resync pass."""
        idle = self.args.watch_idle
        log = self.root / f"watch-{project}-{secrets.token_hex(2)}.log"
        watch = start_watch(project, directory, self.env_reconcile, log, "--resync", str(idle))
        slow = 60 + n * 0.2  # a pass over N containers on a busy engine
        try:
            watch.wait_passes(1, timeout=slow)
            watch.wait_log("engine.events_connected", timeout=slow)
            before = len(self.proxy.lines()) if self.proxy else 0
            cpu, since = watch.cpu_seconds(), time.perf_counter()
            watch.wait_log("pass.started", 2, timeout=idle * 1.2 + slow)
            idle_cpu = (watch.cpu_seconds() - cpu) / (time.perf_counter() - since)
            watch.wait_passes(2, timeout=slow)
            reasons, seconds = watch.reasons(), watch.pass_seconds()
            got = Run(seconds[1], 0 if reasons[1] == "resync" else 1, watch.peak_rss_mib(), idle_cpu=idle_cpu)
            if reasons[1] != "resync":
                print(f"  ! watch's second pass was asked for by {reasons[1]}, not the resync", file=sys.stderr)
            if self.proxy:
                lines = self.proxy.lines()[before:]
                got.requests, got.calls = len(lines), Counter(lines)
            return got
        finally:
            watch.stop()

    def leftovers(self, rp: str, cp: str) -> None:
        """Retry the networks of this run's projects that are still there, then name any that stay.

        Under load, Docker 20.10 sometimes refuses to remove a network right after many of its containers went
        ("has active endpoints") and, now and then, for good (a stale endpoint count; a daemon restart clears it).
        """
        labels = [f"io.reconciler.project={rp}", f"com.docker.compose.project={cp}"]
        for _ in range(5):
            nets = [n for label in labels for n in self.api.networks(filters={"label": [label]})]
            for net in nets:
                with contextlib.suppress(docker.errors.APIError):
                    self.api.remove_network(net["Id"])
            if not nets:
                return
            time.sleep(2)
        left = [n["Name"] for label in labels for n in self.api.networks(filters={"label": [label]})]
        if left:
            print(
                f"  ! could not remove network(s) {', '.join(left)}: the engine says they have active endpoints",
                file=sys.stderr,
            )

    def cleanup(self) -> None:
        for rp, cp, rdir, cdir in self.created:
            for f in rdir.glob("*.yaml"):
                f.unlink()
            if (cdir / "docker-compose.yml").exists():
                self.compose_cmd(cp, cdir, "down", "-v", "-t", "1", services=1000)
            run(
                [sys.executable, "-m", "reconciler.cli", "--project", rp, "apply", "--allow-empty", str(rdir)],
                REPO,
                self.env_direct,
            )
            self.leftovers(rp, cp)
        if self.proxy:
            self.proxy.close()
        self.api.close()
        shutil.rmtree(self.root, ignore_errors=True)


def med(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def summarize(samples: dict[int, dict[str, dict[str, list[Run]]]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for n, scenarios in samples.items():
        rows = {}
        for scenario, tools in scenarios.items():
            r, c = tools["reconcile"], tools["compose"]
            if scenario == "no-op plan":
                c = scenarios["no-op"]["compose"]  # Compose's no-op `up -d` is the peer of a plan
            pairs = [a.seconds / b.seconds for a, b in zip(r, c, strict=False)]
            f = tools["floor"]
            floor_pairs = [a.seconds / b.seconds for a, b in zip(r, f, strict=False)]
            rows[scenario] = {
                "reconcile_s": med([x.seconds for x in r]),
                "compose_s": med([x.seconds for x in c]),
                "ratio": med(pairs),
                "ratio_range": [min(pairs), max(pairs)] if pairs else None,
                "floor_s": med([x.seconds for x in f]),
                "ratio_floor": med(floor_pairs),
                "ratio_floor_range": [min(floor_pairs), max(floor_pairs)] if floor_pairs else None,
                "watch_idle_cpu_pct": med([x.idle_cpu * 100 for x in r if x.idle_cpu is not None]),
                "reconcile_rss_mib": max((x.rss_mib for x in r), default=None),
                "compose_rss_mib": max((x.rss_mib for x in c), default=None),
                "reconcile_requests": med([x.requests for x in r if x.requests is not None]),
                "reconcile_calls": dict((r[-1].calls if r else Counter()).most_common()),
                "reconcile_downtime_s": med([x.downtime for x in r if x.downtime is not None]),
                "compose_downtime_s": med([x.downtime for x in c if x.downtime is not None]),
                "failures": sum(x.code not in (0, 2) for x in r + c),
                "samples": {
                    "reconcile": [x.seconds for x in r],
                    "compose": [x.seconds for x in c],
                    "floor": [x.seconds for x in f],
                },
            }
        out[str(n)] = rows
    return out


def machine() -> str:
    cpus = os.cpu_count()
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
    mem = next((line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines() if "MemTotal" in line), "?")
    return (
        f"{platform.node()}: {cpus} CPUs, {int(mem) // 1024} MiB RAM, Python {platform.python_version()}, load {load}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10,50,200", help="container counts (default 10,50,200)")
    parser.add_argument("--reps", type=int, default=3, help="repetitions at N <= 50 (default 3)")
    parser.add_argument("--large-reps", type=int, default=2, help="repetitions at N > 50 (default 2)")
    parser.add_argument("--noop-reps", type=int, default=2, help="no-op runs per repetition (default 2)")
    parser.add_argument("--parallel", type=int, default=0, help="reconcile's --parallel (default: its own)")
    parser.add_argument("--no-count", action="store_true", help="reconcile talks to the engine directly")
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    parser.add_argument("--floor", default="N", help="threads of the engine-alone floor: N (the size), K, 0 (none)")
    parser.add_argument(
        "--watch-idle", type=float, default=5, help="seconds watch idles before its resync (0: no watch scenario)"
    )
    parser.add_argument("--compose-max", type=int, default=10**6, help="no Compose runs above this N")
    parser.add_argument(
        "--command-timeout", type=float, default=COMMAND_TIMEOUT, help="seconds before a command is ended"
    )
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",") if s]
    compile_reconciler()
    bench = Bench(args)
    info = docker.APIClient(base_url=bench.host, version="auto").version()
    started = time.time()
    try:
        for n in sizes:
            bench.size(n, args.reps if n <= 50 else args.large_reps)
            report(args, bench, info, started, final=False)
    finally:
        bench.cleanup()
    report(args, bench, info, started, final=True)
    return 0


def report(args: argparse.Namespace, bench: Bench, info: dict[str, Any], started: float, final: bool) -> None:
    """Write --out after every N (a long run interrupted later keeps what it measured); print at the end."""
    result = {
        "machine": machine(),
        "engine": f"Docker {info.get('Version')} (API {info.get('ApiVersion')}) at {bench.host}",
        "compose": subprocess.run([bench.compose, "version", "--short"], capture_output=True, text=True).stdout.strip(),
        "parallel": args.parallel or "default",
        "requests_counted": not args.no_count,
        "minutes": round((time.time() - started) / 60, 1),
        "sizes": summarize(bench.samples),
    }
    if args.out:
        args.out.write_text(json.dumps(result, indent=2))
    if not final and not args.json:
        print_tables(result, {k: v for k, v in result["sizes"].items() if k == str(max(bench.samples))}, sys.stderr)
    if not final:
        return
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print_tables(result, result["sizes"], sys.stdout)


def _num(value: float | None, spec: str, unit: str = "") -> str:
    """`value` formatted by `spec` (e.g. 8.2f) and `unit`, or a dash of the same width."""
    if value is None:
        return "-".rjust(int(spec.split(".")[0] or 0) + len(unit))
    return f"{value:{spec}}{unit}"


def print_tables(result: dict[str, Any], sizes: dict[str, Any], out: Any) -> None:
    print(
        f"{result['machine']}\n{result['engine']}, docker-compose {result['compose']}, {result['minutes']} min",
        file=out,
    )
    head = f"{'N':>5} {'scenario':<12} {'reconcile':>9} {'compose':>9} {'r/c':>6} {'r/c range':>11} {'floor':>8}"
    print(head + f" {'r/floor':>7} {'RSS':>6} {'requests':>8} {'downtime r / c':>16}", file=out)
    for n, rows in sizes.items():
        for scenario, row in rows.items():
            if not row["samples"]["reconcile"]:
                continue
            rng = row["ratio_range"]
            down = (
                f"{row['reconcile_downtime_s']:.2f}s / {_num(row['compose_downtime_s'], '.2f', 's')}"
                if row["reconcile_downtime_s"] is not None
                else ""
            )
            idle = row["watch_idle_cpu_pct"]
            print(
                f"{n:>5} {scenario:<12} {_num(row['reconcile_s'], '8.2f', 's')} {_num(row['compose_s'], '8.2f', 's')} "
                f"{_num(row['ratio'], '5.2f', 'x')} {f'{rng[0]:.2f}-{rng[1]:.2f}' if rng else '-':>11} "
                f"{_num(row['floor_s'], '7.2f', 's')} {_num(row['ratio_floor'], '6.2f', 'x')} "
                f"{_num(row['reconcile_rss_mib'], '5.0f', 'M')} {row['reconcile_requests'] or 0:>8.0f} {down:>16}"
                + (f"  idle CPU {idle:.2f} % of a core" if idle is not None else "")
                + (f"  ({row['failures']} failed runs)" if row["failures"] else ""),
                file=out,
                flush=True,
            )


if __name__ == "__main__":
    sys.exit(main())
