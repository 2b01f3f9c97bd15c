"""`reconcile import compose FILE... [--out DIR] [--project NAME] [--profile NAME]`: the whole import, with its
exit status: 0 everything mapped, 2 valid output but something set is not mapped or a grant needs review, 1 error
(nothing written)."""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from reconciler.compose import writing
from reconciler.compose.context import SECRETS_DIR
from reconciler.compose.loading import load_project
from reconciler.compose.losses import LossReport, Severity, render
from reconciler.compose.mapping import build_manifests
from reconciler.compose.source import ComposeError, Loc
from reconciler.compose.swarm import build_swarm_manifests

EXIT_OK, EXIT_ERROR, EXIT_LOSSES = 0, 1, 2


@dataclass(frozen=True)
class ImportOutcome:
    """The exit status, the files now in DIR (none on error), and the loss report."""

    exit_code: int
    written: list[Path]
    report: LossReport


def _validate(staging: Path, project: str) -> list[str]:
    """The problems `reconcile validate` would report for the staged output (none, unless the import is wrong)."""
    from structlog.testing import capture_logs

    from reconciler.core.project import ProjectRunner

    # validation's own warnings (a build context outside DIR) are about paths that are fine here
    with capture_logs():
        loaded = ProjectRunner(project=project, manifest_dir=staging).load()
    return [str(problem) for problem in loaded.problems]


def run_import(
    files: Sequence[Path],
    out: Path | None,
    project: str | None,
    profiles: Sequence[str],
    stdout: TextIO,
    stderr: TextIO,
    grants: bool = True,
    secret_env: Sequence[str] = (),
    verbose: bool = False,
    swarm: bool = False,
) -> ImportOutcome:
    """Import `files` into `out` (default `./<project>`); messages go to `stdout`/`stderr`. `grants` False
    (--no-grants) leaves out what needs an opt-in; `secret_env` names more secret values (--secret-env); `verbose`
    lists every report line instead of one example per key; `swarm` (--swarm) writes what `docker stack deploy`
    would make (swarm.build_swarm_manifests)."""
    report = LossReport()
    warnings: list[str] = []

    def warn(loc: Loc, message: str) -> None:
        line = f"{loc}: warning: {message}"
        if line not in warnings:
            warnings.append(line)
            print(line, file=stderr)

    try:
        compose = load_project(files, project, profiles, report, warn)
        out_dir = Path(out if out is not None else Path.cwd() / compose.name).absolute()
        stale = writing.check_out_dir(out_dir)
        manifests = (build_swarm_manifests if swarm else build_manifests)(
            compose.model,
            compose.name,
            compose.directory,
            out_dir,
            compose.profiles,
            report,
            compose.interpolated,
            compose.variables,
            grants,
            secret_env,
        )
    except ComposeError as exc:
        print(str(exc), file=stderr)
        return ImportOutcome(EXIT_ERROR, [], report)
    sources = ", ".join(str(f) for f in files)
    command = "reconcile import compose " + " ".join(
        [shlex.quote(str(f)) for f in files]
        + ["--project", compose.name]
        + [a for p in sorted(compose.profiles) for a in ("--profile", p)]
        + [a for name in secret_env for a in ("--secret-env", name)]
        + ([] if grants else ["--no-grants"])
        + (["--swarm"] if swarm else [])
    )
    texts = [(writing.file_name(m), writing.render_manifest(m, sources)) for m in manifests]
    texts.append(
        (
            writing.REPORT_FILE,
            writing.render_report(report.entries, compose.name, sources, command, warnings, verbose),
        )
    )
    try:
        secrets = [(f"{m.name}.env", writing.render_env_file(m.secrets)) for m in manifests if m.secrets]
        staging = writing.stage(out_dir, texts, secrets)
    except OSError as exc:
        print(f"error: cannot write next to {out_dir}: {exc.strerror}", file=stderr)
        return ImportOutcome(EXIT_ERROR, [], report)
    try:
        problems = _validate(staging, compose.name)
        if problems:
            for problem in problems:
                print(problem.replace(str(staging), str(out_dir)), file=stderr)
            print(
                "error: the imported manifests do not validate (a bug in the import); nothing was written", file=stderr
            )
            writing.discard(staging)
            return ImportOutcome(EXIT_ERROR, [], report)
        written = writing.publish(staging, out_dir, stale)
    except OSError as exc:
        writing.discard(staging)
        print(f"error: cannot write {out_dir}: {exc.strerror}", file=stderr)
        return ImportOutcome(EXIT_ERROR, [], report)
    except BaseException:
        writing.discard(staging)
        raise
    for line in render(report.entries, verbose):
        print(line, file=stderr)
    counts = {s: sum(1 for e in report.entries if e.severity is s) for s in Severity}
    if report.entries:
        print(
            f"{counts[Severity.GRANT]} grants to review, {counts[Severity.NOT_MAPPED]} not mapped, "
            f"{counts[Severity.SECRET]} secret values kept out, {counts[Severity.FLAGGED]} flagged; "
            f"the report is in {out_dir / writing.REPORT_FILE}",
            file=stderr,
        )
    print(f"Wrote {len(manifests)} manifests for project {compose.name} to {out_dir}.", file=stdout)
    for step in _next_steps(counts, out_dir, grants):
        print(f"Next: {step}", file=stdout)
    print(f"Next: reconcile --project {compose.name} validate {out_dir}", file=stdout)
    return ImportOutcome(EXIT_LOSSES if report.anything_lost or report.grants else EXIT_OK, written, report)


def _next_steps(counts: dict[Severity, int], out_dir: Path, grants: bool) -> list[str]:
    """What a user must do before applying, most important first."""
    steps = []
    if counts[Severity.GRANT]:
        steps.append(
            f"review the {counts[Severity.GRANT]} grants: apply gives those containers what they allow "
            "(import again with --no-grants to leave them out)"
        )
    if counts[Severity.NOT_MAPPED]:
        steps.append(
            f"{counts[Severity.NOT_MAPPED]} settings were not carried over: add them by hand where reconciler has "
            "a field, or accept the difference (the report says why for each)"
        )
    if counts[Severity.SECRET]:
        steps.append(
            f"secret values are in {out_dir / SECRETS_DIR} (mode 0600, git-ignored): never commit them; copy them "
            "to every host that applies these manifests"
        )
    if not grants:
        steps.append("what needs an opt-in was left out (--no-grants); the report lists it")
    return steps
