"""The fields of a Service, each declared once: one row of `FIELDS` per field of the canonical spec.

A row says, for one field:
- `manifest`: the manifest keys it is made from; `normalize`: how (manifest -> canonical value, defaults filled:
  the engine's and the docker CLI's own, so a service made by hand and a manifest leaving them out compare equal);
- `read`: how it is read back from `inspect_service` into the same shape (absent engine fields read as the
  defaults normalize fills in);
- `part`: which part of the engine's ServiceSpec holds it: the task template (`task`) or the endpoint
  (`endpoint`), where a change rolls the tasks, or the service itself (`service`: no task restarts);
- `write`: how it goes into that part (over the current document: what the manifest does not manage survives);
- `compare`: how a difference is named: one change of the whole value, or one per key (`per_key`: `env.NAME`,
  `update.delay`); `replace`: why a difference needs a new service (the engine cannot change it in place);
- `expect`: what the engine should report for the declared value (a published port ingress picked, when the
  manifest gives none).

The walkers: `spec.normalize_service` (normalize), `observe.observed_service` (read), `diff.field_changes`
(expect, compare, part), `apply.task_template` / `apply.endpoint_spec` / `apply.service_spec` (write).

The fields that mean the same thing for a Container (image, command, entrypoint, env, user, workingDir, hostname)
take their manifest half from the shared rows of reconciler/drivers/engine/fields.py, with the one env-masking
rule; tests/unit/test_field_tables.py checks that every spec key of schemas/Service.schema.json has a row.

Pure: nothing here touches the engine.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from reconciler.drivers.engine import runoptions
from reconciler.drivers.engine.fields import (
    COMMAND,
    ENTRYPOINT,
    ENV,
    HOSTNAME,
    IMAGE,
    USER,
    WORKING_DIR,
    Normalizer,
    Normalizing,
    env_changes,
    shown_env,
)
from reconciler.drivers.engine.values import clean_path, parse_bytes, parse_duration
from reconciler.drivers.swarm import runfields
from reconciler.drivers.swarm.values import show_duration, split_digest
from reconciler.errors import SpecError
from reconciler.model import LABEL_PREFIX, Action, Desired, FieldChange

SECOND = 10**9
UPDATE_DEFAULTS: dict[str, Any] = {
    "parallelism": 1,
    "delay": 0,
    "order": "stop-first",
    "failureAction": "pause",
    "monitor": 5 * SECOND,
    "maxFailureRatio": 0.0,
}
RESTART_DEFAULTS: dict[str, Any] = {"condition": "any", "delay": 5 * SECOND, "maxAttempts": 0, "window": 0}
DEFAULT_STOP_GRACE = 10 * SECOND
DEFAULT_FILE_MODE = 0o444  # what `docker service create --secret` gives a file

ROLLS = "rolls tasks"
NO_ROLL = "no task restart"


# --- what the row functions get ---------------------------------------------------------------------------------


@dataclass
class Reading:
    """One `inspect_service` document being read: `network_names` maps network IDs to names, `secret_names` /
    `config_names` the engine names of the project's versions to their manifest names; the readers of secrets
    and configs note which version each declared name uses (`versions`)."""

    info: Mapping[str, Any]
    network_names: Mapping[str, str]
    secret_names: Mapping[str, str]
    config_names: Mapping[str, str]
    versions: dict[str, dict[str, str]] = field(default_factory=dict)

    @property
    def spec(self) -> Mapping[str, Any]:
        return self.info["Spec"]

    @property
    def task(self) -> Mapping[str, Any]:
        return self.spec.get("TaskTemplate") or {}

    @property
    def container(self) -> Mapping[str, Any]:
        return self.task.get("ContainerSpec") or {}

    @property
    def endpoint(self) -> Mapping[str, Any]:
        return self.spec.get("EndpointSpec") or {}


@dataclass
class Building:
    """The part of a ServiceSpec being built from the canonical `spec`: `doc` is the task template, the endpoint
    spec or the service spec (each started from the current one); `image` the reference pinned to its digest,
    `secret_ids` / `config_ids` declared name -> (engine ID, engine name) of the version to use, `labels` the
    service's labels (ownership stamped)."""

    spec: Mapping[str, Any]
    doc: dict[str, Any]
    image: str = ""
    secret_ids: Mapping[str, tuple[str, str]] = field(default_factory=dict)
    config_ids: Mapping[str, tuple[str, str]] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)

    @property
    def container(self) -> dict[str, Any]:
        container: dict[str, Any] = self.doc.setdefault("ContainerSpec", {})
        return container


