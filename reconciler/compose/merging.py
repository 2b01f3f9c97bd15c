"""Several `-f` files into one Compose model, merged in order the way `docker compose` merges them.

Each file's services are first put in long form (shortforms.py), then merged into what the earlier files said:
mappings key by key, `command`/`entrypoint`/`healthcheck.test` replaced, `ports`/`volumes`/`secrets`/`configs`
merged by their unique key (a later entry with the same key replaces the earlier one), other lists appended
without duplicates, scalars replaced; `!reset` removes a key and `!override` replaces a value whole.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from reconciler.compose.shortforms import mapping_of, names_of, port_key, port_long, volume_long
from reconciler.compose.source import ComposeError, Loc, Map, Override, Reset, Seq

_REPLACED = frozenset({"command", "entrypoint"})
_TOP_SECTIONS = ("services", "networks", "volumes", "secrets", "configs")


def _file_ref_long(value: Any, loc: Loc, what: str) -> Map:
    if isinstance(value, str):
        out = Map(loc)
        out.put("source", value, loc)
        return out
    if isinstance(value, Map) and "source" in value:
        return value
    raise ComposeError(loc.file, loc.line, f"{what} entries need a name or a 'source'")


def _mount_key(kind: str) -> Callable[[Map], tuple[str, ...]]:
    def key(entry: Map) -> tuple[str, ...]:
        if kind == "volumes":
            return (entry.text("target") if "target" in entry else "",)
        default = f"/run/secrets/{entry.get('source')}" if kind == "secrets" else f"/{entry.get('source')}"
        return (entry.text("target") if "target" in entry else default,)

    return key


def _long_list(value: Any, loc: Loc, convert: Callable[[Any, Loc], Map], what: str) -> Seq:
    if not isinstance(value, Seq):
        raise ComposeError(loc.file, loc.line, f"{what} must be a list")
    out = Seq(value.loc)
    for i, item in enumerate(value):
        out.add(convert(item, value.at(i)), value.at(i))
    return out


def _env_files(value: Any, loc: Loc) -> Seq:
    items = value if isinstance(value, Seq) else Seq(loc)
    if isinstance(value, str | Map):
        items.add(value, loc)
    elif not isinstance(value, Seq):
        raise ComposeError(loc.file, loc.line, "env_file must be a path or a list of paths")
    out = Seq(items.loc)
    for i, item in enumerate(items):
        at = items.at(i)
        entry = Map(at)
        if isinstance(item, str):
            entry.put("path", item, at)
        elif isinstance(item, Map) and isinstance(item.get("path"), str):
            entry = item
        else:
            raise ComposeError(at.file, at.line, "env_file entries must be paths or {path, required}")
        out.add(entry, at)
    return out


def _long_form(key: str, value: Any, at: Loc) -> Any:
    if key in ("environment", "labels", "annotations", "sysctls"):
        return mapping_of(value, at, key)
    if key == "build":
        if isinstance(value, str):
            build = Map(at)
            build.put("context", value, at)
            return build
        if not isinstance(value, Map):
            raise ComposeError(at.file, at.line, "build must be a path or a mapping")
        if "args" in value:
            value.put("args", mapping_of(value["args"], value.at("args"), "build.args"), value.at("args"))
        return value
    if key == "ports":
        return _long_list(value, at, port_long, "ports")
    if key == "volumes":
        return _long_list(value, at, volume_long, "volumes")
    if key in ("secrets", "configs"):
        return _long_list(value, at, lambda v, lc: _file_ref_long(v, lc, key), key)
    if key in ("networks", "depends_on"):
        return names_of(value, at, key)
    if key == "env_file":
        return _env_files(value, at)
    return value


def normalize_service(service: Any, loc: Loc, name: str) -> Map:
    """One service in long form; raises ComposeError for shapes Compose itself would refuse."""
    if service is None:
        return Map(loc)
    if not isinstance(service, Map):
        raise ComposeError(loc.file, loc.line, f"service {name!r} must be a mapping")
    out = Map(service.loc)
    for key, value in service.items():
        at = service.at(key)
        if isinstance(value, Reset):
            out.put(key, value, at)
        elif isinstance(value, Override):
            out.put(key, Override(_long_form(key, value.value, at)), at)
        else:
            out.put(key, _long_form(key, value, at), at, service.raw.get(key))
    return out


def _merge_value(key: str, old: Any, new: Any, path: str) -> Any:
    if isinstance(new, Override):
        return new.value
    if key in _REPLACED or (path.endswith("healthcheck") and key == "test"):
        return new
    if isinstance(old, Map) and isinstance(new, Map):
        return merge_maps(old, new, f"{path}.{key}" if path else key)
    if isinstance(old, Seq) and isinstance(new, Seq):
        if path.startswith("services.") and path.count(".") == 1 and key in ("ports", "volumes", "secrets", "configs"):
            unique = port_key if key == "ports" else _mount_key(key)
            return _merge_unique(old, new, unique)
        return _append_unique(old, new)
    return new


def _merge_unique(old: Seq, new: Seq, unique: Callable[[Map], tuple[str, ...]]) -> Seq:
    out = Seq(old.loc)
    replaced = {unique(entry): (entry, new.at(i)) for i, entry in enumerate(new)}
    for i, entry in enumerate(old):
        if unique(entry) not in replaced:
            out.add(entry, old.at(i))
    for i, entry in enumerate(new):
        out.add(entry, new.at(i))
    return out


def _append_unique(old: Seq, new: Seq) -> Seq:
    out = Seq(old.loc)
    for i, item in enumerate(old):
        out.add(item, old.at(i))
    for i, item in enumerate(new):
        if isinstance(item, Map | Seq) or item not in out:
            out.add(item, new.at(i))
    return out


def merge_maps(old: Map, new: Map, path: str = "") -> Map:
    """`new` merged over `old` (neither is changed)."""
    out = Map(old.loc)
    for key, value in old.items():
        out.put(key, value, old.at(key), old.raw.get(key))
    for key, value in new.items():
        if isinstance(value, Reset):
            out.pop(key, None)
            continue
        if key in out:
            out.put(key, _merge_value(key, out[key], value, path or ""), new.at(key), new.raw.get(key))
        else:
            out.put(key, value.value if isinstance(value, Override) else value, new.at(key), new.raw.get(key))
    return out


def normalize_file(top: Map) -> Map:
    """A parsed and interpolated file with its services in long form and its sections checked for shape."""
    out = Map(top.loc)
    for key, value in top.items():
        at = top.at(key)
        if key in _TOP_SECTIONS:
            if value is None:
                value = Map(at)
            if not isinstance(value, Map):
                raise ComposeError(at.file, at.line, f"{key} must be a mapping")
            if key == "services":
                services = Map(value.loc)
                for name, service in value.items():
                    services.put(name, normalize_service(service, value.at(name), name), value.at(name))
                value = services
        out.put(key, value, at, top.raw.get(key))
    return out


def settle(value: Any) -> Any:
    """`!reset`/`!override` left where nothing was merged (the first file, or a new key) mean: nothing there /
    the value itself."""
    if isinstance(value, Override):
        return settle(value.value)
    if isinstance(value, Map):
        for key in [k for k, v in value.items() if isinstance(v, Reset)]:
            del value[key]
        for key, item in value.items():
            value[key] = settle(item)
    elif isinstance(value, Seq):
        value[:] = [settle(item) for item in value]
    return value


def merge_files(files: list[Map]) -> Map:
    """The files merged in order (each already normalized); `settle` it once `extends` is resolved too."""
    merged = files[0]
    for later in files[1:]:
        merged = merge_maps(merged, later)
    return merged
