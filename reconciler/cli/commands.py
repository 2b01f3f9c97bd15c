"""The commands: each reads its flags into the library's typed options, does its work on the one engine or on
every Host of a fleet (`fleet.run.for_each`) and prints the outcome; the exit status says how it went."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import structlog

from reconciler.cli.completion import script as completion_script
from reconciler.cli.exits import EXIT_CHANGES, EXIT_ERROR, EXIT_OK
from reconciler.cli.parser import build_parser, selection, typed_options
from reconciler.contract import Driver, DriverContext, UpdateCheck
from reconciler.core.executor import succeeded
from reconciler.core.failures import read_failures, record_failures
from reconciler.core.placement import HostSpec
from reconciler.core.plugins import engine_class
from reconciler.core.project import Loaded, ProjectRunner, check_project_name, default_project, update_notes
from reconciler.delays import APPLY_ROUNDS
from reconciler.errors import Problem, ReconcileError, ValidationFailed
from reconciler.fleet.run import HostRun, Targets, for_each, parse_rollout, targets
from reconciler.gitsource import FetchFailed, GitAuth, GitSource, Revision
from reconciler.gitsource.applied import AppliedRecord, is_source_dir, revision_status, stable_tree
from reconciler.gitsource.propose import check_branch_name, parse_author
from reconciler.model import Plan, Result
from reconciler.output import render
from reconciler.output.liveview import LiveView, wants_live
from reconciler.updates import ImageUpdate
from reconciler.watch.allocator import limit_malloc_arenas
from reconciler.watch.gitpoll import log_revision
from reconciler.watch.statuspage import status_of

RunnerFor = Callable[[HostSpec | None], ProjectRunner]


def _manifest_dir(args: argparse.Namespace) -> Path:
    """DIR, or with a git source the files of the commit in force (`args.tree`, set by `_git_once`/`cmd_watch`)."""
    tree: Path | None = getattr(args, "tree", None)
    return tree if tree is not None else args.dir


def _git_source(args: argparse.Namespace) -> GitSource | None:
    if not getattr(args, "git", None):
        return None
    auth = GitAuth(
        ssh_key=args.git_ssh_key, known_hosts=args.git_known_hosts, credentials_file=args.git_credentials_file
    )
    return GitSource(
        args.git, args.dir, ref=args.ref, path=args.path, verify_signatures=args.verify_signatures, auth=auth
    )


@contextlib.contextmanager
def _git_once(args: argparse.Namespace) -> Iterator[Revision | None]:
    """`plan --git` / `apply --git`: fetch the newest commit of the ref once and work on its files. A refused commit
    (unsigned, wrongly signed, no --path in it) stops the command before the engine is touched."""
    source = _git_source(args)
    if source is None:
        yield None
        return
    with source:
        result = source.sync()
        AppliedRecord(args.dir).refused(result.rejected)
        if result.rejected is not None:
            reason = result.rejected.reason
            raise ReconcileError(f"{args.git}: the newest commit is refused: {reason}; nothing was changed")
        assert result.in_force is not None and result.tree is not None
        log_revision("git.revision", result.in_force)
        args.tree, args.revision = result.tree, result.in_force.commit
        yield result.in_force


def runner_for(args: argparse.Namespace) -> RunnerFor:
    """Makes the runner of the one engine (`--docker-host`; host None) or of one Host of a fleet; the engine
    flags (`--parallel`, `--adopt`...) apply to each."""
    project = check_project_name(default_project(args.dir) if args.project is None else args.project)
    options = typed_options(args)
    engine_type = engine_class()
    engine_options = next(o for o in options if isinstance(o, engine_type.options_type))

    as_host = getattr(args, "as_host", None)
    # the drivers found once for every Host's runner: finding them reads every installed distribution's entry
    # points, a tenth of a fleet's no-op plan when each of a dozen runners did it again
    found: list[dict[str, Callable[[DriverContext], Driver]]] = []

    def runner(host: HostSpec | None) -> ProjectRunner:
        if host is None or as_host is not None:  # pull mode: the Host is this machine, whatever its spec.engine
            engine = engine_type(engine_options)  # type: ignore[call-arg]  # the Engine protocol names no constructor
        else:
            engine = engine_type.for_host(host.engine, host.tls, engine_options)
        made = ProjectRunner(
            project=project,
            manifest_dir=_manifest_dir(args),
            engine=engine,
            options=options,
            host=None if host is None else host.name,
            pull=host is not None and as_host is not None,
            classes=found[0] if found else None,
        )
        if not found:
            found.append(made.classes or {})
        made.ctx.revision = getattr(args, "revision", None)  # plan/apply --git: the commit they work on
        return made

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


def _plans(args: argparse.Namespace, where: Targets, updates: dict[str, UpdateCheck] | None = None) -> list[HostRun]:
    """Plan every target; with `updates` (plan, status) also ask the update policies once, keeping what they found
    per Host name ("" for the one engine) and noting it on the plan."""
    make_plan = _planner(args)

    def work(run: HostRun, runner: ProjectRunner, loaded: Loaded) -> None:
        run.plan = make_plan(runner, loaded)
        if updates is not None:
            check = updates[runner.host or ""] = runner.updates(loaded.catalog)
            run.plan = update_notes(run.plan, check)

    return for_each(where, work)


def _refuse_commit_mode(args: argparse.Namespace, loaded: Loaded) -> None:
    """`mode: commit` rewrites manifests through the git source: without `--git`, apply and watch refuse it
    (reconcile never rewrites a plain directory behind its user's back)."""
    if getattr(args, "git", None):
        return
    problems = [
        Problem(
            r.source.file,
            r.line_of("spec.update.mode"),
            r.subject,
            "spec.update.mode",
            "`commit` needs the git source (--git): reconcile never rewrites a plain directory; use `report`",
        )
        for r in loaded.resources
        if isinstance(r.spec.get("update"), dict) and r.spec["update"].get("mode") == "commit"
    ]
    if problems:
        raise ValidationFailed(problems)


def _in_source_dir(args: argparse.Namespace) -> dict[str, object] | None:
    """`validate DIR` and `status DIR` of a directory a git source keeps: the commit in force, read from disk."""
    if not is_source_dir(args.dir):
        return None
    args.tree = stable_tree(args.dir)
    return revision_status(args.dir)


def cmd_validate(args: argparse.Namespace) -> int:
    _in_source_dir(args)
    loaded = runner_for(args)(None).load_valid()
    print(f"{len(loaded.resources)} objects in {args.dir} are valid.")
    return EXIT_OK


def cmd_plan(args: argparse.Namespace) -> int:
    with _git_once(args):
        return _plan(args)


def _plan(args: argparse.Namespace) -> int:
    where = _targets(args)
    runs = _plans(args, where, updates={})
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
    with _git_once(args) as revision:
        code = _apply(args)
        if revision is not None and code == EXIT_OK:
            AppliedRecord(args.dir).applied(revision)
            log_revision("git.revision_applied", revision)
        return code


def _apply(args: argparse.Namespace) -> int:
    where = _targets(args)  # bad input stops before the lock or the engine are touched
    _refuse_commit_mode(args, where.loaded)
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


def _status_rows(
    plan: Plan, failures: dict[str, dict[str, object]], check: UpdateCheck | None = None
) -> list[dict[str, object]]:
    offered = {u.image: u for u in (check.found if check is not None else ())}
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
                "logTail": (failure or {}).get("logTail") or [],
                "updateAvailable": _update_field(offered.get(change.name) if change.kind == "Image" else None),
            }
        )
    return rows


