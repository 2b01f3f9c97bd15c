"""Compose files -> one merged, interpolated model, with the project name and directory Compose would use."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from reconciler.compose.context import COMPOSE_PROJECT, compose_project_name
from reconciler.compose.extends import resolve_extends
from reconciler.compose.interpolation import Interpolator, parse_dotenv
from reconciler.compose.losses import LossReport
from reconciler.compose.merging import merge_files, normalize_file, settle
from reconciler.compose.source import ComposeError, Loc, Map, parse_compose, read_text

TOP_LEVEL = {"version", "name", "services", "networks", "volumes", "secrets", "configs", "include"}


@dataclass(frozen=True)
class ComposeProject:
    model: Map
    name: str
    directory: Path  # relative paths in every file are relative to this: the first file's directory
    profiles: frozenset[str]
    interpolated: dict[tuple[str, int, str], frozenset[str]]  # see Interpolator.sources
    variables: Mapping[str, str]  # the shell over .env: what `- NAME` in environment takes its value from


def _shown(path: Path) -> str:
    """How a file is named in messages: as the user gave it."""
    return str(path)


_DEFAULT_FILES = ("compose.yaml", "compose.yml", "docker-compose.yaml", "docker-compose.yml")


def _warn_about_override(files: Sequence[Path], warn: Callable[[Loc, str], None]) -> None:
    """`docker compose` without -f merges `compose.override.yaml` (or `docker-compose.override.yml`) over the
    default file; an import of the default file alone would silently differ from what runs."""
    first = files[0]
    if first.name not in _DEFAULT_FILES:
        return
    given = {os.path.abspath(f) for f in files}
    stem = first.name.rsplit(".", 1)[0]
    for suffix in ("yaml", "yml"):
        override = first.parent / f"{stem}.override.{suffix}"
        if override.is_file() and os.path.abspath(override) not in given:
            warn(
                Loc(str(first), 0),
                f"{override} exists and `docker compose` without -f merges it; pass it too to import what runs",
            )


def load_project(
    files: Sequence[Path],
    project: str | None,
    profiles: Sequence[str],
    report: LossReport,
    warn: Callable[[Loc, str], None],
    environ: Mapping[str, str] | None = None,
) -> ComposeProject:
    """Read, interpolate, check and merge `files` in order; raises ComposeError for the first bad input."""
    if not files:
        raise ComposeError("reconcile", 0, "no Compose file given")
    directory = Path(os.path.abspath(files[0])).parent
    env: dict[str, str] = {}
    dotenv = directory / ".env"
    if os.path.lexists(dotenv):  # a link to /dev/zero or a FIFO is reported by the reader, not skipped unsaid
        env.update(parse_dotenv(read_text(dotenv, _shown(dotenv)), _shown(dotenv)))
    env.update(os.environ if environ is None else environ)  # the shell wins over .env, as in Compose
    interpolator = Interpolator(env, warn)
    _warn_about_override(files, warn)
    loaded = []
    for path in files:
        shown = _shown(path)
        top = parse_compose(read_text(path, shown), shown)
        top = interpolator.tree(top, top.loc)
        for key in top:
            at = top.at(key)
            if key == "include":
                report.lost(
                    at,
                    "include",
                    "not resolved by the import: list the included files with -f, or import "
                    "the output of `docker compose config`",
                )
            elif key == "version":
                pass  # obsolete in the Compose Specification; it means nothing
            elif key not in TOP_LEVEL and not key.startswith("x-"):
                value = top[key]
                if isinstance(value, Map) and ("image" in value or "build" in value):
                    raise ComposeError(
                        at.file,
                        at.line,
                        f"unknown top-level key {key!r}: Compose file format 1 "
                        "(services at the top level) is not supported; put them under services:",
                    )
                raise ComposeError(at.file, at.line, f"unknown top-level key {key!r}")
        top.pop("include", None)
        loaded.append(normalize_file(top))
    model = merge_files(loaded)
    others: dict[Path, Map] = {}

    def load_other(file: str, at: Loc) -> Map:
        path = Path(os.path.normpath(directory / file))
        if path not in others:
            other = parse_compose(read_text(path, file), file)
            others[path] = settle(normalize_file(interpolator.tree(other, other.loc)))
        return others[path]

    resolve_extends(model, directory, load_other, report)
    model = settle(model)
    if project is not None:
        if not COMPOSE_PROJECT.match(project):
            raise ComposeError(
                "--project",
                0,
                f"invalid project name {project!r}: use a-z, 0-9, '_' and '-', starting with a letter or digit",
            )
        name = project
    elif model.get("name"):
        name = compose_project_name(model.text("name"))
    elif env.get("COMPOSE_PROJECT_NAME"):
        name = compose_project_name(env["COMPOSE_PROJECT_NAME"])
    else:
        name = compose_project_name(directory.name)
    if not name:
        raise ComposeError(_shown(files[0]), 0, "no project name can be derived: pass --project NAME")
    active = set(profiles)
    active.update(p.strip() for p in env.get("COMPOSE_PROFILES", "").split(",") if p.strip())
    return ComposeProject(model, name, directory, frozenset(active), interpolator.sources, env)
