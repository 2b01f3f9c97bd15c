"""The Docker engine as the core sees it (the contract's `Engine`): its address, a lazily connected client, a
health check and the event stream, for the life of one command."""

from __future__ import annotations

import contextlib
import dataclasses
import re
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

from reconciler.contract import EngineEvent, TlsFiles, option
from reconciler.drivers.engine.client import connect, engine_url
from reconciler.drivers.engine.errors import engine_errors, reason
from reconciler.drivers.engine.policy import SENSITIVE_PATHS, address_problems, canonical_address, is_local
from reconciler.drivers.engine.remembered import Remembered
from reconciler.errors import EngineUnavailable
from reconciler.model import LABEL_KIND, LABEL_NAME, LABEL_PROJECT

DEFAULT_REQUESTS = 8
# Every event of these types is read: each one may make a remembered inspect answer untrue (reconciler.drivers.
# engine.remembered). Only those that may concern a declared object reach the core (TRIGGERS): a container dying
# or going, a network or volume removed or changed, a swarm service updated (scaled, edited) or removed by hand.
EVENT_FILTERS = {"type": ["container", "network", "volume", "service", "image"]}
TRIGGERS = {
    "container": {"die", "destroy", "stop", "kill", "oom", "pause", "rename", "update"},
    "network": {"destroy", "disconnect", "remove"},
    "volume": {"destroy", "remove"},
    "service": {"update", "remove"},
}
# The engine keeps its last 256 events for replay (moby's daemon/events, eventsLimit) and drops an event for a
# subscriber that has not taken the previous ones (its 1,024-event buffer full for 100 ms), telling nobody. A
# replay of the time since the last resync that holds fewer than this many events is complete; the margin is for
# events that arrive between reading the engine's clock and the replay.
EVENT_LOG = 256
EVENT_LOG_MARGIN = 32
_ENGINE_TIME = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)?$")


@dataclass(frozen=True)
class EngineOptions:
    docker_host: str | None = option(
        None,
        "--docker-host",
        "engine URL (default: DOCKER_HOST or the local socket)",
        short="-H",
        metavar="URL",
        scope="global",
    )
    tls: TlsFiles | None = None  # a fleet Host's client TLS files; not a flag
    adopt: bool = option(
        False,
        "--adopt",
        "take over what the running Compose project of the same name (--project) created: volumes and networks "
        "as they are (data kept), containers replaced by the project's own",
    )
    max_requests: int = option(
        DEFAULT_REQUESTS,
        "--parallel",
        "engine requests at once (default 8: the engine slows sharply beyond ~10 concurrent starts); waits "
        "for a container to settle or a dependency to be healthy take none",
        type=int,
        metavar="N",
    )


