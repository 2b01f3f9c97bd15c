"""Container manifests -> one canonical spec: defaults filled, units canonical, env files read.

Pure functions: nothing here touches the engine. The same canonical spec feeds the spec hash, the diff and the
create call, so they can never disagree (see docs/containers.md).
"""

from __future__ import annotations

import json
import math
import os
import posixpath
import re
import shlex
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from reconciler.errors import SpecError
from reconciler.model import Desired, Resource
from reconciler.safeio import ENV_FILE_LIMIT, UnsafeFile, manifest_root, read_text, tree_of
from reconciler.spechash import spec_hash

ASIDE_SUFFIX = "__reconciler_old"
# Stamped on each container: the NAMES (never values) of its env entries that must not be shown, so a later plan
# that removes or moves one of them knows to mask the old value too.
LABEL_SENSITIVE_ENV = "io.reconciler.sensitive-env"
DEFAULT_STOP_TIMEOUT = 10
DEFAULT_DEPENDENCY_TIMEOUT_NS = 60 * 10**9
HEALTH_DEFAULTS = {"interval": 30 * 10**9, "timeout": 30 * 10**9, "startPeriod": 0, "retries": 3}
HEALTH_DISABLED = {"test": ["NONE"]}

# Fields that never need a replace, so changing them must not change the hash (which would recreate):
# updated in place (resources, restartPolicy), reconnected (networks), started/stopped (state), or not engine
# state at all (dependsOn, opt-ins, which names are sensitive).
UNHASHED = frozenset(
    {"dependsOn", "state", "restartPolicy", "resources", "networks", "allowPrivileged", "sensitiveEnv"}
)

