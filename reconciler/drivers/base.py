"""The Driver protocol every kind implements, the context drivers get, and the entry-point registry."""

from __future__ import annotations

import contextlib
import importlib
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, ClassVar, Protocol, runtime_checkable

import structlog

from reconciler.errors import PermanentError
from reconciler.model import Change, Desired, Observed, Reference, Resource

ENTRY_POINT_GROUP = "reconciler.drivers"

# Used when the package metadata is not installed (running from a source tree).
BUILTIN_DRIVERS = {
    "Image": "reconciler.drivers.image.driver:ImageDriver",
    "Volume": "reconciler.drivers.volume.driver:VolumeDriver",
    "Network": "reconciler.drivers.network.driver:NetworkDriver",
    "Container": "reconciler.drivers.container.driver:ContainerDriver",
    "FirewallAllowList": "reconciler.drivers.firewall.driver:FirewallDriver",
}


@dataclass
class DriverContext:
    """What every driver gets: the project, the manifest directory and a lazily opened engine client.

    `engine_factory` is only called on first use, so `validate` (which never calls observe/apply)
    never contacts an engine.
    """

    project: str
    manifest_dir: Path
    engine_factory: Callable[[], Any] | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    log: Any = field(default_factory=structlog.get_logger)
    _engine: Any = None

    @property
    def engine(self) -> Any:
        if self._engine is None:
            if self.engine_factory is None:
                raise PermanentError("no engine configured")
            self._engine = self.engine_factory()
        return self._engine

    def reset_engine(self) -> None:
        """Forget the client, so the next use reconnects (after the engine restarted)."""
        engine, self._engine = self._engine, None
        close = getattr(engine, "close", None)
        if close is not None:
            # a client of a dead engine may fail to close; it is dropped either way
            with contextlib.suppress(Exception):
                close()


class Catalog(Protocol):
    """Read access to every desired object of the project (for cross-object checks)."""

    def get(self, kind: str, name: str) -> Desired | None: ...

    def of_kind(self, kind: str) -> list[Desired]: ...


@runtime_checkable
class Driver(Protocol):
    """One kind's translator between the model and the host.

    Pure methods (`normalize`, `references`, `check`, `diff`) never touch the host; `observe` only reads;
    `apply` is the one place that changes anything.
    """

    kind: ClassVar[str]
    rank: ClassVar[int]  # creation order between kinds: lower first (images 0, volumes/networks 1, ...)

    def __init__(self, ctx: DriverContext) -> None: ...

    def normalize(self, resource: Resource) -> Desired:
        """The normalized desired spec (defaults filled, relative paths resolved, content hashed)."""
        ...

    def references(self, desired: Desired) -> Iterable[Reference]:
        """Objects this one depends on."""
        ...

    def check(self, desired: Desired, catalog: Catalog) -> Iterable[tuple[str, str]]:
        """Semantic problems beyond the schema, as (dotted field path, message)."""
        ...

    def observe(self, declared: Collection[str]) -> Mapping[str, Observed]:
        """The project's objects of this kind, plus any object (owned or not) holding a declared name."""
        ...

    def diff(self, desired: Desired, observed: Observed | None) -> Change:
        """The one change that brings `observed` to `desired` (Action.NONE when in sync)."""
        ...

    def prune(self, observed: Observed) -> Change:
        """The change for an owned object whose manifest is gone (DELETE, or NONE with a note)."""
        ...

    def apply(self, change: Change) -> None:
        """Carry out `change` on the host; raise a ReconcileError on failure."""
        ...


def _load(spec: str) -> type:
    module, _, attr = spec.partition(":")
    return getattr(importlib.import_module(module), attr)


def driver_classes() -> dict[str, type]:
    """Kind -> driver class. Entry points of other distributions override the built-in ones."""
    found: dict[str, str] = dict(BUILTIN_DRIVERS)
    overrides: dict[str, str] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        dist = ep.dist.name if ep.dist is not None else ""
        if dist == "reconciler":
            found[ep.name] = ep.value
        else:
            overrides[ep.name] = ep.value
    found.update(overrides)
    return {kind: _LazyDriver(kind, spec) for kind, spec in found.items()}  # type: ignore[misc]


class _LazyDriver:
    """Imports a driver module only when its kind is used, so `validate` needs no engine libraries."""

    def __init__(self, kind: str, spec: str) -> None:
        self.kind = kind
        self.spec = spec

    def __call__(self, ctx: DriverContext) -> Driver:
        cls = _load(self.spec)
        return cls(ctx)


def make_drivers(ctx: DriverContext, kinds: Iterable[str] | None = None) -> dict[str, Driver]:
    """An instance of every installed driver. One that cannot be imported is left out with a warning: its
    kind is then neither planned nor pruned, and a manifest of that kind is a validation error."""
    classes = driver_classes()
    wanted = set(kinds) if kinds is not None else set(classes)
    drivers: dict[str, Driver] = {}
    for kind, factory in sorted(classes.items()):
        if kind not in wanted:
            continue
        try:
            drivers[kind] = factory(ctx)
        except (ImportError, AttributeError) as exc:
            ctx.log.warning("driver.unavailable", kind=kind, driver=getattr(factory, "spec", "?"), error=str(exc))
    return drivers
