"""The driver contract: everything the core calls on a driver, and everything a driver gets from the core.

This is the one module a driver author reads. The core (planner, catalog, executor, controller, CLI) calls
drivers only through the hooks declared here, never by probing for attributes; drivers import nothing of the
core but this module and the plain values of `reconciler.model`, `reconciler.errors`, `reconciler.spechash`,
`reconciler.diffing` and `reconciler.statefile`.

## Lifetime: one driver instance per pass
`ProjectRunner` makes a fresh instance of every driver for each pass (one `plan`, one `apply`, one watch pass:
observe -> diff/prune -> follow -> after_plan -> apply) and drops it afterwards. Within a pass a driver may keep
what its own `observe` saw (it is told the desired objects) for its `diff`, `prune` and `apply`; nothing
survives into the next pass. Validation uses instances of its own, on which only the pure hooks are called.
What must outlive a pass (the engine connection) lives in the `Engine`, reached through `DriverContext`.

## The call order of a pass
1. `normalize(resource)` for every document, then `references`, `catalog_references` and `check` with the
   whole catalog (pure: no engine, no host; validation runs these alone). `watch` also asks every document's
   `inputs` (the files it is read from besides the manifest) to know what to watch.
2. `observe(desired)` once per kind, all kinds concurrently (reads the host, changes nothing).
3. `diff(desired, observed)` for each declared object, `prune(observed)` for each owned object whose manifest
   is gone, `leftover_of(observed)` to tell replace leftovers from gone objects (they may read the host, e.g.
   which containers use a network, and never change it).
4. `follow(change, upstream)` in rank order, then `after_plan(change, changes)` once the plan is whole (pure).
5. `apply(change)` per pending change, in dependency order, concurrently across independent changes.

## Steps
A change's `steps` are `model.Step`s: the text the plan prints, with the op (and arguments) apply performs for
it. Drivers build them once, in `diff`/`prune`, and carry them out with `run_steps(change, handlers)`, so the
steps a plan prints are the steps apply runs. A change the plan shows without steps (a plain create of a network
or volume) is the one operation its action names.

## Progress
While `apply` runs, a driver may say what the change is doing now with `ctx.progress(key, state, detail)`:
`state` is one of `PROGRESS_STATES` (`pulling`/`pushing` with bytes, `building` with the step, `waiting` for a
dependency, `starting`, `settling`, `healthy`), `detail` a short text. The core shows it in the live view of
`apply` and `watch` (one line per object on a terminal); it never changes what is done, is a no-op when nobody
listens (plan, JSON output, stdout not a terminal) and never raises into the driver. `healthy` may be said of
another object's key (a dependency the change waited for and saw healthy). The core itself reports `waiting`
(queued), `applying`, and the end state from each Result.

## Errors
Hooks raise `reconciler.errors.ReconcileError` subclasses: `TemporaryError` (retry may help; `delay` suggests
when), `EngineUnavailable` (the engine itself is unreachable) or `PermanentError` (fix the manifest or the
host). `normalize`/`check` report manifest problems as `SpecError` / `(path, message)` pairs, never tracebacks.
The executor keeps the class in each `Result`, so `watch` retries temporary failures with backoff and holds
permanent ones until the manifest or the observed object changes (or the periodic resync).
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import os
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, NoReturn, Protocol, TypeVar, runtime_checkable

import structlog

from reconciler.errors import PermanentError
from reconciler.model import Change, Desired, Observed, Reference, Resource
from reconciler.model import Step as Step  # drivers build plan steps with it
from reconciler.updates import ImageUpdate

Key = tuple[str, str]
T = TypeVar("T")

# What `DriverContext.progress` may say about a change in flight (the core adds "applying", "done", "failed").
PROGRESS_STATES = ("waiting", "pulling", "building", "pushing", "starting", "settling", "healthy")
ProgressSink = Callable[[Key, str, str], None]


# --- typed options ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CliFlag:
    """How one field of a driver's or engine's options dataclass appears on the command line."""

    flag: str  # e.g. "--firewall-backend"
    help: str
    type: Callable[[str], Any] | None = None  # how the flag's text becomes the value (default: kept as text)
    choices: tuple[str, ...] | None = None
    env: str | None = None  # environment variable giving the default
    short: str | None = None  # e.g. "-H"
    metavar: str | None = None  # what `--help` calls the value, e.g. "URL", "N", "SECONDS" (default: from the flag)
    # Which commands offer the flag: "engine" every command that reads the engine (plan, apply, status, watch),
    # "apply" those that change it (apply, watch), "global" every command, before or after it.
    scope: str = "engine"


def option(default: Any, flag: str, help: str, **kwargs: Any) -> Any:
    """A dataclass field that is also a global CLI flag: `backend: str = option("auto", "--firewall-backend", ...)`.

    Fields declared without `option` are not on the command line (tests and embedders set them)."""
    return field(default=default, metadata={"cli": CliFlag(flag, help, **kwargs)})


def cli_flags(options_type: type) -> list[tuple[dataclasses.Field[Any], CliFlag]]:
    """The fields of an options dataclass that are CLI flags, in declaration order."""
    return [(f, f.metadata["cli"]) for f in dataclasses.fields(options_type) if "cli" in f.metadata]


class NoOptions:
    """Options of a driver that has none."""


# --- the engine --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EngineEvent:
    """One notification from the engine: `action` is a short word for logs ("die", "destroy"); `raw` is the
    engine's own record, read only by the drivers' `event_keys`."""

    action: str
    raw: Any
    type: str = ""  # what the event is about, for logs ("container", "network")


@dataclass(frozen=True)
class TlsFiles:
    """Client TLS material for an engine: the CA its certificate must chain to, our certificate and key."""

    ca: Path
    cert: Path
    key: Path


@runtime_checkable
class Engine(Protocol):
    """Where the drivers' objects live, for the life of a command (one `watch` keeps it for months).

    Implemented next to the drivers (reconciler.drivers.engine for Docker); the core only calls these.
    """

    options_type: ClassVar[type]
    # Host paths that hand this engine (and with it the host) to whoever reads or bind-mounts them: its sockets,
    # its data root. The core adds them to the host's own sensitive paths (reconciler.core.safeio).
    sensitive_paths: ClassVar[tuple[str, ...]]

    @classmethod
    def canonical_address(cls, address: str) -> str:
        """One spelling of an engine address (default port filled in, socket path resolved...), so that two
        spellings of one engine share its lock and failure state; no contact."""
        ...

    @classmethod
    def address_problems(cls, address: str, tls: bool) -> list[tuple[str, str]]:
        """(field, message) for each reason a Host's `spec.engine` (with `spec.tls` or not) cannot be used, found at
        `validate`: no contact."""
        ...

    @classmethod
    def is_local(cls, address: str) -> bool:
        """Whether the engine is reached through a socket of this machine (local firewall rules apply to it)."""
        ...

    @classmethod
    def for_host(cls, address: str, tls: TlsFiles | None, options: Any = None) -> Engine:
        """The engine of one Host of a fleet (`unix://`, `tcp://` with TLS, `ssh://`); does not connect. `options`
        (of `options_type`) are the command's engine flags (`--parallel`, ...), the address and TLS replaced."""
        ...

    @property
    def url(self) -> str:
        """A stable address naming this engine (the lock and the state file are per engine); no contact."""
        ...

    def client(self) -> Any:
        """The connected client the drivers use, connecting on first use; raises EngineUnavailable."""
        ...

    def ping(self) -> None:
        """Raise EngineUnavailable unless the engine answers now."""
        ...

    def identity(self) -> str:
        """What tells this engine from every other one (however it is addressed); connects."""
        ...

    def reset(self) -> None:
        """Drop the connection so the next `client()` connects afresh (after the engine restarted)."""
        ...

    def cluster_node(self) -> str | None:
        """This engine's node ID in the cluster it belongs to (a swarm, as manager or worker), or None; connects."""
        ...

    def cluster_nodes(self) -> frozenset[str]:
        """The node IDs of the cluster this engine manages (empty unless it is a manager); connects."""
        ...

    def resync(self) -> None:
        """The watch's resync: keep nothing remembered of the engine's objects that a change the event stream
        may have missed (an engine can drop events for a subscriber that falls behind) could have made untrue;
        drop everything unless the engine's own record of that time shows what changed. An engine that
        remembers nothing does nothing."""
        ...

    def events(self) -> Iterator[EngineEvent]:
        """Connect (raising EngineUnavailable when that fails) and return a blocking stream of notifications
        that may concern declared objects, on its own connection; the stream ends or raises when the
        connection is lost. `close_events()` unblocks it from another thread. While the stream is connected,
        the engine may remember what it answered about objects until an event says they changed (a watch's
        passes then ask only about those)."""
        ...

    def close_events(self) -> None: ...

    def close(self) -> None: ...


