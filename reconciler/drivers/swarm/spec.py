"""Service, Secret and Config manifests -> one canonical spec each (defaults filled, units canonical, env files
and secret/config files read and hashed). Pure: nothing here touches the engine.

The defaults are the engine's and the docker CLI's own (update/rollback: one task at a time, pause on failure,
monitor 5s, stop-first; restart: any, 5s; stop grace period 10s), so a service made by hand with
`docker service create` and a manifest that leaves these out compare equal.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from reconciler.core.safeio import UnsafeFile, manifest_root, read_bytes, tree_of
from reconciler.drivers.swarm.values import (
    canonical_reference,
    command_line,
    parse_bytes,
    parse_duration,
    read_env_file,
)
from reconciler.errors import SpecError
from reconciler.model import Desired, Resource
from reconciler.spechash import spec_hash

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
SWARM_NAME_MAX = 64  # the engine refuses longer secret, config and service names
HASH_CHARS = 8
MAX_DATA_BYTES = {"Secret": 500 * 1024, "Config": 1000 * 1024}
SECRET_HASH_ROUNDS = 100_000


def _clean_path(path: str | None) -> str | None:
    if not path or not path.startswith("/"):
        return path
    return "/" + posixpath.normpath(path).lstrip("/")


def _relative(value: str, manifest: Path) -> Path:
    path = Path(value)
    return path if path.is_absolute() else manifest.parent / path


def _env(spec: Mapping[str, Any], manifest: Path, root: Path | None = None) -> tuple[dict[str, str], frozenset[str]]:
    """envFiles in order, then `env` on top; the names whose values are never shown (every env-file entry)."""
    env: dict[str, str] = {}
    secret: set[str] = set()
    for i, name in enumerate(spec.get("envFiles") or []):
        path = _relative(name, manifest)
        found = read_env_file(path, f"spec.envFiles.{i}", tree_of(path, root))
        env.update(found)
        secret.update(found)
    env.update({str(k): str(v) for k, v in (spec.get("env") or {}).items()})
    secret.update(spec.get("sensitiveEnv") or [])
    return env, frozenset(secret)


def _mount(entry: Mapping[str, Any], manifest: Path, field: str) -> dict[str, Any]:
    kind = entry["type"]
    if kind in ("volume", "bind"):
        source = entry["source"]
        if kind == "bind":
            source = os.path.abspath(_relative(source, manifest))
        return {
            "type": kind,
            "source": source,
            "target": _clean_path(entry["target"]),
            "readOnly": bool(entry.get("readOnly", False)),
        }
    if kind == "tmpfs":
        return {
            "type": "tmpfs",
            "target": _clean_path(entry["target"]),
            "size": parse_bytes(entry["size"], f"{field}.size") if entry.get("size") is not None else None,
            "mode": int(str(entry["mode"]), 8) if entry.get("mode") is not None else None,
        }
    raise SpecError(f"{field}.type", f"unknown mount type {kind!r}")


def _healthcheck(value: Mapping[str, Any] | None, field: str) -> dict[str, Any] | None:
    """Undeclared timings stay None: the engine then uses the image's (or its own) defaults."""
    if value is None:
        return None
    if value.get("disable"):
        return {"test": ["NONE"], "interval": None, "timeout": None, "startPeriod": None, "retries": None}
    test = value["test"]
    out: dict[str, Any] = {"test": ["CMD-SHELL", test] if isinstance(test, str) else [str(t) for t in test]}
    for key in ("interval", "timeout", "startPeriod"):
        raw = value.get(key)
        out[key] = (parse_duration(raw, f"{field}.{key}") or None) if raw is not None else None
    out["retries"] = int(value["retries"]) or None if value.get("retries") is not None else None
    return out


def _file_refs(entries: list[Mapping[str, Any]] | None, kind: str) -> list[dict[str, Any]]:
    """Secret/config attachments: a secret's default target is its name (under /run/secrets), a config's
    `/<name>`; uid/gid default "0", mode 0444."""
    out = []
    for entry in entries or []:
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


