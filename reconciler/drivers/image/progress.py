"""Engine progress streams (pull, push, build) -> structlog events, which the console or JSON renderer prints.

Pulls and pushes give one event per layer when its status changes (`Pulling fs layer`, `Downloading 50%`,
`Pull complete`), never one per chunk: byte progress is reported in quarter steps. Builds give one event per
`Step N/M : ...` line. A stream's error item becomes a StreamFailed carrying the engine's message and, for builds,
the step that failed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

_QUARTERS = (25, 50, 75)
Report = Callable[[str, str], None]  # (state, detail) -> DriverContext.progress for this change


def human_bytes(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


class StreamFailed(Exception):
    """The engine reported an error inside a progress stream."""

    def __init__(self, message: str, step: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.step = step


def _error_of(item: Mapping[str, Any]) -> str | None:
    if "error" in item or "errorDetail" in item:
        detail = item.get("errorDetail") or {}
        return str(item.get("error") or detail.get("message") or "unknown error").strip()
    return None


@dataclass
class LayerProgress:
    """Follows a pull or push stream; `digest` is the manifest digest the engine reports at the end."""

    log: Any
    event: str  # image.pull.progress | image.push.progress
    reference: str
    digest: str | None = None
    report: Report | None = None
    _last: dict[str, tuple[str, int]] = field(default_factory=dict)
    _bytes: dict[str, tuple[int, int]] = field(default_factory=dict)  # layer -> (current, total) transferred

    def _report_bytes(self, layer: str, status: str, detail: Mapping[str, Any]) -> None:
        if self.report is None:
            return
        if status in ("Downloading", "Pushing") and detail.get("total"):
            self._bytes[layer] = (int(detail.get("current") or 0), int(detail["total"]))
        elif status in ("Download complete", "Pull complete", "Pushed", "Layer already exists"):
            if layer in self._bytes:
                total = self._bytes[layer][1]
                self._bytes[layer] = (total, total)
        state = "pushing" if self.event == "image.push.progress" else "pulling"
        done = sum(c for c, _ in self._bytes.values())
        total = sum(t for _, t in self._bytes.values())
        size = f"{human_bytes(done)} / {human_bytes(total)}" if total else status.lower()
        layers = f"{len(self._bytes)} layer{'s' if len(self._bytes) != 1 else ''}"
        self.report(state, f"{size}, {layers}" if total else size)

    def feed(self, item: Mapping[str, Any]) -> None:
        error = _error_of(item)
        if error is not None:
            raise StreamFailed(error)
        aux = item.get("aux") or {}
        if aux.get("Digest"):
            self.digest = str(aux["Digest"])
        status = str(item.get("status") or "")
        if status.startswith("Digest: "):
            self.digest = status.removeprefix("Digest: ").strip()
        layer = item.get("id")
        if not layer or not status:
            if status:
                self.log.info(self.event, reference=self.reference, status=status)
            return
        detail = item.get("progressDetail") or {}
        self._report_bytes(layer, status, detail)
        percent = -1
        if detail.get("total"):
            done = int(100 * int(detail.get("current") or 0) / int(detail["total"]))
            percent = max([q for q in _QUARTERS if q <= done], default=0)
        if self._last.get(layer) == (status, percent):
            return
        self._last[layer] = (status, percent)
        if percent > 0:
            self.log.info(self.event, reference=self.reference, layer=layer, status=status, percent=percent)
        elif percent < 0 or status not in ("Downloading", "Extracting", "Pushing"):
            self.log.info(self.event, reference=self.reference, layer=layer, status=status)

    def follow(self, stream: Iterable[Mapping[str, Any]]) -> str | None:
        for item in stream:
            self.feed(item)
        return self.digest


@dataclass
class BuildProgress:
    """Follows a classic-builder stream; `image_id` is the built image, `step` the step running last."""

    log: Any
    reference: str
    image_id: str | None = None
    step: str | None = None
    tail: list[str] = field(default_factory=list)
    report: Report | None = None

    def feed(self, item: Mapping[str, Any]) -> None:
        error = _error_of(item)
        if error is not None:
            raise StreamFailed(error, self.step)
        aux = item.get("aux") or {}
        if aux.get("ID"):
            self.image_id = str(aux["ID"])
        text = item.get("stream")
        if not text:
            return
        for line in str(text).splitlines():
            line = line.rstrip()
            if not line:
                continue
            if line.startswith("Step ") and " : " in line:
                self.step = line
                self.log.info("image.build.step", reference=self.reference, step=line)
                if self.report is not None:
                    self.report("building", line.removeprefix("Step ")[:120])
            elif line.startswith("Successfully built ") and self.image_id is None:
                self.image_id = line.split()[-1]
            else:
                self.tail = [*self.tail[-9:], line]  # last lines of output, for a failing RUN's context
                self.log.debug("image.build.output", reference=self.reference, line=line)

    def follow(self, stream: Iterable[Mapping[str, Any]]) -> str | None:
        for item in stream:
            self.feed(item)
        return self.image_id