# --- what drivers get ---------------------------------------------------------------------------------------------


@dataclass
class DriverContext:
    """What every driver gets: the project, the manifest directory, the engine and typed options.

    `engine_factory` (or `engine_handle.client`) is only called on first use of `engine`, so `validate` (which
    never calls observe/apply) never contacts an engine. `options` is a collection of options dataclass
    instances, looked up by type with `options_for`.
    """

    project: str
    manifest_dir: Path
    engine_factory: Callable[[], Any] | None = None
    options: Iterable[Any] = ()
    log: Any = field(default_factory=structlog.get_logger)
    engine_handle: Engine | None = None
    host: str | None = None  # in a fleet: the Host this context's engine is
    revision: str | None = None  # the git commit the manifests come from (stamped as io.reconciler.revision)
    progress_sink: ProgressSink | None = None  # set by the core while a live view shows an apply
    _engine: Any = None

    def __post_init__(self) -> None:
        self._options = {type(o): o for o in self.options}
        if self.engine_factory is None and self.engine_handle is not None:
            self.engine_factory = self.engine_handle.client

    def progress(self, key: Key, state: str, detail: str = "") -> None:
        """Report what the change of `key` (kind, name) is doing now (see "Progress" above); never raises."""
        sink = self.progress_sink
        if sink is None:
            return
        try:
            sink(key, state, detail)
        except Exception:  # a display problem must never fail a change
            self.log.debug("progress.dropped", exc_info=True)

    def options_for(self, options_type: type[T]) -> T:
        """This run's instance of `options_type`, or its defaults."""
        found = self._options.get(options_type)
        return found if found is not None else options_type()

    @property
    def engine_url(self) -> str | None:
        """The engine's address, known without contacting it (None when no engine is configured)."""
        return self.engine_handle.url if self.engine_handle is not None else None

    @property
    def state_key(self) -> str:
        """What names this engine in the state files drivers keep: "" for the one engine of a tree without
        Hosts (the names used before fleets existed), else a digest of the Host's engine address."""
        if self.host is None or self.engine_url is None:
            return ""
        return hashlib.sha256(self.engine_url.encode()).hexdigest()[:12]

    @property
    def engine(self) -> Any:
        """The engine client, connected on first use."""
        if self._engine is None:
            if self.engine_factory is None:
                raise PermanentError("no engine configured")
            self._engine = self.engine_factory()
        return self._engine

    def reset_engine(self) -> None:
        """Forget the client, so the next use reconnects (after the engine restarted)."""
        self._engine = None
        if self.engine_handle is not None:
            self.engine_handle.reset()


