"""Container values in canonical units: durations, sizes, image references, command lines, capabilities, paths,
env files, and how sizes are shown again.

Pure functions and constants, used by the field table (fields.py) and everything above it; nothing here knows a
field or touches the engine.
"""

from __future__ import annotations

import math
import os
import posixpath
import re
import shlex
from pathlib import Path
from typing import Any

from reconciler.errors import SpecError
from reconciler.safeio import UnsafeFile, read_env_text

# Stamped on each container: the NAMES (never values) of its env entries that must not be shown, so a later plan
# that removes or moves one of them knows to mask the old value too.
LABEL_SENSITIVE_ENV = "io.reconciler.sensitive-env"
DEFAULT_STOP_TIMEOUT = 10
DEFAULT_DEPENDENCY_TIMEOUT_NS = 60 * 10**9
HEALTH_DEFAULTS = {"interval": 30 * 10**9, "timeout": 30 * 10**9, "startPeriod": 0, "retries": 3}
HEALTH_DISABLED = {"test": ["NONE"]}

_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ns|us|µs|ms|s|m|h)")
_DURATION_UNITS = {"ns": 1, "us": 10**3, "µs": 10**3, "ms": 10**6, "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9}
_BYTES = re.compile(r"^([0-9]+(?:\.[0-9]+)?) ?([bB]|[kKmMgGtTpP](?:[iI]?[bB])?)?$")
_BYTE_UNITS = {"b": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4, "p": 1024**5}
INT64_MAX = 2**63 - 1  # the engine stores durations (ns), sizes (bytes) and NanoCpus as Go int64
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
    the safe reader: a regular file of at most 1 MiB, not in /proc, /sys or /dev, never through a link out of
    `tree` (the manifest directory, for a path written inside it)."""
    try:
        text = read_env_text(path, tree)
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


def env_dict(items: list[str] | None) -> dict[str, str]:
    """The engine's `KEY=VALUE` list -> a mapping."""
    out: dict[str, str] = {}
    for item in items or []:
        key, _, value = item.partition("=")
        out[key] = value
    return out


def resolve_host_path(source: str, manifest: Path) -> str:
    """Bind sources `./x` / `../x` are relative to the manifest file; the result is absolute and normalized."""
    path = Path(source)
    if not path.is_absolute():
        path = manifest.parent / path
    return os.path.abspath(path)


def clean_path(path: str | None) -> str | None:
    """An absolute path as the engine stores it (Go's filepath.Clean): `/tmp/` and `//srv//x/../y` are
    `/tmp` and `/srv/y`, so the spelling never shows as a change."""
    if not path or not path.startswith("/"):
        return path
    return "/" + posixpath.normpath(path).lstrip("/")


def shown_size(value: Any) -> Any:
    """Bytes as `64m`-style text when a binary unit divides them exactly (-1, unlimited swap, stays -1)."""
    if not isinstance(value, int) or value <= 0:
        return value
    for unit, factor in (("g", 1024**3), ("m", 1024**2), ("k", 1024)):
        if value % factor == 0:
            return f"{value // factor}{unit}"
    return value


def shown_cpus(nano: int | None) -> float | None:
    """NanoCpus as CPUs, as written in manifests."""
    return None if nano is None else nano / 1e9
