"""The commands: each reads its flags into the library's typed options, does its work on the one engine or on
every Host of a fleet (`fleet.run.for_each`) and prints the outcome; the exit status says how it went."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable

import structlog

from reconciler.cli.completion import script as completion_script
from reconciler.cli.exits import EXIT_CHANGES, EXIT_ERROR, EXIT_OK
from reconciler.cli.parser import build_parser, selection, typed_options
from reconciler.core.executor import succeeded
from reconciler.core.failures import read_failures, record_failures
from reconciler.core.placement import HostSpec
from reconciler.core.plugins import engine_class
from reconciler.core.project import Loaded, ProjectRunner, check_project_name, default_project
from reconciler.delays import APPLY_ROUNDS
from reconciler.fleet.run import HostRun, Targets, for_each, parse_rollout, targets
from reconciler.model import Plan, Result
from reconciler.output import render
from reconciler.output.liveview import LiveView, wants_live
from reconciler.watch.allocator import limit_malloc_arenas
from reconciler.watch.statuspage import status_of

RunnerFor = Callable[[HostSpec | None], ProjectRunner]


def runner_for(args: argparse.Namespace) -> RunnerFor:
    """Makes the runner of the one engine (`--docker-host`; host None) or of one Host of a fleet; the engine
    flags (`--parallel`, `--adopt`...) apply to each."""
    project = check_project_name(default_project(args.dir) if args.project is None else args.project)
    options = typed_options(args)
    engine_type = engine_class()
    engine_options = next(o for o in options if isinstance(o, engine_type.options_type))

    def runner(host: HostSpec | None) -> ProjectRunner:
        if host is None:
            engine = engine_type(engine_options)  # type: ignore[call-arg]  # the Engine protocol names no constructor
        else:
            engine = engine_type.for_host(host.engine, host.tls, engine_options)
        return ProjectRunner(
            project=project,
            manifest_dir=args.dir,
            engine=engine,
            options=options,
            host=None if host is None else host.name,
        )

    return runner


def _targets(args: argparse.Namespace) -> Targets:
    return targets(runner_for(args), selection(args))


def _planner(args: argparse.Namespace) -> Callable[[ProjectRunner, Loaded], Plan]:
    """How this command plans one target: pruning unless `--no-prune`, and never from an empty DIR without
    `--allow-empty`."""
    no_prune, allow_empty = getattr(args, "no_prune", False), getattr(args, "allow_empty", False)

    def make_plan(runner: ProjectRunner, loaded: Loaded) -> Plan:
        prune = not no_prune
        keep_reason = "kept because of --no-prune"
        if loaded.empty and not allow_empty:
            structlog.get_logger().warning(
                "manifests.empty",
                dir=str(args.dir),
                hint="nothing is pruned from an empty directory without --allow-empty",
            )
            prune = False
            keep_reason = "kept: the manifest directory is empty (use --allow-empty to prune)"
        runner.ctx.engine  # noqa: B018 - connect now so an unreachable engine is one clear error
        return runner.plan(loaded.catalog, prune=prune, keep_reason=keep_reason)

    return make_plan


def _plans(args: argparse.Namespace, where: Targets) -> list[HostRun]:
    make_plan = _planner(args)

    def work(run: HostRun, runner: ProjectRunner, loaded: Loaded) -> None:
        run.plan = make_plan(runner, loaded)

    return for_each(where, work)


def cmd_validate(args: argparse.Namespace) -> int:
    loaded = runner_for(args)(None).load_valid()
    print(f"{len(loaded.resources)} objects in {args.dir} are valid.")
    return EXIT_OK


def cmd_plan(args: argparse.Namespace) -> int:
    where = _targets(args)
    runs = _plans(args, where)
    if where.fleet:
        project = where.runners[0].project
        print(render.fleet_plan_json(project, runs) if args.output == "json" else render.fleet_plan_text(runs))
    else:
        plan = runs[0].plan
        assert plan is not None
        print(render.plan_json(plan) if args.output == "json" else render.plan_text(plan))
    if any(r.plan is None or r.plan.blocked for r in runs):
        return EXIT_ERROR
    return EXIT_OK if all(r.plan is not None and r.plan.in_sync for r in runs) else EXIT_CHANGES


def cmd_apply(args: argparse.Namespace) -> int:
    where = _targets(args)  # bad input stops before the lock or the engine are touched
    batch = parse_rollout(args.rollout) if where.fleet else None
    make_plan = _planner(args)
    live = not where.fleet and args.output == "text" and wants_live(args.progress)

    def work(run: HostRun, runner: ProjectRunner, loaded: Loaded) -> None:
        run.plan = make_plan(runner, loaded)
        if args.output == "text":
            heading = "" if run.host is None else f"Host {run.host.name} ({run.engine}):\n"
            print(f"{heading}{render.plan_text(run.plan)}", flush=True)
        run.results = _apply_live(runner, run.plan) if live else runner.apply(run.plan, rounds=APPLY_ROUNDS)
        record_failures(runner.project, run.engine, run.results)

    runs = for_each(where, work, lock=True, wait=args.wait, batch=batch, name_order=True)
    project = where.runners[0].project
    if where.fleet:
        print(render.fleet_results_json(project, runs) if args.output == "json" else render.fleet_results_text(runs))
        return EXIT_OK if not any(r.failed or r.skipped for r in runs) else EXIT_ERROR
    results = runs[0].results
    assert results is not None
    if live:
        print(render.results_summary(results))
    else:
        print(render.results_json(project, results) if args.output == "json" else render.results_text(results))
    return EXIT_OK if succeeded(results) else EXIT_ERROR


def _apply_live(runner: ProjectRunner, plan: Plan) -> list[Result]:
    """Apply with one line per object redrawn in place on the terminal."""
    view = LiveView()
    runner.ctx.progress_sink = view.progress
    view.begin(plan)
    try:
        return runner.apply(plan, on_result=view.result, rounds=APPLY_ROUNDS)
    finally:
        view.end()
        runner.ctx.progress_sink = None


def _status_rows(plan: Plan, failures: dict[str, dict[str, object]]) -> list[dict[str, object]]:
    rows = []
    for change in plan.changes:
        if change.desired is None:
            continue
        state = status_of(change.action, change.blocked)
        failure = failures.get(f"{change.kind}/{change.name}")
        blocked = change.blocked
        if failure and state != "in sync":
            state = "blocked" if failure.get("status") == "blocked" else "failing"
            if state == "blocked" and blocked is None:  # held by a failing dependency in the last apply/pass
                blocked = failure.get("error")  # type: ignore[assignment]
        rows.append(
            {
                "kind": change.kind,
                "name": change.name,
                "status": state,
                "source": change.source,
                "fields": [f.path for f in change.fields],
                "blocked": blocked,
                "lastError": (failure or {}).get("error"),
                "errorClass": (failure or {}).get("errorClass"),
                "nextRetry": (failure or {}).get("nextRetry"),
            }
        )
    return rows


def _status_line(row: dict[str, object]) -> str:
    detail = ", ".join(row["fields"]) or row["blocked"] or ""  # type: ignore[arg-type]
    if row["lastError"] and row["lastError"] != row["blocked"]:
        kind = f" ({row['errorClass']})" if row["errorClass"] else ""
        detail = f"{detail} last error{kind}: {row['lastError']}".strip()
    if row["nextRetry"]:
        detail = f"{detail}; next retry {row['nextRetry']}"
    where = f"  @{row['host']}" if "host" in row else ""
    return f"{row['status']:<8}  {row['kind']}/{row['name']}{where}" + (f"  ({detail})" if detail else "")


def cmd_status(args: argparse.Namespace) -> int:
    where = _targets(args)
    project = where.runners[0].project
    runs = _plans(args, where)
    rows = []
    for run in runs:
        if run.plan is None:
            continue
        found = _status_rows(run.plan, read_failures(project, run.engine))
        rows += found if run.host is None else [{**row, "host": run.host.name} for row in found]
    report: dict[str, object] = {"project": project, "objects": rows}
    down = []
    if where.fleet:
        down = [
            {"host": r.host.name, "engine": r.engine, "error": r.error}
            for r in runs
            if r.host is not None and r.plan is None
        ]
        report["unreachable"] = down
    if args.output == "json":
        print(json.dumps(report, indent=2))
    else:
        for row in rows:
            print(_status_line(row))
        for host in down:
            print(f"{'unreachable':<8}  Host/{host['host']}  ({host['error']})")
    return EXIT_OK if not down and all(r["status"] == "in sync" for r in rows) else EXIT_CHANGES


def cmd_watch(args: argparse.Namespace) -> int:
    from reconciler.watch.controller import WatchOptions
    from reconciler.watch.run import WatchRun, run_watch

    limit_malloc_arenas()  # before any thread: see reconciler/watch/allocator.py
    where = _targets(args)
    options = WatchOptions(prune=not args.no_prune, allow_empty=args.allow_empty, resync=args.resync)
    run = WatchRun(options, wait=args.wait, metrics_addr=args.metrics_addr, progress=args.progress)
    return run_watch(where.runners, run)


def cmd_completion(args: argparse.Namespace) -> int:
    print(completion_script(args.shell, build_parser()), end="")
    return EXIT_OK


def cmd_import(args: argparse.Namespace) -> int:
    from reconciler.compose import run_import

    return run_import(args.files, args.out, args.project, args.profile, sys.stdout, sys.stderr).exit_code


COMMANDS = {
    "validate": cmd_validate,
    "plan": cmd_plan,
    "apply": cmd_apply,
    "status": cmd_status,
    "watch": cmd_watch,
    "import": cmd_import,
    "completion": cmd_completion,
}
