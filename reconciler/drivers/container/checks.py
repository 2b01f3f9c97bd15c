"""What a Container depends on, and the checks beyond the schema (host paths, opt-ins, addresses, ports).

Pure: reads the catalog and the host's file system (bind sources), never the engine.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from reconciler.contract import Catalog
from reconciler.core.indexes import per_catalog
from reconciler.core.safeio import sensitive_host_paths
from reconciler.drivers.container.fields import FIELDS
from reconciler.drivers.container.values import canonical_reference, resolve_host_path
from reconciler.drivers.engine import runoptions
from reconciler.model import Desired, Reference

# Host paths whose bind mount hands the container the host (or the engine): refused without allowSensitive.
# A source is sensitive when it is one of these, lies under one, or is a parent of one (`/var` exposes
# `/var/lib/docker`, `/` exposes everything).
SENSITIVE_PATHS = sensitive_host_paths()  # one list for every reader and mount check (reconciler.core.safeio)


# Capabilities that hand a container (nearly) the host, as `privileged` does: refused without allowPrivileged.
DANGEROUS_CAPS = runoptions.DANGEROUS_CAPS  # one list, shared with the Service checks


def _isolation_opt_ins(spec: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    """The run options that take the container's isolation away (each row's `opt_in`), refused without
    allowPrivileged."""
    for row in FIELDS:
        why = row.opt_in(spec[row.key]) if row.opt_in is not None else None
        if why:
            yield f"spec.{row.key}", f"{row.key}: {why}; set allowPrivileged: true to allow it"


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def sensitive_reason(source: str, extra: Iterable[str] = ()) -> str | None:
    """Why binding `source` is sensitive (after resolving symlinks), or None."""
    resolved = os.path.realpath(source)
    for root in (*SENSITIVE_PATHS, *extra):
        for candidate in {source, resolved}:
            if _inside(candidate, root):
                return f"{candidate} is inside the sensitive host path {root}"
            if _inside(root, candidate):
                return f"{candidate} contains the sensitive host path {root}"
    return None


def engine_paths(docker_host: str | None) -> tuple[str, ...]:
    """The managed engine's own socket (when it is a unix socket): as sensitive as the default one."""
    if docker_host and docker_host.startswith("unix://"):
        return (docker_host[len("unix://") :],)
    return ()


def _build_index(catalog: Catalog) -> _Index:
    return _Index(catalog)


class _Index:
    """What checks of every container look up across the catalog, built once per catalog (a scan of the whole
    catalog per container made validation quadratic): Images by canonical reference, published host ports."""

    def __init__(self, catalog: Catalog) -> None:
        self.images: dict[str, Desired] = {}
        for image in catalog.of_kind("Image"):
            ref = image.spec.get("reference") or image.resource.spec.get("reference")
            if ref:
                self.images.setdefault(canonical_reference(str(ref)), image)
        # (host port, protocol) -> address -> [(container, index in its ports)]; unspecified addresses under None
        self.ports: dict[tuple[int, str], dict[Any, list[tuple[Desired, int, Any]]]] = {}
        for other in catalog.of_kind("Container"):
            for j, addr, port, proto in _bindings(other):
                key = None if addr.is_unspecified else addr
                self.ports.setdefault((port, proto), {}).setdefault(key, []).append((other, j, addr))

    def publishers(self, port: int, proto: str, addr: Any) -> list[tuple[Desired, int, Any]]:
        """Every binding of (port, proto) that conflicts with `addr`, in catalog order."""
        bucket = self.ports.get((port, proto)) or {}
        if addr.is_unspecified:
            found = [entry for entries in bucket.values() for entry in entries]
        else:
            found = [*bucket.get(addr, ()), *bucket.get(None, ())]
        return sorted(found, key=lambda e: (e[0].name, e[1]))


def _index(catalog: Catalog) -> _Index:
    return per_catalog(catalog, "container.checks", _build_index)


def image_manifest(desired: Desired, catalog: Catalog) -> Desired | None:
    """The Image manifest whose reference is this container's image, if the project declares one."""
    return _index(catalog).images.get(desired.spec["image"])