def _update_field(update: ImageUpdate | None) -> dict[str, str] | None:
    """`status -o json`'s `updateAvailable` of an Image: the versions for people and the reference to write."""
    if update is None:
        return None
    return {"from": update.old_version, "to": update.new_version, "reference": update.new_reference}


def _status_line(row: dict[str, object]) -> str:
    detail = ", ".join(row["fields"]) or row["blocked"] or ""  # type: ignore[arg-type]
    if row["lastError"] and row["lastError"] != row["blocked"]:
        kind = f" ({row['errorClass']})" if row["errorClass"] else ""
        detail = f"{detail} last error{kind}: {row['lastError']}".strip()
    if row["nextRetry"]:
        detail = f"{detail}; next retry {row['nextRetry']}"
    offered = row.get("updateAvailable")
    if isinstance(offered, dict):
        update = f"update available: {offered['from']} -> {offered['to']}"
        detail = f"{detail}; {update}" if detail else update
    where = f"  @{row['host']}" if "host" in row else ""
    return f"{row['status']:<8}  {row['kind']}/{row['name']}{where}" + (f"  ({detail})" if detail else "")


def _revision_line(revision: dict[str, object]) -> str:
    applied = f"applied {revision['appliedAt']}" if revision.get("appliedAt") else "not applied in full yet"
    line = f"{'revision':<8}  {str(revision['commit'])[:12]} of {revision['ref']}: {revision['message']}  ({applied})"
    rejected = revision.get("rejected")
    if isinstance(rejected, dict):
        line += f"\n{'refused':<8}  {str(rejected.get('commit'))[:12]}: {rejected.get('reason')}"
    return line