_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ns|us|µs|ms|s|m|h)")
_DURATION_UNITS = {"ns": 1, "us": 10**3, "µs": 10**3, "ms": 10**6, "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9}
_BYTES = re.compile(r"^([0-9]+(?:\.[0-9]+)?) ?([bB]|[kKmMgGtTpP](?:[iI]?[bB])?)?$")
_BYTE_UNITS = {"b": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4, "p": 1024**5}
INT64_MAX = 2**63 - 1  # the engine stores durations (ns), sizes (bytes) and NanoCpus as Go int64
MAX_CPUS = 1 << 20
PSEUDO_FILE_SYSTEMS = ("/proc", "/sys", "/dev")
_ENV_LINE = re.compile(r"^\s*(?:export\s+)?([^=\s#][^=\s]*)\s*=(.*)$")


def parse_duration(value: str | int | float, field: str) -> int:
    """`1m30s`, `500ms`, `10` (seconds) -> nanoseconds."""
    if isinstance(value, bool):
        raise SpecError(field, f"invalid duration {value!r}")
    if isinstance(value, int | float):
        if not math.isfinite(value) or value < 0 or value * 10**9 > INT64_MAX:
            raise SpecError(field, f"invalid duration {value!r} (0 to {INT64_MAX // 10**9} seconds)")
        return round(value * 10**9)
    text = str(value).strip()
    if text == "0":
        return 0
    pos, total = 0, 0.0
    for match in _DURATION_PART.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        pos = match.end()
    if pos != len(text) or not text:
        raise SpecError(field, f"invalid duration {value!r} (use e.g. 500ms, 10s, 1m30s)")
    if total > INT64_MAX:
        raise SpecError(field, f"duration {value!r} is too long: the engine holds at most 2^63-1 ns (about 292 years)")
    return round(total)


def parse_bytes(value: str | int, field: str) -> int:
    """`64m`, `1.5g`, `512k`, `64MiB`, 1048576 -> bytes (binary units, as the engine reads them)."""
    if isinstance(value, bool):
        raise SpecError(field, f"invalid size {value!r}")
    if isinstance(value, int):
        size = value
    else:
        match = _BYTES.match(str(value).strip())
        if not match:
            raise SpecError(field, f"invalid size {value!r} (use e.g. 512k, 64m, 1g)")
        unit = (match.group(2) or "b")[0].lower()
        size = int(float(match.group(1)) * _BYTE_UNITS[unit])
    if size > INT64_MAX:
        raise SpecError(field, f"size {value!r} is too large: the engine holds at most 2^63-1 bytes (8 EiB)")
    return size


def canonical_reference(ref: str) -> str:
    """The short form of an image reference: default registry and `library/` dropped, `:latest` added."""
    name, at, digest = ref.partition("@")
    for prefix in ("docker.io/library/", "index.docker.io/library/", "docker.io/", "index.docker.io/"):
        if name.startswith(prefix):
            name = name[len(prefix) :]
            break
    last = name.rsplit("/", 1)[-1]
    if ":" not in last and not at:
        name += ":latest"
    return name + (at + digest if at else "")


def command_line(value: str | list[str] | None) -> list[str] | None:
    """A list stays a list; a string is split like a POSIX shell would (no shell runs)."""
    if value is None:
        return None
    if isinstance(value, str):
        return shlex.split(value)
    return [str(v) for v in value]


def capability(name: str) -> str:
    """`net_admin`, `CAP_NET_ADMIN` -> `NET_ADMIN` (the engine reads back `CAP_NET_ADMIN`)."""
    upper = name.upper()
    return upper[4:] if upper.startswith("CAP_") else upper


def read_env_file(path: Path, field: str, tree: Path | str | None = None) -> dict[str, str]:
    """`KEY=VALUE` lines; blank lines and `#` comments skipped, one pair of surrounding quotes removed. Read with
    the safe reader: a regular file of at most ENV_FILE_LIMIT bytes, never through a link out of `tree`."""
    real = os.path.realpath(path)
    if any(real == p or real.startswith(p + "/") for p in PSEUDO_FILE_SYSTEMS):
        # /proc/self/environ would hand reconcile's own environment to the container
        raise SpecError(field, f"env file {path}: {real} is in a kernel pseudo file system, not an env file")
    try:
        text = read_text(path, ENV_FILE_LIMIT, tree=tree)
    except UnsafeFile as exc:
        raise SpecError(field, f"env file {path}: {exc.reason}") from None
    env: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = _ENV_LINE.match(line)
        if not match:
            # never echo the line: it may hold a secret
            raise SpecError(field, f"env file {path} line {number}: expected KEY=VALUE")
        value = match.group(2).strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        env[match.group(1)] = value
    return env


def resolve_host_path(source: str, manifest: Path) -> str:
    """Bind sources `./x` / `../x` are relative to the manifest file; the result is absolute and normalized."""
    path = Path(source)
    if not path.is_absolute():
        path = manifest.parent / path
    return os.path.abspath(path)


def _mount(entry: Mapping[str, Any], manifest: Path, field: str) -> dict[str, Any]:
    kind = entry["type"]
    if kind == "volume":
        return {
            "type": "volume",
            "source": entry["source"],
            "target": entry["target"],
            "readOnly": bool(entry.get("readOnly", False)),
        }
    if kind == "bind":
        return {
            "type": "bind",
            "source": resolve_host_path(entry["source"], manifest),
            "target": entry["target"],
            "readOnly": bool(entry.get("readOnly", False)),
            "allowSensitive": bool(entry.get("allowSensitive", False)),
        }
    if kind == "tmpfs":
        return {
            "type": "tmpfs",
            "target": entry["target"],
            "size": parse_bytes(entry["size"], f"{field}.size") if entry.get("size") is not None else None,
            "mode": int(entry["mode"], 8) if entry.get("mode") is not None else None,
        }
    if kind == "npipe":
        raise SpecError(f"{field}.type", "npipe mounts exist only on Windows engines; this is a Linux engine")
    raise SpecError(f"{field}.type", f"unknown mount type {kind!r}")


def _healthcheck(value: Mapping[str, Any] | None, field: str) -> dict[str, Any] | None:
    if value is None:
        return None
    if value.get("disable"):
        return dict(HEALTH_DISABLED)
    test = value["test"]
    test = ["CMD-SHELL", test] if isinstance(test, str) else [str(t) for t in test]
    out: dict[str, Any] = {"test": test}
    for key in ("interval", "timeout", "startPeriod"):
        raw = value.get(key)
        out[key] = parse_duration(raw, f"{field}.{key}") if raw is not None else HEALTH_DEFAULTS[key]
    out["retries"] = int(value.get("retries", HEALTH_DEFAULTS["retries"]))
    return out


def _resources(value: Mapping[str, Any], field: str) -> dict[str, Any]:
    def size(key: str) -> int | None:
        raw = value.get(key)
        return parse_bytes(raw, f"{field}.{key}") if raw is not None else None

    swap = value.get("memorySwap")
    cpus = value.get("cpus")
    if cpus is not None and (
        isinstance(cpus, bool)
        or not isinstance(cpus, int | float)
        or not math.isfinite(cpus)
        or not 0 < cpus <= MAX_CPUS
    ):
        raise SpecError(f"{field}.cpus", f"cpus must be a finite number above 0 and at most {MAX_CPUS}, not {cpus!r}")
    return {
        "memory": size("memory"),
        # -1 (unlimited swap) is a value of its own; undeclared stays None and means "twice memory"
        "memorySwap": -1 if swap == -1 else size("memorySwap"),
        "memoryReservation": size("memoryReservation"),
        "cpus": round(float(cpus) * 10**9) if cpus is not None else None,  # NanoCpus
        "cpuShares": value.get("cpuShares"),
        "pidsLimit": value.get("pidsLimit"),
    }


def _env(spec: Mapping[str, Any], manifest: Path, root: Path | None) -> tuple[dict[str, str], frozenset[str]]:
    """envFiles in order, then `env` on top (as Compose does); the names whose values must never be shown."""
    env: dict[str, str] = {}
    secret: set[str] = set()
    for i, name in enumerate(spec.get("envFiles") or []):
        path = Path(name)
        if not path.is_absolute():
            path = manifest.parent / path
        found = read_env_file(path, f"spec.envFiles.{i}", tree_of(path, root))
        env.update(found)
        secret.update(found)
    env.update({str(k): str(v) for k, v in (spec.get("env") or {}).items()})
    secret.update(spec.get("sensitiveEnv") or [])
    return env, frozenset(secret)


def normalize_container(resource: Resource) -> Desired:
    """The canonical spec of a Container manifest; `Desired.sensitive` names the env entries never printed."""
    spec = resource.spec
    manifest = resource.source.path
    env, secret = _env(spec, manifest, manifest_root(resource.source.file, manifest))
    networks = sorted(
        (
            {
                "name": n["name"],
                "aliases": sorted(set(n.get("aliases") or [])),
                "ipv4Address": n.get("ipv4Address"),
            }
            for n in spec.get("networks") or []
        ),
        key=lambda n: n["name"],
    )
    ports = sorted(
        (
            {
                "containerPort": int(p["containerPort"]),
                "protocol": p.get("protocol", "tcp"),
                "hostIP": p.get("hostIP") or "0.0.0.0",
                "hostPort": int(p["hostPort"]) if p.get("hostPort") is not None else None,
            }
            for p in spec.get("ports") or []
        ),
        key=lambda p: (p["containerPort"], p["protocol"], p["hostIP"], p["hostPort"] or 0),
    )
    restart = spec.get("restartPolicy") or {}
    normalized: dict[str, Any] = {
        "image": canonical_reference(spec["image"]),
        "command": command_line(spec.get("command")),
        "entrypoint": command_line(spec.get("entrypoint")),
        "env": dict(sorted(env.items())),
        "ports": ports,
        "mounts": sorted(
            (_mount(m, manifest, f"spec.mounts.{i}") for i, m in enumerate(spec.get("mounts") or [])),
            key=lambda m: m["target"],
        ),
        "networks": networks,
        "networkMode": spec.get("networkMode") or (None if networks else "bridge"),
        "restartPolicy": {
            "name": restart.get("name", "no"),
            "maximumRetryCount": int(restart.get("maximumRetryCount", 0)),
        },
        "state": spec.get("state", "running"),
        "healthcheck": _healthcheck(spec.get("healthcheck"), "spec.healthcheck"),
        "resources": _resources(spec.get("resources") or {}, "spec.resources"),
        "user": spec.get("user"),
        "workingDir": clean_path(spec.get("workingDir")),
        "hostname": spec.get("hostname"),
        "capAdd": sorted({capability(c) for c in spec.get("capAdd") or []}),
        "capDrop": sorted({capability(c) for c in spec.get("capDrop") or []}),
        "privileged": bool(spec.get("privileged", False)),
        "allowPrivileged": bool(spec.get("allowPrivileged", False)),
        "readOnlyRootfs": bool(spec.get("readOnlyRootfs", False)),
        "stopTimeout": int(spec.get("stopTimeout", DEFAULT_STOP_TIMEOUT)),
        "dependsOn": [
            {
                "name": d["name"],
                "condition": d.get("condition", "started"),
                "timeout": parse_duration(d["timeout"], f"spec.dependsOn.{i}.timeout")
                if d.get("timeout") is not None
                else DEFAULT_DEPENDENCY_TIMEOUT_NS,
            }
            for i, d in enumerate(spec.get("dependsOn") or [])
        ],
        "sensitiveEnv": sorted(spec.get("sensitiveEnv") or []),
    }
    sensitive = frozenset(f"env.{name}" for name in secret)
    return Desired(resource, normalized, spec_hash("Container", hashed_spec(normalized), resource.labels), sensitive)


def clean_path(path: str | None) -> str | None:
    """An absolute path as the engine stores it (Go's filepath.Clean): `/tmp/` and `//srv//x/../y` are
    `/tmp` and `/srv/y`, so the spelling never shows as a change."""
    if not path or not path.startswith("/"):
        return path
    return "/" + posixpath.normpath(path).lstrip("/")


def hashed_spec(spec: Mapping[str, Any]) -> dict[str, Any]:
    """The part of the canonical spec whose change needs a new container (what the spec-hash label covers)."""
    out = {k: v for k, v in spec.items() if k not in UNHASHED}
    out["mounts"] = [{k: v for k, v in m.items() if k != "allowSensitive"} for m in spec["mounts"]]
    return out


def sensitive_env_label(desired: Desired) -> dict[str, str]:
    """The sensitive-env label of a container created from `desired` (empty when nothing is sensitive)."""
    names = sorted(p.removeprefix("env.") for p in desired.sensitive if p.startswith("env."))
    return {LABEL_SENSITIVE_ENV: ",".join(names)} if names else {}


def sensitive_values(desired: Desired | None) -> list[str]:
    """The values of `desired`'s sensitive env entries, longest first (so no value is left half-masked)."""
    if desired is None:
        return []
    env = desired.spec.get("env") or {}
    names = [p.removeprefix("env.") for p in desired.sensitive if p.startswith("env.")]
    return sorted({str(env[n]) for n in names if env.get(n)}, key=len, reverse=True)


def scrub(text: str, secrets: Iterable[str]) -> str:
    """`text` with every secret replaced by "(sensitive)", also where it was quoted with escapes."""
    for secret in secrets:
        for form in {secret, secret.encode("unicode_escape").decode(), json.dumps(secret)[1:-1]}:
            text = text.replace(form, "(sensitive)")
    return text


def aside_name(name: str) -> str:
    """The one deterministic name an old container has while its replacement starts (never stacked)."""
    base = name.removesuffix(ASIDE_SUFFIX)
    return base + ASIDE_SUFFIX
