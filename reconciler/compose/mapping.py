"""A merged Compose model -> reconciler manifests and the loss report.

Order matters only for names: networks and volumes are mapped first (their engine names are then known to the
services), then every selected service; images are shared between services that run the same reference.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

from reconciler.compose.context import Context, Manifest
from reconciler.compose.keys import canonical_reference
from reconciler.compose.losses import LossReport
from reconciler.compose.objects import network_manifest, volume_manifest
from reconciler.compose.service import ImageNeed, ServiceMapper, container_name
from reconciler.compose.source import ComposeError, Loc, Map, Seq, scalar_text

_FILE_OBJECT_KEYS = {
    "secrets": {"file", "environment", "external", "name", "labels", "driver", "driver_opts", "template_driver"},
    "configs": {"file", "environment", "external", "name", "labels", "content", "template_driver"},
}


def _profiles(service: Map) -> list[str]:
    raw = service.get("profiles")
    if raw is None:
        return []
    if not isinstance(raw, Seq):
        at = service.at("profiles")
        raise ComposeError(at.file, at.line, "profiles must be a list")
    return [scalar_text(p) for p in raw]


def selected_services(services: Map, active: Collection[str], report: LossReport) -> list[str]:
    """Services `docker compose up` would start with these profiles active; the others are reported."""
    chosen = []
    for name, service in services.items():
        profiles = _profiles(service)
        if not profiles or "*" in active or set(profiles) & set(active):
            chosen.append(name)
            continue
        shown = ", ".join(profiles)
        report.flag(  # nothing is lost: `docker compose up` leaves it out too
            services.at(name),
            f"services.{name}",
            f"only in profiles [{shown}], none active: left out as `docker compose up` leaves it out "
            f"(import with --profile {profiles[0]} to include it)",
        )
    return chosen


def _used_networks(services: Map, chosen: list[str], declared: Map) -> dict[str, Loc]:
    used: dict[str, Loc] = {}
    for name in chosen:
        service = services[name]
        if service.get("network_mode") is not None:
            continue
        networks = service.get("networks")
        if not networks:
            used.setdefault("default", service.loc)
            continue
        for key in networks:
            at = networks.at(key)
            if key not in declared and key != "default":
                raise ComposeError(at.file, at.line, f"services.{name}.networks: undefined network {key!r}")
            used.setdefault(key, at)
    return used


def _check_file_objects(top: Map, kind: str) -> None:
    section = top.get(kind) or Map(top.loc)
    for name, definition in section.items():
        at = section.at(name)
        if not isinstance(definition, Map):
            raise ComposeError(at.file, at.line, f"{kind}.{name} must be a mapping")
        for key in definition:
            if key not in _FILE_OBJECT_KEYS[kind] and not key.startswith("x-"):
                kat = definition.at(key)
                raise ComposeError(kat.file, kat.line, f"{kind}.{name}: unknown key {key!r}")


def _report_unused_file_objects(top: Map, kind: str, services: Map, chosen: list[str], report: LossReport) -> None:
    used = {entry.get("source") for name in chosen for entry in services[name].get(kind) or []}
    section = top.get(kind) or Map(top.loc)
    for name in section:
        if name not in used:
            report.flag(  # nothing is lost: no service Compose runs mounts it
                section.at(name),
                f"{kind}.{name}",
                f"no imported service uses it; only services' file-based {kind} are mapped (as read-only bind mounts)",
            )


def start_import(
    top: Map,
    project: str,
    project_dir: Path,
    out_dir: Path,
    active_profiles: Collection[str],
    report: LossReport,
    interpolated: dict[tuple[str, int, str], frozenset[str]] | None,
    variables: Mapping[str, str] | None,
    grants: bool,
    secret_env: Collection[str],
) -> tuple[Context, Map, list[str]]:
    """What every import starts from (containers or `--swarm`): the import's context, the file's services, and
    the ones the active profiles select; a file without services, or with none selected, is an error."""
    services = top.get("services")
    if not isinstance(services, Map) or not services:
        raise ComposeError(top.loc.file, top.loc.line, "no services defined")
    ctx = Context(
        project,
        project_dir,
        out_dir,
        report,
        interpolated=dict(interpolated or {}),
        variables=dict(variables or {}),
        grants=grants,
        secret_env=frozenset(secret_env),
    )
    ctx.all_services = set(services)
    chosen = selected_services(services, active_profiles, report)
    if not chosen:
        raise ComposeError(top.loc.file, top.loc.line, "no service is selected by the active profiles")
    return ctx, services, chosen


def build_manifests(
    top: Map,
    project: str,
    project_dir: Path,
    out_dir: Path,
    active_profiles: Collection[str],
    report: LossReport,
    interpolated: dict[tuple[str, int, str], frozenset[str]] | None = None,
    variables: Mapping[str, str] | None = None,
    grants: bool = True,
    secret_env: Collection[str] = (),
) -> list[Manifest]:
    """Every manifest of the project; what could not be mapped goes to `report`. `interpolated` says which values
    came from the shell or `.env` (Interpolator.sources); `variables` are the shell's and `.env`'s; `grants`
    False leaves out what would need an opt-in (--no-grants); `secret_env` names more secret values (--secret-env)."""
    ctx, services, chosen = start_import(
        top, project, project_dir, out_dir, active_profiles, report, interpolated, variables, grants, secret_env
    )
    taken: dict[str, str] = {}
    for name in chosen:
        container = container_name(name, services[name], project)
        if container in taken:
            at = services.at(name)
            raise ComposeError(
                at.file,
                at.line,
                f"services.{name}: container name {container!r} is also used by service {taken[container]!r}",
            )
        taken[container] = name
        ctx.containers[name] = container
    for kind in ("secrets", "configs"):
        _check_file_objects(top, kind)
    manifests: list[Manifest] = []
    declared_networks = top.get("networks") or Map(top.loc)
    used = _used_networks(services, chosen, declared_networks)
    for key in declared_networks:
        if key not in used:
            report.flag(  # nothing is lost: Compose does not create it either
                declared_networks.at(key),
                f"networks.{key}",
                "no imported service uses it; Compose does not create it either",
            )
    for key, loc in used.items():
        at = declared_networks.at(key) if key in declared_networks else loc
        manifest = network_manifest(key, declared_networks.get(key), at, ctx)
        if manifest is not None:
            manifests.append(manifest)
    declared_volumes = top.get("volumes") or Map(top.loc)
    for key in declared_volumes:
        manifest = volume_manifest(key, declared_volumes[key], declared_volumes.at(key), ctx)
        if manifest is not None:
            manifests.append(manifest)
    images: list[ImageNeed] = []
    for name in chosen:
        mapper = ServiceMapper(name, services[name], ctx, top)
        manifests.append(mapper.run())
        if mapper.image is not None:
            images.append(mapper.image)
    for kind in ("secrets", "configs"):
        _report_unused_file_objects(top, kind, services, chosen, report)
    manifests.extend(_image_manifests(images, report))
    _check_host_ports(manifests, services, ctx)
    _one_shots(manifests, services, ctx)
    _shareable_ipc(manifests, services, ctx)
    _check_health_waits(manifests, services, ctx)
    _check_cycles(manifests, services, ctx)
    return manifests


def _check_cycles(manifests: list[Manifest], services: Map, ctx: Context) -> None:
    """A dependency cycle (depends_on; network_mode, ipc, pid: service:) is refused by Compose too: one error
    naming it."""
    edges: dict[str, list[str]] = {}
    for m in manifests:
        if m.kind != "Container":
            continue
        needs = [d["name"] for d in m.spec.get("dependsOn", [])]
        for key in ("networkMode", "ipc", "pid"):
            mode = str(m.spec.get(key, ""))
            if mode.startswith("container:"):
                needs.append(mode.partition(":")[2])
        edges[m.name] = needs
    by_container = {v: k for k, v in ctx.containers.items()}
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    for start in sorted(edges):
        stack: list[tuple[str, int]] = [(start, 0)]
        path: list[str] = []
        while stack:
            node, index = stack.pop()
            if index == 0:
                if state.get(node) == 2:
                    continue
                state[node] = 1
                path.append(node)
            nexts = edges.get(node, [])
            if index < len(nexts):
                stack.append((node, index + 1))
                nxt = nexts[index]
                if state.get(nxt) == 1:
                    cycle = [*path[path.index(nxt) :], nxt]
                    shown = " -> ".join(by_container.get(c, c) for c in cycle)
                    at = services.at(by_container.get(nxt, nxt))
                    raise ComposeError(at.file, at.line, f"dependency cycle between services: {shown}")
                if state.get(nxt) != 2:
                    stack.append((nxt, 0))
                continue
            state[node] = 2
            path.pop()


def _one_shots(manifests: list[Manifest], services: Map, ctx: Context) -> None:
    """A service another waits for with `service_completed_successfully` runs to completion: `state: completed`.
    A one-shot cannot restart (`always`/`unless-stopped` reported and dropped) and is waited for only with
    `completed` (validation refuses started/healthy on it), so every other wait on it becomes one, flagged."""
    containers = {m.name: m for m in manifests if m.kind == "Container"}
    by_container = {v: k for k, v in ctx.containers.items()}
    one_shots = {
        dep["name"] for m in containers.values() for dep in m.spec.get("dependsOn", [])
        if dep.get("condition") == "completed"
    }  # fmt: skip
    for name in sorted(one_shots):
        spec = containers[name].spec
        spec["state"] = "completed"
        policy = spec.get("restartPolicy", {}).get("name")
        if policy in ("always", "unless-stopped"):
            del spec["restartPolicy"]
            service = services[by_container[name]]
            key = "restart" if "restart" in service else "deploy"
            ctx.report.lost(
                service.at(key),
                f"services.{by_container[name]}.{key if key == 'restart' else 'deploy.restart_policy'}",
                f"{policy}: a service others wait for with service_completed_successfully runs once to "
                "completion and is never restarted (restart policies no and on-failure are kept)",
            )
    for manifest in containers.values():
        for dep in manifest.spec.get("dependsOn", []):
            if dep["name"] in one_shots and dep.get("condition") != "completed":
                service, other = by_container[manifest.name], by_container[dep["name"]]
                ctx.report.flag(
                    services[service]["depends_on"].at(other),
                    f"services.{service}.depends_on.{other}.condition",
                    f"service {other!r} runs to completion (another service waits for it with "
                    "service_completed_successfully): this one waits for it to complete too",
                )
                dep["condition"] = "completed"


def _shareable_ipc(manifests: list[Manifest], services: Map, ctx: Context) -> None:
    """A service whose IPC namespace another joins (`ipc: service:X`) gets `ipc: shareable` when it sets no ipc:
    docker-compose 1.29 sets nothing there, and the engine's default-ipc-mode (private on Debian's 20.10) refuses
    the join. One with another ipc mode cannot be joined: the joiner's ipc is reported and dropped."""
    containers = {m.name: m for m in manifests if m.kind == "Container"}
    by_container = {v: k for k, v in ctx.containers.items()}
    for manifest in list(containers.values()):
        mode = str(manifest.spec.get("ipc", ""))
        target = containers.get(mode.partition(":")[2]) if mode.startswith("container:") else None
        if target is None:
            continue
        joiner, other = by_container[manifest.name], by_container[target.name]
        if "ipc" not in target.spec:
            target.spec["ipc"] = "shareable"
            ctx.report.flag(
                services.at(other),
                f"services.{other}.ipc",
                f"set to shareable: service {joiner!r} joins its IPC namespace, which the engine allows only then",
            )
        elif target.spec["ipc"] != "shareable":
            del manifest.spec["ipc"]
            ctx.report.lost(
                services[joiner].at("ipc"),
                f"services.{joiner}.ipc",
                f"service {other!r} has ipc {target.spec['ipc']}: its IPC namespace cannot be joined",
            )