@dataclass(frozen=True)
class UpdateCheck:
    """What an `updates` hook found: the updates its policies offer, and per object why it could not ask
    (`"cannot check for updates: registry ... is unreachable"`), a temporary condition reported as a warning."""

    found: tuple[ImageUpdate, ...] = ()
    problems: tuple[tuple[Key, str], ...] = ()

    def __add__(self, other: UpdateCheck) -> UpdateCheck:
        return UpdateCheck(self.found + other.found, self.problems + other.problems)


class Catalog(Protocol):
    """Read access to every desired object of the project (for cross-object checks)."""

    def get(self, kind: str, name: str) -> Desired | None: ...

    def of_kind(self, kind: str) -> list[Desired]: ...

    def dependencies(self, key: Key) -> set[Key]: ...


# --- the driver ---------------------------------------------------------------------------------------------------


def _must_override(hook: str) -> NoReturn:
    raise NotImplementedError(f"the driver does not define {hook}")


@runtime_checkable
class Driver(Protocol):
    """One kind's translator between the model and the host: the contract, written once.

    Every hook and class attribute the core may use is declared here, with its default; `HOOKS` and `ATTRIBUTES`
    are read off this class (docs/drivers.md's tables are checked against them by a unit test). Drivers subclass
    `BaseDriver` (which inherits every default below) and override what they need; a hook whose default raises
    NotImplementedError (`normalize`, `observe`, `diff`, `prune`, `apply`) must be overridden.
    """

    # the manifest kind, e.g. "Volume"
    kind: ClassVar[str] = ""
    # creation order between kinds: lower first (images 0, volumes/networks 1, containers 2, firewall 3)
    rank: ClassVar[int] = 0
    # JSON Schema of the kind's documents, for kinds whose schema is not shipped in schemas/
    schema: ClassVar[Mapping[str, Any] | None] = None
    # the options dataclass read from the CLI (its `option` fields become global flags)
    options_type: ClassVar[type] = NoOptions
    # True: a declared name held by an object of another owner is a plan error (the planner blocks it).
    # False: the driver judges ownership itself in diff (an image reference can be shared by projects).
    claims_names: ClassVar[bool] = True
    # True: a delete waits for every change of a higher rank (a volume goes once no container uses it)
    delete_after_users: ClassVar[bool] = True
    # True: a create/update/replace waits for the deletes of its own kind (a pruned container may hold the
    # host port or static IP its successor needs)
    create_after_deletes: ClassVar[bool] = False
    # True: objects of this kind act on the machine reconcile runs on, not through the engine (firewall rules);
    # in a fleet they may only be placed on Hosts reached through a local socket
    local_only: ClassVar[bool] = False

    def __init__(self, ctx: DriverContext) -> None: ...

    # -- pure: no engine, no host; validation calls only these ------------------------------------------------
    def normalize(self, resource: Resource) -> Desired:
        """The normalized desired spec: defaults filled, units canonical, relative paths resolved, referenced
        content hashed. Raise SpecError(field, message) for a bad field."""
        _must_override("normalize")

    def references(self, desired: Desired) -> Iterable[Reference]:
        """Objects this one depends on, from its own spec. Default: none."""
        return ()

    def catalog_references(self, desired: Desired, catalog: Catalog) -> Iterable[Reference]:
        """Dependencies only the whole catalog can resolve (a container's image -> an Image manifest with that
        reference). Default: none."""
        return ()

    def check(self, desired: Desired, catalog: Catalog) -> Iterable[tuple[str, str]]:
        """Semantic problems beyond the schema, as (dotted field path, message). Default: none."""
        return ()

    def cluster_wide(self, desired: Desired) -> bool:
        """Whether the object, made on the Hosts it is placed on, is usable on every Host that is a node of the
        same cluster (a swarm's attachable overlay network): objects on those Hosts may then refer to it, and
        the fleet checks the membership on the engines and applies its Hosts first. Default: no."""
        return False

    def local_fields(self, desired: Desired) -> Iterable[tuple[str, str]]:
        """(dotted field path, what) for each part of the object that acts on the machine reconcile runs on (a
        file written here for the engine to bind-mount): it may only go to an engine reached through a local
        socket, which validation checks. Default: none."""
        return ()

    def event_keys(self, event: EngineEvent, project: str, known: set[Key]) -> Iterable[Key]:
        """The objects (of this kind) an engine event is about; `known` holds the keys of the last plan.
        Pure, called from the event thread. Default: none."""
        return ()

    def inputs(self, resource: Resource) -> Iterable[Path]:
        """The files and directories besides the manifest that this document's desired state is read from
        (env files, build contexts, read-only bind-mounted configuration, secret files), as absolute paths,
        from the document as written. Pure; `watch` watches them and runs a pass when they change. Called on
        every document watch reads, also one whose `normalize` fails (a broken env file): the fix must be
        noticed too. Default: none."""
        return ()

    # -- reads the host --------------------------------------------------------------------------------------
    def observe(self, desired: Sequence[Desired]) -> Mapping[str, Observed]:
        """The project's objects of this kind plus any object (owned or not) holding a declared name, keyed by
        name. Called once per pass, before any diff or prune of that pass. Changes nothing."""
        _must_override("observe")

    # -- may read the host, never change it; given what observe saw in this pass ------------------------------
    def diff(self, desired: Desired, observed: Observed | None) -> Change:
        """The one change that brings `observed` to `desired` (Action.NONE when in sync), with the `Step`s apply
        will take (`Change.steps`, which apply follows through `run_steps`: one source for both)."""
        _must_override("diff")

    def prune(self, observed: Observed) -> Change:
        """The change for an owned object whose manifest is gone: DELETE, or NONE with a note why it stays."""
        _must_override("prune")

    def leftover_of(self, observed: Observed) -> str | None:
        """The declared name `observed` is a leftover of (an interrupted replace's parked object), or None.
        Leftovers of declared objects are pruned even with --no-prune. Default: None."""
        return None

    def follow(self, change: Change, upstream: list[Change]) -> Change:
        """Revise `change` given the pending changes of what it depends on (a container follows a rebuilt
        image). Default: unchanged."""
        return change

    def after_plan(self, change: Change, changes: Mapping[Key, Change]) -> Change:
        """Revise `change` once every change of the plan is known. Default: unchanged."""
        return change

    def updates(self, desired: Sequence[Desired]) -> UpdateCheck:
        """The newer references the update policies of `desired` (this kind's declared objects) find now
        (`spec.update` of an Image: a registry's tags or digest). Asks outside services, never changes the host;
        called once per `plan`/`status`/`images outdated` and on watch's `--update-interval`, not every pass.
        Never raises for an unreachable service: that is a problem of the check. Default: nothing to offer."""
        return UpdateCheck()

    # -- changes the host ------------------------------------------------------------------------------------
    def apply(self, change: Change) -> None:
        """Carry out `change` on the host, step by step as its plan said; raise a ReconcileError on failure."""
        _must_override("apply")


