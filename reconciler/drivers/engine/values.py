"""The engine's value formats, as manifests spell them: durations (ns), sizes (bytes), command lines, image
references and env files. Shared by the drivers that speak to the Docker engine (Container and Service), which may
not import one another."""

from __future__ import annotations

import math
import posixpath
import re
import shlex
from pathlib import Path

from reconciler.core.agefiles import AgeOptions, is_encrypted, read_maybe_encrypted_text
from reconciler.core.safeio import ENV_FILE_LIMIT, UnsafeFile, read_env_text
from reconciler.drivers.engine.reference import canonical_reference as canonical_reference  # one spelling
from reconciler.errors import SpecError

_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ns|us|µs|ms|s|m|h)")
_DURATION_UNITS = {"ns": 1, "us": 10**3, "µs": 10**3, "ms": 10**6, "s": 10**9, "m": 60 * 10**9, "h": 3600 * 10**9}
_BYTES = re.compile(r"^([0-9]+(?:\.[0-9]+)?) ?([bB]|[kKmMgGtTpP](?:[iI]?[bB])?)?$")
_BYTE_UNITS = {"b": 1, "k": 1024, "m": 1024**2, "g": 1024**3, "t": 1024**4, "p": 1024**5}
INT64_MAX = 2**63 - 1  # the engine stores durations (ns), sizes (bytes) and NanoCpus as Go int64
ENV_LINE = re.compile(r"^\s*(?:export\s+)?([^=\s#][^=\s]*)\s*=(.*)$")


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


def command_line(value: str | list[str] | None) -> list[str] | None:
    """A list stays a list; a string is split like a POSIX shell would (no shell runs)."""
    if value is None:
        return None
    if isinstance(value, str):
        return shlex.split(value)
    return [str(v) for v in value]


def clean_path(path: str | None) -> str | None:
    """An absolute path as the engine stores it (Go's filepath.Clean): `/tmp/` and `//srv//x/../y` are
    `/tmp` and `/srv/y`, so the spelling never shows as a change."""
    if not path or not path.startswith("/"):
        return path
    return "/" + posixpath.normpath(path).lstrip("/")


def read_env_file(
    path: Path, field: str, tree: Path | str | None = None, age: AgeOptions | None = None
) -> dict[str, str]:
    """`KEY=VALUE` lines; blank lines and `#` comments skipped, one pair of surrounding quotes removed. Read with
    the safe reader: a regular file of at most 1 MiB, not in /proc, /sys or /dev, never through a link out of
    `tree` (the manifest directory, for a path written inside it). A file ending `.age` is decrypted in memory with
    the identity of `age` (issue 22); no identity, or one that does not open it, is a one-line error naming it."""
    try:
        if is_encrypted(path):
            text = read_maybe_encrypted_text(path, (age or AgeOptions()).identities(), ENV_FILE_LIMIT, tree)
        else:
            text = read_env_text(path, tree)
    except UnsafeFile as exc:
        if exc.path != str(path):  # the identity file itself
            raise SpecError(field, f"env file {path}: --age-identity {exc}") from None
        raise SpecError(field, f"env file {path}: {exc.reason}") from None
    env: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = ENV_LINE.match(line)
        if not match:
            raise SpecError(field, f"env file {path} line {number}: expected KEY=VALUE")  # never echo the line
        value = match.group(2).strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        env[match.group(1)] = value
    return env
