"""Compose's short syntaxes (`"127.0.0.1:8080:80/tcp"`, `"./data:/data:ro"`, `KEY=VALUE` lists) in long form.

Every function takes the value as written and its location, and returns the long form as a `Map` keeping that
location, so merging and mapping see one shape and a loss can still name the line it came from.
"""

from __future__ import annotations

import re
from typing import Any

from reconciler.compose.source import ComposeError, Loc, Map, Seq, scalar_text

_PORT_RANGE = re.compile(r"^(\d+)(?:-(\d+))?$")


def _map_from(loc: Loc, **values: Any) -> Map:
    out = Map(loc)
    for key, value in values.items():
        if value is not None:
            out.put(key, value, loc)
    return out


def _split_host_ip(text: str, loc: Loc) -> tuple[str | None, str]:
    """`[::1]:8080:80` / `127.0.0.1:8080:80` / `8080:80` -> (host ip or None, the rest)."""
    if text.startswith("["):
        end = text.find("]")
        if end < 0 or text[end + 1 : end + 2] != ":":
            raise ComposeError(loc.file, loc.line, f"invalid port {text!r}")
        return text[1:end], text[end + 2 :]
    parts = text.split(":")
    if len(parts) == 3:
        return parts[0] or None, f"{parts[1]}:{parts[2]}"
    if len(parts) > 3:  # an unbracketed IPv6 address: everything before the last two fields
        return ":".join(parts[:-2]), f"{parts[-2]}:{parts[-1]}"
    return None, text


def port_long(value: Any, loc: Loc) -> Map:
    """A `ports` entry in long form: target, published (text, may be a range or empty), host_ip, protocol."""
    if isinstance(value, Map):
        if "target" not in value:
            raise ComposeError(loc.file, loc.line, "ports: a long-form entry needs 'target'")
        return value
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ComposeError(loc.file, loc.line, f"invalid port {scalar_text(value)!r}")
    text = str(value).strip()
    protocol = None
    if "/" in text:
        text, protocol = text.rsplit("/", 1)
    host_ip, rest = _split_host_ip(text, loc)
    published, _, target = rest.rpartition(":")
    for part in (target, published) if published else (target,):
        if not _PORT_RANGE.match(part):
            raise ComposeError(loc.file, loc.line, f"invalid port {str(value)!r}")
    return _map_from(loc, target=target, published=published or None, host_ip=host_ip, protocol=protocol)


def port_range(text: str, loc: Loc) -> tuple[int, int]:
    """`8000` -> (8000, 8000); `8000-8002` -> (8000, 8002); refuses what is not a port range."""
    match = _PORT_RANGE.match(text.strip())
    if not match:
        raise ComposeError(loc.file, loc.line, f"invalid port {text!r}")
    low = int(match.group(1))
    high = int(match.group(2) or low)
    if not 0 < low <= high <= 65535:
        raise ComposeError(loc.file, loc.line, f"invalid port range {text!r}")
    return low, high


def port_key(port: Map) -> tuple[str, ...]:
    """Compose's uniqueness key of a port when merging files."""
    return tuple(port.text(k) if k in port else "" for k in ("host_ip", "target", "published", "protocol"))


_WINDOWS_DRIVE = re.compile(r"^[A-Za-z]:\\")


def volume_long(value: Any, loc: Loc) -> Map:
    """A service `volumes` entry in long form: type, source, target, read_only, plus `flags` (short options)."""
    if isinstance(value, Map):
        if "target" not in value and value.get("type") != "npipe":
            raise ComposeError(loc.file, loc.line, "volumes: a long-form entry needs 'target'")
        return value
    if not isinstance(value, str) or not value:
        raise ComposeError(loc.file, loc.line, f"invalid volume {scalar_text(value)!r}")
    if _WINDOWS_DRIVE.match(value):
        raise ComposeError(loc.file, loc.line, f"Windows paths are not supported: {value!r}")
    parts = value.split(":")
    if len(parts) > 3:
        raise ComposeError(loc.file, loc.line, f"invalid volume {value!r}: too many ':'")
    if len(parts) == 1:
        return _map_from(loc, type="volume", target=parts[0])
    source, target = parts[0], parts[1]
    options = parts[2].split(",") if len(parts) == 3 else []
    if not target.startswith("/") and len(parts) == 2 and target in ("ro", "rw"):
        raise ComposeError(loc.file, loc.line, f"invalid volume {value!r}: the target must be an absolute path")
    is_path = source.startswith(("/", ".", "~"))
    out = _map_from(loc, type="bind" if is_path else "volume", source=source, target=target)
    flags = Seq(loc)
    for option in options:
        if option == "ro":
            out.put("read_only", True, loc)
        elif option == "rw":
            out.put("read_only", False, loc)
        elif option:
            flags.add(option, loc)
    if flags:
        out.put("flags", flags, loc)
    return out


def mapping_of(value: Any, loc: Loc, what: str, separator: str = "=") -> Map:
    """`environment`/`labels`/`args` in mapping form: a list `KEY=VALUE` (or bare `KEY` -> None) becomes a Map."""
    if value is None:
        return Map(loc)
    if isinstance(value, Map):
        return value
    if not isinstance(value, Seq):
        raise ComposeError(loc.file, loc.line, f"{what} must be a mapping or a list")
    out = Map(value.loc)
    for i, item in enumerate(value):
        at = value.at(i)
        if not isinstance(item, str):
            raise ComposeError(at.file, at.line, f"{what} entries must be strings like KEY{separator}VALUE")
        key, found, rest = item.partition(separator)
        out.put(key.strip() if separator != "=" else key, rest if found else None, at)
    return out


def names_of(value: Any, loc: Loc, what: str) -> Map:
    """`networks`/`depends_on` of a service in mapping form: a list of names becomes names -> empty Map."""
    if value is None:
        return Map(loc)
    if isinstance(value, Map):
        return value
    if not isinstance(value, Seq):
        raise ComposeError(loc.file, loc.line, f"{what} must be a mapping or a list")
    out = Map(value.loc)
    for i, item in enumerate(value):
        at = value.at(i)
        if not isinstance(item, str):
            raise ComposeError(at.file, at.line, f"{what} entries must be names")
        out.put(item, Map(at), at)
    return out
