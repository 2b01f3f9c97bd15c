"""A fleet of E namespace engines (scripts/fleetenv.sh, as the fleet tests make them), C containers on each.

Hosts alternate between TLS (engine a, c, e, ...: `tcp://ADDR:2376`) and ssh (b, d, f, ...: `ssh://root@ADDR`).
One manifest tree: the Hosts, and C busybox `sleep` containers (1 s stop timeout) declared for `hosts: all`.
Each repetition times, as the wall clock of the whole `reconcile` command:

  engines alone      not reconcile: bench/engine_floor.py's create + start (then stop + remove) of the same C
                     containers on every engine at once, C threads each; the floor under a fleet apply when
                     all engines share this machine's cores
  fleet apply        from empty, every Host at once
  fleet no-op plan   nothing changed (twice), right after the apply: the ssh Hosts' masters of the apply are
                     kept (sshmux), as for a user's commands run one after the other; then the same on the TLS
                     Hosts only, on the ssh Hosts only, and on one Host of each (`--selector transport=...`,
                     `--host`): where the fleet's time goes
  fleet no-op plan, no kept ssh master
                     the same with no master left (a directory of masters of its own, ended after): each ssh Host
                     logs in and makes its first contact, as a command more than 30 s after the last one does
  hung <transport>   the no-op plan while one Host's dockerd is stopped (SIGSTOP; SIGCONT in a finally): the
                     last TLS Host and the last ssh Host of the fleet, one at a time. The others' delay is this
                     time minus the no-op plan's; a Host that does not answer is given up after its first
                     contact's timeout (client.PING_TIMEOUT; for an ssh Host whose master is kept, the /_ping
                     through its forward, with the same timeout)
  fleet teardown     the containers pruned from every Host
  single <host>      `apply --host H` from empty, Host by Host, one after the other, each with this machine's
                     cores to itself: the slowest of them is the peer of the fleet apply ("fleet apply within
                     1.3x the slowest single Host's apply") where each Host is a machine of its own
  singles at once    `apply --host H` from empty for every Host at once, each its own command: the slowest is
                     the same peer when all engines share this machine's cores, as in the fleet apply

Beside each scenario's wall clock: the core-seconds this whole machine spent busy meanwhile (/proc/stat: the
engines, sshds and ssh clients as well as reconcile), and that divided by the number of cores, the least wall
clock the work could take here (`cpu_bound_s`). A scenario whose wall clock is near it is bound by this machine's
cores, not by waiting.

Usage:  .venv/bin/python bench/fleet_scale.py [--engines 4] [--containers 5] [--reps 1] [--no-hang] [--json]
                [--out FILE]
Runs as root (the fleet's namespaces). Starts the fleet through tests/fleetenv.py as a test session does (a lease;
taken down at the end when no other session holds it), so RECONCILER_FLEET_ENGINES is set to --engines. Every
object belongs to a unique project `fs<hex>` and is removed at the end. Stopping an engine disturbs anything else
using it: run it when no fleet test runs. A measurement, not a test: nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import engine_floor
from compose_peer import Run, machine, run
from engine_address import REPO, compile_reconciler

sys.path.insert(0, str(REPO))  # tests/fleetenv.py: the fleet as the tests start it

from reconciler.drivers.engine.client import PING_TIMEOUT
from reconciler.drivers.engine.sshmux import end_masters
from tests import fleetenv
from tests.helpers import remove_project_objects
from tests.sshmasters import own_masters

ANSWER_TIMEOUT = 120.0
CORES = os.cpu_count() or 1


def machine_busy() -> float:
    """Core-seconds this machine's CPUs have been busy since boot: /proc/stat's first line but idle and iowait."""
    ticks = [int(f) for f in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


def transport(index: int) -> str:
    return "tls" if index % 2 == 0 else "ssh"


def hosts_yaml(engines: list[fleetenv.Engine]) -> str:
    docs = []
    for i, engine in enumerate(engines):
        if transport(i) == "tls":
            spec = f"engine: '{engine.tcp}'\n  tls: {{ca: pki/ca.pem, cert: pki/cert.pem, key: pki/key.pem}}"
        else:
            spec = f"engine: '{engine.ssh}'"
        docs.append(
            f"apiVersion: reconciler/v1\nkind: Host\nmetadata: {{name: h-{engine.name}, "
            f"labels: {{transport: {transport(i)}}}}}\nspec:\n  {spec}\n"
        )
    return "---\n".join(docs)


def objects_yaml(project: str, image: str, n: int) -> str:
    return "---\n".join(
        f"apiVersion: reconciler/v1\nkind: Container\nmetadata: {{name: {project}-c{i}}}\n"
        f"spec:\n  hosts: all\n  image: {image}\n  command: [sleep, '3600']\n  stopTimeout: 1\n"
        for i in range(n)
    )


def dockerd_pid(name: str) -> int:
    return int((fleetenv.RUN_DIR / name / "docker.pid").read_text().strip())


def wait_answering(fleet: fleetenv.Fleet, name: str) -> None:
    deadline = time.monotonic() + ANSWER_TIMEOUT
    while True:
        try:
            client = fleet.client(name, "unix")
            try:
                client.version()
                return
            finally:
                client.close()
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


class FleetBench:
    def __init__(self, args: argparse.Namespace, fleet: fleetenv.Fleet, engines: list[fleetenv.Engine]) -> None:
        self.args = args
        self.fleet = fleet
        self.engines = engines
        self.project = f"fs{secrets.token_hex(3)}"
        self.root = Path(tempfile.mkdtemp(prefix="bench-fleet-"))
        self.tree = self.root / "tree"
        (self.tree / "pki").mkdir(parents=True)
        for src, dst in ((fleet.tls_ca, "ca.pem"), (fleet.tls_cert, "cert.pem"), (fleet.tls_key, "key.pem")):
            shutil.copy(src, self.tree / "pki" / dst)
        (self.tree / "hosts.yaml").write_text(hosts_yaml(engines))
        # the ssh masters of the bench's commands, shared among them only (sshmux's user directory)
        self.runtime = Path(tempfile.mkdtemp(prefix="rfb", dir="/tmp"))
        self.env = fleet.ssh_env(
            {**os.environ, "RECONCILER_LOCK_DIR": str(self.root / "locks"), "XDG_RUNTIME_DIR": str(self.runtime)}
        )
        self.samples: dict[str, list[Run]] = {}
        self.busy: dict[str, list[float]] = {}  # scenario: machine core-seconds busy in each sample

    def record(self, scenario: str, got: Run, busy: float) -> None:
        self.samples.setdefault(scenario, []).append(got)
        self.busy.setdefault(scenario, []).append(busy)
        print(
            f"  {scenario}: {got.seconds:.2f} s (exit {got.code}; machine busy {busy:.2f} core-s)",
            file=sys.stderr,
            flush=True,
        )

    def command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "reconciler.cli", "--project", self.project, *args]

    def reconcile(self, scenario: str, *args: str, env: dict[str, str] | None = None) -> Run:
        before = machine_busy()
        got = run(self.command(*args), REPO, {**self.env, **(env or {})})
        self.record(scenario, got, machine_busy() - before)
        return got

    def singles_at_once(self) -> None:
        """`apply --host H` for every Host at once, a command each (their locks are per project and engine)."""
        tree = str(self.tree)

        def one(engine: fleetenv.Engine) -> Run:
            return run(self.command("apply", "--host", f"h-{engine.name}", tree), REPO, self.env)

        before = machine_busy()
        with ThreadPoolExecutor(max_workers=len(self.engines)) as pool:
            runs = list(pool.map(one, self.engines))
        slowest = max(runs, key=lambda r: r.seconds)
        worst = next((r.code for r in runs if r.code != 0), 0)
        peak = max(r.rss_mib for r in runs)
        self.record("singles at once, slowest", Run(slowest.seconds, worst, peak), machine_busy() - before)

    def declare(self, declared: bool) -> None:
        objects = self.tree / "objects.yaml"
        if declared:
            objects.write_text(objects_yaml(self.project, self.fleet.base_image, self.args.containers))
        else:
            objects.unlink(missing_ok=True)

    def hung(self, index: int) -> None:
        """The no-op plan with engine `index`'s dockerd stopped; it is continued whatever happens."""
        engine = self.engines[index]
        pid = dockerd_pid(engine.name)
        os.kill(pid, signal.SIGSTOP)
        try:
            self.reconcile(f"hung {transport(index)} host", "plan", str(self.tree))
        finally:
            os.kill(pid, signal.SIGCONT)
        wait_answering(self.fleet, engine.name)

    def engines_alone(self) -> None:
        """bench/engine_floor.py's converge and teardown of the same C containers on every engine at once, each
        engine from C threads: what the engines' own work costs on these cores, the floor under a fleet apply."""
        clients = [self.fleet.client(e.name, "unix") for e in self.engines]
        project = f"floor-{secrets.token_hex(4)}"
        n = self.args.containers
        try:
            for scenario, work in (
                ("engines alone, converge", lambda api: engine_floor.converge(api, project, n, n)),
                ("engines alone, teardown", lambda api: engine_floor.teardown(api, project, n)),
            ):
                before, started = machine_busy(), time.monotonic()
                with ThreadPoolExecutor(max_workers=len(clients)) as pool:
                    list(pool.map(work, clients))
                self.record(scenario, Run(time.monotonic() - started, 0, 0.0), machine_busy() - before)
        finally:
            for api in clients:
                engine_floor.cleanup(api, project)
                api.close()

    def repetition(self) -> None:
        tree = str(self.tree)
        self.engines_alone()
        self.declare(True)
        self.reconcile("fleet apply", "apply", tree)
        for _ in range(2):
            self.reconcile("fleet no-op plan", "plan", tree)
        for _ in range(2):
            with own_masters() as cold:
                self.reconcile("fleet no-op plan, no kept ssh master", "plan", tree, env=cold)
        if len(self.engines) > 1:  # where a no-op plan's time goes: the TLS Hosts, the ssh Hosts, one of each
            for kind in ("tls", "ssh"):
                self.reconcile(f"no-op plan, {kind} Hosts only", "plan", "--selector", f"transport={kind}", tree)
            for i in (0, 1):
                name = f"h-{self.engines[i].name}"
                self.reconcile(f"no-op plan, one {transport(i)} Host", "plan", "--host", name, tree)
        if self.args.hang:
            for kind in ("tls", "ssh"):
                last = [i for i in range(len(self.engines)) if transport(i) == kind]
                if last:
                    self.hung(last[-1])
        self.declare(False)
        self.reconcile("fleet teardown", "apply", "--allow-empty", tree)
        self.declare(True)
        for engine in self.engines:
            self.reconcile(f"single h-{engine.name}", "apply", "--host", f"h-{engine.name}", tree)
        self.declare(False)
        self.reconcile("fleet teardown", "apply", "--allow-empty", tree)
        self.declare(True)
        self.singles_at_once()
        self.declare(False)
        self.reconcile("fleet teardown", "apply", "--allow-empty", tree)

    def cleanup(self) -> None:
        for engine in self.engines:
            client = self.fleet.client(engine.name, "unix")
            try:
                remove_project_objects(client, self.project)
            finally:
                client.close()
        shutil.rmtree(self.root, ignore_errors=True)
        end_masters(self.runtime / "reconciler-ssh")
        shutil.rmtree(self.runtime, ignore_errors=True)

    def summary(self) -> dict[str, Any]:
        rows: dict[str, Any] = {}
        for scenario, runs in self.samples.items():
            seconds = [r.seconds for r in runs]
            busy = statistics.median(self.busy[scenario])
            rows[scenario] = {
                "median_s": statistics.median(seconds),
                "samples": seconds,
                "machine_busy_core_s": busy,
                "cpu_bound_s": busy / CORES,
                "exit_codes": [r.code for r in runs],
                "peak_rss_mib": max(r.rss_mib for r in runs),
            }
        singles = [row["median_s"] for name, row in rows.items() if name.startswith("single ")]
        noop = rows.get("fleet no-op plan", {}).get("median_s")
        derived: dict[str, Any] = {}
        if singles and "fleet apply" in rows:
            derived["slowest_single_apply_s"] = max(singles)
            derived["fleet_apply_over_slowest_single"] = rows["fleet apply"]["median_s"] / max(singles)
        if "fleet apply" in rows and "singles at once, slowest" in rows:
            derived["fleet_apply_over_slowest_single_at_once"] = (
                rows["fleet apply"]["median_s"] / rows["singles at once, slowest"]["median_s"]
            )
        if "fleet apply" in rows and "engines alone, converge" in rows:
            derived["fleet_apply_over_engines_alone"] = (
                rows["fleet apply"]["median_s"] / rows["engines alone, converge"]["median_s"]
            )
        for kind, timeout in (("tls", PING_TIMEOUT), ("ssh", PING_TIMEOUT)):
            row = rows.get(f"hung {kind} host")
            if row and noop is not None:
                derived[f"hung_{kind}_delay_s"] = row["median_s"] - noop
                derived[f"hung_{kind}_first_contact_timeout_s"] = timeout
        return {"scenarios": rows, "derived": derived}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engines", type=int, default=4, help="namespace engines (1-12, default 4; issue: 12)")
    parser.add_argument("--containers", type=int, default=5, help="containers per Host (default 5; issue: 20)")
    parser.add_argument("--reps", type=int, default=1, help="repetitions (default 1)")
    parser.add_argument("--no-hang", dest="hang", action="store_false", help="do not stop an engine")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--out", type=Path, help="also write the JSON here")
    args = parser.parse_args()
    os.environ["RECONCILER_FLEET_ENGINES"] = str(args.engines)
    # SIGTERM unwinds like Ctrl-C, so a stopped engine is continued and the objects removed
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    compile_reconciler()
    started = time.time()
    fleet = fleetenv.fleet()
    try:
        engines = sorted(fleet.engines.values(), key=lambda e: e.name)[: args.engines]
        if len(engines) < args.engines:
            sys.exit(f"the fleet has {len(engines)} engines, not {args.engines}")
        bench = FleetBench(args, fleet, engines)
        try:
            for rep in range(args.reps):
                print(f"repetition {rep + 1}/{args.reps}", file=sys.stderr, flush=True)
                bench.repetition()
        finally:
            bench.cleanup()
    finally:
        fleetenv.release()
    result = {
        "machine": machine(),
        "engines": args.engines,
        "containers_per_host": args.containers,
        "transports": {f"h-{e.name}": transport(i) for i, e in enumerate(engines)},
        "minutes": round((time.time() - started) / 60, 1),
        **bench.summary(),
    }
    if args.out:
        args.out.write_text(json.dumps(result, indent=2))
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"{result['machine']}\n{args.engines} engines, {args.containers} containers each, {result['minutes']} min")
    for scenario, row in result["scenarios"].items():
        codes = ",".join(str(c) for c in row["exit_codes"])
        print(
            f"{scenario:<38} {row['median_s']:>7.2f} s  (cores bound it at {row['cpu_bound_s']:5.2f} s)"
            f"   exit {codes}   RSS {row['peak_rss_mib']:.0f} MiB"
        )
    for key, value in result["derived"].items():
        print(f"{key:<40} {value:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