class DockerEngine:
    """One Docker engine: `client()` connects on first use and is shared by every driver and pass."""

    options_type: ClassVar[type] = EngineOptions
    sensitive_paths: ClassVar[tuple[str, ...]] = SENSITIVE_PATHS

    @classmethod
    def canonical_address(cls, address: str) -> str:
        return canonical_address(address)

    @classmethod
    def address_problems(cls, address: str, tls: bool) -> list[tuple[str, str]]:
        return address_problems(address, tls)

    @classmethod
    def is_local(cls, address: str) -> bool:
        return is_local(address)

    @classmethod
    def for_host(cls, address: str, tls: TlsFiles | None, options: EngineOptions | None = None) -> DockerEngine:
        return cls(dataclasses.replace(options or EngineOptions(), docker_host=address, tls=tls))

    def __init__(self, options: EngineOptions | None = None) -> None:
        self.options = options or EngineOptions()
        self._requests = threading.BoundedSemaphore(max(1, self.options.max_requests))
        self._client: Any = None
        self._lock = threading.Lock()
        self._events_client: Any = None
        self._stream: Any = None
        self.remembered = Remembered()  # inspect answers kept between a watch's passes while events flow
        self._replay_from: str | None = None  # engine time the last resync (or the stream's connection) covers

    @property
    def url(self) -> str:
        return engine_url(self.options.docker_host)

    def client(self) -> Any:
        with self._lock:
            if self._client is None:
                self._client = connect(self.options.docker_host, self.options.tls, self._requests, self.remembered)
            return self._client

    def ping(self) -> None:
        try:
            self.client().ping()
        except EngineUnavailable:
            raise
        except Exception as exc:
            raise EngineUnavailable(f"the Docker engine at {self.url} does not answer: {reason(exc)}") from None

    def identity(self) -> str:
        with engine_errors(f"engine {self.url}: info"):
            info = self.client().info()
        # the ID alone is not enough: engines sharing /etc/docker (cloned machines, namespaced daemons) share it
        return " ".join(str(info.get(key) or "") for key in ("ID", "Name", "DockerRootDir"))

    def cluster_node(self) -> str | None:
        with engine_errors(f"engine {self.url}: info"):
            swarm = self.client().info().get("Swarm") or {}
        node = swarm.get("NodeID") if swarm.get("LocalNodeState") == "active" else None
        return str(node) if node else None

    def cluster_nodes(self) -> frozenset[str]:
        with engine_errors(f"engine {self.url}: info"):
            swarm = self.client().info().get("Swarm") or {}
        if swarm.get("LocalNodeState") != "active" or not swarm.get("ControlAvailable"):
            return frozenset()  # a worker sees no node list (503): only a manager can say who belongs
        with engine_errors(f"engine {self.url}: list swarm nodes"):
            return frozenset(str(n["ID"]) for n in self.client().nodes())

    def reset(self) -> None:
        self.remembered.forget()
        with self._lock:
            client, self._client = self._client, None
        _close(client)

    def resync(self) -> None:
        """Keep only the answers the engine's own event log shows unchanged since the last resync: its replay of
        that time goes through the same invalidation as the stream, so an event the stream dropped still drops
        what it names. When the log cannot vouch for the whole time (more events than it keeps, no stream,
        any error) everything is dropped and the next pass inspects every object."""
        if not self._replayed():
            self.remembered.forget()

    def _replayed(self) -> bool:
        since = self._replay_from
        if since is None or not self.remembered.live:
            return False
        try:
            client = self.client()
            now = engine_time(client.info())
            replay = list(client.events(since=since, until=now, decode=True))
        except Exception:  # any failure means the log cannot vouch: everything is read again
            return False
        if len(replay) + EVENT_LOG_MARGIN >= EVENT_LOG:
            return False
        for raw in replay:
            self.remembered.saw(raw)
        self._replay_from = now
        return True

    def events(self) -> Iterator[EngineEvent]:
        self.remembered.disconnected()
        self._replay_from = None
        _close(self._events_client)  # a dead client's pooled connections would leak one socket per reconnect
        self._events_client = connect(self.options.docker_host, self.options.tls)
        try:  # read before the stream connects: the first replay covers the moment it did
            since = engine_time(self._events_client.info())
        except Exception:  # without it the first resync re-reads everything, as before
            since = None
        self._stream = self._events_client.events(decode=True, filters=EVENT_FILTERS)
        self.remembered.connected()  # the request is answered: every change from now on is told
        self._replay_from = since
        return self._relay(self._stream)

    def _relay(self, stream: Iterator[dict[str, Any]]) -> Iterator[EngineEvent]:
        try:
            for raw in stream:
                self.remembered.saw(raw)
                kind, action = str(raw.get("Type") or ""), str(raw.get("Action") or "")
                if action in TRIGGERS.get(kind, ()):
                    yield EngineEvent(action=action, raw=raw, type=kind)
        finally:
            self.remembered.disconnected()

    def close_events(self) -> None:
        self.remembered.disconnected()
        stream = self._stream
        if stream is not None and hasattr(stream, "close"):
            with contextlib.suppress(Exception):  # closing a dead stream may fail in many ways
                stream.close()  # unblocks the reading thread

    def close(self) -> None:
        self.close_events()
        _close(self._events_client)
        self._events_client = None
        self.reset()


def engine_time(info: Mapping[str, Any]) -> str:
    """The engine's clock (`GET /info`'s SystemTime, RFC 3339 with nanoseconds) as the `seconds.nanoseconds`
    its event filters take, so a replay is bounded by the engine's time, not this machine's."""
    match = _ENGINE_TIME.match(str(info.get("SystemTime") or ""))
    if not match:
        raise ValueError(f"the engine's SystemTime {info.get('SystemTime')!r} is not a time")
    seconds = int(datetime.fromisoformat(match.group(1) + (match.group(3) or "Z").replace("Z", "+00:00")).timestamp())
    return f"{seconds}.{(match.group(2) or '0')[:9].ljust(9, '0')}"


def _close(client: Any) -> None:
    if client is not None and hasattr(client, "close"):
        with contextlib.suppress(Exception):  # a client of a dead engine may fail to close; dropped either way
            client.close()


def container_event_key(event: EngineEvent, project: str) -> tuple[str, str] | None:
    """Containers carry the ownership labels in their events."""
    if event.type != "container":
        return None
    attrs = (event.raw.get("Actor") or {}).get("Attributes") or {}
    if attrs.get(LABEL_PROJECT) != project:
        return None
    return (attrs.get(LABEL_KIND) or "Container", attrs.get(LABEL_NAME) or attrs.get("name", ""))


def named_event_key(event: EngineEvent, kind: str, known: set[tuple[str, str]]) -> tuple[str, str] | None:
    """Volume and network events carry no labels: they are matched by name against the `known` objects."""
    actor = event.raw.get("Actor") or {}
    if event.type == "network":
        key = ("Network", (actor.get("Attributes") or {}).get("name", ""))
    elif event.type == "volume":
        key = ("Volume", actor.get("ID", ""))
    else:
        return None
    return key if key[0] == kind and key in known else None