Part = Literal["task", "endpoint", "service"]
Reader = Callable[[Reading], Any]
Writer = Callable[[Any, Building], None]
Expect = Callable[[Any, Mapping[str, Any]], Any]  # (declared value, the observed spec) -> what the engine reports
# (row, expected value, observed value, desired, note) -> the FieldChanges naming each difference
Comparator = Callable[["ServiceField", Any, Any, Desired, str], list[FieldChange]]


def _declared(value: Any, observed: Mapping[str, Any]) -> Any:
    return value


def set_or_drop(target: dict[str, Any], key: str, value: Any) -> None:
    """Set, or drop the key when the manifest leaves it unset (the engine's own default then applies)."""
    if value is None or value == [] or value == {}:
        target.pop(key, None)
    else:
        target[key] = value


def to_container_converted(engine_key: str, convert: Callable[[Any], Any]) -> Writer:
    """Writer: the value through `convert` as ContainerSpec key `engine_key` (dropped when unset)."""

    def write(value: Any, b: Building) -> None:
        set_or_drop(b.container, engine_key, convert(value) if value is not None else None)

    return write


def to_container(engine_key: str) -> Writer:
    """Writer: the value as ContainerSpec key `engine_key` (dropped when unset)."""

    def write(value: Any, b: Building) -> None:
        set_or_drop(b.container, engine_key, value)

    return write


# --- the generic comparator -------------------------------------------------------------------------------------


# sub-keys shown as durations (`5s`) in a plan
DURATIONS = frozenset({"stopGracePeriod", "delay", "monitor", "interval", "timeout", "startPeriod", "window"})


def by_value(row: ServiceField, want: Any, have: Any, desired: Desired, note: str) -> list[FieldChange]:
    """One change of the whole value (REPLACE, with the row's reason, when the engine cannot change it), or, for
    a `per_key` row whose both sides are mappings, one change per differing key."""

    def shown(key: str, value: Any) -> Any:  # durations as `5s`, for people
        return show_duration(value) if key in DURATIONS and isinstance(value, int) else value

    if want == have:
        return []
    if row.replace:
        return [FieldChange(row.key, have, want, Action.REPLACE, note=row.replace)]
    if row.per_key and isinstance(want, Mapping) and isinstance(have, Mapping | None):
        have = have or {}
        return [
            FieldChange(
                f"{row.key}.{sub}", shown(sub, have.get(sub)), shown(sub, want.get(sub)), Action.UPDATE, note=note
            )
            for sub in sorted(set(want) | set(have))
            if want.get(sub) != have.get(sub)
        ]
    return [FieldChange(row.key, shown(row.key, have), shown(row.key, want), Action.UPDATE, note=note)]


@dataclass(frozen=True)
class ServiceField:
    """One field of a Service: where it comes from, how it is read back, compared and written."""

    key: str  # the key in the canonical spec, and the FieldChange path (or its prefix: `env.NAME`)
    manifest: tuple[str, ...]  # the manifest keys it is made from (document paths: `spec.env`, `metadata.labels`)
    normalize: Normalizer | None  # manifest -> canonical value; None: not kept in the spec (labels: the Resource's)
    read: Reader  # inspect_service -> canonical value
    part: Part  # the ServiceSpec part holding it: task template / endpoint (a change rolls tasks) or service
    write: Writer | None  # into that part; None: written by another row's writer (replicas, with the mode)
    expect: Expect = _declared
    compare: Comparator = by_value
    per_key: bool = False  # compared per key of the mapping
    replace: str = ""  # a change needs a new service, because of this
    normalize_first: bool = False
    doc: str = ""

    @property
    def rolls(self) -> bool:
        """A change of it rolls the service's tasks (swarm re-creates tasks whose template or endpoint differ)."""
        return self.part != "service"


# --- image, stop grace period, labels ---------------------------------------------------------------------------


def _write_image(value: str, b: Building) -> None:
    b.container["Image"] = b.image  # the declared reference pinned to its digest


def _write_stop_grace(value: int, b: Building) -> None:
    b.container["StopGracePeriod"] = value


def _write_labels(value: None, b: Building) -> None:
    b.doc["Labels"] = dict(b.labels)  # the declared ones with the ownership labels stamped


# --- env --------------------------------------------------------------------------------------------------------


def _read_env(r: Reading) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in r.container.get("Env") or []:
        key, _, value = item.partition("=")
        out[key] = value
    return dict(sorted(out.items()))


def _compare_env(row: ServiceField, want: Any, have: Any, desired: Desired, note: str) -> list[FieldChange]:
    """Per name, with the one masking rule (engine/fields.shown_env): a service records no sensitive names and its
    spec holds no image defaults, so an observed value shows only when declared in plain `env` now."""
    return env_changes(want, have, desired, shown_env(desired, have or {}), Action.UPDATE, note)


