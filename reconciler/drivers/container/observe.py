"""Engine inspect output -> the canonical container spec shape, plus the facts the diff needs beside it.

Pure translation: the driver does the (concurrent) inspects and hands the documents in here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from reconciler.drivers.container.spec import (
    ASIDE_SUFFIX,
    DEFAULT_STOP_TIMEOUT,
    HEALTH_DEFAULTS,
    canonical_reference,
    capability,
)
from reconciler.model import LABEL_PREFIX

BUILTIN_MODES = ("bridge", "host", "none")


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


def env_dict(items: list[str] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items or []:
        key, _, value = item.partition("=")
        out[key] = value
    return out


def health_spec(value: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """Engine healthcheck -> canonical form; 0 durations mean the engine's defaults."""
    if not value or not value.get("Test"):
        return None
    test = list(value["Test"])
    if test[0] == "NONE":
        return {"test": ["NONE"]}
    return {
        "test": test,
        "interval": value.get("Interval") or HEALTH_DEFAULTS["interval"],
        "timeout": value.get("Timeout") or HEALTH_DEFAULTS["timeout"],
        "startPeriod": value.get("StartPeriod") or HEALTH_DEFAULTS["startPeriod"],
        "retries": value.get("Retries") or HEALTH_DEFAULTS["retries"],
    }


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
    )


def _ports(bindings: Mapping[str, Any] | None) -> list[dict[str, Any]]:
    out = []
    for key, hosts in (bindings or {}).items():
        port, _, proto = key.partition("/")
        for host in hosts or [{}]:
            out.append(
                {
                    "containerPort": int(port),
                    "protocol": proto or "tcp",
                    "hostIP": host.get("HostIp") or "0.0.0.0",
                    "hostPort": int(host["HostPort"]) if host.get("HostPort") else None,
                }
            )
    return sorted(out, key=lambda p: (p["containerPort"], p["protocol"], p["hostIP"], p["hostPort"] or 0))


def _mounts(mounts: list[Mapping[str, Any]] | None) -> list[dict[str, Any]]:
    out = []
    for m in mounts or []:
        kind = m.get("Type")
        if kind == "tmpfs":
            opts = m.get("TmpfsOptions") or {}
            out.append(
                {
                    "type": "tmpfs",
                    "target": m["Target"],
                    "size": opts.get("SizeBytes") or None,
                    "mode": opts.get("Mode"),
                }
            )
        else:
            out.append(
                {"type": kind, "source": m.get("Source"), "target": m["Target"], "readOnly": bool(m.get("ReadOnly"))}
            )
    return sorted(out, key=lambda m: m["target"])


def network_mode(raw: str | None, names: Mapping[str, str]) -> str | None:
    """`default`/`bridge` -> bridge; host; none; `container:<id>` -> `container:<name>`; a user network -> None."""
    mode = raw or "default"
    if mode == "default":
        return "bridge"
    if mode in BUILTIN_MODES:
        return mode
    if mode.startswith("container:"):
        target = mode.partition(":")[2]
        return "container:" + names.get(target, target)
    return None


def _networks(info: Mapping[str, Any], mode: str | None) -> list[dict[str, Any]]:
    attached = (info.get("NetworkSettings") or {}).get("Networks") or {}
    running = bool((info.get("State") or {}).get("Running"))
    short_id = info["Id"][:12]
    out = []
    for name, endpoint in attached.items():
        if mode is not None and name == mode:
            continue  # the network the mode itself implies (the default bridge)
        endpoint = endpoint or {}
        if running and not endpoint.get("EndpointID"):
            # a failed connect leaves its endpoint config behind without an endpoint: not connected (a stopped or
            # never started container keeps its config without IDs too, and is connected again when started)
            continue
        ipam = endpoint.get("IPAMConfig") or {}
        aliases = {a for a in endpoint.get("Aliases") or [] if a not in (short_id, info["Id"])}
        out.append({"name": name, "aliases": sorted(aliases), "ipv4Address": ipam.get("IPv4Address") or None})
    return sorted(out, key=lambda n: n["name"])


def _resources(host: Mapping[str, Any]) -> dict[str, Any]:
    def positive(key: str) -> int | None:
        value = host.get(key)
        return value if value and value > 0 else None

    swap = host.get("MemorySwap")
    return {
        "memory": positive("Memory"),
        "memorySwap": -1 if swap == -1 else positive("MemorySwap"),
        "memoryReservation": positive("MemoryReservation"),
        "cpus": positive("NanoCpus"),
        "cpuShares": positive("CpuShares"),
        "pidsLimit": positive("PidsLimit"),
    }


def observed_spec(info: Mapping[str, Any], names: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The canonical spec of an inspected container, every field as the engine runs it (defaults included)."""
    config = info.get("Config") or {}
    host = info.get("HostConfig") or {}
    state = info.get("State") or {}
    restart = host.get("RestartPolicy") or {}
    mode = network_mode(host.get("NetworkMode"), names or {})
    stop_timeout = config.get("StopTimeout")
    return {
        "image": canonical_reference(config.get("Image") or ""),
        "command": list(config.get("Cmd") or []),
        "entrypoint": list(config.get("Entrypoint") or []),
        "env": env_dict(config.get("Env")),
        "ports": _ports(host.get("PortBindings")),
        "mounts": _mounts(host.get("Mounts")),
        "networks": _networks(info, mode),
        "networkMode": mode,
        "restartPolicy": {
            "name": restart.get("Name") or "no",
            "maximumRetryCount": int(restart.get("MaximumRetryCount") or 0),
        },
        # paused (`docker pause`) is a state of its own: it cannot be started, only unpaused
        "state": "paused" if state.get("Paused") else "running" if state.get("Running") else "stopped",
        "healthcheck": health_spec(config.get("Healthcheck")),
        "resources": _resources(host),
        "user": config.get("User") or "",
        "workingDir": config.get("WorkingDir") or "",
        "hostname": config.get("Hostname") or "",
        "capAdd": sorted({capability(c) for c in host.get("CapAdd") or []}),
        "capDrop": sorted({capability(c) for c in host.get("CapDrop") or []}),
        "privileged": bool(host.get("Privileged")),
        "readOnlyRootfs": bool(host.get("ReadonlyRootfs")),
        "stopTimeout": DEFAULT_STOP_TIMEOUT if stop_timeout is None else int(stop_timeout),
        "labels": {k: v for k, v in (config.get("Labels") or {}).items() if not k.startswith(LABEL_PREFIX)},
    }


def engine_name(info: Mapping[str, Any]) -> str:
    return str(info.get("Name") or "").lstrip("/")


def is_aside(info: Mapping[str, Any], declared_name: str | None) -> bool:
    """A container parked by an unfinished replace: named `<name>__reconciler_old`, labelled `<name>`."""
    return bool(declared_name) and engine_name(info) == f"{declared_name}{ASIDE_SUFFIX}"
