"""`extends`: a service built on another one (in the same model or in another Compose file), merged with the
same rules as `-f` files, the extending service winning."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from reconciler.compose.losses import LossReport
from reconciler.compose.merging import merge_maps
from reconciler.compose.source import ComposeError, Loc, Map

# Reads another Compose file (relative to the project directory) parsed, interpolated and normalized.
LoadFile = Callable[[str, Loc], Map]


def resolve_extends(top: Map, directory: Path, load: LoadFile, report: LossReport) -> None:
    """Replace every service that `extends` another by the merged result, in place."""
    services = top.get("services")
    if not isinstance(services, Map):
        return
    done: dict[tuple[str, str], Map] = {}

    def resolve(name: str, pool: Map, origin: str, seen: tuple[tuple[str, str], ...]) -> Map:
        key = (origin, name)
        if key in done:
            return done[key]
        service = pool[name]
        extends = service.get("extends") if isinstance(service, Map) else None
        if extends is None:
            return service
        at = service.at("extends")
        if isinstance(extends, str):
            base_name, file = extends, None
        elif isinstance(extends, Map) and isinstance(extends.get("service"), str):
            base_name = extends.text("service")
            file = extends.text("file") if extends.get("file") else None
        else:
            raise ComposeError(at.file, at.line, f"services.{name}.extends needs a service name")
        base_pool, base_origin = pool, origin
        if file is not None:
            other = load(file, at)
            base_pool, base_origin = other.get("services") or Map(other.loc), file
            if Path(os.path.abspath(directory / file)).parent != directory:
                report.flag(
                    at,
                    f"services.{name}.extends",
                    f"relative paths in {file} are read relative to the "
                    "project directory, not to that file's directory",
                )
        if base_name not in base_pool:
            raise ComposeError(
                at.file, at.line, f"services.{name}.extends: no service {base_name!r}" + (f" in {file}" if file else "")
            )
        if (base_origin, base_name) in seen:
            raise ComposeError(at.file, at.line, f"services.{name}.extends: a cycle through {base_name!r}")
        base = resolve(base_name, base_pool, base_origin, (*seen, key))
        own = Map(service.loc)
        for k, v in service.items():
            if k != "extends":
                own.put(k, v, service.at(k), service.raw.get(k))
        merged = merge_maps(base, own, f"services.{name}")
        merged.loc = service.loc
        done[key] = merged
        return merged

    for name in list(services):
        services.put(name, resolve(name, services, "", ((("", name)),)), services.at(name))
