"""The Docker engine as the core sees it (the contract's `Engine`): its address, a lazily connected client, a
health check and the event stream, for the life of one command."""

from __future__ import annotations

import contextlib
import dataclasses
import threading
from collections.abc import Iterator
from dataclasses import dataclass
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

    def forget(self) -> None:
        self.remembered.forget()

    def events(self) -> Iterator[EngineEvent]:
        self.remembered.disconnected()
        _close(self._events_client)  # a dead client's pooled connections would leak one socket per reconnect
        self._events_client = connect(self.options.docker_host, self.options.tls)
        self._stream = self._events_client.events(decode=True, filters=EVENT_FILTERS)
        self.remembered.connected()  # the request is answered: every change from now on is told
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
