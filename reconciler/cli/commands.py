"""Command line: argument parsing and output only; the work is done by the library."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

import structlog

from reconciler import __version__
from reconciler.cli import logs
from reconciler.cli.completion import SHELLS
from reconciler.cli.completion import script as completion_script
from reconciler.contract import NoOptions, cli_flags
from reconciler.core.executor import succeeded
from reconciler.core.failures import read_failures, record_failures
from reconciler.core.lock import ProjectLock
from reconciler.core.placement import HostSpec, select_hosts
from reconciler.core.plugins import driver_classes, engine_class
from reconciler.core.project import Loaded, ProjectRunner, check_project_name, default_project
from reconciler.errors import EngineUnavailable, PermanentError, ReconcileError, ValidationFailed
from reconciler.fleet.run import HostRun, apply_fleet, parse_rollout, plan_fleet
from reconciler.model import Plan, Result
from reconciler.output import render
from reconciler.output.liveview import MODES, LiveView, wants_live
from reconciler.watch.allocator import limit_malloc_arenas
from reconciler.watch.statuspage import status_of

EXIT_OK, EXIT_ERROR, EXIT_CHANGES = 0, 1, 2


class _Parser(argparse.ArgumentParser):
    """Usage errors exit 1: exit 2 means "changes pending" in this contract, and a typo in a CI job must not
    read as a pending plan."""

    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_ERROR, f"{self.prog}: error: {message}\n")


def option_types() -> list[type]:
    """The options dataclasses of the engine and of every installed driver: their `option` fields are flags."""
    types = [engine_class().options_type]
    for cls in driver_classes().values():
        if cls.options_type not in types and cls.options_type is not NoOptions:
            types.append(cls.options_type)
    return types


def _global_options(parser: argparse.ArgumentParser, types: list[type], suppress: bool) -> None:
    """The global options; on a command's parser they default to SUPPRESS, so `plan --project x DIR` and
    `--project x plan DIR` both work and neither position overrides the other with a default."""

    def default(value: object) -> object:
        return argparse.SUPPRESS if suppress else value

    parser.add_argument(
        "-p", "--project", default=default(None), help="project name (default: the manifest directory's base name)"
    )
    parser.add_argument("--log-format", choices=("console", "json"), default=default("console"))
    parser.add_argument("--debug", action="store_true", default=default(False), help="debug logs and tracebacks")
    parser.add_argument(
        "--host",
        action="append",
        default=default([]),
        metavar="NAME",
        help="in a fleet: only this Host (repeatable)",
    )
    parser.add_argument(
        "--selector",
        action="append",
        default=default([]),
        metavar="KEY=VALUE",
        help="in a fleet: only Hosts with this label (repeatable: all must match)",
    )
    for options_type in types:
        for fld, flag in cli_flags(options_type):
            names = [flag.short, flag.flag] if flag.short else [flag.flag]
            value = os.environ.get(flag.env, fld.default) if flag.env else fld.default
            if isinstance(fld.default, bool):  # a switch: `--no-wait`, not `--no-wait true`
                parser.add_argument(
                    *names,
                    dest=_dest(options_type, fld.name),
                    action="store_true",
                    default=default(value),
                    help=flag.help,
                )
                continue
            parser.add_argument(
                *names,
                dest=_dest(options_type, fld.name),
                type=flag.type,
                choices=flag.choices,
                default=default(value),
                help=flag.help,
            )


def _dest(options_type: type, name: str) -> str:
    return f"opt__{options_type.__name__}__{name}"


def _options(args: argparse.Namespace, types: list[type]) -> list[object]:
    """One instance of every options dataclass, from the parsed flags."""
    found = []
    for options_type in types:
        values = {fld.name: getattr(args, _dest(options_type, fld.name)) for fld, _ in cli_flags(options_type)}
        found.append(options_type(**values))
    return found


def build_parser() -> argparse.ArgumentParser:
    types = option_types()
    parser = _Parser(prog="reconcile", description="Declarative reconciliation for a Docker host.")
    parser.set_defaults(option_types=types)
    parser.add_argument("--version", action="version", version=f"reconcile {__version__}")
    _global_options(parser, types, suppress=False)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text)
        p.add_argument("dir", type=Path, metavar="DIR", help="the manifest directory")
        _global_options(p, types, suppress=True)
        return p

    command("validate", "check every manifest; touches no engine")
    plan = command("plan", "show what apply would do")
    plan.add_argument("-o", "--output", choices=("text", "json"), default="text")
    plan.add_argument("--no-prune", action="store_true", help="do not plan removal of objects whose manifest is gone")
    plan.add_argument("--allow-empty", action="store_true", help="let an empty DIR prune everything")
    apply = command("apply", "converge the host")
    apply.add_argument("-o", "--output", choices=("text", "json"), default="text")
    apply.add_argument("--no-prune", action="store_true", help="keep owned objects whose manifest is gone")
    apply.add_argument("--allow-empty", action="store_true", help="let an empty DIR prune everything")
    apply.add_argument("--wait", action="store_true", help="wait for another writer instead of failing")
    apply.add_argument(
        "--progress",
        choices=MODES,
        default="auto",
        help="auto (default): one live line per object when stdout is a terminal; tty: always; plain: never",
    )
    apply.add_argument(
        "--rollout",
        default="all",
        metavar="all|N",
        help="in a fleet: all Hosts at once (default), or N Hosts at a time in name order, stopping after a "
        "batch in which a Host failed",
    )
    status = command("status", "report each declared object: in sync, drifted, missing, failing")
    status.add_argument("-o", "--output", choices=("text", "json"), default="text")
    watch = command("watch", "apply, then keep converging")
    watch.add_argument("--no-prune", action="store_true")
    watch.add_argument("--allow-empty", action="store_true")
    watch.add_argument("--wait", action="store_true", help="wait for another writer instead of failing")
    watch.add_argument("--resync", type=float, default=300.0, help="seconds between full resyncs (default 300)")
    watch.add_argument(
        "--metrics-addr", help="serve the status page (/, /status.json), /healthz, /metrics on this loopback HOST:PORT"
    )
    watch.add_argument(
        "--progress",
        choices=MODES,
        default="auto",
        help="auto (default): live lines for each pass that changes something when stdout is a terminal; tty; plain",
    )
    importer = sub.add_parser("import", help="translate another tool's files into manifests")
    formats = importer.add_subparsers(dest="format", required=True, metavar="FORMAT", parser_class=_Parser)
    compose = formats.add_parser("compose", help="Docker Compose files (merged in order, as `-f` does)")
    compose.add_argument("files", type=Path, nargs="+", metavar="FILE", help="Compose files, merged in order")
    compose.add_argument("--out", type=Path, help="where to write the manifests (default: ./PROJECT)")
    # SUPPRESS: a default here would overwrite the global --project given before the command
    compose.add_argument("-p", "--project", default=argparse.SUPPRESS, help="the Compose project name")
    compose.add_argument("--profile", action="append", default=[], help="activate a Compose profile (repeatable)")
    completion = sub.add_parser("completion", help="print a shell completion script")
    completion.add_argument("shell", choices=SHELLS, help="the shell it is for")
    return parser


def _runner(args: argparse.Namespace, host: HostSpec | None = None) -> ProjectRunner:
    """The runner of the one engine (`--docker-host`), or of one Host of a fleet."""
    project = check_project_name(default_project(args.dir) if args.project is None else args.project)
    options = _options(args, args.option_types)
    engine_type = engine_class()
    engine_options = next(o for o in options if isinstance(o, engine_type.options_type))
    if host is None:
        engine = engine_type(engine_options)
        args.engine = engine.url
    else:
        engine = engine_type.for_host(host.engine, host.tls, engine_options)  # --parallel, --adopt apply to each
    return ProjectRunner(
        project=project,
        manifest_dir=args.dir,
        engine=engine,
        options=options,
        host=None if host is None else host.name,
    )


def _fleet(args: argparse.Namespace, loaded: Loaded) -> tuple[list[HostSpec], dict[str, ProjectRunner]]:
    """The Hosts this command works on (`--host`, `--selector`) and a runner for each."""
    hosts, errors = select_hosts(loaded.hosts, args.host, args.selector)
    if errors:
        raise PermanentError(errors[0])
    return hosts, {h.name: _runner(args, h) for h in hosts}


def _single_engine_only(args: argparse.Namespace) -> None:
    if args.host or args.selector:
        raise PermanentError("--host/--selector need a tree with Host manifests; this one has none")


def _plan(args: argparse.Namespace, runner: ProjectRunner, loaded: Loaded | None = None) -> Plan:
    loaded = loaded or runner.load_valid()
    prune = not getattr(args, "no_prune", False)
    keep_reason = "kept because of --no-prune"
    if loaded.empty and not getattr(args, "allow_empty", False):
        structlog.get_logger().warning(
            "manifests.empty",
            dir=str(args.dir),
            hint="nothing is pruned from an empty directory without --allow-empty",
        )
        prune = False
        keep_reason = "kept: the manifest directory is empty (use --allow-empty to prune)"
    runner.ctx.engine  # noqa: B018 - connect now so an unreachable engine is one clear error
    return runner.plan(loaded.catalog, prune=prune, keep_reason=keep_reason)


def cmd_validate(args: argparse.Namespace) -> int:
    runner = _runner(args)
    loaded = runner.load_valid()
    print(f"{len(loaded.resources)} objects in {args.dir} are valid.")
    return EXIT_OK


def cmd_plan(args: argparse.Namespace) -> int:
    runner = _runner(args)
    loaded = runner.load_valid()
    if loaded.hosts:
        hosts, runners = _fleet(args, loaded)
        runs = plan_fleet(runners, hosts, lambda r, current: _plan(args, r, current), loaded)
        print(render.fleet_plan_json(runner.project, runs) if args.output == "json" else render.fleet_plan_text(runs))
        if any(r.plan is None or r.plan.blocked for r in runs):
            return EXIT_ERROR
        return EXIT_OK if all(r.plan is not None and r.plan.in_sync for r in runs) else EXIT_CHANGES
    _single_engine_only(args)
    plan = _plan(args, runner, loaded)
    print(render.plan_json(plan) if args.output == "json" else render.plan_text(plan))
    if plan.blocked:
        return EXIT_ERROR
    return EXIT_OK if plan.in_sync else EXIT_CHANGES


def cmd_apply(args: argparse.Namespace) -> int:
    runner = _runner(args)
    loaded = runner.load_valid()  # bad input stops before the lock or the engine are touched
    if loaded.hosts:
        return _apply_fleet(args, runner, loaded)
    _single_engine_only(args)
    with ProjectLock(runner.project, args.engine, wait=args.wait) as lock:
        if lock.waited:  # the directory may have moved on while the holder ran (and applied it)
            loaded = runner.load_valid()
        plan = _plan(args, runner, loaded)
        if args.output == "text":
            print(render.plan_text(plan), flush=True)
        if args.output == "text" and wants_live(args.progress):
            results = _apply_live(runner, plan)
            record_failures(runner.project, args.engine, results)
            print(render.results_summary(results))
            return EXIT_OK if succeeded(results) else EXIT_ERROR
        results = runner.apply(plan)
        record_failures(runner.project, args.engine, results)
    print(render.results_json(runner.project, results) if args.output == "json" else render.results_text(results))
    return EXIT_OK if succeeded(results) else EXIT_ERROR


def _apply_live(runner: ProjectRunner, plan: Plan) -> list[Result]:
    """Apply with one line per object redrawn in place on the terminal."""
    view = LiveView()
    runner.ctx.progress_sink = view.progress
    view.begin(plan)
    try:
        return runner.apply(plan, on_result=view.result)
    finally:
        view.end()
        runner.ctx.progress_sink = None


def _apply_fleet(args: argparse.Namespace, runner: ProjectRunner, loaded: Loaded) -> int:
    batch = parse_rollout(args.rollout)
    hosts, runners = _fleet(args, loaded)

    def show(run: HostRun) -> None:
        if args.output == "text" and run.plan is not None:
            print(f"Host {run.host.name} ({run.engine}):\n{render.plan_text(run.plan)}", flush=True)

    runs = apply_fleet(runners, hosts, lambda r, current: _plan(args, r, current), loaded, args.wait, batch, show)
    if args.output == "json":
        print(render.fleet_results_json(runner.project, runs))
    else:
        print(render.fleet_results_text(runs))
    return EXIT_OK if not any(r.failed or r.skipped for r in runs) else EXIT_ERROR


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
    runner = _runner(args)
    loaded = runner.load_valid()
    if loaded.hosts:
        hosts, runners = _fleet(args, loaded)
        runs = plan_fleet(runners, hosts, lambda r, current: _plan(args, r, current), loaded)
        rows = []
        for run in runs:
            if run.plan is None:
                continue
            failures = read_failures(runner.project, run.engine)
            rows += [{**row, "host": run.host.name} for row in _status_rows(run.plan, failures)]
        down = [{"host": r.host.name, "engine": r.engine, "error": r.error} for r in runs if r.plan is None]
        if args.output == "json":
            print(json.dumps({"project": runner.project, "objects": rows, "unreachable": down}, indent=2))
        else:
            for row in rows:
                print(_status_line(row))
            for host in down:
                print(f"{'unreachable':<8}  Host/{host['host']}  ({host['error']})")
        return EXIT_OK if not down and all(r["status"] == "in sync" for r in rows) else EXIT_CHANGES
    _single_engine_only(args)
    plan = _plan(args, runner, loaded)
    rows = _status_rows(plan, read_failures(runner.project, args.engine))
    if args.output == "json":
        print(json.dumps({"project": runner.project, "objects": rows}, indent=2))
    else:
        for row in rows:
            print(_status_line(row))
    return EXIT_OK if all(r["status"] == "in sync" for r in rows) else EXIT_CHANGES


def cmd_watch(args: argparse.Namespace) -> int:
    from reconciler.watch.controller import run_watch

    limit_malloc_arenas()  # before any thread: see reconciler/watch/allocator.py
    runner = _runner(args)
    loaded = runner.load_valid()
    if loaded.hosts:
        _, runners = _fleet(args, loaded)
        return run_watch(args, list(runners.values()))
    _single_engine_only(args)
    return run_watch(args, [runner])


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


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logs.configure(args.log_format, args.debug)
    try:
        return COMMANDS[args.command](args)
    except ValidationFailed as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        print(f"{len(exc.problems)} problem(s) found; nothing was changed.", file=sys.stderr)
        return EXIT_ERROR
    except EngineUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except ReconcileError as exc:
        if args.debug:
            raise
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `reconcile plan | head`: the reader has gone, and that is fine
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
