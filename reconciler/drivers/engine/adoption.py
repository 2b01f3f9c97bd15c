"""Taking over what a running Compose project created (`plan --adopt`, `apply --adopt`).

Compose marks its objects with `com.docker.compose.project`; engine labels cannot change afterwards. So an
adopted volume or network keeps its Compose labels and is remembered as the project's in a state file, bound to
its identity (a volume's creation time, a network's ID): a later object of the same name is not adopted by
mistake. Containers are not adopted in place: the plan replaces each by one of the project's own (the Compose
container is stopped, parked, and removed once the new one runs; restored if it does not).

Only objects whose name (or Compose service) is declared are ever taken over; nothing of another Compose
project, or of no project, is touched, and without `--adopt` nothing is taken over at all.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping

from reconciler.model import LABEL_KIND, LABEL_NAME, LABEL_PREFIX, LABEL_PROJECT
from reconciler.statefile import read_json, state_dir, write_json

COMPOSE_PREFIX = "com.docker.compose."
COMPOSE_PROJECT = "com.docker.compose.project"
COMPOSE_SERVICE = "com.docker.compose.service"
COMPOSE_NUMBER = "com.docker.compose.container-number"


def compose_project(labels: Mapping[str, str] | None) -> str | None:
    """The Compose project an object belongs to, when no reconciler project owns it."""
    labels = labels or {}
    if labels.get(LABEL_PROJECT):
        return None
    return labels.get(COMPOSE_PROJECT) or None


def as_owned(labels: Mapping[str, str] | None, kind: str, name: str, project: str) -> dict[str, str]:
    """An adopted object's labels as the planner should see them: the project's (no spec hash: compared field
    by field)."""
    return {**(labels or {}), LABEL_PROJECT: project, LABEL_KIND: kind, LABEL_NAME: name}


def without_compose(labels: Mapping[str, str] | None) -> dict[str, str]:
    """User labels of an adopted object: neither ours nor the ones Compose stamped."""
    return {
        k: v for k, v in (labels or {}).items() if not k.startswith(COMPOSE_PREFIX) and not k.startswith(LABEL_PREFIX)
    }


# Every driver of a pass writes the same file (volumes and networks are applied concurrently): one lock for the
# process; processes are kept apart by the project lock.
_WRITING = threading.Lock()


class Adopted:
    """`<state dir>/<project>/adopted[-<engine>].json`: kind -> name -> identity of each adopted object."""

    def __init__(self, project: str, engine_key: str = "") -> None:
        suffix = f"-{engine_key}" if engine_key else ""
        self.path = state_dir() / project / f"adopted{suffix}.json"

    def load(self) -> dict[str, dict[str, str]]:
        data = read_json(self.path)
        if not isinstance(data, dict):
            return {}
        return {str(k): {str(n): str(i) for n, i in v.items()} for k, v in data.items() if isinstance(v, dict)}

    def holds(self, kind: str, name: str, identity: str | None) -> bool:
        return bool(identity) and self.load().get(kind, {}).get(name) == identity

    def record(self, kind: str, name: str, identity: str) -> None:
        with _WRITING:
            data = self.load()
            data.setdefault(kind, {})[name] = identity
            write_json(self.path, data)

    def forget(self, kind: str, name: str) -> None:
        with _WRITING:
            data = self.load()
            if data.get(kind, {}).pop(name, None) is not None:
                write_json(self.path, data)


def adopting(adopt: bool, labels: Mapping[str, str] | None, project: str) -> bool:
    """True when `--adopt` is on and the object belongs to the Compose project of the same name."""
    return adopt and compose_project(labels) == project
