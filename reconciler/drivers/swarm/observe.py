"""A service as the engine reports it (`inspect_service`) -> the canonical spec shape of spec.py.

Pure translation. Absent engine fields read as the defaults normalize fills in, and fields the engine or the
docker CLI add on their own (Runtime, Isolation, Init, DNSConfig, Placement.Platforms, ForceUpdate) are not read,
so a service created from a manifest reads back exactly as that manifest normalizes: no spurious update.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from reconciler.drivers.swarm.spec import DEFAULT_STOP_GRACE, RESTART_DEFAULTS, UPDATE_DEFAULTS
from reconciler.drivers.swarm.values import split_digest
from reconciler.model import LABEL_PREFIX


@dataclass(frozen=True)
class ServiceFacts:
    """Beside the observed spec: identity, version, and which engine objects it points at."""

    id: str
    version: int
    image_digest: str | None  # the digest the spec pins, if any
    # declared Secret/Config name -> the engine name of the version the service uses now
    secret_versions: Mapping[str, str] = field(default_factory=dict)
    config_versions: Mapping[str, str] = field(default_factory=dict)
    update_state: str | None = None  # UpdateStatus.State (paused, rollback_completed, ...)
    update_message: str = ""


def _env(items: list[str] | None) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items or []:
        key, _, value = item.partition("=")
        out[key] = value
    return dict(sorted(out.items()))


def _update(value: Mapping[str, Any] | None) -> dict[str, Any]:
    value = value or {}
    return {
        "parallelism": int(value.get("Parallelism", UPDATE_DEFAULTS["parallelism"])),
        "delay": int(value.get("Delay") or 0),
        "order": value.get("Order") or UPDATE_DEFAULTS["order"],
        "failureAction": value.get("FailureAction") or UPDATE_DEFAULTS["failureAction"],
        "monitor": int(value.get("Monitor") or UPDATE_DEFAULTS["monitor"]),
        "maxFailureRatio": float(value.get("MaxFailureRatio") or 0.0),
    }


def _mount(m: Mapping[str, Any]) -> dict[str, Any]:
    kind = m.get("Type", "volume")
    if kind == "tmpfs":
        tmpfs = m.get("TmpfsOptions") or {}
        return {"type": "tmpfs", "target": m.get("Target"), "size": tmpfs.get("SizeBytes"), "mode": tmpfs.get("Mode")}
    return {"type": kind, "source": m.get("Source", ""), "target": m.get("Target"), "readOnly": bool(m.get("ReadOnly"))}


def _health(h: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if not h or not h.get("Test"):
        return None
    return {
        "test": list(h["Test"]),
        "interval": h.get("Interval") or None,
        "timeout": h.get("Timeout") or None,
        "startPeriod": h.get("StartPeriod") or None,
        "retries": h.get("Retries") or None,
    }


def _files(
    entries: list[Mapping[str, Any]] | None, name_key: str, declared: Mapping[str, str]
) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """Attachments by declared name (an engine name of one of the project's versions maps back to its manifest
    name; any other name is taken as written), and declared name -> engine name in use."""
    refs, versions = [], {}
    for entry in entries or []:
        engine = entry.get(name_key, "")
        name = declared.get(engine, engine)
        versions[name] = engine
        file = entry.get("File") or {}
        refs.append(
            {
                "name": name,
                "target": file.get("Name", ""),
                "uid": str(file.get("UID", "0")),
                "gid": str(file.get("GID", "0")),
                "mode": int(file.get("Mode", 0o444)),
            }
        )
    return sorted(refs, key=lambda e: (e["target"], e["name"])), versions


def _resources(r: Mapping[str, Any] | None) -> dict[str, Any]:
    r = r or {}
    limits = r.get("Limits") or {}
    reservations = r.get("Reservations") or {}
    return {
        "limits": {
            "cpus": limits.get("NanoCPUs") or None,
            "memory": limits.get("MemoryBytes") or None,
            "pids": limits.get("Pids") or None,
        },
        "reservations": {
            "cpus": reservations.get("NanoCPUs") or None,
            "memory": reservations.get("MemoryBytes") or None,
        },
    }


def observed_service(
    info: Mapping[str, Any],
    network_names: Mapping[str, str],
    secret_names: Mapping[str, str],
    config_names: Mapping[str, str],
) -> tuple[dict[str, Any], ServiceFacts]:
    """(canonical spec, facts) of one `inspect_service` document. `network_names` maps network IDs to names;
    `secret_names`/`config_names` map the engine names of the project's versions to their manifest names."""
    spec = info["Spec"]
    task = spec.get("TaskTemplate") or {}
    container = task.get("ContainerSpec") or {}
    placement = task.get("Placement") or {}
    mode = "global" if "Global" in (spec.get("Mode") or {}) else "replicated"
    restart = task.get("RestartPolicy") or {}
    image, digest = split_digest(container.get("Image", ""))
    secrets, secret_versions = _files(container.get("Secrets"), "SecretName", secret_names)
    configs, config_versions = _files(container.get("Configs"), "ConfigName", config_names)
    normalized = {
        "image": image,
        "mode": mode,
        "replicas": int(((spec.get("Mode") or {}).get("Replicated") or {}).get("Replicas", 1))
        if mode == "replicated"
        else None,
        "command": list(container["Args"]) if container.get("Args") is not None else None,
        "entrypoint": list(container["Command"]) if container.get("Command") is not None else None,
        "env": _env(container.get("Env")),
        "ports": sorted(
            (
                {
                    "containerPort": int(p["TargetPort"]),
                    "hostPort": p.get("PublishedPort"),
                    "protocol": p.get("Protocol", "tcp"),
                    "publishMode": p.get("PublishMode", "ingress"),
                }
                for p in (spec.get("EndpointSpec") or {}).get("Ports") or []
            ),
            key=lambda p: (p["containerPort"], p["protocol"], p["publishMode"], p["hostPort"] or 0),
        ),
        "endpointMode": (spec.get("EndpointSpec") or {}).get("Mode") or "vip",
        "networks": sorted(
            (
                {"name": network_names.get(n["Target"], n["Target"]), "aliases": sorted(set(n.get("Aliases") or []))}
                for n in task.get("Networks") or spec.get("Networks") or []
            ),
            key=lambda n: n["name"],
        ),
        "mounts": sorted((_mount(m) for m in container.get("Mounts") or []), key=lambda m: m["target"]),
        "secrets": secrets,
        "configs": configs,
        "placement": {
            "constraints": sorted(str(c).replace(" ", "") for c in placement.get("Constraints") or []),
            "preferences": [
                (p.get("Spread") or {}).get("SpreadDescriptor", "") for p in placement.get("Preferences") or []
            ],
            "maxReplicasPerNode": int(placement.get("MaxReplicas") or 0),
        },
        "resources": _resources(task.get("Resources")),
        "healthcheck": _health(container.get("Healthcheck")),
        "restartPolicy": {
            "condition": restart.get("Condition") or RESTART_DEFAULTS["condition"],
            "delay": int(restart["Delay"]) if restart.get("Delay") is not None else RESTART_DEFAULTS["delay"],
            "maxAttempts": int(restart.get("MaxAttempts") or 0),
            "window": int(restart.get("Window") or 0),
        },
        "update": _update(spec.get("UpdateConfig")),
        "rollback": _update(spec.get("RollbackConfig")),
        "stopGracePeriod": int(container["StopGracePeriod"])
        if container.get("StopGracePeriod") is not None
        else DEFAULT_STOP_GRACE,
        "user": container.get("User") or None,
        "workingDir": container.get("Dir") or None,
        "hostname": container.get("Hostname") or None,
        "labels": {k: v for k, v in (spec.get("Labels") or {}).items() if not k.startswith(LABEL_PREFIX)},
    }
    status = info.get("UpdateStatus") or {}
    facts = ServiceFacts(
        id=info["ID"],
        version=int((info.get("Version") or {}).get("Index", 0)),
        image_digest=digest,
        secret_versions=secret_versions,
        config_versions=config_versions,
        update_state=status.get("State"),
        update_message=status.get("Message", ""),
    )
    return normalized, facts