# --- mode and replicas ------------------------------------------------------------------------------------------


def _read_mode(r: Reading) -> str:
    return "global" if "Global" in (r.spec.get("Mode") or {}) else "replicated"


def _read_replicas(r: Reading) -> int | None:
    if _read_mode(r) != "replicated":
        return None
    return int(((r.spec.get("Mode") or {}).get("Replicated") or {}).get("Replicas", 1))


def _normalize_replicas(n: Normalizing) -> int | None:
    return int(n.spec.get("replicas", 1)) if n.spec.get("mode", "replicated") == "replicated" else None


def _write_mode(mode: str, b: Building) -> None:
    b.doc["Mode"] = {"Global": {}} if mode == "global" else {"Replicated": {"Replicas": b.spec["replicas"]}}


# --- ports ------------------------------------------------------------------------------------------------------


def _port_order(p: Mapping[str, Any]) -> tuple:
    return (p["containerPort"], p["protocol"], p["publishMode"], p["hostPort"] or 0)


def _normalize_ports(n: Normalizing) -> list[dict[str, Any]]:
    return sorted(
        (
            {
                "containerPort": int(p["containerPort"]),
                "hostPort": int(p["hostPort"]) if p.get("hostPort") is not None else None,
                "protocol": p.get("protocol", "tcp"),
                "publishMode": p.get("publishMode", "ingress"),
            }
            for p in n.spec.get("ports") or []
        ),
        key=_port_order,
    )


def _read_ports(r: Reading) -> list[dict[str, Any]]:
    return sorted(
        (
            {
                "containerPort": int(p["TargetPort"]),
                "hostPort": p.get("PublishedPort"),
                "protocol": p.get("Protocol", "tcp"),
                "publishMode": p.get("PublishMode", "ingress"),
            }
            for p in r.endpoint.get("Ports") or []
        ),
        key=_port_order,
    )


