"""Engine inspect output -> the canonical container spec shape, plus the facts the diff needs beside it.

Pure translation: the driver does the (concurrent) inspects and hands the documents in here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from reconciler.drivers.container import runoptions
from reconciler.drivers.container.fields import FIELDS, health_spec
from reconciler.drivers.container.spec import ASIDE_SUFFIX
from reconciler.drivers.container.values import env_dict


@dataclass(frozen=True)
class ImageDefaults:
    """What the engine fills in from the image when the manifest leaves a field out."""

    env: Mapping[str, str] = field(default_factory=dict)
    command: tuple[str, ...] = ()
    entrypoint: tuple[str, ...] = ()
    user: str = ""
    working_dir: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)
    healthcheck: Mapping[str, Any] | None = None
    stop_signal: str | None = None  # canonical (runoptions.stop_signal)
    exposed: tuple[str, ...] = ()  # `port/proto` entries of the image's EXPOSE


@dataclass(frozen=True)
class ContainerFacts:
    """Beside the observed spec: identity, which image it runs, and what its reference resolves to now."""

    id: str
    engine_name: str  # the name on the engine (the aside name while a replace is unfinished)
    image_id: str
    current_image_id: str | None  # None: the reference is not present on the engine any more
    defaults: ImageDefaults
    aside: bool = False
    renamed: bool = False  # renamed by hand: its engine name is not its io.reconciler.name label
    adopted: bool = False  # a container of the Compose project being adopted (--adopt): replaced by our own
    # parked by an interrupted replace whose new container never ran: that one's ID, removed before this one is
    # put back (drivers/container/parked.py)
    discard: str | None = None


def image_defaults(image: Mapping[str, Any] | None) -> ImageDefaults:
    config = (image or {}).get("Config") or {}
    return ImageDefaults(
        env=env_dict(config.get("Env")),
        command=tuple(config.get("Cmd") or ()),
        entrypoint=tuple(config.get("Entrypoint") or ()),
        user=config.get("User") or "",
        working_dir=config.get("WorkingDir") or "",
        labels=dict(config.get("Labels") or {}),
        healthcheck=health_spec(config.get("Healthcheck")),
        stop_signal=runoptions.stop_signal(config.get("StopSignal")),
        exposed=tuple(config.get("ExposedPorts") or ()),
    )


def observed_spec(info: Mapping[str, Any], names: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The canonical spec of an inspected container, every field as the engine runs it (defaults included): one
    key per field of FIELDS that is engine state, read by its row. `names` maps container IDs to names (for
    `networkMode: container:<name>`)."""
    return {row.key: row.read(info, names or {}) for row in FIELDS if row.read is not None}


def engine_name(info: Mapping[str, Any]) -> str:
    return str(info.get("Name") or "").lstrip("/")


def is_aside(info: Mapping[str, Any], declared_name: str | None) -> bool:
    """A container parked by an unfinished replace: named `<name>__reconciler_old`, labelled `<name>`."""
    return bool(declared_name) and engine_name(info) == f"{declared_name}{ASIDE_SUFFIX}"
