"""Spellings people write -> canonical values: durations, sizes, command lines, image references, env files.

The same rules as the Container kind's (reconciler/drivers/container/spec.py): driver packages do not import one
another, so the few lines they share are repeated here rather than moved under the core.
"""

from __future__ import annotations

import json
import math
import re
import shlex
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from reconciler.drivers.engine import lazy
from reconciler.errors import SpecError
from reconciler.safeio import UnsafeFile, read_env_text

NOT_A_MANAGER = "this engine is not a swarm manager (run `docker swarm init` there, or point at a manager)"

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


def show_duration(ns: int | None) -> str | None:
    """Nanoseconds as the shortest exact `1m30s`-style text, for plans."""
    if ns is None:
        return None
    if ns == 0:
        return "0s"
    out = ""
    for unit, size in (("h", 3600 * 10**9), ("m", 60 * 10**9), ("s", 10**9), ("ms", 10**6), ("us", 10**3)):
        if ns >= size and (ns % size == 0 or unit in ("h", "m")):
            out += f"{ns // size}{unit}"
            ns %= size
    return out + (f"{ns}ns" if ns else "")


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


def command_line(value: str | list[str] | None) -> list[str] | None:
    """A list stays a list; a string is split like a POSIX shell would (no shell runs)."""
    if value is None:
        return None
    if isinstance(value, str):
        return shlex.split(value)
    return [str(v) for v in value]


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


def split_digest(ref: str) -> tuple[str, str | None]:
    """`repo:tag@sha256:x` -> (`repo:tag`, `sha256:x`)."""
    name, at, digest = ref.partition("@")
    return name, (digest if at else None)


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
            raise SpecError(field, f"env file {path} line {number}: expected KEY=VALUE")  # never echo the line
        value = match.group(2).strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        env[match.group(1)] = value
    return env


def scrub(text: str, secrets: Iterable[str]) -> str:
    """`text` with every secret replaced by "(sensitive)", also where it was quoted with escapes."""
    for secret in sorted(set(secrets), key=len, reverse=True):
        if not secret:
            continue
        for form in {secret, secret.encode("unicode_escape").decode(), json.dumps(secret)[1:-1]}:
            text = text.replace(form, "(sensitive)")
    return text


def list_on_manager(listing: Callable[[], Any]) -> Any:
    """`listing()`, or None when the engine answers that it is not a swarm manager (503): a tree without swarm
    kinds must plan on any engine, and one with them is blocked with a clear reason."""
    try:
        return listing()
    except lazy.APIError as exc:
        if exc.status_code == 503 and "swarm" in str(exc.explanation or "").lower():
            return None
        raise
