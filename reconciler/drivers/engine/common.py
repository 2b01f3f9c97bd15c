"""What the docker_* drivers share: the engine client, the ownership view of labels, concurrent inspects."""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from reconciler.contract import BaseDriver
from reconciler.drivers.engine import lazy
from reconciler.drivers.engine.adoption import adopting
from reconciler.drivers.engine.errors import engine_errors
from reconciler.drivers.engine.session import EngineOptions
from reconciler.errors import PermanentError
from reconciler.model import LABEL_PREFIX, LABEL_PROJECT, Observed

T = TypeVar("T")
INSPECT_CONCURRENCY = 8
SWARM_TASK_LABEL = "com.docker.swarm.task.id"


def user_labels(labels: Mapping[str, str] | None) -> dict[str, str]:
    """Labels other than the ownership ones (engines and images add their own: compare as 'at least')."""
    return {k: v for k, v in (labels or {}).items() if not k.startswith(LABEL_PREFIX)}


def concurrently(fn: Callable[[str], T], names: Iterable[str]) -> dict[str, T]:
    """fn(name) for every name, a few at a time; names whose fn raises lazy.NotFound are left out."""
    names = sorted(set(names))
    if not names:
        return {}

    def guarded(name: str) -> tuple[str, T | None]:
        try:
            return name, fn(name)
        except lazy.NotFound:
            return name, None

    with ThreadPoolExecutor(max_workers=min(INSPECT_CONCURRENCY, len(names))) as pool:
        return {name: value for name, value in pool.map(guarded, names) if value is not None}


def by_name(inspect: Callable[[str], Mapping[str, Any]]) -> Callable[[str], Mapping[str, Any]]:
    """`inspect` that finds an object by its exact name only: the engine also answers to an ID or an ID prefix,
    and a declared name such as `db` or `cafe` must never take over an object whose ID starts with it."""

    def lookup(name: str) -> Mapping[str, Any]:
        try:
            info = inspect(name)
        except lazy.APIError as exc:  # a name that is no object's but the start of several IDs
            text = str(exc.explanation or exc).lower()
            if "multiple ids found" in text or "ambiguous" in text:
                raise lazy.NotFound(f"no object is named {name}") from None
            raise
        if str(info.get("Name") or "").lstrip("/") != name:
            raise lazy.NotFound(f"no object is named {name}")
        return info

    return lookup


class DockerDriver(BaseDriver):
    """Base of the engine drivers: the engine client; subclasses fill in the kind-specific parts."""

    @property
    def api(self) -> Any:
        return self.ctx.engine

    def errors(self, name: str, verb: str) -> Any:
        return engine_errors(f"{self.kind.lower()} {name}: {verb}")

    def inspect_image(self, ref: str) -> Mapping[str, Any]:
        """The engine's answer about image `ref` for `observe`: in a watch, kept between passes until an image event
        (reconciler.drivers.engine.remembered); lazy.ImageNotFound (a lazy.NotFound) when the engine has none."""
        return self.api.remembered.image(ref, self.api.inspect_image)

    def observe_named(
        self, listed: Mapping[str, Observed], declared: Collection[str], inspect: Callable[[str], Observed]
    ) -> dict[str, Observed]:
        """The owned objects `listed`, plus whatever holds a declared name outside that list (owned or not)."""
        found = dict(listed)
        with self.errors("*", "observe"):
            found.update(concurrently(inspect, [n for n in declared if n not in listed]))
        return found

    def users(self, name: str) -> list[dict[str, Any]]:
        """Every container (running or not) that uses object `name`, by the engine's filter for this kind.
        Containers of swarm service tasks are left out: swarm manages them (and refuses to remove what a
        service still uses), and the stopped ones it keeps as task history would otherwise block forever."""
        with self.errors(name, "list containers using it"):
            found = self.api.containers(all=True, filters={self.kind.lower(): name})
        return [c for c in found if SWARM_TASK_LABEL not in (c.get("Labels") or {})]

    def split_users(self, name: str) -> tuple[list[str], str | None]:
        """From one listing: the sorted names of the project's containers using `name` (the ones a replace may
        touch), and why `name` must not be replaced or removed (containers of other owners use it) or None."""
        own: list[str] = []
        others: list[str] = []
        for c in self.users(name):
            (own if self._ours(c) else others).append(c["Names"][0].lstrip("/"))
        why = f"{self.kind.lower()} is used by containers this project does not own: {', '.join(sorted(others))}"
        return sorted(own), why if others else None

    def _ours(self, summary: Mapping[str, Any]) -> bool:
        """A container of this project, or (with --adopt) of the Compose project it is taking over: those are
        replaced by the project's own in the same plan."""
        labels = summary.get("Labels") or {}
        if labels.get(LABEL_PROJECT) == self.project:
            return True
        return adopting(self.ctx.options_for(EngineOptions).adopt, labels, self.project)

    def foreign_users(self, name: str) -> str | None:
        """Why `name` must not be replaced or removed: the containers of other owners that use it, or None."""
        return self.split_users(name)[1]

    def own_users(self, name: str, consequence: str) -> list[dict[str, Any]]:
        """The project's containers using `name`, at apply time; a container of another owner that appeared
        since the plan stops the change (`consequence` says what is then left undone): those are never touched."""
        found = self.users(name)
        for summary in found:
            if not self._ours(summary):
                raise PermanentError(
                    f"{self.kind.lower()} {name}: container {summary['Names'][0].lstrip('/')} of another owner "
                    f"uses it; {consequence}"
                )
        return found
