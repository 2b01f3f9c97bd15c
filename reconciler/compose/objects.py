"""A Compose project's named networks and volumes as Network and Volume manifests.

Engine names follow Compose (`<project>_<name>`, or the `name:` the file sets), so the objects a running Compose
project made are the very ones these manifests name: a later adoption finds its volumes, and their data, under
the same names. External networks and volumes belong to someone else: their manifests say `external: true` under
the engine name (reconcile then only checks they exist, and never creates, changes or removes them).
"""

from __future__ import annotations

import ipaddress
from typing import Any

from reconciler.compose.context import NAME, NETWORK_DRIVERS, Context, Manifest, string_map
from reconciler.compose.source import ComposeError, Loc, Map, Seq

_NETWORK_KEYS = {"driver", "driver_opts", "attachable", "enable_ipv6", "external", "internal", "labels", "name", "ipam"}
_VOLUME_KEYS = {"driver", "driver_opts", "external", "labels", "name"}


def _engine_name(key: str, definition: Map | None, ctx: Context, what: str, loc: Loc) -> str:
    if definition is not None and definition.get("name"):
        return definition.text("name")
    external = definition.get("external") if definition is not None else None
    if isinstance(external, Map) and external.get("name"):  # the Compose file format 2/3 spelling
        return external.text("name")
    if definition is not None and definition.get("external"):
        return key  # an external object is known by its own name, without the project prefix
    if what == "network" and key == "default" and definition is None:
        return f"{ctx.project}_default"
    return f"{ctx.project}_{key}"


def _check_definition(definition: Any, loc: Loc, what: str, known: set[str]) -> Map | None:
    if definition is None:
        return None
    if not isinstance(definition, Map):
        raise ComposeError(loc.file, loc.line, f"{what} must be a mapping")
    for key in definition:
        if key not in known and not key.startswith("x-"):
            at = definition.at(key)
            raise ComposeError(at.file, at.line, f"{what}: unknown key {key!r}")
    return definition


def _is_external(definition: Map | None) -> bool:
    external = definition.get("external") if definition is not None else None
    return bool(external) if not isinstance(external, Map) else True


def _external(
    kind: str, key: str, name: str, definition: Map | None, loc: Loc, ctx: Context, names: dict[str, str | None]
) -> Manifest | None:
    """An object made outside the project: a manifest saying only `external: true` under its engine name (no
    labels: reconcile never labels it), so containers reference it as any other; what else the entry sets is
    whoever made it's, reported."""
    what = f"{kind.lower()}s.{key}"
    if not NAME.match(name) or len(name) < 2 or (kind == "Network" and name in ("bridge", "host", "none")):
        ctx.report.lost(loc, what, f"engine name {name!r} is not a valid reconciler {kind} name; uses left out")
        return None
    for option in definition or ():
        if option not in ("external", "name") and not option.startswith("x-"):
            ctx.report.lost(
                definition.at(option) if definition is not None else loc,
                f"{what}.{option}",
                f"an external {kind.lower()} is configured by whoever made it; reconcile only uses it",
            )
    names[key] = name
    if kind == "Network":
        ctx.external_networks.add(key)
    return Manifest(kind, name, {"external": True}, loc)


def network_manifest(key: str, raw: Any, loc: Loc, ctx: Context) -> Manifest | None:
    """The Network manifest of Compose network `key` (None when it is external or cannot be declared);
    records the chosen name in `ctx.networks`."""
    what = f"networks.{key}"
    definition = _check_definition(raw, loc, what, _NETWORK_KEYS)
    name = _engine_name(key, definition, ctx, "network", loc)
    ctx.networks[key] = None
    if _is_external(definition):
        return _external("Network", key, name, definition, loc, ctx, ctx.networks)
    if not NAME.match(name) or name in ("bridge", "host", "none"):
        ctx.report.lost(loc, what, f"engine name {name!r} is not a valid reconciler Network name")
        return None
    spec: dict[str, Any] = {}
    labels: dict[str, str] = {}
    if definition is not None:
        driver = definition.get("driver")
        if driver is not None:
            if driver not in NETWORK_DRIVERS:
                ctx.report.lost(
                    definition.at("driver"),
                    f"{what}.driver",
                    f"driver {driver!r} is not one reconciler manages ({', '.join(NETWORK_DRIVERS)}); "
                    "the network and attachments to it are left out",
                )
                return None
            spec["driver"] = driver
        for compose_key, field in (("internal", "internal"), ("enable_ipv6", "enableIPv6")):
            if compose_key in definition:
                spec[field] = bool(definition[compose_key])
        if "attachable" in definition:
            if spec.get("driver") == "overlay":
                spec["attachable"] = bool(definition["attachable"])
            elif definition["attachable"]:
                ctx.report.lost(
                    definition.at("attachable"), f"{what}.attachable", "only overlay networks take it (others are)"
                )
        if isinstance(definition.get("driver_opts"), Map):
            spec["options"] = string_map(definition["driver_opts"], ctx, f"{what}.driver_opts")
        if isinstance(definition.get("labels"), Map | Seq):
            from reconciler.compose.shortforms import mapping_of

            labels = string_map(
                mapping_of(definition["labels"], definition.at("labels"), "labels"), ctx, f"{what}.labels", labels=True
            )
        if "ipam" in definition:
            ipam = _ipam(definition["ipam"], definition.at("ipam"), what, ctx)
            if ipam:
                spec["ipam"] = ipam
                ctx.network_subnets[key] = [c["subnet"] for c in ipam.get("config", [])]
    ctx.networks[key] = name
    return Manifest("Network", name, spec, loc, labels)