def _update_config(value: Mapping[str, Any] | None, field: str) -> dict[str, Any]:
    value = value or {}
    out = dict(UPDATE_DEFAULTS)
    for key in ("parallelism", "order", "failureAction"):
        if value.get(key) is not None:
            out[key] = value[key]
    for key in ("delay", "monitor"):
        if value.get(key) is not None:
            out[key] = parse_duration(value[key], f"{field}.{key}")
    if value.get("maxFailureRatio") is not None:
        out["maxFailureRatio"] = float(value["maxFailureRatio"])
    out["parallelism"] = int(out["parallelism"])
    return out


def _resources(value: Mapping[str, Any] | None, field: str) -> dict[str, Any]:
    """Container's names for the limits (`memory`, `cpus`, `pidsLimit`), plus `reservations` ({memory, cpus})
    that the scheduler keeps free on a node for each task."""
    value = value or {}
    reserved = value.get("reservations") or {}

    def size(given: Mapping[str, Any], key: str, where: str) -> int | None:
        return parse_bytes(given[key], where) if given.get(key) is not None else None

    def nano(given: Mapping[str, Any]) -> int | None:
        return round(float(given["cpus"]) * 10**9) if given.get("cpus") is not None else None

    return {
        "limits": {
            "cpus": nano(value),
            "memory": size(value, "memory", f"{field}.memory"),
            "pids": int(value["pidsLimit"]) if value.get("pidsLimit") is not None else None,
        },
        "reservations": {
            "cpus": nano(reserved),
            "memory": size(reserved, "memory", f"{field}.reservations.memory"),
        },
    }


def normalize_service(resource: Resource) -> Desired:
    """The canonical spec of a Service manifest; `Desired.sensitive` names the env entries never printed."""
    spec = resource.spec
    manifest = resource.source.path
    env, secret = _env(spec, manifest, manifest_root(resource.source.file, resource.source.path))
    mode = spec.get("mode", "replicated")
    restart = spec.get("restartPolicy") or {}
    placement = spec.get("placement") or {}
    normalized: dict[str, Any] = {
        "image": canonical_reference(spec["image"]),
        "mode": mode,
        "replicas": int(spec.get("replicas", 1)) if mode == "replicated" else None,
        "command": command_line(spec.get("command")),
        "entrypoint": command_line(spec.get("entrypoint")),
        "env": dict(sorted(env.items())),
        "ports": sorted(
            (
                {
                    "containerPort": int(p["containerPort"]),
                    "hostPort": int(p["hostPort"]) if p.get("hostPort") is not None else None,
                    "protocol": p.get("protocol", "tcp"),
                    "publishMode": p.get("publishMode", "ingress"),
                }
                for p in spec.get("ports") or []
            ),
            key=lambda p: (p["containerPort"], p["protocol"], p["publishMode"], p["hostPort"] or 0),
        ),
        "endpointMode": spec.get("endpointMode", "vip"),
        "networks": sorted(
            ({"name": n["name"], "aliases": sorted(set(n.get("aliases") or []))} for n in spec.get("networks") or []),
            key=lambda n: n["name"],
        ),
        "mounts": sorted(
            (_mount(m, manifest, f"spec.mounts.{i}") for i, m in enumerate(spec.get("mounts") or [])),
            key=lambda m: m["target"],
        ),
        "secrets": _file_refs(spec.get("secrets"), "Secret"),
        "configs": _file_refs(spec.get("configs"), "Config"),
        "placement": {
            "constraints": sorted(str(c).replace(" ", "") for c in placement.get("constraints") or []),
            "preferences": [str(p["spread"]) for p in placement.get("preferences") or []],
            "maxReplicasPerNode": int(placement.get("maxReplicasPerNode") or 0),
        },
        "resources": _resources(spec.get("resources"), "spec.resources"),
        "healthcheck": _healthcheck(spec.get("healthcheck"), "spec.healthcheck"),
        "restartPolicy": {
            "condition": restart.get("condition", RESTART_DEFAULTS["condition"]),
            "delay": parse_duration(restart["delay"], "spec.restartPolicy.delay")
            if restart.get("delay") is not None
            else RESTART_DEFAULTS["delay"],
            "maxAttempts": int(restart.get("maxAttempts", 0)),
            "window": parse_duration(restart["window"], "spec.restartPolicy.window")
            if restart.get("window") is not None
            else 0,
        },
        "update": _update_config(spec.get("update"), "spec.update"),
        "rollback": _update_config(spec.get("rollback"), "spec.rollback"),
        "stopGracePeriod": parse_duration(spec["stopGracePeriod"], "spec.stopGracePeriod")
        if spec.get("stopGracePeriod") is not None
        else DEFAULT_STOP_GRACE,
        "user": spec.get("user") or None,
        "workingDir": _clean_path(spec.get("workingDir")) or None,
        "hostname": spec.get("hostname") or None,
    }
    for name in ("constraints",):
        if any(not c for c in normalized["placement"][name]):
            raise SpecError(f"spec.placement.{name}", "empty constraint")
    sensitive = frozenset(f"env.{name}" for name in secret)
    return Desired(resource, normalized, spec_hash("Service", normalized, resource.labels), sensitive)


