"""The canonical service spec -> the engine's ServiceSpec document (the inverse of observe.py).

Pure. An update starts from the service's current document and overwrites only what the manifest manages, so
what someone else set (a log driver, platforms) survives, and a change that does not touch the task template
leaves it byte for byte as it was: swarm rolls no task for it.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

# What a change of each top-level field touches on the engine: the task template (rolls tasks), the endpoint
# (ports: rolls tasks too, swarm re-creates tasks whose endpoint differs) or the service only (no task restarts).
ROLLING = frozenset(
    {
        "image",
        "command",
        "entrypoint",
        "env",
        "ports",
        "endpointMode",
        "networks",
        "mounts",
        "secrets",
        "configs",
        "placement",
        "resources",
        "healthcheck",
        "restartPolicy",
        "stopGracePeriod",
        "user",
        "workingDir",
        "hostname",
    }
)
SERVICE_ONLY = frozenset({"replicas", "labels", "update", "rollback"})


def rolls_tasks(path: str) -> bool:
    return path.split(".", 1)[0] in ROLLING


def _update_config(value: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "Parallelism": value["parallelism"],
        "Delay": value["delay"],
        "FailureAction": value["failureAction"],
        "Monitor": value["monitor"],
        "MaxFailureRatio": value["maxFailureRatio"],
        "Order": value["order"],
    }


def _mount(m: Mapping[str, Any]) -> dict[str, Any]:
    if m["type"] == "tmpfs":
        options = {k: v for k, v in (("SizeBytes", m["size"]), ("Mode", m["mode"])) if v is not None}
        return {"Type": "tmpfs", "Target": m["target"], **({"TmpfsOptions": options} if options else {})}
    return {"Type": m["type"], "Source": m["source"], "Target": m["target"], "ReadOnly": m["readOnly"]}


def _health(h: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if h is None:
        return None
    out: dict[str, Any] = {"Test": list(h["test"])}
    for key, engine_key in (("interval", "Interval"), ("timeout", "Timeout"), ("startPeriod", "StartPeriod")):
        if h[key]:
            out[engine_key] = h[key]
    if h["retries"]:
        out["Retries"] = h["retries"]
    return out


def _files(refs: list[Mapping[str, Any]], ids: Mapping[str, tuple[str, str]], kind: str) -> list[dict[str, Any]]:
    """`ids`: declared name -> (engine ID, engine name) of the version to use."""
    out = []
    for ref in refs:
        engine_id, engine = ids[ref["name"]]
        out.append(
            {
                "File": {"Name": ref["target"], "UID": ref["uid"], "GID": ref["gid"], "Mode": ref["mode"]},
                f"{kind}ID": engine_id,
                f"{kind}Name": engine,
            }
        )
    return out


def _resources(r: Mapping[str, Any]) -> dict[str, Any]:
    limits = {
        k: v
        for k, v in (
            ("NanoCPUs", r["limits"]["cpus"]),
            ("MemoryBytes", r["limits"]["memory"]),
            ("Pids", r["limits"]["pids"]),
        )
        if v
    }
    reservations = {
        k: v for k, v in (("NanoCPUs", r["reservations"]["cpus"]), ("MemoryBytes", r["reservations"]["memory"])) if v
    }
    return {"Limits": limits, "Reservations": reservations}


def _set(target: dict[str, Any], key: str, value: Any) -> None:
    """Set, or drop the key when the manifest leaves it unset (the engine's own default then applies)."""
    if value is None or value == [] or value == {}:
        target.pop(key, None)
    else:
        target[key] = value


def task_template(
    spec: Mapping[str, Any],
    image: str,
    secret_ids: Mapping[str, tuple[str, str]],
    config_ids: Mapping[str, tuple[str, str]],
    current: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """TaskTemplate for `spec`, over the `current` one (kept keys the manifest does not manage)."""
    task = copy.deepcopy(dict(current or {}))
    task.pop("Runtime", None)  # engine-filled; it fills it again
    container = task.setdefault("ContainerSpec", {})
    container["Image"] = image
    _set(container, "Command", spec["entrypoint"])
    _set(container, "Args", spec["command"])
    _set(container, "Env", [f"{k}={v}" for k, v in spec["env"].items()])
    _set(container, "Mounts", [_mount(m) for m in spec["mounts"]])
    _set(container, "Secrets", _files(spec["secrets"], secret_ids, "Secret"))
    _set(container, "Configs", _files(spec["configs"], config_ids, "Config"))
    _set(container, "Healthcheck", _health(spec["healthcheck"]))
    _set(container, "User", spec["user"])
    _set(container, "Dir", spec["workingDir"])
    _set(container, "Hostname", spec["hostname"])
    container["StopGracePeriod"] = spec["stopGracePeriod"]
    task["Resources"] = _resources(spec["resources"])
    restart = spec["restartPolicy"]
    task["RestartPolicy"] = {
        "Condition": restart["condition"],
        "Delay": restart["delay"],
        "MaxAttempts": restart["maxAttempts"],
        "Window": restart["window"],
    }
    placement = dict(task.get("Placement") or {})
    _set(placement, "Constraints", spec["placement"]["constraints"])
    _set(placement, "Preferences", [{"Spread": {"SpreadDescriptor": p}} for p in spec["placement"]["preferences"]])
    _set(placement, "MaxReplicas", spec["placement"]["maxReplicasPerNode"] or None)
    _set(task, "Placement", placement)
    _set(task, "Networks", [{"Target": n["name"], "Aliases": n["aliases"]} for n in spec["networks"]])
    task.setdefault("ForceUpdate", 0)
    return task


def endpoint_spec(spec: Mapping[str, Any], current: Mapping[str, Any] | None = None) -> dict[str, Any]:
    out = dict(current or {})
    out["Mode"] = spec["endpointMode"]
    ports = [
        {
            "Protocol": p["protocol"],
            "TargetPort": p["containerPort"],
            "PublishMode": p["publishMode"],
            **({"PublishedPort": p["hostPort"]} if p["hostPort"] is not None else {}),
        }
        for p in spec["ports"]
    ]
    _set(out, "Ports", ports)
    return out


def service_spec(
    name: str,
    spec: Mapping[str, Any],
    labels: Mapping[str, str],
    template: Mapping[str, Any],
    endpoint: Mapping[str, Any],
    current: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The whole ServiceSpec: `template`/`endpoint` as built above (or the current ones, kept untouched)."""
    out = copy.deepcopy(dict(current or {}))
    out["Name"] = name
    out["Labels"] = dict(labels)
    out["TaskTemplate"] = dict(template)
    out["Mode"] = {"Global": {}} if spec["mode"] == "global" else {"Replicated": {"Replicas": spec["replicas"]}}
    out["UpdateConfig"] = _update_config(spec["update"])
    out["RollbackConfig"] = _update_config(spec["rollback"])
    out["EndpointSpec"] = dict(endpoint)
    out.pop("Networks", None)  # deprecated top-level form; TaskTemplate.Networks is the one
    return out