def _check_health_waits(manifests: list[Manifest], services: Map, ctx: Context) -> None:
    """`service_healthy` on a service whose healthcheck is disabled never comes true (Compose fails at `up`;
    reconcile refuses it at validation): the wait is kept as `started` and reported."""
    disabled = {m.name for m in manifests if m.kind == "Container" and m.spec.get("healthcheck") == {"disable": True}}
    by_container = {v: k for k, v in ctx.containers.items()}
    for manifest in manifests:
        for dep in manifest.spec.get("dependsOn", []) if manifest.kind == "Container" else []:
            if dep.get("condition") == "healthy" and dep["name"] in disabled:
                del dep["condition"]
                service = by_container[manifest.name]
                other = by_container[dep["name"]]
                ctx.report.lost(
                    services[service]["depends_on"].at(other),
                    f"services.{service}.depends_on.{other}.condition",
                    f"service {other!r} has its healthcheck disabled; waits for started",
                )


def _image_manifests(needs: list[ImageNeed], report: LossReport) -> list[Manifest]:
    """One Image per reference (spelled as the drivers link them: `nginx` and `docker.io/library/nginx:latest`
    are one image): a build wins over a pull of the same reference, as `docker compose up` builds."""
    by_reference: dict[str, ImageNeed] = {}
    policies: dict[str, str] = {}
    for need in needs:
        key = canonical_reference(need.reference)
        if need.pull_policy is not None:
            chosen = policies.setdefault(key, need.pull_policy)
            if chosen != need.pull_policy:
                report.lost(
                    need.origin,
                    f"services.{need.service}.pull_policy",
                    f"another service pulls "
                    f"{need.reference!r} with pullPolicy {chosen}, which the one Image manifest keeps",
                )
        first = by_reference.get(key)
        if first is None or (first.build is None and need.build is not None):
            by_reference[key] = need
        elif need.build is not None and first.build is not None and need.build != first.build:
            report.lost(
                need.origin,
                f"services.{need.service}.build",
                f"service {first.service!r} builds the same image {need.reference!r} differently; its build is used",
            )
    out = []
    for key, need in by_reference.items():
        spec: dict[str, Any] = {"reference": need.reference}  # as the file spells it
        if need.build is not None:
            spec["build"] = need.build
        elif key in policies:
            spec["pullPolicy"] = policies[key]
        out.append(Manifest("Image", need.manifest_name, spec, need.origin))
    return out


