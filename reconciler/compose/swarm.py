"""`import compose --swarm`: a Compose project as `docker stack deploy` runs it, as Service, Secret, Config,
Network and Volume manifests.

Names follow stack deploy: every service, network, volume, secret and config is `<project>_<name>` (or the
`name:` the file sets; an external one keeps its own name); networks are overlay unless the file names a driver.
A service's run options go through the Container mappers (the same value translators: env, ports, mounts,
healthcheck, durations, sizes), then the Container spec is narrowed to what a Service has; `deploy:` is mapped
here. What stack deploy ignores (build, privileged, devices, security_opt, container_name, depends_on ...) and
what a Service cannot declare are loss lines.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from functools import lru_cache
from pathlib import Path
from typing import Any

from reconciler.compose.context import NAME, Context, Manifest
from reconciler.compose.keys import DANGEROUS_CAPS, container_fields
from reconciler.compose.limits import DURATION
from reconciler.compose.losses import LossReport
from reconciler.compose.mapping import _check_file_objects, _used_networks, start_import
from reconciler.compose.objects import network_manifest, volume_manifest
from reconciler.compose.ports import _one as port_entries
from reconciler.compose.service import ServiceMapper
from reconciler.compose.source import ComposeError, Loc, Map, Seq, compose_int, scalar_text
from reconciler.core.manifests import schema_dir
from reconciler.core.safeio import inside, sensitive_reason

_IGNORED_BY_STACK = "`docker stack deploy` ignores it: a swarm service has no such setting"
_REFUSED_BY_STACK = "`docker stack deploy` refuses it: set resource limits with deploy.resources"
# Service keys stack deploy ignores (it warns "Ignoring unsupported options"), refuses (its ForbiddenProperties:
# then the rest of the file is still imported, and the key reported), or that only Compose reads
# (docker/cli cli/compose/types/types.go).
STACK_IGNORES: dict[str, str] = {
    "build": "`docker stack deploy` does not build; the image must be in a registry the nodes can pull from",
    "container_name": "swarm names tasks itself (`<stack>_<service>.<slot>.<id>`)",
    "depends_on": "swarm starts services in no order; `docker stack deploy` ignores it",
    "links": _IGNORED_BY_STACK,
    "external_links": _IGNORED_BY_STACK,
    "network_mode": "swarm tasks join the service's overlay networks; `docker stack deploy` ignores it",
    "privileged": _IGNORED_BY_STACK,
    "restart": "mapped to restartPolicy only when deploy.restart_policy is absent",
    "pull_policy": "swarm pulls the image on every node that runs a task",
    "mem_limit": _REFUSED_BY_STACK,
    "memswap_limit": _REFUSED_BY_STACK,
    "mem_reservation": "`docker stack deploy` reads deploy.resources.reservations.memory only",
    "cpus": "`docker stack deploy` reads deploy.resources.limits.cpus only",
    "cpu_shares": _REFUSED_BY_STACK,
    "cpuset": _REFUSED_BY_STACK,
    "pids_limit": "`docker stack deploy` reads deploy.resources.limits.pids only",
    "gpus": _IGNORED_BY_STACK,
    "labels": "a Service declares no labels on its containers; deploy.labels label the service",
}
_DEPLOY_KEYS = {
    "mode",
    "replicas",
    "endpoint_mode",
    "labels",
    "update_config",
    "rollback_config",
    "restart_policy",
    "placement",
    "resources",
}
_UPDATE_KEYS = {
    "parallelism": "parallelism",
    "delay": "delay",
    "failure_action": "failureAction",
    "monitor": "monitor",
    "max_failure_ratio": "maxFailureRatio",
    "order": "order",
}
_MOUNT_FIELDS = {
    "volume": {"type", "source", "target", "readOnly"},
    "bind": {"type", "source", "target", "readOnly", "allowSensitive"},
    "tmpfs": {"type", "target", "size", "mode"},
}


@lru_cache(maxsize=1)
def service_fields() -> frozenset[str]:
    """The spec keys a Service manifest takes (its JSON Schema is the one list of them)."""
    schema = json.loads((schema_dir() / "Service.schema.json").read_text())
    return frozenset(schema["properties"]["spec"]["properties"])


def _stack_name(key: str, definition: Any, project: str) -> tuple[str, bool]:
    """The engine name of a top-level secret/config, and whether it is external (then not prefixed)."""
    external = isinstance(definition, Map) and bool(definition.get("external"))
    if isinstance(definition, Map) and definition.get("name"):
        return definition.text("name"), external
    if external and isinstance(definition.get("external"), Map) and definition["external"].get("name"):
        return definition["external"].text("name"), True
    return (key if external else f"{project}_{key}"), external


def _file_objects(top: Map, kind: str, ctx: Context, names: dict[str, str | None]) -> list[Manifest]:
    """One Secret/Config per top-level entry with `file:`; an external one is referenced by its name (it must
    exist in the swarm); `environment`/`content` ones are reported (their values are never copied)."""
    section = top.get(kind) or Map(top.loc)
    manifest_kind = "Secret" if kind == "secrets" else "Config"
    out = []
    for key, definition in section.items():
        at = section.at(key)
        name, external = _stack_name(key, definition, ctx.project)
        names[key] = None
        if not NAME.match(name) or len(name) < 2:
            ctx.report.lost(at, f"{kind}.{key}", f"name {name!r} is not a valid reconciler {manifest_kind} name")
            continue
        if external:
            names[key] = name
            ctx.report.flag(
                at, f"{kind}.{key}", f"external: referenced as {name!r}, which must exist in the swarm (not declared)"
            )
            continue
        if definition.get("file") is None:
            how = "environment" if definition.get("environment") is not None else "content"
            ctx.report.lost(
                at,
                f"{kind}.{key}",
                f"a {kind[:-1]} from `{how}`: reconciler never copies such values into files; write it to a file "
                f"and declare a {manifest_kind} with `file:`",
            )
            continue
        raw = definition.text("file")
        path = ctx.host_path(raw)
        if not inside(str(path), str(ctx.out_dir)):
            reason = sensitive_reason(str(path))
            if reason:  # the import never grants reading host secrets into the swarm
                ctx.report.lost(definition.at("file"), f"{kind}.{key}.file", f"{reason}: not imported")
                continue
        for option in definition:
            if option not in ("file", "name", "external") and not option.startswith("x-"):
                ctx.report.lost(
                    definition.at(option),
                    f"{kind}.{key}.{option}",
                    f"reconciler's {manifest_kind} has `file` only",
                )
        names[key] = name
        out.append(Manifest(manifest_kind, name, {"file": ctx.manifest_path(raw)}, at))
    return out


def build_swarm_manifests(
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
    """Every manifest `docker stack deploy -c FILE <project>` would make objects for; what it would not carry
    over goes to `report` (arguments as mapping.build_manifests)."""
    ctx, services, chosen = start_import(
        top, project, project_dir, out_dir, active_profiles, report, interpolated, variables, grants, secret_env
    )
    for name in chosen:
        ctx.containers[name] = f"{project}_{name}"
        if not NAME.match(ctx.containers[name]):
            at = services.at(name)
            raise ComposeError(at.file, at.line, f"services.{name}: the stack name {project}_{name!r} is too long")
    for kind in ("secrets", "configs"):
        _check_file_objects(top, kind)
    manifests: list[Manifest] = []
    declared_networks = top.get("networks") or Map(top.loc)
    used = _used_networks(services, chosen, declared_networks)
    for key in declared_networks:
        if key not in used:  # nothing is lost: stack deploy creates only the networks its services use
            report.flag(
                declared_networks.at(key), f"networks.{key}", "no imported service uses it; stack deploy skips it"
            )
    for key, loc in used.items():
        at = declared_networks.at(key) if key in declared_networks else loc
        manifest = network_manifest(key, _overlay(declared_networks.get(key), at), at, ctx)
        if manifest is not None:
            manifests.append(manifest)
    declared_volumes = top.get("volumes") or Map(top.loc)
    for key in declared_volumes:
        manifest = volume_manifest(key, declared_volumes[key], declared_volumes.at(key), ctx)
        if manifest is not None:
            manifests.append(manifest)
    refs: dict[str, dict[str, str | None]] = {"secrets": {}, "configs": {}}
    for kind in ("secrets", "configs"):
        manifests.extend(_file_objects(top, kind, ctx, refs[kind]))
    for name in chosen:
        manifests.append(SwarmServiceMapper(name, services[name], ctx, top, refs).run())
    return manifests


def _overlay(definition: Any, loc: Loc) -> Any:
    """A network definition with stack deploy's default driver, overlay, filled in."""
    if definition is not None and not isinstance(definition, Map):
        return definition
    if definition is not None and definition.get("driver") is not None:
        return definition
    out = Map(definition.loc if definition is not None else loc)
    out.put("driver", "overlay", out.loc)
    if definition is not None:
        for key, value in definition.items():
            out.put(key, value, definition.at(key), definition.raw.get(key))
    return out