def cmd_status(args: argparse.Namespace) -> int:
    revision = _in_source_dir(args)
    where = _targets(args)
    project = where.runners[0].project
    checks: dict[str, UpdateCheck] = {}
    runs = _plans(args, where, updates=checks)
    rows = []
    for run in runs:
        if run.plan is None:
            continue
        check = checks.get("" if run.host is None else run.host.name)
        found = _status_rows(run.plan, read_failures(project, run.engine), check)
        rows += found if run.host is None else [{**row, "host": run.host.name} for row in found]
    report: dict[str, object] = {"project": project, "objects": rows}
    if revision is not None:
        report["revision"] = revision
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
        if revision is not None:
            print(_revision_line(revision))
        for row in rows:
            print(_status_line(row))
            tail = row["logTail"] if row["status"] != "in sync" else []
            for line in tail if isinstance(tail, list) else []:
                print(f"          | {line}")
        for host in down:
            print(f"{'unreachable':<8}  Host/{host['host']}  ({host['error']})")
    return EXIT_OK if not down and all(r["status"] == "in sync" for r in rows) else EXIT_CHANGES


def cmd_watch(args: argparse.Namespace) -> int:
    from reconciler.watch.controller import WatchOptions
    from reconciler.watch.run import GitWatch, WatchRun, run_watch

    limit_malloc_arenas()  # before any thread: see reconciler/watch/allocator.py
    if args.webhook_secret_file is not None and not (args.git and args.metrics_addr):
        raise ReconcileError("--webhook-secret-file needs --git (what to fetch) and --metrics-addr (where to listen)")
    _check_commit_options(args)
    source = _git_source(args)
    try:
        git = None
        if source is not None:
            git = GitWatch(
                source,
                args.poll,
                update_branch=args.update_branch,
                signing_key=args.git_signing_key,
                author=args.git_author,
            )
        if source is not None:
            _first_sync(args, source)
        where = _targets(args)
        _refuse_commit_mode(args, where.loaded)
        options = WatchOptions(prune=not args.no_prune, allow_empty=args.allow_empty, resync=args.resync)
        run = WatchRun(
            options,
            wait=args.wait,
            metrics_addr=args.metrics_addr,
            progress=args.progress,
            git=git,
            webhook_secret=args.webhook_secret_file,
            notify=tuple(args.notify),
            update_interval=args.update_interval,
        )
        return run_watch(where.runners, run)
    finally:
        if source is not None:
            source.close()