def _expect_ports(ports: list[Mapping[str, Any]], observed: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """A port published without a host port gets one from ingress: the one observed is expected."""
    assigned = {
        (p["containerPort"], p["protocol"], p["publishMode"]): p["hostPort"] for p in observed.get("ports") or []
    }
    return sorted(
        (
            {**p, "hostPort": assigned.get((p["containerPort"], p["protocol"], p["publishMode"]))}
            if p["hostPort"] is None
            else p
            for p in ports
        ),
        key=_port_order,
    )


def _write_ports(ports: list[Mapping[str, Any]], b: Building) -> None:
    engine = [
        {
            "Protocol": p["protocol"],
            "TargetPort": p["containerPort"],
            "PublishMode": p["publishMode"],
            **({"PublishedPort": p["hostPort"]} if p["hostPort"] is not None else {}),
        }
        for p in ports
    ]
    set_or_drop(b.doc, "Ports", engine)


def _write_endpoint_mode(mode: str, b: Building) -> None:
    b.doc["Mode"] = mode


# --- networks ---------------------------------------------------------------------------------------------------


def _normalize_networks(n: Normalizing) -> list[dict[str, Any]]:
    return sorted(
        (
            {"name": net["name"], "aliases": sorted(set(net.get("aliases") or []))}
            for net in n.spec.get("networks") or []
        ),
        key=lambda net: net["name"],
    )


def _read_networks(r: Reading) -> list[dict[str, Any]]:
    return sorted(
        (
            {"name": r.network_names.get(n["Target"], n["Target"]), "aliases": sorted(set(n.get("Aliases") or []))}
            for n in r.task.get("Networks") or r.spec.get("Networks") or []
        ),
        key=lambda n: n["name"],
    )


def _write_networks(networks: list[Mapping[str, Any]], b: Building) -> None:
    set_or_drop(b.doc, "Networks", [{"Target": n["name"], "Aliases": n["aliases"]} for n in networks])


# --- mounts -----------------------------------------------------------------------------------------------------


def _relative(value: str, manifest: Path) -> Path:
    path = Path(value)
    return path if path.is_absolute() else manifest.parent / path


def _mount(entry: Mapping[str, Any], manifest: Path, where: str) -> dict[str, Any]:
    kind = entry["type"]
    if kind in ("volume", "bind"):
        source = entry["source"]
        if kind == "bind":
            source = os.path.abspath(_relative(source, manifest))
        return {
            "type": kind,
            "source": source,
            "target": clean_path(entry["target"]),
            "readOnly": bool(entry.get("readOnly", False)),
        }
    if kind == "tmpfs":
        return {
            "type": "tmpfs",
            "target": clean_path(entry["target"]),
            "size": parse_bytes(entry["size"], f"{where}.size") if entry.get("size") is not None else None,
            "mode": int(str(entry["mode"]), 8) if entry.get("mode") is not None else None,
        }
    raise SpecError(f"{where}.type", f"unknown mount type {kind!r}")


def _normalize_mounts(n: Normalizing) -> list[dict[str, Any]]:
    return sorted(
        (_mount(m, n.manifest, f"spec.mounts.{i}") for i, m in enumerate(n.spec.get("mounts") or [])),
        key=lambda m: m["target"],
    )


def _read_mount(m: Mapping[str, Any]) -> dict[str, Any]:
    kind = m.get("Type", "volume")
    if kind == "tmpfs":
        tmpfs = m.get("TmpfsOptions") or {}
        return {"type": "tmpfs", "target": m.get("Target"), "size": tmpfs.get("SizeBytes"), "mode": tmpfs.get("Mode")}
    return {"type": kind, "source": m.get("Source", ""), "target": m.get("Target"), "readOnly": bool(m.get("ReadOnly"))}


def _engine_mount(m: Mapping[str, Any]) -> dict[str, Any]:
    if m["type"] == "tmpfs":
        options = {k: v for k, v in (("SizeBytes", m["size"]), ("Mode", m["mode"])) if v is not None}
        return {"Type": "tmpfs", "Target": m["target"], **({"TmpfsOptions": options} if options else {})}
    return {"Type": m["type"], "Source": m["source"], "Target": m["target"], "ReadOnly": m["readOnly"]}


# --- secrets and configs ----------------------------------------------------------------------------------------


def _normalize_files(kind: str) -> Normalizer:
    """Secret/config attachments: a secret's default target is its name (under /run/secrets), a config's
    `/<name>`; uid/gid default "0", mode 0444."""
    key = "secrets" if kind == "Secret" else "configs"

    def normalize(n: Normalizing) -> list[dict[str, Any]]:
        out = []
        for entry in n.spec.get(key) or []:
            default_target = entry["name"] if kind == "Secret" else "/" + entry["name"]
            mode = entry.get("mode", DEFAULT_FILE_MODE)
            out.append(
                {
                    "name": entry["name"],
                    "target": str(entry.get("target") or default_target),
                    "uid": str(entry.get("uid", "0")),
                    "gid": str(entry.get("gid", "0")),
                    "mode": int(str(mode), 8) if isinstance(mode, str) else int(mode),
                }
            )
        return sorted(out, key=lambda e: (e["target"], e["name"]))

    return normalize


def _read_files(kind: str) -> Reader:
    """Attachments by declared name (an engine name of one of the project's versions maps back to its manifest
    name; any other name is taken as written); notes declared name -> engine name in use."""
    key = "secrets" if kind == "Secret" else "configs"

    def read(r: Reading) -> list[dict[str, Any]]:
        declared = r.secret_names if kind == "Secret" else r.config_names
        refs, versions = [], {}
        for entry in r.container.get(f"{kind}s") or []:
            engine = entry.get(f"{kind}Name", "")
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
        r.versions[key] = versions
        return sorted(refs, key=lambda e: (e["target"], e["name"]))

    return read


def _write_files(kind: str) -> Writer:
    def write(refs: list[Mapping[str, Any]], b: Building) -> None:
        ids = b.secret_ids if kind == "Secret" else b.config_ids
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
        set_or_drop(b.container, f"{kind}s", out)

    return write


# --- placement --------------------------------------------------------------------------------------------------


def _normalize_placement(n: Normalizing) -> dict[str, Any]:
    placement = n.spec.get("placement") or {}
    return {
        "constraints": sorted(str(c).replace(" ", "") for c in placement.get("constraints") or []),
        "preferences": [str(p["spread"]) for p in placement.get("preferences") or []],
        "maxReplicasPerNode": int(placement.get("maxReplicasPerNode") or 0),
    }


def _read_placement(r: Reading) -> dict[str, Any]:
    placement = r.task.get("Placement") or {}
    return {
        "constraints": sorted(str(c).replace(" ", "") for c in placement.get("Constraints") or []),
        "preferences": [
            (p.get("Spread") or {}).get("SpreadDescriptor", "") for p in placement.get("Preferences") or []
        ],
        "maxReplicasPerNode": int(placement.get("MaxReplicas") or 0),
    }


def _write_placement(value: Mapping[str, Any], b: Building) -> None:
    placement = dict(b.doc.get("Placement") or {})
    set_or_drop(placement, "Constraints", value["constraints"])
    set_or_drop(placement, "Preferences", [{"Spread": {"SpreadDescriptor": p}} for p in value["preferences"]])
    set_or_drop(placement, "MaxReplicas", value["maxReplicasPerNode"] or None)
    set_or_drop(b.doc, "Placement", placement)


# --- resources --------------------------------------------------------------------------------------------------


def _normalize_resources(n: Normalizing) -> dict[str, Any]:
    """Container's names for the limits (`memory`, `cpus`, `pidsLimit`), plus `reservations` ({memory, cpus})
    that the scheduler keeps free on a node for each task."""
    value, where = n.spec.get("resources") or {}, "spec.resources"
    reserved = value.get("reservations") or {}

    def size(given: Mapping[str, Any], key: str, at: str) -> int | None:
        return parse_bytes(given[key], at) if given.get(key) is not None else None

    def nano(given: Mapping[str, Any]) -> int | None:
        return round(float(given["cpus"]) * 10**9) if given.get("cpus") is not None else None

    return {
        "limits": {
            "cpus": nano(value),
            "memory": size(value, "memory", f"{where}.memory"),
            "pids": int(value["pidsLimit"]) if value.get("pidsLimit") is not None else None,
        },
        "reservations": {
            "cpus": nano(reserved),
            "memory": size(reserved, "memory", f"{where}.reservations.memory"),
        },
    }


def _read_resources(r: Reading) -> dict[str, Any]:
    resources = r.task.get("Resources") or {}
    limits = resources.get("Limits") or {}
    reservations = resources.get("Reservations") or {}
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


def _write_resources(value: Mapping[str, Any], b: Building) -> None:
    limits = {
        k: v
        for k, v in (
            ("NanoCPUs", value["limits"]["cpus"]),
            ("MemoryBytes", value["limits"]["memory"]),
            ("Pids", value["limits"]["pids"]),
        )
        if v
    }
    reserved = value["reservations"]
    reservations = {k: v for k, v in (("NanoCPUs", reserved["cpus"]), ("MemoryBytes", reserved["memory"])) if v}
    b.doc["Resources"] = {"Limits": limits, "Reservations": reservations}


# --- healthcheck ------------------------------------------------------------------------------------------------


def _normalize_healthcheck(n: Normalizing) -> dict[str, Any] | None:
    """Undeclared timings stay None: the engine then uses the image's (or its own) defaults."""
    value, where = n.spec.get("healthcheck"), "spec.healthcheck"
    if value is None:
        return None
    if value.get("disable"):
        return {"test": ["NONE"], "interval": None, "timeout": None, "startPeriod": None, "retries": None}
    test = value["test"]
    out: dict[str, Any] = {"test": ["CMD-SHELL", test] if isinstance(test, str) else [str(t) for t in test]}
    for key in ("interval", "timeout", "startPeriod"):
        raw = value.get(key)
        out[key] = (parse_duration(raw, f"{where}.{key}") or None) if raw is not None else None
    out["retries"] = int(value["retries"]) or None if value.get("retries") is not None else None
    return out


def _read_healthcheck(r: Reading) -> dict[str, Any] | None:
    h = r.container.get("Healthcheck")
    if not h or not h.get("Test"):
        return None
    return {
        "test": list(h["Test"]),
        "interval": h.get("Interval") or None,
        "timeout": h.get("Timeout") or None,
        "startPeriod": h.get("StartPeriod") or None,
        "retries": h.get("Retries") or None,
    }


def _write_healthcheck(h: Mapping[str, Any] | None, b: Building) -> None:
    out: dict[str, Any] | None = None
    if h is not None:
        out = {"Test": list(h["test"])}
        for key, engine_key in (("interval", "Interval"), ("timeout", "Timeout"), ("startPeriod", "StartPeriod")):
            if h[key]:
                out[engine_key] = h[key]
        if h["retries"]:
            out["Retries"] = h["retries"]
    set_or_drop(b.container, "Healthcheck", out)


# --- restart policy ---------------------------------------------------------------------------------------------


def _normalize_restart(n: Normalizing) -> dict[str, Any]:
    restart = n.spec.get("restartPolicy") or {}
    return {
        "condition": restart.get("condition", RESTART_DEFAULTS["condition"]),
        "delay": parse_duration(restart["delay"], "spec.restartPolicy.delay")
        if restart.get("delay") is not None
        else RESTART_DEFAULTS["delay"],
        "maxAttempts": int(restart.get("maxAttempts", 0)),
        "window": parse_duration(restart["window"], "spec.restartPolicy.window")
        if restart.get("window") is not None
        else 0,
    }


def _read_restart(r: Reading) -> dict[str, Any]:
    restart = r.task.get("RestartPolicy") or {}
    return {
        "condition": restart.get("Condition") or RESTART_DEFAULTS["condition"],
        "delay": int(restart["Delay"]) if restart.get("Delay") is not None else RESTART_DEFAULTS["delay"],
        "maxAttempts": int(restart.get("MaxAttempts") or 0),
        "window": int(restart.get("Window") or 0),
    }


def _write_restart(restart: Mapping[str, Any], b: Building) -> None:
    b.doc["RestartPolicy"] = {
        "Condition": restart["condition"],
        "Delay": restart["delay"],
        "MaxAttempts": restart["maxAttempts"],
        "Window": restart["window"],
    }


# --- update and rollback config ---------------------------------------------------------------------------------


def _normalize_update(key: str) -> Normalizer:
    def normalize(n: Normalizing) -> dict[str, Any]:
        value, where = n.spec.get(key) or {}, f"spec.{key}"
        out = dict(UPDATE_DEFAULTS)
        for name in ("parallelism", "order", "failureAction"):
            if value.get(name) is not None:
                out[name] = value[name]
        for name in ("delay", "monitor"):
            if value.get(name) is not None:
                out[name] = parse_duration(value[name], f"{where}.{name}")
        if value.get("maxFailureRatio") is not None:
            out["maxFailureRatio"] = float(value["maxFailureRatio"])
        out["parallelism"] = int(out["parallelism"])
        return out

    return normalize


def _read_update(engine_key: str) -> Reader:
    def read(r: Reading) -> dict[str, Any]:
        value = r.spec.get(engine_key) or {}
        return {
            "parallelism": int(value.get("Parallelism", UPDATE_DEFAULTS["parallelism"])),
            "delay": int(value.get("Delay") or 0),
            "order": value.get("Order") or UPDATE_DEFAULTS["order"],
            "failureAction": value.get("FailureAction") or UPDATE_DEFAULTS["failureAction"],
            "monitor": int(value.get("Monitor") or UPDATE_DEFAULTS["monitor"]),
            "maxFailureRatio": float(value.get("MaxFailureRatio") or 0.0),
        }

    return read


def _write_update(engine_key: str) -> Writer:
    def write(value: Mapping[str, Any], b: Building) -> None:
        b.doc[engine_key] = {
            "Parallelism": value["parallelism"],
            "Delay": value["delay"],
            "FailureAction": value["failureAction"],
            "Monitor": value["monitor"],
            "MaxFailureRatio": value["maxFailureRatio"],
            "Order": value["order"],
        }

    return write


# --- the table --------------------------------------------------------------------------------------------------


def _run_option(key: str, normalize: Normalizer, read: Reader, write: Writer, doc: str = "") -> ServiceField:
    """A run option shared with Container (runfields.py): in the task template, so a change rolls the tasks."""
    return ServiceField(key, (f"spec.{key}",), normalize=normalize, read=read, part="task", write=write, doc=doc)


def _from_spec(key: str, convert: Callable[[Any], Any]) -> Normalizer:
    return lambda n: convert(n.spec.get(key))


def _dns_row(key: str) -> ServiceField:
    def write(value: Any, b: Building) -> None:
        runfields.write_dns(key, value, b.doc)

    return _run_option(
        key,
        _from_spec(key, runoptions.text_list),
        lambda r: runoptions.text_list((r.container.get("DNSConfig") or {}).get(runfields.DNS[key])),
        write,
        doc=f"ContainerSpec.DNSConfig.{runfields.DNS[key]}",
    )


RUN_OPTIONS: tuple[ServiceField, ...] = (
    ServiceField(
        "logging",
        ("spec.logging",),
        normalize=_from_spec("logging", runoptions.logging),
        read=lambda r: runfields.read_logging(r.task),
        part="task",
        write=runfields.write_logging,
        expect=lambda value, observed: value if value is not None else observed.get("logging"),
        doc="TaskTemplate.LogDriver; a service names its driver; undeclared: whatever the service has (never drift,"
        " kept), as a container's daemon default",
    ),
    _run_option(
        "ulimits",
        lambda n: runoptions.ulimits(n.spec.get("ulimits"), "spec.ulimits"),
        lambda r: runoptions.read_ulimits(r.container.get("Ulimits")),
        to_container_converted("Ulimits", runoptions.engine_ulimits),
    ),
    _run_option(
        "sysctls",
        _from_spec("sysctls", runoptions.sysctls),
        lambda r: runoptions.sysctls(r.container.get("Sysctls")),
        to_container("Sysctls"),
    ),
    _run_option(
        "init",
        _from_spec("init", runoptions.true_or_none),
        lambda r: runoptions.true_or_none(r.container.get("Init")),
        runfields.write_init,
        doc="true or None: the docker CLI writes Init false, the daemon's default (kept)",
    ),
    _run_option(
        "stopSignal",
        _from_spec("stopSignal", runoptions.stop_signal),
        lambda r: runoptions.stop_signal(r.container.get("StopSignal")),
        to_container("StopSignal"),
        doc="undeclared: the image's STOPSIGNAL (the engine leaves the spec's empty)",
    ),
    _run_option(
        "extraHosts",
        _from_spec("extraHosts", runoptions.extra_hosts),
        lambda r: runfields.read_hosts(r.container.get("Hosts")),
        to_container_converted("Hosts", runfields.engine_hosts),
        doc="ContainerSpec.Hosts, `ADDRESS NAME` lines; canonical `name:address` as a container's",
    ),
    _dns_row("dns"),
    _dns_row("dnsSearch"),
    _dns_row("dnsOptions"),
    _run_option(
        "groupAdd",
        _from_spec("groupAdd", runoptions.sorted_texts),
        lambda r: runoptions.sorted_texts(r.container.get("Groups")),
        to_container("Groups"),
    ),
    _run_option(
        "capAdd",
        _from_spec("capAdd", runfields.capabilities),
        lambda r: runfields.capabilities(r.container.get("CapabilityAdd")),
        to_container_converted("CapabilityAdd", runfields.engine_capabilities),
        doc="API 1.41; upper case without CAP_",
    ),
    _run_option(
        "capDrop",
        _from_spec("capDrop", runfields.capabilities),
        lambda r: runfields.capabilities(r.container.get("CapabilityDrop")),
        to_container_converted("CapabilityDrop", runfields.engine_capabilities),
    ),
    _run_option(
        "readOnlyRootfs",
        _from_spec("readOnlyRootfs", runoptions.true_or_none),
        lambda r: runoptions.true_or_none(r.container.get("ReadOnly")),
        to_container("ReadOnly"),
    ),
    _run_option(
        "tty",
        _from_spec("tty", runoptions.true_or_none),
        lambda r: runoptions.true_or_none(r.container.get("TTY")),
        to_container("TTY"),
    ),
    _run_option(
        "stdinOpen",
        _from_spec("stdinOpen", runoptions.true_or_none),
        lambda r: runoptions.true_or_none(r.container.get("OpenStdin")),
        to_container("OpenStdin"),
    ),
)

FIELDS: tuple[ServiceField, ...] = (
    ServiceField(
        **IMAGE.columns(),
        read=lambda r: split_digest(r.container.get("Image", ""))[0],
        part="task",
        write=_write_image,
        doc="written pinned to the digest its registry gives at apply (ServiceFacts.image_digest: the pinned one)",
    ),
    ServiceField(
        "mode",
        ("spec.mode",),
        normalize=lambda n: n.spec.get("mode", "replicated"),
        read=_read_mode,
        part="service",
        write=_write_mode,
        replace="the engine cannot change a service's mode",
    ),
    ServiceField(
        "replicas",
        ("spec.replicas",),
        normalize=_normalize_replicas,
        read=_read_replicas,
        part="service",
        write=None,
        doc="None for a global service; written with the mode (Mode.Replicated.Replicas)",
    ),
    ServiceField(
        **COMMAND.columns(),
        read=lambda r: _list_or_none(r.container.get("Args")),
        part="task",
        write=to_container("Args"),
    ),
    ServiceField(
        **ENTRYPOINT.columns(),
        read=lambda r: _list_or_none(r.container.get("Command")),
        part="task",
        write=to_container("Command"),
    ),
    ServiceField(
        **ENV.columns(),
        read=_read_env,
        part="task",
        write=lambda env, b: set_or_drop(b.container, "Env", [f"{k}={v}" for k, v in env.items()]),
        compare=_compare_env,
        doc="env files under env; compared per name (`env.NAME`), sensitive values masked",
    ),
    ServiceField(
        "ports",
        ("spec.ports",),
        normalize=_normalize_ports,
        read=_read_ports,
        part="endpoint",
        write=_write_ports,
        expect=_expect_ports,
    ),
    ServiceField(
        "endpointMode",
        ("spec.endpointMode",),
        normalize=lambda n: n.spec.get("endpointMode", "vip"),
        read=lambda r: r.endpoint.get("Mode") or "vip",
        part="endpoint",
        write=_write_endpoint_mode,
    ),
    ServiceField(
        "networks",
        ("spec.networks",),
        normalize=_normalize_networks,
        read=_read_networks,
        part="task",
        write=_write_networks,
        doc="TaskTemplate.Networks (the deprecated top-level Networks is read too, and dropped on write)",
    ),
    ServiceField(
        "mounts",
        ("spec.mounts",),
        normalize=_normalize_mounts,
        read=lambda r: sorted((_read_mount(m) for m in r.container.get("Mounts") or []), key=lambda m: m["target"]),
        part="task",
        write=lambda mounts, b: set_or_drop(b.container, "Mounts", [_engine_mount(m) for m in mounts]),
    ),
    ServiceField(
        "secrets",
        ("spec.secrets",),
        normalize=_normalize_files("Secret"),
        read=_read_files("Secret"),
        part="task",
        write=_write_files("Secret"),
        doc="by manifest name; the version in use is compared beside the table (diff.with_data_versions)",
    ),
    ServiceField(
        "configs",
        ("spec.configs",),
        normalize=_normalize_files("Config"),
        read=_read_files("Config"),
        part="task",
        write=_write_files("Config"),
    ),
    ServiceField(
        "placement",
        ("spec.placement",),
        normalize=_normalize_placement,
        read=_read_placement,
        part="task",
        write=_write_placement,
        per_key=True,
    ),
    ServiceField(
        "resources",
        ("spec.resources",),
        normalize=_normalize_resources,
        read=_read_resources,
        part="task",
        write=_write_resources,
        per_key=True,
        doc="limits and reservations; Container's names for the limits",
    ),
    ServiceField(
        "healthcheck",
        ("spec.healthcheck",),
        normalize=_normalize_healthcheck,
        read=_read_healthcheck,
        part="task",
        write=_write_healthcheck,
        per_key=True,
        doc="durations in nanoseconds; undeclared ones stay None (the image's or the engine's)",
    ),
    ServiceField(
        "restartPolicy",
        ("spec.restartPolicy",),
        normalize=_normalize_restart,
        read=_read_restart,
        part="task",
        write=_write_restart,
        per_key=True,
    ),
    ServiceField(
        "update",
        ("spec.update",),
        normalize=_normalize_update("update"),
        read=_read_update("UpdateConfig"),
        part="service",
        write=_write_update("UpdateConfig"),
        per_key=True,
    ),
    ServiceField(
        "rollback",
        ("spec.rollback",),
        normalize=_normalize_update("rollback"),
        read=_read_update("RollbackConfig"),
        part="service",
        write=_write_update("RollbackConfig"),
        per_key=True,
    ),
    ServiceField(
        "stopGracePeriod",
        ("spec.stopGracePeriod",),
        normalize=lambda n: (
            parse_duration(n.spec["stopGracePeriod"], "spec.stopGracePeriod")
            if n.spec.get("stopGracePeriod") is not None
            else DEFAULT_STOP_GRACE
        ),
        read=lambda r: (
            int(r.container["StopGracePeriod"])
            if r.container.get("StopGracePeriod") is not None
            else DEFAULT_STOP_GRACE
        ),
        part="task",
        write=_write_stop_grace,
    ),
    ServiceField(
        **USER.columns(), read=lambda r: r.container.get("User") or None, part="task", write=to_container("User")
    ),
    ServiceField(
        **WORKING_DIR.columns(), read=lambda r: r.container.get("Dir") or None, part="task", write=to_container("Dir")
    ),
    ServiceField(
        **HOSTNAME.columns(),
        read=lambda r: r.container.get("Hostname") or None,
        part="task",
        write=to_container("Hostname"),
    ),
    ServiceField(
        "labels",
        ("metadata.labels",),
        normalize=None,
        read=lambda r: {k: v for k, v in (r.spec.get("Labels") or {}).items() if not k.startswith(LABEL_PREFIX)},
        part="service",
        write=_write_labels,
        doc="kept on the Resource (hashed with the spec); written with the ownership labels stamped",
    ),
    *RUN_OPTIONS,
)
BY_KEY = {row.key: row for row in FIELDS}
# Manifest keys that are no field of the canonical spec.
NOT_FIELDS = {
    "metadata.name": "the service's name: its identity, not a setting",
    "spec.hosts": "placement: which Hosts get the object; reconciler.core.placement reads it and removes it from "
    "the spec before the driver normalizes",
}


def _list_or_none(value: Any) -> list[str] | None:
    return list(value) if value is not None else None


def rolls_tasks(path: str) -> bool:
    """A change at `path` (`env.A`, `secrets.db`) rolls the service's tasks."""
    row = BY_KEY.get(path.split(".", 1)[0])
    return row is not None and row.rolls


def note_for(row: ServiceField) -> str:
    return ROLLS if row.rolls else NO_ROLL
