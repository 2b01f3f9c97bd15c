"""Container values in canonical units: durations, sizes, image references, command lines, capabilities, paths,
env files, and how sizes are shown again.

Pure functions and constants, used by the field table (fields.py) and everything above it; nothing here knows a
field or touches the engine.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from reconciler.drivers.engine.values import (
    canonical_reference as canonical_reference,
)
from reconciler.drivers.engine.values import (
    command_line as command_line,
)
from reconciler.drivers.engine.values import (
    parse_bytes as parse_bytes,
)
from reconciler.drivers.engine.values import (
    parse_duration as parse_duration,
)
from reconciler.drivers.engine.values import (
    read_env_file as read_env_file,
)

# Stamped on each container: the NAMES (never values) of its env entries that must not be shown, so a later plan
# that removes or moves one of them knows to mask the old value too.
LABEL_SENSITIVE_ENV = "io.reconciler.sensitive-env"
DEFAULT_STOP_TIMEOUT = 10
DEFAULT_DEPENDENCY_TIMEOUT_NS = 60 * 10**9
HEALTH_DEFAULTS = {"interval": 30 * 10**9, "timeout": 30 * 10**9, "startPeriod": 0, "retries": 3}
HEALTH_DISABLED = {"test": ["NONE"]}


def capability(name: str) -> str:
    """`net_admin`, `CAP_NET_ADMIN` -> `NET_ADMIN` (the engine reads back `CAP_NET_ADMIN`)."""
    upper = name.upper()
    return upper[4:] if upper.startswith("CAP_") else upper


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