def content_digest(kind: str, name: str, data: bytes) -> str:
    """The hex digest that names a version. A Config's is the sha256 of its bytes. A Secret's is a slow, salted
    derivation (PBKDF2-SHA256): the digest shows in the engine object's name and labels, which anyone allowed to
    list secrets can read, and a plain hash of a short password would let them test guesses quickly."""
    if kind == "Secret":
        salt = f"reconciler/v1 Secret {name}".encode()
        return hashlib.pbkdf2_hmac("sha256", data, salt, SECRET_HASH_ROUNDS).hex()
    return hashlib.sha256(data).hexdigest()


def engine_name(name: str, digest: str) -> str:
    """The engine object's name for one version of a Secret or Config: `<name>-<first 8 hex of sha256>`."""
    return f"{name}-{digest[:HASH_CHARS]}"


def read_data(desired: Desired) -> bytes:
    """The bytes of a Secret/Config, read again at apply; refused when they no longer match the plan's hash."""
    path = Path(desired.spec["file"])
    try:
        data = read_bytes(path, MAX_DATA_BYTES[desired.kind])  # regular, bounded; the hash below is the plan's
    except UnsafeFile as exc:
        raise SpecError("spec.file", f"{path} {exc.reason}" if exc.reason == "does not exist" else str(exc)) from None
    if content_digest(desired.kind, desired.name, data) != desired.spec["hash"]:
        raise SpecError("spec.file", f"{path} changed since the plan was made; plan again")
    return data


def normalize_data(resource: Resource) -> Desired:
    """A Secret or Config: the absolute file, the sha256 of its bytes and the engine name carrying that hash.
    The bytes themselves never enter the spec (plans print specs)."""
    raw = resource.spec.get("file")
    if not raw:
        raise SpecError("spec.file", "required")
    path = _relative(str(raw), resource.source.path)
    limit = MAX_DATA_BYTES[resource.kind]
    # regular files only, at most the engine's limit, never through a link out of the manifest directory
    tree = tree_of(path, manifest_root(resource.source.file, resource.source.path))
    try:
        data = read_bytes(path, limit, tree=tree)
    except UnsafeFile as exc:
        if os.path.isdir(path):
            raise SpecError("spec.file", f"{path} is a directory") from None
        if "limit" in exc.reason:
            size = os.stat(path).st_size
            raise SpecError("spec.file", f"{path} holds {size} bytes; the engine takes at most {limit}") from None
        raise SpecError("spec.file", f"{path} {exc.reason}" if exc.reason == "does not exist" else str(exc)) from None
    if not data and resource.kind == "Secret":
        raise SpecError("spec.file", f"{path} is empty; the engine refuses an empty secret")
    digest = content_digest(resource.kind, resource.name, data)
    name = engine_name(resource.name, digest)
    if len(name) > SWARM_NAME_MAX:
        raise SpecError(
            "metadata.name",
            f"at most {SWARM_NAME_MAX - HASH_CHARS - 1} characters: the engine name adds -<hash of the content>",
        )
    normalized = {"file": os.path.abspath(path), "hash": digest, "engineName": name}
    # the path is not part of the hash: moving a file with the same bytes is no change
    hashed = {"hash": digest}
    return Desired(resource, normalized, spec_hash(resource.kind, hashed, resource.labels), frozenset({"content"}))