def _check_commit_options(args: argparse.Namespace) -> None:
    """`--update-branch`, `--git-signing-key` and `--git-author` say where and how update commits are pushed: only
    a git source has somewhere to push them. Checked before anything is fetched."""
    given = [
        flag
        for flag, value in (
            ("--update-branch", args.update_branch),
            ("--git-signing-key", args.git_signing_key),
            ("--git-author", args.git_author),
        )
        if value is not None
    ]
    if given and not args.git:
        raise ReconcileError(f"{given[0]} needs --git: update commits are pushed to the git source's repository")
    if args.update_branch is not None:
        check_branch_name(args.update_branch)
    if args.git_author is not None:
        parse_author(args.git_author)
    key = args.git_signing_key
    if key is not None and not (key.is_file() and os.access(key, os.R_OK)):
        raise ReconcileError(f"{key}: cannot read the --git-signing-key file")


def _first_sync(args: argparse.Namespace, source: GitSource) -> None:
    """`watch --git` starts with the newest commit, or with the one in force when the remote cannot be reached
    or the newest is refused; with neither, there is nothing to apply and watch stops."""
    log = structlog.get_logger()
    try:
        result = source.sync()
    except FetchFailed as exc:
        if source.tree() is None:
            raise
        log.warning("git.fetch_failed", url=args.git, error=str(exc), hint="the commit in force stays")
    else:
        AppliedRecord(args.dir).refused(result.rejected)
        if result.rejected is not None:
            log.error("git.commit_refused", commit=result.rejected.commit[:12], reason=result.rejected.reason)
            if result.tree is None:
                raise ReconcileError(
                    f"{args.git}: the newest commit is refused ({result.rejected.reason}) and no earlier commit was "
                    "ever applied from it; nothing to watch"
                )
    revision = source.in_force()
    if revision is not None:
        log_revision("git.revision", revision)
    args.tree = stable_tree(args.dir)


def cmd_images(args: argparse.Namespace) -> int:
    """`images outdated DIR`: what each update policy would change now, for scripts (exit 2: something is)."""
    runner = runner_for(args)(None)
    loaded = runner.load_valid()
    check = runner.updates(loaded.catalog)
    if args.output == "json":
        doc = {
            "project": runner.project,
            "outdated": [
                {
                    "image": u.image,
                    "file": u.file,
                    "line": u.line,
                    "mode": u.mode,
                    "from": u.old_version,
                    "to": u.new_version,
                    "oldReference": u.old_reference,
                    "newReference": u.new_reference,
                }
                for u in check.found
            ],
            "unchecked": [{"kind": k, "name": n, "error": e} for (k, n), e in check.problems],
        }
        print(json.dumps(doc, indent=2))
    else:
        for u in check.found:
            where = f"{u.file}:{u.line}"
            print(f"Image/{u.image}  {u.old_version} -> {u.new_version}  {u.new_reference}  ({where}, {u.mode})")
        if not check.found:
            unchecked = f"; {len(check.problems)} could not be checked (see the warnings)" if check.problems else ""
            print(f"No image is outdated{unchecked}.")
    if check.found:
        return EXIT_CHANGES
    return EXIT_ERROR if check.problems else EXIT_OK


def cmd_completion(args: argparse.Namespace) -> int:
    print(completion_script(args.shell, build_parser()), end="")
    return EXIT_OK


def cmd_import(args: argparse.Namespace) -> int:
    from reconciler.compose import run_import

    outcome = run_import(
        args.files,
        args.out,
        args.project,
        args.profile,
        sys.stdout,
        sys.stderr,
        grants=not args.no_grants,
        secret_env=args.secret_env,
        verbose=args.verbose,
        swarm=args.swarm,
    )
    return outcome.exit_code


COMMANDS = {
    "validate": cmd_validate,
    "plan": cmd_plan,
    "apply": cmd_apply,
    "status": cmd_status,
    "watch": cmd_watch,
    "import": cmd_import,
    "images": cmd_images,
    "completion": cmd_completion,
}
