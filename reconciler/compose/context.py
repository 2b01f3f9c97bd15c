"""What every mapping step shares: the manifests being built, the names chosen for Compose objects, where
relative paths point, and the loss report."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reconciler.compose.losses import LossReport
from reconciler.compose.source import ComposeError, Loc, Map, Seq

API_VERSION = "reconciler/v1"
NAME = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$")
COMPOSE_PROJECT = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
NETWORK_DRIVERS = ("bridge", "overlay", "macvlan", "ipvlan")
RESERVED_LABEL_PREFIX = "io.reconciler."
SECRETS_DIR = ".secrets"  # secret env values, one file per container: 0700 directory, 0600 files, git-ignored


def compose_project_name(raw: str) -> str:
    """The project name as Compose normalizes a directory name: lower case, only `[a-z0-9_-]`, leading
    punctuation dropped."""
    cleaned = re.sub(r"[^a-z0-9_-]", "", raw.lower()).lstrip("_-")
    return cleaned


@dataclass(frozen=True)
class Manifest:
    """One reconciler document to write, and the Compose place it came from."""

    kind: str
    name: str
    spec: dict[str, Any]
    origin: Loc
    labels: dict[str, str] = field(default_factory=dict)
    secrets: dict[str, str] = field(default_factory=dict)  # a Container's secret env values (never in `spec`)

    def document(self) -> dict[str, Any]:
        metadata: dict[str, Any] = {"name": self.name}
        if self.labels:
            metadata["labels"] = self.labels
        doc: dict[str, Any] = {"apiVersion": API_VERSION, "kind": self.kind, "metadata": metadata}
        if self.spec or self.kind in ("Container", "Image"):
            doc["spec"] = self.spec
        return doc


@dataclass
class Context:
    """Shared by every mapping step: names chosen for Compose objects, and where relative paths point."""

    project: str
    project_dir: Path  # Compose resolves relative paths against the first file's directory
    out_dir: Path  # manifests are written here; relative paths in them are relative to it
    report: LossReport
    networks: dict[str, str | None] = field(default_factory=dict)  # compose name -> Network name (None: not declared)
    network_subnets: dict[str, list[str]] = field(default_factory=dict)
    external_networks: set[str] = field(default_factory=set)  # compose names: subnets unknown, the engine checks
    volumes: dict[str, str | None] = field(default_factory=dict)  # compose name -> Volume name (None: not declared)
    containers: dict[str, str] = field(default_factory=dict)  # service -> Container name
    all_services: set[str] = field(default_factory=set)  # every service of the file, imported or not
    interpolated: dict[tuple[str, int, str], frozenset[str]] = field(default_factory=dict)
    variables: dict[str, str] = field(default_factory=dict)  # the shell over .env (ComposeProject.variables)
    grants: bool = True  # False with --no-grants: what needs an opt-in is left out (and reported) instead
    secret_env: frozenset[str] = frozenset()  # --secret-env NAME: env names or variables whose values are secret

    def variables_in(self, loc: Loc, key: str, value: str) -> frozenset[str]:
        """The shell or .env variables whose values make up `key`'s `value` written at `loc` (empty: none); a list
        entry was interpolated as a whole `KEY=VALUE`."""
        found = self.interpolated.get((loc.file, loc.line, value), frozenset())
        return found | self.interpolated.get((loc.file, loc.line, f"{key}={value}"), frozenset())

    def host_path(self, raw: str) -> Path:
        """A Compose path (relative to the project directory, `~` for the home directory) made absolute."""
        expanded = os.path.expanduser(raw)
        path = Path(expanded)
        return Path(os.path.normpath(path if path.is_absolute() else self.project_dir / path))

    def manifest_path(self, raw: str) -> str:
        """How a manifest in `out_dir` spells a Compose path: relative ones stay relative (now to `out_dir`)."""
        absolute = self.host_path(raw)
        if os.path.isabs(os.path.expanduser(raw)):
            return str(absolute)
        rel = os.path.relpath(absolute, self.out_dir)
        return rel if rel.startswith("../") or rel == ".." else f"./{rel}" if rel != "." else "."


def string_map(values: Map, ctx: Context, what: str, labels: bool = False) -> dict[str, str]:
    """A Compose mapping of strings (labels, driver options) as manifest strings (numbers and booleans as
    written, an empty value as ""); keys reconciler reserves, and empty keys, are reported, not copied."""
    out: dict[str, str] = {}
    for key, value in values.items():
        loc = values.at(key)
        if not key:
            ctx.report.lost(loc, what, "an empty key cannot be declared")
            continue
        if labels and key.startswith(RESERVED_LABEL_PREFIX):
            ctx.report.lost(loc, f"{what}.{key}", "labels starting with io.reconciler. are reserved for ownership")
            continue
        if value is None:
            out[key] = ""
            continue
        if isinstance(value, Map | Seq):
            raise ComposeError(loc.file, loc.line, f"{what}.{key} must be a string")
        out[key] = values.text(key)
    return out
