"""Plain values that flow one way: files -> Resources -> Desired -> Plan (Changes) -> Results."""

from __future__ import annotations

import enum
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

API_VERSION = "reconciler/v1"


@dataclass(frozen=True)
class Source:
    """Where a document came from: `file` is relative to the manifest directory, `path` absolute."""

    file: str
    line: int
    path: Path


@dataclass(frozen=True)
class Resource:
    """One manifest document as written (spec not yet normalized), with the line of every field."""

    kind: str
    name: str
    spec: Mapping[str, Any]
    labels: Mapping[str, str]
    source: Source
    lines: Mapping[str, int] = field(default_factory=dict, compare=False, repr=False)

    @property
    def key(self) -> tuple[str, str]:
        return (self.kind, self.name)

    @property
    def subject(self) -> str:
        return f"{self.kind}/{self.name}"

    def line_of(self, path: str) -> int:
        """Line of the dotted field `path` (e.g. `spec.ports.0.hostPort`), or of its closest parent."""
        while path:
            if path in self.lines:
                return self.lines[path]
            path = path.rpartition(".")[0]
        return self.source.line


@dataclass(frozen=True)
class Desired:
    """A Resource with its normalized spec (defaults filled, paths resolved, referenced content hashed)."""

    resource: Resource
    spec: Mapping[str, Any]
    spec_hash: str
    sensitive: frozenset[str] = frozenset()  # dotted paths whose values are never printed

    @property
    def kind(self) -> str:
        return self.resource.kind

    @property
    def name(self) -> str:
        return self.resource.name

    @property
    def key(self) -> tuple[str, str]:
        return self.resource.key

    def secret_values(self) -> list[str]:
        """The values never to print of this object (to mask in text it printed, like a crashed container's log)."""
        return secret_values(self.spec, self.sensitive)


def secret_values(spec: Any, sensitive: Iterable[str]) -> list[str]:
    """The values of the env entries `sensitive` names (`env.NAME` paths of a `Desired`) in the normalized `spec`."""
    env = spec.get("env") if isinstance(spec, Mapping) else None
    if not isinstance(env, Mapping):
        return []
    values = (env.get(p.removeprefix("env.")) for p in sensitive if p.startswith("env."))
    return [str(v) for v in values if v not in (None, "")]


MASK = "(sensitive)"


def mask(text: str, secrets: Iterable[str]) -> str:
    """`text` with every secret replaced by "(sensitive)", longest first (no value is left half-masked), also
    where it was quoted with escapes (JSON, Python repr)."""
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        for form in {secret, secret.encode("unicode_escape").decode(), json.dumps(secret)[1:-1]}:
            text = text.replace(form, MASK)
    return text


@dataclass(frozen=True)
class Reference:
    """A dependency of one resource on another, found in the field at `path`."""

    kind: str
    name: str
    path: str
    required: bool = True  # False: a dependency only if declared (e.g. a container's image)
    condition: str = "started"


@dataclass(frozen=True)
class Observed:
    """What the engine (or kernel) has under a name, translated by a driver into the normalized spec shape."""

    kind: str
    name: str
    id: str
    labels: Mapping[str, str]
    spec: Mapping[str, Any]
    raw: Any = field(default=None, compare=False, repr=False)

    @property
    def project(self) -> str | None:
        return self.labels.get(LABEL_PROJECT)

    @property
    def spec_hash(self) -> str | None:
        return self.labels.get(LABEL_SPEC_HASH)

    @property
    def depends_on(self) -> list[str]:
        """The names of the same-kind objects it depended on when it was made (`ownership_labels` records them):
        a prune, which has no manifest left, removes it before them."""
        return list(filter(None, self.labels.get(LABEL_DEPENDS_ON, "").split(",")))

    def owned_by(self, project: str) -> bool:
        return self.project == project


class Action(enum.Enum):
    NONE = "none"
    CREATE = "create"
    UPDATE = "update"
    REPLACE = "replace"
    DELETE = "delete"

    @property
    def symbol(self) -> str:
        return {"none": " ", "create": "+", "update": "~", "replace": "-/+", "delete": "-"}[self.value]


@dataclass(frozen=True)
class FieldChange:
    """One field that differs; `action` is what this field alone needs (UPDATE in place, or REPLACE)."""

    path: str
    old: Any
    new: Any
    action: Action
    sensitive: bool = False
    note: str = ""