def _check_host_ports(manifests: list[Manifest], services: Map, ctx: Context) -> None:
    """Two services publishing one host port fail in Compose at `up`; here they are an error with both places."""
    seen: dict[tuple[str, int, str], str] = {}
    by_container = {v: k for k, v in ctx.containers.items()}
    for manifest in manifests:
        if manifest.kind != "Container":
            continue
        for port in manifest.spec.get("ports", []):
            if "hostPort" not in port:
                continue
            key = (port.get("hostIP", "0.0.0.0"), port["hostPort"], port.get("protocol", "tcp"))
            service = by_container[manifest.name]
            # an unspecified address listens on every address, so it clashes with any other (as validation says)
            clash = next(
                (
                    owner
                    for k, owner in seen.items()
                    if k[1:] == key[1:]
                    and (
                        k[0] == key[0]
                        or ipaddress.ip_address(k[0]).is_unspecified
                        or ipaddress.ip_address(key[0]).is_unspecified
                    )
                ),
                None,
            )
            if clash is not None:
                at = services[service].at("ports")
                raise ComposeError(
                    at.file,
                    at.line,
                    f"services.{service}.ports: host port {key[0]}:{key[1]}/{key[2]} "
                    f"is also published by service {clash!r}",
                )
            seen[key] = service