class SwarmServiceMapper:
    """One Compose service as a Service manifest: run options through ServiceMapper, `deploy:` here."""

    def __init__(self, name: str, service: Map, ctx: Context, top: Map, refs: dict[str, dict[str, str | None]]):
        self.name = name
        self.service = service
        self.ctx = ctx
        self.top = top
        self.refs = refs
        self.spec: dict[str, Any] = {}
        self.labels: dict[str, str] = {}
        self.secrets: dict[str, str] = {}

    def lost(self, key: str, why: str, loc: Loc | None = None) -> None:
        self.ctx.report.lost(loc or self.service.at(key.split(".")[0]), f"services.{self.name}.{key}", why)

    def run(self) -> Manifest:
        s = self.service
        if s.get("image") is None:
            raise ComposeError(
                s.loc.file, s.loc.line, f"services.{self.name}: a swarm service needs `image` (no build in a stack)"
            )
        self.mapper = ServiceMapper(self.name, self._run_options(), self.ctx, self.top)
        container = self.mapper.run()
        self.secrets = container.secrets  # secret env values: the same 0600 file beside the manifests
        fields = service_fields()
        for key, value in container.spec.items():
            if key == "ports":
                continue  # again below, with each entry's publish mode
            if key == "networks":
                self.spec[key] = self._networks(value)
            elif key == "mounts":
                self.spec[key] = self._mounts(value)
            elif key in fields:
                self.spec[key] = value
            elif key != "allowPrivileged":  # a Service has none; what needed it is left out above
                self.lost(key, f"a Service has no {key}", s.loc)
        self._ports()
        self._file_refs("secrets")
        self._file_refs("configs")
        if "stop_grace_period" in s:
            text = s.text("stop_grace_period")
            if DURATION.match(text):
                self.spec["stopGracePeriod"] = text
            elif text.isdigit():
                self.spec["stopGracePeriod"] = f"{text}s"
            else:
                self.lost("stop_grace_period", f"{text!r} is not a duration")
        deploy = s.get("deploy")
        if deploy is not None and not isinstance(deploy, Map):
            at = s.at("deploy")
            raise ComposeError(at.file, at.line, f"services.{self.name}.deploy must be a mapping")
        self._deploy(deploy or Map(s.loc))
        return Manifest("Service", self.ctx.containers[self.name], self.spec, s.loc, self.labels, self.secrets)

    def _run_options(self) -> Map:
        """The service without what this class maps itself or stack deploy ignores (each ignored key reported),
        and without capabilities a Service refuses (it has no allowPrivileged)."""
        s = self.service
        fields = service_fields()
        unsupported = {
            key: _IGNORED_BY_STACK
            for row in container_fields()
            if row.key not in fields
            for key in row.compose
            if key not in ("restart", "deploy", "stop_grace_period")
        }
        own = {"deploy", "secrets", "configs", "stop_grace_period"}
        out = Map(s.loc)
        for key, value in s.items():
            if key in own:
                continue
            why = STACK_IGNORES.get(key) or unsupported.get(key)
            if why is not None:
                if key != "restart" or (isinstance(s.get("deploy"), Map) and "restart_policy" in s["deploy"]):
                    self.lost(key, why)
                continue
            if key == "cap_add" and isinstance(value, Seq):
                value = self._safe_caps(value)
            out.put(key, value, s.at(key), s.raw.get(key))
        return out

    def _safe_caps(self, caps: Seq) -> Seq:
        kept = Seq(caps.loc)
        for i, cap in enumerate(caps):
            if scalar_text(cap).upper().removeprefix("CAP_") in DANGEROUS_CAPS:
                self.lost(
                    f"cap_add[{i}]",
                    f"capability {scalar_text(cap)} hands over the host; a Service refuses it (no allowPrivileged)",
                    caps.at(i),
                )
            else:
                kept.add(cap, caps.at(i))
        return kept

    def _networks(self, attachments: list[dict[str, Any]]) -> list[dict[str, Any]]:
        out = []
        for entry in attachments:
            if "ipv4Address" in entry:
                self.lost(f"networks.{entry['name']}.ipv4_address", "a Service's tasks get addresses from the pool")
            out.append({k: v for k, v in entry.items() if k in ("name", "aliases")})
        return out

    def _mounts(self, mounts: list[dict[str, Any]]) -> list[dict[str, Any]]:
        out = []
        for mount in mounts:
            allowed = _MOUNT_FIELDS.get(mount["type"], set())
            for key in sorted(set(mount) - allowed):
                self.lost(f"volumes:{mount['target']}.{key}", f"a Service's {mount['type']} mount has no {key}")
            out.append({k: v for k, v in mount.items() if k in allowed})
        return out

    def _ports(self) -> None:
        ports = self.service.get("ports")
        if not ports:
            return
        out = []
        for i, port in enumerate(ports):
            for entry in port_entries(self.mapper, i, port):
                if entry.pop("hostIP", None) is not None:
                    self.lost(f"ports[{i}].host_ip", "swarm publishes on every address of the node")
                mode = port.text("mode") if port.get("mode") is not None else "ingress"
                if mode != "ingress":
                    entry["publishMode"] = mode
                out.append(entry)
        if out:
            self.spec["ports"] = out

    def _file_refs(self, kind: str) -> None:
        entries = self.service.get(kind)
        if not entries:
            return
        out = []
        for i, entry in enumerate(entries):
            at = entries.at(i)
            source = entry.text("source")
            if source not in (self.top.get(kind) or {}):
                what = f"services.{self.name}.{kind}[{i}]"
                raise ComposeError(at.file, at.line, f"{what}: undefined {kind[:-1]} {source!r}")
            name = self.refs[kind].get(source)
            if name is None:
                self.lost(f"{kind}[{i}]", f"{kind[:-1]} {source!r} is not declared (see its entry)", at)
                continue
            target = entry.text("target") if entry.get("target") not in (None, "") else source
            if kind == "configs" and not target.startswith("/"):
                target = f"/{target}"  # stack deploy's default place for a config
            ref: dict[str, Any] = {"name": name, "target": target}
            for option in ("uid", "gid"):
                if entry.get(option) is not None:
                    ref[option] = entry.text(option)
            if entry.get("mode") is not None:
                mode = entry["mode"]
                ref["mode"] = mode if isinstance(mode, int) and not isinstance(mode, bool) else entry.text("mode")
            out.append(ref)
        if out:
            self.spec[kind] = out

    # --- deploy ----------------------------------------------------------------------------------------------

    def _deploy(self, deploy: Map) -> None:
        for key in deploy:
            if key not in _DEPLOY_KEYS and not key.startswith("x-"):
                self.lost(f"deploy.{key}", "reconciler's Service has no such setting", deploy.at(key))
        mode = deploy.text("mode") if deploy.get("mode") is not None else "replicated"
        if mode not in ("replicated", "global"):
            self.lost("deploy.mode", f"{mode!r}: reconciler's Service is replicated or global", deploy.at("mode"))
        elif mode == "global":
            self.spec["mode"] = "global"
        if deploy.get("replicas") is not None:
            replicas = compose_int(deploy["replicas"])
            if mode == "global":
                at = deploy.at("replicas")
                raise ComposeError(at.file, at.line, f"services.{self.name}.deploy.replicas: only with mode replicated")
            if replicas is None or replicas < 0:
                self.lost("deploy.replicas", "not a whole number >= 0", deploy.at("replicas"))
            else:
                self.spec["replicas"] = replicas
        if deploy.get("endpoint_mode") is not None:
            endpoint = deploy.text("endpoint_mode")
            if endpoint == "dnsrr" and any(
                p.get("publishMode", "ingress") == "ingress" for p in self.spec.get("ports", [])
            ):
                at = deploy.at("endpoint_mode")  # the engine refuses the service, as at `docker stack deploy`
                raise ComposeError(at.file, at.line, f"services.{self.name}: dnsrr cannot publish ingress ports")
            if endpoint in ("vip", "dnsrr"):
                self.spec["endpointMode"] = endpoint
            else:
                self.lost("deploy.endpoint_mode", f"{endpoint!r}: vip or dnsrr", deploy.at("endpoint_mode"))
        if isinstance(deploy.get("labels"), Map | Seq):
            from reconciler.compose.context import string_map
            from reconciler.compose.shortforms import mapping_of

            raw = mapping_of(deploy["labels"], deploy.at("labels"), "labels")
            self.labels = string_map(raw, self.ctx, f"services.{self.name}.deploy.labels", labels=True)
        for key, field in (("update_config", "update"), ("rollback_config", "rollback")):
            if isinstance(deploy.get(key), Map):
                rolled = self._rolling(deploy[key], key)
                if rolled:
                    self.spec[field] = rolled
        if isinstance(deploy.get("restart_policy"), Map):
            self._restart_policy(deploy["restart_policy"])
        elif self.service.get("restart") is not None:
            self._restart()
        if isinstance(deploy.get("placement"), Map):
            self._placement(deploy["placement"])
        if isinstance(deploy.get("resources"), Map):
            self._resources(deploy["resources"])

    def _duration(self, source: Map, key: str, where: str) -> str | None:
        text = source.text(key)
        if DURATION.match(text):
            return text
        self.lost(where, f"{text!r} is not a duration", source.at(key))
        return None

    def _rolling(self, config: Map, where: str) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key in config:
            at = config.at(key)
            field = _UPDATE_KEYS.get(key)
            full = f"deploy.{where}.{key}"
            if field is None:
                if not key.startswith("x-"):
                    self.lost(full, "reconciler's update/rollback config has no such setting", at)
            elif key in ("delay", "monitor"):
                value = self._duration(config, key, full)
                if value is not None:
                    out[field] = value
            elif key == "parallelism":
                number = compose_int(config[key])
                if number is None or number < 0:
                    self.lost(full, "not a whole number >= 0", at)
                else:
                    out[field] = number
            elif key == "max_failure_ratio":
                try:
                    ratio = float(config.text(key))
                except ValueError:
                    ratio = -1.0
                if 0 <= ratio <= 1:
                    out[field] = int(ratio) if ratio.is_integer() else ratio
                else:
                    self.lost(full, "not a number from 0 to 1", at)
            else:
                text = config.text(key)
                allowed = {
                    "order": ("stop-first", "start-first"),
                    "failure_action": ("pause", "continue", "rollback")
                    if where == "update_config"
                    else ("pause", "continue"),
                }[key]
                if text in allowed:
                    out[field] = text
                else:
                    self.lost(full, f"{text!r}: one of {', '.join(allowed)}", at)
        if "parallelism" not in out and out:
            out["parallelism"] = 1  # stack deploy's default when the file sets other update keys
        return out

    def _restart_policy(self, policy: Map) -> None:
        out: dict[str, Any] = {}
        for key in policy:
            at = policy.at(key)
            full = f"deploy.restart_policy.{key}"
            if key == "condition":
                condition = policy.text(key)
                if condition in ("none", "on-failure", "any"):
                    out["condition"] = condition
                else:
                    self.lost(full, f"{condition!r}: none, on-failure or any", at)
            elif key in ("delay", "window"):
                value = self._duration(policy, key, full)
                if value is not None:
                    out[key] = value
            elif key == "max_attempts":
                number = compose_int(policy[key])
                if number is None or number < 0:
                    self.lost(full, "not a whole number >= 0", at)
                else:
                    out["maxAttempts"] = number
            elif not key.startswith("x-"):
                self.lost(full, "reconciler's restartPolicy has condition, delay, maxAttempts and window", at)
        if out:
            self.spec["restartPolicy"] = out

    def _restart(self) -> None:
        """`restart:` without deploy.restart_policy, as stack deploy converts it."""
        text = self.service.text("restart")
        name, _, count = text.partition(":")
        if name == "no":  # stack deploy sets no policy: swarm's default (restart on any exit) applies
            self.ctx.report.flag(
                self.service.at("restart"),
                f"services.{self.name}.restart",
                "`no` leaves swarm's default (restart on any exit), as stack deploy does; "
                "deploy.restart_policy.condition: none stops restarts",
            )
        elif name in ("always", "unless-stopped"):
            self.spec["restartPolicy"] = {"condition": "any"}
        elif name == "on-failure" and (not count or count.isdigit()):
            policy: dict[str, Any] = {"condition": "on-failure"}
            if count:
                policy["maxAttempts"] = int(count)
            self.spec["restartPolicy"] = policy
        else:
            self.lost("restart", f"{text!r} is not a restart policy")

    def _placement(self, placement: Map) -> None:
        out: dict[str, Any] = {}
        for key in placement:
            at = placement.at(key)
            full = f"deploy.placement.{key}"
            value = placement[key]
            if key == "constraints" and isinstance(value, Seq):
                out["constraints"] = [scalar_text(c) for c in value]
            elif key == "preferences" and isinstance(value, Seq):
                preferences = []
                for i, item in enumerate(value):
                    if isinstance(item, Map) and set(item) == {"spread"}:
                        preferences.append({"spread": item.text("spread")})
                    else:
                        self.lost(f"{full}[{i}]", "a preference is {spread: ATTRIBUTE}", value.at(i))
                if preferences:
                    out["preferences"] = preferences
            elif key == "max_replicas_per_node":
                number = compose_int(value)
                if number is None or number < 0:
                    self.lost(full, "not a whole number >= 0", at)
                else:
                    out["maxReplicasPerNode"] = number
            elif not key.startswith("x-"):
                self.lost(full, "reconciler's placement has constraints, preferences and maxReplicasPerNode", at)
        if out:
            self.spec["placement"] = out

    def _resources(self, resources: Map) -> None:
        """deploy.resources through the Container's translators (sizes, CPUs, pids), then as a Service has them."""
        from reconciler.compose.limits import map_resources

        wanted = Map(self.service.loc)
        deploy = Map(self.service.loc)
        narrowed = Map(resources.loc)
        cpu_reservation = None
        for part in resources:
            values = resources[part]
            if part == "reservations" and isinstance(values, Map):
                kept = Map(values.loc)
                for item in values:
                    if item == "cpus":
                        cpu_reservation = (values, item)
                    elif item in ("devices", "generic_resources"):
                        self.lost(
                            f"deploy.resources.reservations.{item}",
                            "reconciler's Service reserves memory and CPUs only",
                            values.at(item),
                        )
                    else:
                        kept.put(item, values[item], values.at(item), values.raw.get(item))
                values = kept
            narrowed.put(part, values, resources.at(part))
        deploy.put("resources", narrowed, resources.loc)
        wanted.put("deploy", deploy, resources.loc)
        probe = ServiceMapper(self.name, wanted, self.ctx, self.top)
        map_resources(probe)
        limits = dict(probe.spec.get("resources", {}))
        reservations: dict[str, Any] = {}
        if "memoryReservation" in limits:
            reservations["memory"] = limits.pop("memoryReservation")
        if cpu_reservation is not None:
            from reconciler.compose.limits import _cpus

            reserved: dict[str, Any] = {}
            _cpus(probe, cpu_reservation[0], cpu_reservation[1], reserved, "deploy.resources.reservations.cpus")
            if "cpus" in reserved:
                reservations["cpus"] = reserved["cpus"]
        if reservations:
            limits["reservations"] = reservations
        if limits:
            self.spec["resources"] = limits