def container_references(desired: Desired) -> Iterator[Reference]:
    """Networks, volumes and containers this container needs (all required)."""
    spec = desired.spec
    for i, net in enumerate(desired.resource.spec.get("networks") or []):
        yield Reference("Network", net["name"], f"spec.networks.{i}.name")
    for i, mount in enumerate(desired.resource.spec.get("mounts") or []):
        if mount.get("type") == "volume":
            yield Reference("Volume", mount["source"], f"spec.mounts.{i}.source")
    for key in NAMESPACE_KEYS:
        mode = str(spec[key] or "")
        if mode.startswith("container:"):
            yield Reference("Container", mode.partition(":")[2], f"spec.{key}")
    for i, dep in enumerate(desired.resource.spec.get("dependsOn") or []):
        yield Reference("Container", dep["name"], f"spec.dependsOn.{i}.name", condition=dep.get("condition", "started"))


def _bindings(desired: Desired) -> list[tuple[int, ipaddress.IPv4Address | ipaddress.IPv6Address, int, str]]:
    found = []
    for i, port in enumerate(desired.resource.spec.get("ports") or []):
        if port.get("hostPort") is None:
            continue
        try:
            address = ipaddress.ip_address(port.get("hostIP") or "0.0.0.0")
        except ValueError:
            continue
        found.append((i, address, int(port["hostPort"]), port.get("protocol", "tcp")))
    return found


def _conflicts(a: Any, b: Any) -> bool:
    # an unspecified address (0.0.0.0 / ::) listens on every address of the host
    return a == b or a.is_unspecified or b.is_unspecified


def check_container(
    desired: Desired, catalog: Catalog, extra_sensitive: Iterable[str] = ()
) -> Iterator[tuple[str, str]]:
    """Problems the schema cannot see, as (dotted field path, message)."""
    spec = desired.spec
    raw = desired.resource.spec
    extra = tuple(extra_sensitive)
    if spec["privileged"] and not spec["allowPrivileged"]:
        yield "spec.privileged", "privileged: true gives the container the host; set allowPrivileged: true to allow it"
    if not spec["allowPrivileged"]:
        for i, cap in enumerate(raw.get("capAdd") or []):
            name = str(cap).upper().removeprefix("CAP_")
            if name in DANGEROUS_CAPS:
                yield (
                    f"spec.capAdd.{i}",
                    f"capAdd {name} gives the container (nearly) the host, as privileged: true does; "
                    "set allowPrivileged: true to allow it",
                )
        yield from _isolation_opt_ins(spec)
    raw_mounts = raw.get("mounts") or []
    for i, mount in enumerate(raw_mounts):
        field = f"spec.mounts.{i}"
        if mount.get("type") == "npipe":
            yield f"{field}.type", "npipe mounts exist only on Windows engines; this is a Linux engine"
            continue
        if mount.get("type") != "bind":
            continue
        source = resolve_host_path(mount["source"], desired.resource.source.path)
        reason = sensitive_reason(source, extra)
        if reason and not mount.get("allowSensitive"):
            yield f"{field}.source", f"{reason}; set allowSensitive: true on this mount to allow it"
        if not os.path.exists(source):
            yield f"{field}.source", f"bind source {source} does not exist (reconcile never creates it)"
    targets: dict[str, int] = {}
    for i, mount in enumerate(raw_mounts):
        if mount.get("target") in targets:
            yield (
                f"spec.mounts.{i}.target",
                f"target {mount['target']} is also used by spec.mounts[{targets[mount['target']]}]",
            )
        targets.setdefault(mount.get("target"), i)
    mode = spec["networkMode"]
    if raw.get("networks") and raw.get("networkMode") not in (None, "bridge"):
        yield "spec.networks", f"networks cannot be combined with networkMode: {mode}"
    if raw.get("ports") and mode and mode != "bridge":
        yield "spec.ports", f"ports cannot be published with networkMode: {mode}"
    yield from _check_shared_namespaces(desired, catalog)
    yield from _check_addresses(desired, catalog)
    yield from _check_ports(desired, catalog)
    yield from _check_dependencies(desired, catalog)
    if spec["state"] == "completed" and spec["restartPolicy"]["name"] in ("always", "unless-stopped"):
        yield (
            "spec.restartPolicy.name",
            f"restartPolicy {spec['restartPolicy']['name']} restarts a container that ran to completion; "
            "`state: completed` takes `no` or `on-failure`",
        )


# the fields that can name another Container of the project as `container:<name>`, with the namespace each shares
NAMESPACE_KEYS = {"networkMode": "network", "ipc": "IPC", "pid": "PID"}