def _ipam(raw: Any, loc: Loc, what: str, ctx: Context) -> dict[str, Any]:
    if not isinstance(raw, Map):
        raise ComposeError(loc.file, loc.line, f"{what}.ipam must be a mapping")
    out: dict[str, Any] = {}
    for key in raw:
        at = raw.at(key)
        if key == "driver":
            out["driver"] = raw.text("driver")
        elif key == "config":
            entries = raw["config"]
            if not isinstance(entries, Seq):
                raise ComposeError(at.file, at.line, f"{what}.ipam.config must be a list")
            config = []
            for i, entry in enumerate(entries):
                config_entry = _ipam_entry(entry, entries.at(i), f"{what}.ipam.config[{i}]", ctx)
                if config_entry:
                    config.append(config_entry)
            if config:
                out["config"] = config
        else:
            ctx.report.lost(at, f"{what}.ipam.{key}", "reconciler's Network has no IPAM driver options")
    return out


def _ipam_entry(entry: Any, loc: Loc, what: str, ctx: Context) -> dict[str, str]:
    if not isinstance(entry, Map):
        raise ComposeError(loc.file, loc.line, f"{what} must be a mapping")
    out: dict[str, str] = {}
    for key in entry:
        at = entry.at(key)
        if key in ("subnet", "gateway", "ip_range"):
            text = entry.text(key)
            try:
                ipaddress.ip_network(text, strict=False) if key != "gateway" else ipaddress.ip_address(text)
            except ValueError:
                raise ComposeError(at.file, at.line, f"{what}.{key}: invalid address {text!r}") from None
            out["ipRange" if key == "ip_range" else key] = text
        else:
            ctx.report.lost(at, f"{what}.{key}", "reconciler's Network has no reserved auxiliary addresses")
    if out and "subnet" not in out:
        ctx.report.lost(loc, what, "a gateway or ip_range without a subnet cannot be declared")
        return {}
    return out


def volume_manifest(key: str, raw: Any, loc: Loc, ctx: Context) -> Manifest | None:
    """The Volume manifest of Compose volume `key` (None when external); records its name in `ctx.volumes`."""
    what = f"volumes.{key}"
    definition = _check_definition(raw, loc, what, _VOLUME_KEYS)
    name = _engine_name(key, definition, ctx, "volume", loc)
    ctx.volumes[key] = None
    if _is_external(definition):
        return _external("Volume", key, name, definition, loc, ctx, ctx.volumes)
    if not NAME.match(name) or len(name) < 2:
        ctx.report.lost(loc, what, f"engine name {name!r} is not a valid reconciler Volume name; mounts left out")
        return None
    spec: dict[str, Any] = {}
    labels: dict[str, str] = {}
    if definition is not None:
        if definition.get("driver") is not None:
            spec["driver"] = definition.text("driver")
        if isinstance(definition.get("driver_opts"), Map):
            spec["driverOpts"] = string_map(definition["driver_opts"], ctx, f"{what}.driver_opts")
        if isinstance(definition.get("labels"), Map | Seq):
            from reconciler.compose.shortforms import mapping_of

            labels = string_map(
                mapping_of(definition["labels"], definition.at("labels"), "labels"), ctx, f"{what}.labels", labels=True
            )
    ctx.volumes[key] = name
    return Manifest("Volume", name, spec, loc, labels)