class Step(str):
    """One step of a change: the text a plan shows (the string itself) and what apply does for it, `op` with its
    `args`. Drivers build a change's steps once, in diff, and apply carries out exactly those (contract.run_steps),
    so what a plan promises and what apply does cannot drift apart. A plain string is a step with no op."""

    op: str
    args: tuple[Any, ...]

    def __new__(cls, text: str, op: str = "", *args: Any) -> Step:
        step = super().__new__(cls, text)
        step.op = op
        step.args = args
        return step

    def __reduce__(self) -> tuple[Any, ...]:
        return (Step, (str(self), self.op, *self.args))


@dataclass(frozen=True)
class Change:
    """What to do with one object. `blocked` says why a needed change will not be made (an error)."""

    kind: str
    name: str
    action: Action
    fields: tuple[FieldChange, ...] = ()
    desired: Desired | None = None
    observed: Observed | None = None
    blocked: str | None = None
    steps: tuple[str, ...] = ()  # explicit sub-steps shown in the plan (e.g. disconnect, recreate, reconnect)
    notes: tuple[str, ...] = ()

    @property
    def key(self) -> tuple[str, str]:
        return (self.kind, self.name)

    @property
    def subject(self) -> str:
        return f"{self.kind}/{self.name}"

    @property
    def pending(self) -> bool:
        return self.action is not Action.NONE and self.blocked is None

    @property
    def source(self) -> str:
        if self.desired is not None:
            src = self.desired.resource.source
            return f"{src.file}:{src.line}"
        if self.observed is not None:
            return self.observed.labels.get(LABEL_SOURCE, "")
        return ""


@dataclass(frozen=True)
class Plan:
    """Every change for a project, in no particular order (the executor orders them), plus notes."""

    project: str
    changes: tuple[Change, ...]
    notes: tuple[str, ...] = ()
    # dependencies between change keys: key -> keys it must wait for
    edges: Mapping[tuple[str, str], frozenset[tuple[str, str]]] = field(default_factory=dict)

    @property
    def pending(self) -> list[Change]:
        return [c for c in self.changes if c.pending]

    @property
    def blocked(self) -> list[Change]:
        return [c for c in self.changes if c.blocked is not None]

    @property
    def in_sync(self) -> bool:
        return not self.pending and not self.blocked


class Outcome(enum.Enum):
    APPLIED = "applied"
    FAILED = "failed"
    SKIPPED = "skipped"  # a change it depends on failed
    BLOCKED = "blocked"
    UNCHANGED = "unchanged"


class ErrorClass(enum.Enum):
    """What a failure says about retrying: the executor keeps it in each Result."""

    TEMPORARY = "temporary"  # may go away by itself (engine busy, registry down): retry with backoff
    UNAVAILABLE = "unavailable"  # the engine itself is unreachable: the whole pass waits for it
    PERMANENT = "permanent"  # repeats until the manifest or the host changes


@dataclass(frozen=True)
class Result:
    change: Change
    outcome: Outcome
    error: str | None = None
    seconds: float = 0.0
    error_class: ErrorClass | None = None  # set for FAILED
    retry_after: float | None = None  # seconds the failing driver suggests waiting, if it said
    log_tail: tuple[str, ...] = ()  # the failing container's last output lines (masked), when the driver had them
    replannable: bool = False  # FAILED by an engine fault: a later round of the same apply may plan it again


LABEL_PREFIX = "io.reconciler."
LABEL_PROJECT = "io.reconciler.project"
LABEL_KIND = "io.reconciler.kind"
LABEL_NAME = "io.reconciler.name"
LABEL_SPEC_HASH = "io.reconciler.spec-hash"
LABEL_SOURCE = "io.reconciler.source"
# Same-kind objects this one depends on ("a,b"): lets a prune, which has no manifest left, go in reverse order.
LABEL_DEPENDS_ON = "io.reconciler.depends-on"
# The git commit whose manifests created (or last replaced) the object, when they came from a git source.
LABEL_REVISION = "io.reconciler.revision"


def ownership_labels(
    desired: Desired, project: str, references: Iterable[Reference] = (), revision: str | None = None
) -> dict[str, str]:
    """The user's labels plus the contract's ownership labels, as stamped on the engine object; with
    `references`, the names of the same-kind objects it depends on too (for the order of a later prune); with
    `revision`, the git commit whose manifests made it."""
    labels = dict(desired.resource.labels)
    if revision:
        labels[LABEL_REVISION] = revision
    same_kind = sorted({r.name for r in references if r.kind == desired.kind})
    if same_kind:
        labels[LABEL_DEPENDS_ON] = ",".join(same_kind)
    labels.update(
        {
            LABEL_PROJECT: project,
            LABEL_KIND: desired.kind,
            LABEL_NAME: desired.name,
            LABEL_SPEC_HASH: desired.spec_hash,
            LABEL_SOURCE: desired.resource.source.file,
        }
    )
    return labels