def _check_shared_namespaces(desired: Desired, catalog: Catalog) -> Iterator[tuple[str, str]]:
    """Not its own namespace; an IPC namespace only of a container that offers it (Docker refuses to join a
    non-shareable one: "can't join IPC of container ...: non-shareable IPC"). A dangling name is a Reference."""
    for key, namespace in NAMESPACE_KEYS.items():
        mode = str(desired.spec[key] or "")
        if not mode.startswith("container:"):
            continue
        target = mode.partition(":")[2]
        if target == desired.name:
            yield f"spec.{key}", f"a container cannot share its own {namespace} namespace"
            continue
        other = catalog.get("Container", target)
        if key == "ipc" and other is not None and other.spec["ipc"] != "shareable":
            its = other.spec["ipc"] or "unset: private"
            yield (
                "spec.ipc",
                f"container {target} does not share its IPC namespace (its ipc is {its}); "
                "declare ipc: shareable on it (the engine refuses to join a non-shareable one)",
            )


def _check_addresses(desired: Desired, catalog: Catalog) -> Iterator[tuple[str, str]]:
    for i, net in enumerate(desired.resource.spec.get("networks") or []):
        address = net.get("ipv4Address")
        if not address:
            continue
        field = f"spec.networks.{i}.ipv4Address"
        try:
            ip = ipaddress.IPv4Address(address)
        except ValueError as exc:
            yield field, f"invalid IPv4 address: {exc}"
            continue
        network = catalog.get("Network", net["name"])
        if network is None or network.spec.get("external"):
            continue  # reported as an undeclared reference; an external network's subnets are not declared
        subnets = []
        for entry in (network.spec.get("ipam") or {}).get("config") or []:
            try:
                subnets.append(ipaddress.ip_network(entry["subnet"], strict=False))
            except (KeyError, ValueError):
                continue
        if not subnets:
            yield field, f"a static address needs a subnet declared on Network {net['name']} (spec.ipam.config)"
        elif not any(ip in s for s in subnets):
            shown = ", ".join(str(s) for s in subnets)
            yield field, f"{ip} is outside the subnets of Network {net['name']} ({shown})"


def _check_ports(desired: Desired, catalog: Catalog) -> Iterator[tuple[str, str]]:
    mine = _bindings(desired)
    for i, addr, port, proto in mine:
        for j, other_addr, other_port, other_proto in mine:
            if j < i and port == other_port and proto == other_proto and _conflicts(addr, other_addr):
                yield (
                    f"spec.ports.{i}.hostPort",
                    f"host port {addr}:{port}/{proto} is also published by spec.ports[{j}]",
                )
        for other, j, _ in _index(catalog).publishers(port, proto, addr):
            if other.name != desired.name:
                yield (
                    f"spec.ports.{i}.hostPort",
                    f"host port {addr}:{port}/{proto} is also published by Container/{other.name} "
                    f"({other.resource.source.file}, spec.ports[{j}])",
                )


def _check_dependencies(desired: Desired, catalog: Catalog) -> Iterator[tuple[str, str]]:
    for i, dep in enumerate(desired.spec["dependsOn"]):
        if dep["name"] == desired.name:
            yield f"spec.dependsOn.{i}.name", "a container cannot depend on itself"
            continue
        other = catalog.get("Container", dep["name"])
        if other is None:
            continue
        one_shot = other.spec["state"] == "completed"
        if dep["condition"] == "completed" and not one_shot:
            yield (
                f"spec.dependsOn.{i}.condition",
                f"Container/{dep['name']} is not declared `state: completed`; it is not meant to exit",
            )
        elif one_shot and dep["condition"] != "completed":
            yield (
                f"spec.dependsOn.{i}.condition",
                f"Container/{dep['name']} runs to completion (`state: completed`): wait for it with "
                "`condition: completed`",
            )
        if dep["condition"] != "healthy":
            continue
        if other.spec["healthcheck"] == {"test": ["NONE"]}:
            yield f"spec.dependsOn.{i}.condition", f"Container/{dep['name']} has its healthcheck disabled"
        if other.spec["state"] == "stopped":
            yield f"spec.dependsOn.{i}.name", f"Container/{dep['name']} is declared stopped; it never becomes healthy"