# The contract's names, read off `Driver` (declaration order): what `missing_hooks` asks of a driver class.
ATTRIBUTES: tuple[str, ...] = tuple(Driver.__annotations__)
HOOKS: tuple[str, ...] = tuple(
    name for name, value in vars(Driver).items() if inspect.isfunction(value) and not name.startswith("_")
)


class BaseDriver(Driver):
    """What drivers subclass: every default of `Driver`, plus the context, a logger bound to the kind and the
    project's name."""

    def __init__(self, ctx: DriverContext) -> None:
        self.ctx = ctx
        self.log = ctx.log.bind(kind=self.kind) if hasattr(ctx.log, "bind") else ctx.log

    @property
    def project(self) -> str:
        return self.ctx.project


def run_steps(change: Change, handlers: Mapping[str, Callable[..., object]]) -> None:
    """Carry out `change.steps` in order, each by the handler its `op` names: apply does what the plan printed,
    step by step. A step whose op has no handler is a driver bug, reported before anything is done."""
    ops = [getattr(step, "op", "") for step in change.steps]  # a plain string is a step with no op
    unknown = sorted({op for op in ops if op not in handlers})
    if unknown:
        raise PermanentError(f"internal error: {change.subject}: no handler for step(s) {', '.join(unknown)}")
    for step in change.steps:
        handlers[step.op](*step.args)  # type: ignore[attr-defined]


def input_path(resource: Resource, raw: str) -> Path:
    """A path written in a manifest, made absolute: relative paths are relative to the manifest file."""
    path = Path(raw).expanduser()
    if not path.is_absolute():
        path = resource.source.path.parent / path
    return Path(os.path.normpath(path))


def missing_hooks(cls: type) -> list[str]:
    """What a driver class lacks of the contract (a third-party class that does not subclass BaseDriver)."""
    return [name for name in (*ATTRIBUTES, *HOOKS) if not hasattr(cls, name)]
