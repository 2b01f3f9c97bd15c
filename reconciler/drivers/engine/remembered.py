"""What a `watch` remembers of the engine between passes: the inspect answers about containers and images that
nothing has changed since.

A no-op pass must still find drift in any declared field, and a container listing does not carry the
configuration, so a pass without this inspects every container. While the engine's event stream is connected,
every change of a container shows up there (created, started, died, updated, renamed, connected to a network,
health changed...), so an inspect answer stays true until an event names that container. Kept only as long as
the stream is unbroken: the answers are dropped when it ends (events may be missed until it is back), when the
engine connection is reset, and by this process's own writes (the next pass may start before the engine has
told of them). The engine may also drop events for a subscriber that falls behind, telling nobody: at each
resync the engine's own event log of the time since the last one is replayed through `saw`, and everything is
dropped when the log cannot vouch for that whole time (session.DockerEngine.resync). A one-shot `plan` or
`apply` never connects the stream, so it always inspects.

Each answer is also checked against the listing the pass made anyway (state, name, image, labels, networks): a
change whose event has not arrived yet is seen there when the listing shows it.

An answer is kept only if nothing invalidated its object while it was being asked for: every invalidation is
stamped with a sequence number, every question with the number current when it was asked.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Collection, Mapping
from typing import Any

MAX_IMAGES = 1024  # answers kept about images (references and IDs); all are dropped past it
_CONTAINER_PATH = re.compile(r"^(?:/v[\d.]+)?/containers/([0-9a-f]{64})/")
# events about a container that do not change what an inspect says of it (a health check runs one exec each time)
_QUIET_ACTIONS = ("exec_create", "exec_start", "exec_die", "exec_detach", "attach", "detach", "top", "resize")


class Remembered:
    """Inspect answers kept between passes, valid while the event stream is connected; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._live = False
        self._seq = 0
        self._containers: dict[str, Mapping[str, Any]] = {}  # id -> inspect answer
        self._changed: dict[str, int] = {}  # container id -> when an event or a write last named it (only
        # those known or being asked about: the events of every other container on the host are not kept)
        self._asking: set[str] = set()
        self._images: dict[str, Mapping[str, Any]] = {}  # reference or ID -> inspect answer
        self._containers_since = 0  # no container answer asked before this is kept
        self._images_since = 0  # nor image answer before this
        self.hits = 0  # answers served from memory (read by the tests)

    # --- the event stream's side ---------------------------------------------------------------------------

    def connected(self) -> None:
        """The event stream is up: from now on every change is told."""
        with self._lock:
            self._drop_all()
            self._live = True

    def disconnected(self) -> None:
        """The stream ended: changes may go untold until it is back, so nothing is kept or served."""
        with self._lock:
            self._live = False
            self._drop_all()

    @property
    def live(self) -> bool:
        """Whether the event stream is connected (answers are kept and served)."""
        return self._live

    def forget(self) -> None:
        """Drop every answer (a resync the engine's event log cannot vouch for; a reset connection may face a
        restarted engine)."""
        with self._lock:
            self._drop_all()

    def saw(self, raw: Mapping[str, Any]) -> None:
        """An engine event: drop what it may have made untrue."""
        kind = raw.get("Type")
        action = str(raw.get("Action") or "")
        actor = raw.get("Actor") or {}
        with self._lock:
            if not self._live:
                return  # nothing is kept
            if kind == "container" and not action.startswith(_QUIET_ACTIONS):
                self._drop_container(str(actor.get("ID") or ""))
            elif kind == "network" and action in ("connect", "disconnect"):
                self._drop_container(str((actor.get("Attributes") or {}).get("container") or ""))
            elif kind == "network" and action == "destroy":
                self._drop_containers()  # its containers' endpoints go with it
            elif kind == "image":
                self._drop_images()

    def wrote(self, method: str, path: str) -> None:
        """A request of this process that changes something (told before it is sent)."""
        if method in ("GET", "HEAD"):
            return
        with self._lock:
            if not self._live:
                return  # nothing is kept
            match = _CONTAINER_PATH.match(path)
            if match:
                self._drop_container(match.group(1))
            elif "/containers/create" in path or "/volumes/" in path:
                pass  # a new container, or a volume: no answer kept about either
            elif "/containers/" in path or "/networks/" in path:
                self._drop_containers()  # addressed by name, or a network (dis)connect: not worth being precise
            elif "/images/" in path or "/build" in path:
                self._drop_images()

    # --- the drivers' side --------------------------------------------------------------------------------

    def containers(
        self,
        listed: Collection[Mapping[str, Any]],
        inspect: Callable[[list[str]], Mapping[str, Mapping[str, Any]]],
    ) -> dict[str, Mapping[str, Any]]:
        """The inspect answer of every container of `listed` (a listing's summaries), asking `inspect` (ids ->
        answers, NotFound left out) only for those not remembered or whose summary disagrees with the answer."""
        ids = {str(c["Id"]) for c in listed}
        with self._lock:
            token = self._seq
            live = self._live
            for cid in [c for c in self._containers if c not in ids]:
                del self._containers[cid]  # gone from the listing: not asked for again
            self._changed = {c: at for c, at in self._changed.items() if c in ids}
            known: dict[str, Mapping[str, Any]] = {}
            for summary in listed if live else ():
                answer = self._containers.get(str(summary["Id"]))
                if answer is not None and _agrees(summary, answer):
                    known[str(summary["Id"])] = answer
            missing = ids - known.keys()
            self._asking = set(missing)
        try:
            asked = inspect(sorted(missing))
        except BaseException:
            with self._lock:
                self._asking = set()
            raise
        with self._lock:
            self._asking = set()  # under the same lock as the keeping below: no event falls between the two
            self.hits += len(known)
            if self._live and live and self._containers_since <= token:
                for cid, info in asked.items():
                    if self._changed.get(cid, 0) <= token:
                        self._containers[cid] = info
        return {**known, **asked}

    def image(self, ref: str, inspect: Callable[[str], Mapping[str, Any]]) -> Mapping[str, Any]:
        """The inspect answer about image `ref` (a reference or an ID); `inspect`'s exceptions pass through."""
        with self._lock:
            token = self._seq
            live = self._live
            if live and ref in self._images:
                self.hits += 1
                return self._images[ref]
        info = inspect(ref)
        with self._lock:
            if self._live and live and self._images_since <= token:
                if len(self._images) >= MAX_IMAGES:
                    self._images.clear()
                self._images[ref] = info
        return info

    # --- under the lock -----------------------------------------------------------------------------------

    def _bump(self) -> int:
        self._seq += 1
        return self._seq

    def _drop_all(self) -> None:
        self._containers_since = self._images_since = self._bump()
        self._containers.clear()
        self._changed.clear()
        self._images.clear()

    def _drop_container(self, cid: str) -> None:
        if cid and (cid in self._containers or cid in self._asking):
            self._changed[cid] = self._bump()
            self._containers.pop(cid, None)

    def _drop_containers(self) -> None:
        self._containers_since = self._bump()  # no answer asked before now is kept, whatever `_changed` says
        self._containers.clear()

    def _drop_images(self) -> None:
        self._images_since = self._bump()
        self._images.clear()


def _agrees(summary: Mapping[str, Any], info: Mapping[str, Any]) -> bool:
    """Whether a listing's summary of a container says what the remembered inspect answer says."""
    state = info.get("State") or {}
    config = info.get("Config") or {}
    names = summary.get("Names") or []
    networks = (summary.get("NetworkSettings") or {}).get("Networks") or {}
    return (
        summary.get("State") == state.get("Status")
        and bool(names)
        and names[0].lstrip("/") == str(info.get("Name") or "").lstrip("/")
        and summary.get("ImageID") == info.get("Image")
        and (summary.get("Labels") or {}) == (config.get("Labels") or {})
        and set(networks) == set((info.get("NetworkSettings") or {}).get("Networks") or {})
    )
