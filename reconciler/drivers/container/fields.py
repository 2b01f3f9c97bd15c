"""The fields of a Container, each declared once: one row of `FIELDS` per field of the canonical spec.

A row says, for one field:
- `manifest`: the manifest keys it is made from; `normalize`: how (manifest -> canonical value, defaults filled);
- `read`: how it is read back from an engine inspect document into the same shape (None: not engine state);
- `expect`: what the engine should report for the declared value (engine and image defaults filled in);
- `compare`: how the expected and the observed value are compared, and each difference named (`exact`, `as_set`,
  or a field's own comparator: env per name, resources per limit, networks per network);
- `action`: what a difference needs: REPLACE (a new container; the field is covered by the spec hash), UPDATE
  (changed in place, by `update`; never hashed, always compared), or NONE (not engine state: never compared);
- `create`: how it goes into the create call; `update`: how it is changed in place (its part of the one
  `POST /containers/{id}/update` body, or an operation of its own, and the plan steps saying so).

The walkers: `spec.normalize_container` (normalize, hash), `observe.observed_spec` (read), `diff.expected_spec`,
`diff.field_changes` and `diff.steps_for` (expect, compare, update steps), `apply.create_config` and
`in_place_body` below (create, update body), and the driver's in-place update (update). Adding a field is one row
(with functions here for whatever the generic ones do not cover) plus its tests; tests/unit/test_container_fields.py
checks that every row is complete and every manifest key of schemas/Container.schema.json has a row.

Fields that mean the same thing for a Service (image, command, entrypoint, env, user, workingDir, hostname) take
their manifest half (keys, normalizer) from the shared rows of reconciler/drivers/engine/fields.py, which also holds
the one env-masking rule; swarm/fields.py is the Service's table.

Pure: the engine operations of in-place changes (reconnect, start/stop) are in inplace.py.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reconciler.drivers.container import mountopts, oneshot, platform
from reconciler.drivers.container.inplace import (
    Updating,
    run_networks,
    run_state,
)
from reconciler.drivers.container.values import (
    DEFAULT_DEPENDENCY_TIMEOUT_NS,
    DEFAULT_STOP_TIMEOUT,
    HEALTH_DEFAULTS,
    HEALTH_DISABLED,
    LABEL_SENSITIVE_ENV,
    canonical_reference,
    capability,
    env_dict,
    parse_bytes,
    parse_duration,
    resolve_host_path,
    shown_cpus,
    shown_size,
)
from reconciler.drivers.engine import lazy, runoptions
from reconciler.drivers.engine.common import user_labels
from reconciler.drivers.engine.fields import (
    COMMAND,
    ENTRYPOINT,
    ENV,
    HOSTNAME,
    IMAGE,
    USER,
    WORKING_DIR,
    Normalizer,
    Normalizing,
    env_changes,
    shown_env,
)
from reconciler.errors import SpecError
from reconciler.model import LABEL_PREFIX, Action, Change, Desired, FieldChange, Step

MAX_CPUS = 1 << 20  # the schema's bound: NanoCpus fit int64 well before, the engine refuses more than the host has

BUILTIN_MODES = ("bridge", "host", "none")
DEFAULT_PROPAGATION = "rprivate"  # a bind mount's, when none is declared


# --- what the row functions get ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Comparing:
    """One declared container against the one observed: `have` is the observed spec, `facts` the
    observe.ContainerFacts beside it (image defaults), `labels` the observed labels."""

    desired: Desired
    have: Mapping[str, Any]
    facts: Any
    labels: Mapping[str, str] = field(default_factory=dict)


@dataclass
class CreateCall:
    """The create call being built from the canonical `spec`: keywords of `APIClient.create_container`
    (`kwargs`) and of `create_host_config` (`host`), and HostConfig keys it has no keyword for (`host_raw`).
    None values are left out. `labels` are the labels the driver stamps (ownership, sensitive env names)."""

    api: Any
    spec: Mapping[str, Any]
    labels: Mapping[str, str]
    kwargs: dict[str, Any] = field(default_factory=dict)
    host: dict[str, Any] = field(default_factory=dict)
    host_raw: dict[str, Any] = field(default_factory=dict)


Reader = Callable[[Mapping[str, Any], Mapping[str, str]], Any]  # (inspect document, container ID -> name)
Expect = Callable[[Any, Comparing], Any]  # (declared value, ...) -> the value the engine should report
Writer = Callable[[Any, CreateCall], None]  # (declared value, the call being built)
# (row, expected value, observed value, ...) -> the FieldChanges naming each difference
Comparator = Callable[["Field", Any, Any, Comparing], list[FieldChange]]


@dataclass(frozen=True)
class InPlace:
    """How a field changes without a new container. In-place changes run in `order`: first one update call
    carrying every `body` part, then each `run` (reconnect, start/stop)."""

    order: int
    # the plan steps for this field's changes (fields: its FieldChanges, `path` == key or under it)
    steps: Callable[[list[FieldChange], Desired], list[str]]
    # its part of the `POST /containers/{id}/update` body: (declared value, changed sub-keys, body)
    body: Callable[[Any, list[str], dict[str, Any]], None] | None = None
    # an operation of its own: (context, its FieldChanges)
    run: Callable[[Updating, list[FieldChange]], None] | None = None


# --- the generic comparators ------------------------------------------------------------------------------------


def exact(row: Field, want: Any, have: Any, ctx: Comparing) -> list[FieldChange]:
    """One change of the whole field when the values differ."""
    if want == have:
        return []
    return [FieldChange(row.key, row.show(have), row.show(want), row.action)]


def as_set(row: Field, want: Any, have: Any, ctx: Comparing) -> list[FieldChange]:
    """Order and repetition do not matter (both sides are kept sorted and unique, so the shown lists are too)."""
    if isinstance(want, list) and isinstance(have, list) and set(want) == set(have):
        return []
    return exact(row, want, have, ctx)


def _identity(value: Any) -> Any:
    return value


def declared(value: Any, ctx: Comparing) -> Any:
    """Expect: the engine reports what was declared."""
    return value


@dataclass(frozen=True)
class Field:
    """One field of a Container: where it comes from, how it is read back, compared, created and updated."""

    key: str  # the key in the canonical spec, and the FieldChange path (or its prefix: `env.NAME`)
    manifest: tuple[str, ...]  # the manifest keys it is made from (document paths: `spec.env`, `metadata.labels`)
    # manifest -> canonical value; None: not kept in the canonical spec (labels live on the Resource)
    normalize: Normalizer | None
    read: Reader | None  # inspect -> canonical value; None: not engine state (never compared)
    action: Action  # REPLACE, UPDATE (in place) or NONE (not engine state)
    create: Writer | None = None
    update: InPlace | None = None
    expect: Expect = declared
    compare: Comparator = exact
    show: Callable[[Any], Any] = _identity  # how `exact` shows a value in the plan
    hash_form: Callable[[Any], Any] = _identity  # the part the spec hash covers (REPLACE fields only)
    # a REPLACE field compared even when the hash matches, when this says the engine may move it under us
    drifts: Callable[[Any], bool] | None = None
    # changes found beside the field comparison, in both modes (the image behind the tag moved)
    after: Callable[[list[FieldChange], Comparing], list[FieldChange]] | None = None
    # (declared spec, the pending changes it depends on) -> REPLACE changes because of them (planner's `follow`)
    follow: Callable[[Mapping[str, Any], list[Change]], list[FieldChange]] | None = None
    # normalized before the other fields: env files are read first, so a bad one is reported even when a field
    # before it in the table fails otherwise (an unbalanced quote in `command`)
    normalize_first: bool = False
    # the Compose service keys `reconcile import compose` makes it from (reconciler/compose: a key named here is
    # imported; one no mapper of its own knows is copied as written, and checked with the rest of the manifest)
    compose: tuple[str, ...] = ()
    doc: str = ""
    # (value, canonical or as written in a manifest) -> why it takes isolation away and needs allowPrivileged, or
    # None: read by the checks and by the import (which carries the opt-in over, flagged)
    opt_in: Callable[[Any], str | None] | None = None
    # left out of the spec hash while undeclared (None): a field added to the table after containers were created
    # changes no existing container's hash (the run options)
    hashed_when_set: bool = False

    @property
    def hashed(self) -> bool:
        """In the hashed part of the canonical spec (spec.hashed_spec): a change needs a new container. The labels
        (REPLACE, but kept on the Resource) enter the spec hash beside it."""
        return self.action is Action.REPLACE and self.normalize is not None

    def changes_of(self, fields: list[FieldChange]) -> list[FieldChange]:
        """The FieldChanges of this field (its own path, or paths under it)."""
        return [f for f in fields if f.path == self.key or f.path.startswith(self.key + ".")]


# --- simple rows: normalizers, readers and writers by name -------------------------------------------------------


def _config(info: Mapping[str, Any]) -> Mapping[str, Any]:
    return info.get("Config") or {}


def _host(info: Mapping[str, Any]) -> Mapping[str, Any]:
    return info.get("HostConfig") or {}


def to_create(keyword: str) -> Writer:
    """Writer: the value as keyword `keyword` of create_container (None: left out, the image's or engine's)."""

    def write(value: Any, call: CreateCall) -> None:
        call.kwargs[keyword] = value

    return write


def to_host(keyword: str, empty_is_none: bool = False) -> Writer:
    """Writer: the value as keyword `keyword` of create_host_config (an empty value left out when asked)."""

    def write(value: Any, call: CreateCall) -> None:
        call.host[keyword] = (value or None) if empty_is_none else value

    return write


def or_image(default: str) -> Expect:
    """Expect: the declared value, or the image's (ImageDefaults attribute `default`) when undeclared."""

    def expect(value: Any, ctx: Comparing) -> Any:
        return value if value is not None else getattr(ctx.facts.defaults, default)

    return expect


# --- command / entrypoint ---------------------------------------------------------------------------------------


def _expect_command(value: Any, ctx: Comparing) -> Any:
    if value is not None:
        return value
    if ctx.desired.spec["entrypoint"] is not None:
        return []  # the engine drops the image's CMD when the entrypoint is overridden
    return list(ctx.facts.defaults.command)


def _expect_entrypoint(value: Any, ctx: Comparing) -> Any:
    return list(value) if value is not None else list(ctx.facts.defaults.entrypoint)


# --- env --------------------------------------------------------------------------------------------------------


def shown_old_env(ctx: Comparing) -> frozenset[str]:
    """The env names whose OBSERVED value may be printed (the one rule, engine/fields.shown_env): declared in plain
    `env` now and not recorded as sensitive when the container was created (its label), or still the image's own
    value."""
    recorded = frozenset(filter(None, ctx.labels.get(LABEL_SENSITIVE_ENV, "").split(",")))
    return shown_env(ctx.desired, ctx.have.get("env") or {}, recorded, ctx.facts.defaults.env)


def _compare_env(row: Field, want: Mapping[str, str], have: Any, ctx: Comparing) -> list[FieldChange]:
    """One REPLACE per differing name; sensitive when either side's value must not be shown (one flag masks both)."""
    return env_changes(want, have, ctx.desired, shown_old_env(ctx), Action.REPLACE)


def _write_env(value: Mapping[str, str], call: CreateCall) -> None:
    call.kwargs["environment"] = [f"{k}={v}" for k, v in value.items()] or None


# --- ports ------------------------------------------------------------------------------------------------------


def _port_order(p: Mapping[str, Any]) -> tuple:
    return (p["containerPort"], p["protocol"], p["hostIP"], p["hostPort"] or 0)


def _normalize_ports(n: Normalizing) -> list[dict[str, Any]]:
    return sorted(
        (
            {
                "containerPort": int(p["containerPort"]),
                "protocol": p.get("protocol", "tcp"),
                "hostIP": p.get("hostIP") or "0.0.0.0",
                "hostPort": int(p["hostPort"]) if p.get("hostPort") is not None else None,
            }
            for p in n.spec.get("ports") or []
        ),
        key=_port_order,
    )


def _read_ports(info: Mapping[str, Any], names: Mapping[str, str]) -> list[dict[str, Any]]:
    out = []
    for key, hosts in (_host(info).get("PortBindings") or {}).items():
        port, _, proto = key.partition("/")
        for host in hosts or [{}]:
            out.append(
                {
                    "containerPort": int(port),
                    "protocol": proto or "tcp",
                    "hostIP": host.get("HostIp") or "0.0.0.0",
                    "hostPort": int(host["HostPort"]) if host.get("HostPort") else None,
                }
            )
    return sorted(out, key=_port_order)


def _write_ports(value: list[Mapping[str, Any]], call: CreateCall) -> None:
    if value:
        bindings: dict[str, list[dict[str, str]]] = {}
        for p in value:
            bindings.setdefault(f"{p['containerPort']}/{p['protocol']}", []).append(
                {"HostIp": p["hostIP"], "HostPort": str(p["hostPort"]) if p["hostPort"] is not None else ""}
            )
        call.host_raw["PortBindings"] = bindings
    call.kwargs["ports"] = [(p["containerPort"], p["protocol"]) for p in value] or None


# --- mounts -----------------------------------------------------------------------------------------------------


def _mount(entry: Mapping[str, Any], manifest: Path, field: str) -> dict[str, Any]:
    kind = entry["type"]
    if kind == "volume":
        return {
            "type": "volume",
            "source": entry["source"],
            "target": entry["target"],
            "readOnly": bool(entry.get("readOnly", False)),
            **({"noCopy": True} if entry.get("noCopy") else {}),  # only when set: earlier hashes stay
        }
    if kind == "bind":
        propagation = entry.get("propagation")
        return {
            "type": "bind",
            "source": resolve_host_path(entry["source"], manifest),
            "target": entry["target"],
            "readOnly": bool(entry.get("readOnly", False)),
            # only when not the engine's default (rprivate): earlier hashes stay
            **({"propagation": propagation} if propagation not in (None, DEFAULT_PROPAGATION) else {}),
            **({"selinux": entry["selinux"]} if entry.get("selinux") else {}),  # only when set: earlier hashes stay
            "allowSensitive": bool(entry.get("allowSensitive", False)),
        }
    if kind == "tmpfs":
        return {
            "type": "tmpfs",
            "target": entry["target"],
            "size": parse_bytes(entry["size"], f"{field}.size") if entry.get("size") is not None else None,
            "mode": int(entry["mode"], 8) if entry.get("mode") is not None else None,
            **({"exec": True} if entry.get("exec") else {}),  # noexec is the engine's default: earlier hashes stay
        }
    if kind == "npipe":
        raise SpecError(f"{field}.type", "npipe mounts exist only on Windows engines; this is a Linux engine")
    raise SpecError(f"{field}.type", f"unknown mount type {kind!r}")


def _normalize_mounts(n: Normalizing) -> list[dict[str, Any]]:
    return sorted(
        (_mount(m, n.manifest, f"spec.mounts.{i}") for i, m in enumerate(n.spec.get("mounts") or [])),
        key=lambda m: m["target"],
    )


def engine_mounts(mounts: list[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The mounts without the opt-ins that are no engine state (`allowSensitive`)."""
    return [{k: v for k, v in m.items() if k != "allowSensitive"} for m in mounts]


def _read_mounts(info: Mapping[str, Any], names: Mapping[str, str]) -> list[dict[str, Any]]:
    out = []
    for m in _host(info).get("Mounts") or []:
        kind = m.get("Type")
        if kind == "tmpfs":
            opts = m.get("TmpfsOptions") or {}
            out.append(
                {
                    "type": "tmpfs",
                    "target": m["Target"],
                    "size": opts.get("SizeBytes") or None,
                    "mode": opts.get("Mode"),
                }
            )
        else:
            mount = {
                "type": kind,
                "source": m.get("Source"),
                "target": m["Target"],
                "readOnly": bool(m.get("ReadOnly")),
            }
            if (m.get("VolumeOptions") or {}).get("NoCopy"):
                mount["noCopy"] = True
            propagation = (m.get("BindOptions") or {}).get("Propagation")
            if propagation not in (None, "", DEFAULT_PROPAGATION):
                mount["propagation"] = propagation
            out.append(mount)
    # the mounts only the option strings can describe (mountopts.py): relabelled binds, executable tmpfs
    out += filter(None, (mountopts.read_bind(entry) for entry in _host(info).get("Binds") or []))
    out += (mountopts.read_tmpfs(target, opts or "") for target, opts in (_host(info).get("Tmpfs") or {}).items())
    return sorted(out, key=lambda m: m["target"])


def _show_mounts(mounts: list[Mapping[str, Any]] | None) -> list[dict[str, Any]]:
    """tmpfs sizes are kept in bytes; shown like memory (`64m`)."""
    return [{**m, "size": shown_size(m["size"])} if m.get("size") is not None else dict(m) for m in mounts or []]


def _write_mounts(value: list[Mapping[str, Any]], call: CreateCall) -> None:
    mounts = []
    for m in value:
        if mountopts.needs_binds(m):
            call.host_raw.setdefault("Binds", []).append(mountopts.bind_string(m))
        elif mountopts.needs_tmpfs(m):
            call.host_raw.setdefault("Tmpfs", {})[m["target"]] = mountopts.tmpfs_options(m)
        elif m["type"] == "tmpfs":
            mounts.append(lazy.Mount(m["target"], None, type="tmpfs", tmpfs_size=m["size"], tmpfs_mode=m["mode"]))
        elif m["type"] == "volume":
            mounts.append(
                lazy.Mount(m["target"], m["source"], type="volume", read_only=m["readOnly"], no_copy="noCopy" in m)
            )
        else:
            mounts.append(
                lazy.Mount(
                    m["target"], m["source"], type=m["type"], read_only=m["readOnly"], propagation=m.get("propagation")
                )
            )
    call.host["mounts"] = mounts or None


# --- networks and the network mode ------------------------------------------------------------------------------


def _normalize_networks(n: Normalizing) -> list[dict[str, Any]]:
    return sorted(
        (
            {
                "name": net["name"],
                "aliases": sorted(set(net.get("aliases") or [])),
                "ipv4Address": net.get("ipv4Address"),
            }
            for net in n.spec.get("networks") or []
        ),
        key=lambda net: net["name"],
    )


def network_mode(raw: str | None, names: Mapping[str, str]) -> str | None:
    """`default`/`bridge` -> bridge; host; none; `container:<id>` -> `container:<name>`; a user network -> None."""
    mode = raw or "default"
    if mode == "default":
        return "bridge"
    if mode in BUILTIN_MODES:
        return mode
    if mode.startswith("container:"):
        target = mode.partition(":")[2]
        return "container:" + names.get(target, target)
    return None


def _read_network_mode(info: Mapping[str, Any], names: Mapping[str, str]) -> str | None:
    return network_mode(_host(info).get("NetworkMode"), names)


# swarm-scoped networks have swarmkit's IDs (25 characters of base 36); an engine's own, 64 hex digits
_SWARM_ID = re.compile(r"[0-9a-z]{25}")


def _read_networks(info: Mapping[str, Any], names: Mapping[str, str]) -> list[dict[str, Any]]:
    mode = _read_network_mode(info, names)
    attached = (info.get("NetworkSettings") or {}).get("Networks") or {}
    running = bool((info.get("State") or {}).get("Running"))
    short_id = info["Id"][:12]
    out = []
    for name, endpoint in attached.items():
        if mode is not None and name == mode:
            continue  # the network the mode itself implies (the default bridge)
        endpoint = endpoint or {}
        if running and not endpoint.get("EndpointID"):
            # a failed connect leaves its endpoint config behind without an endpoint: not connected (a stopped or
            # never started container keeps its config without IDs too, and is connected again when started)
            continue
        ipam = endpoint.get("IPAMConfig") or {}
        if _SWARM_ID.fullmatch(str(endpoint.get("NetworkID") or "")):
            ipam = {}  # a swarm network's attachment: the engine writes the address the manager allocated there
        aliases = {a for a in endpoint.get("Aliases") or [] if a not in (short_id, info["Id"])}
        out.append({"name": name, "aliases": sorted(aliases), "ipv4Address": ipam.get("IPv4Address") or None})
    return sorted(out, key=lambda n: n["name"])


def _compare_networks(row: Field, want: list[Mapping[str, Any]], have: Any, ctx: Comparing) -> list[FieldChange]:
    """Per network: membership, aliases, static address. The engine's own aliases (the hostname) never drift."""
    implicit = frozenset({ctx.have.get("hostname") or ""})
    wanted = {n["name"]: dict(n) for n in want}
    had = {n["name"]: dict(n) for n in have or []}
    changes = []
    for name in sorted(set(wanted) | set(had)):
        new, old = wanted.get(name), had.get(name)
        if new is not None and old is not None:
            declared = set(new["aliases"])
            # the observed ipv4Address is IPAMConfig's, set only for a static address (an IPAM-assigned one is
            # never reported there, so never drift): one present where none is declared is a reservation to drop
            old = {**old, "aliases": [a for a in old["aliases"] if a not in implicit or a in declared]}
        if new != old:
            changes.append(FieldChange(f"networks.{name}", old, new, Action.UPDATE))
    return changes


def _write_networks(value: list[Mapping[str, Any]], call: CreateCall) -> None:
    """The first network goes into the create call; the driver connects the others before the start
    (`connect_extra_networks`)."""
    first = value[0] if value else None
    if first is not None and call.spec["networkMode"] is None:
        endpoint = call.api.create_endpoint_config(aliases=first["aliases"] or None, ipv4_address=first["ipv4Address"])
        call.kwargs["networking_config"] = call.api.create_networking_config({first["name"]: endpoint})


def _network_steps(fields: list[FieldChange], desired: Desired) -> list[str]:
    steps = []
    for f in fields:
        net = f.path.split(".", 1)[1]
        if f.new is None:
            steps.append(f"disconnect from network {net}")
        elif f.old is None:
            steps.append(f"connect to network {net}")
        else:
            steps.append(f"reconnect to network {net}")
    return steps


def _write_network_mode(value: str | None, call: CreateCall) -> None:
    networks = call.spec["networks"]
    call.host["network_mode"] = value if value is not None else networks[0]["name"]


def _follows_namespace(key: str, namespace: str) -> Callable[[Mapping[str, Any], list[Change]], list[FieldChange]]:
    """`follow` of a `container:<name>` mode: the container whose namespace it shares is replaced (the engine pins
    it by ID), so this one is replaced after it."""

    def follow(spec: Mapping[str, Any], upstream: list[Change]) -> list[FieldChange]:
        mode = str(spec[key])
        target = mode.partition(":")[2] if mode.startswith("container:") else None
        if any(
            u.kind == "Container" and u.name == target and u.action is Action.REPLACE and u.pending for u in upstream
        ):
            note = f"container {target} is replaced; its {namespace} namespace goes with it"
            return [FieldChange(key, mode, mode, Action.REPLACE, note=note)]
        return []

    return follow


def _namespace_pinned(value: Any) -> bool:
    """`container:<name>`: the engine pins the namespace by container ID, so a replaced target is a change."""
    return str(value).startswith("container:")


def _read_namespace(name: str) -> Reader:
    """An IPC or PID mode; the engine stores `container:<name>` as `container:<id>` (Docker 20.10): read back with
    the container's name, as networkMode is."""

    def read(info: Mapping[str, Any], names: Mapping[str, str]) -> str | None:
        mode = runoptions.mode(_host(info).get(name))
        if mode is not None and mode.startswith("container:"):
            target = mode.partition(":")[2]
            return "container:" + names.get(target, target)
        return mode

    return read


# --- restart policy ---------------------------------------------------------------------------------------------


def _normalize_restart(n: Normalizing) -> dict[str, Any]:
    restart = n.spec.get("restartPolicy") or {}
    return {"name": restart.get("name", "no"), "maximumRetryCount": int(restart.get("maximumRetryCount", 0))}


def _read_restart(info: Mapping[str, Any], names: Mapping[str, str]) -> dict[str, Any]:
    restart = _host(info).get("RestartPolicy") or {}
    return {"name": restart.get("Name") or "no", "maximumRetryCount": int(restart.get("MaximumRetryCount") or 0)}


def _write_restart(value: Mapping[str, Any], call: CreateCall) -> None:
    call.host["restart_policy"] = (
        {"Name": value["name"], "MaximumRetryCount": value["maximumRetryCount"]} if value["name"] != "no" else None
    )


def _update_restart(value: Mapping[str, Any], changed: list[str], body: dict[str, Any]) -> None:
    # "no", never "": the engine reads an empty name as "leave the policy as it is" (so did `docker update`
    # with an empty --restart); a policy set by hand was never taken back
    body["RestartPolicy"] = {"Name": value["name"]}
    if value["name"] == "on-failure":
        body["RestartPolicy"]["MaximumRetryCount"] = value["maximumRetryCount"]


# --- state ------------------------------------------------------------------------------------------------------


def _read_state(info: Mapping[str, Any], names: Mapping[str, str]) -> str:
    state = info.get("State") or {}
    # paused (`docker pause`) is a state of its own: it cannot be started, only unpaused
    return "paused" if state.get("Paused") else "running" if state.get("Running") else "stopped"


def dependency_waits(desired: Desired) -> list[Step]:
    """The plan steps waiting for `dependsOn`, before any start (op `wait`: name, condition, timeout)."""
    return [
        Step(f"wait for container {d['name']} to be {d['condition']}", "wait", d["name"], d["condition"], d["timeout"])
        for d in desired.spec["dependsOn"]
    ]


def _compare_state(row: Field, want: str, have: Any, ctx: Comparing) -> list[FieldChange]:
    """`completed` is met by a container that exited 0 after a start (never drift); one that runs is waited for,
    one that failed or never ran is run (again). The other states compare as they read."""
    if want != oneshot.COMPLETED or have == want:
        return exact(row, want, have, ctx)
    ended = getattr(ctx.facts, "outcome", None)
    if have == "stopped" and ended == oneshot.COMPLETED:
        return []
    note = "it runs: apply waits for it to complete" if have == "running" else ended or ""
    return [FieldChange(row.key, have, want, Action.UPDATE, note=note if have != "paused" else "")]


def _completion_steps(old: Any, desired: Desired) -> list[Any]:
    name = desired.name
    if old == "paused":
        return [f"unpause {name}", f"wait for {name} to complete"]
    if old == "running":
        return [f"wait for {name} to complete"]
    return [*dependency_waits(desired), f"run {name} to completion"]


def _state_steps(fields: list[FieldChange], desired: Desired) -> list[str]:
    name = desired.name
    steps = []
    for f in fields:
        if f.new == oneshot.COMPLETED:
            steps += _completion_steps(f.old, desired)
        elif f.old == "paused":
            steps += [f"unpause {name}", *([f"stop {name}"] if f.new == "stopped" else [])]
        else:
            steps += [*dependency_waits(desired), f"start {name}"] if f.new == "running" else [f"stop {name}"]
    return steps


# --- healthcheck ------------------------------------------------------------------------------------------------


def _normalize_healthcheck(n: Normalizing) -> dict[str, Any] | None:
    value, field = n.spec.get("healthcheck"), "spec.healthcheck"
    if value is None:
        return None
    if value.get("disable"):
        return dict(HEALTH_DISABLED)
    test = value["test"]
    test = ["CMD-SHELL", test] if isinstance(test, str) else [str(t) for t in test]
    out: dict[str, Any] = {"test": test}
    for key in ("interval", "timeout", "startPeriod"):
        raw = value.get(key)
        out[key] = parse_duration(raw, f"{field}.{key}") if raw is not None else HEALTH_DEFAULTS[key]
    out["retries"] = int(value.get("retries", HEALTH_DEFAULTS["retries"]))
    return out


def health_spec(value: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """Engine healthcheck (a container's or an image's) -> canonical form; 0 durations mean the engine's defaults."""
    if not value or not value.get("Test"):
        return None
    test = list(value["Test"])
    if test[0] == "NONE":
        return {"test": ["NONE"]}
    return {
        "test": test,
        "interval": value.get("Interval") or HEALTH_DEFAULTS["interval"],
        "timeout": value.get("Timeout") or HEALTH_DEFAULTS["timeout"],
        "startPeriod": value.get("StartPeriod") or HEALTH_DEFAULTS["startPeriod"],
        "retries": value.get("Retries") or HEALTH_DEFAULTS["retries"],
    }


def _write_healthcheck(health: Mapping[str, Any] | None, call: CreateCall) -> None:
    if health is None:
        return
    call.kwargs["healthcheck"] = (
        {"test": ["NONE"]}
        if health["test"] == ["NONE"]
        else {
            "test": health["test"],
            "interval": health["interval"],
            "timeout": health["timeout"],
            "start_period": health["startPeriod"],
            "retries": health["retries"],
        }
    )


# --- resources: one row, with a table of its limits --------------------------------------------------------------


@dataclass(frozen=True)
class Limit:
    """One resource limit: its key under `resources`, its HostConfig / update-body name, its create_host_config
    keyword, how it is shown, and whether removing it can be done in place."""

    key: str
    engine: str
    create: str
    show: Callable[[Any], Any] = _identity
    removable_in_place: bool = False  # the update API ignores zero values: most limits cannot be lifted


LIMITS = (
    Limit("memory", "Memory", "mem_limit", shown_size),
    Limit("memorySwap", "MemorySwap", "memswap_limit", shown_size, removable_in_place=True),
    Limit("memoryReservation", "MemoryReservation", "mem_reservation", shown_size),
    Limit("cpus", "NanoCpus", "nano_cpus", shown_cpus),  # kept as NanoCpus; shown as CPUs, as written
    Limit("cpuShares", "CpuShares", "cpu_shares"),
    Limit("pidsLimit", "PidsLimit", "pids_limit", removable_in_place=True),  # lifted with -1
    Limit("cpuset", "CpusetCpus", "cpuset_cpus"),  # a CPU list, as sorted ranges (runoptions.cpu_list)
    Limit("blkioWeight", "BlkioWeight", "blkio_weight"),  # 0 read back: none (or discarded: engine_warnings.py)
)
LIMITS_BY_KEY = {limit.key: limit for limit in LIMITS}


def _normalize_resources(n: Normalizing) -> dict[str, Any]:
    value, field = n.spec.get("resources") or {}, "spec.resources"

    def size(key: str) -> int | None:
        raw = value.get(key)
        return parse_bytes(raw, f"{field}.{key}") if raw is not None else None

    swap = value.get("memorySwap")
    cpus = value.get("cpus")
    if cpus is not None and (
        isinstance(cpus, bool)
        or not isinstance(cpus, int | float)
        or not math.isfinite(cpus)
        or not 0 < cpus <= MAX_CPUS
    ):
        raise SpecError(f"{field}.cpus", f"cpus must be a finite number above 0 and at most {MAX_CPUS}, not {cpus!r}")
    return {
        "memory": size("memory"),
        # -1 (unlimited swap) is a value of its own; undeclared stays None and means "twice memory"
        "memorySwap": -1 if swap == -1 else size("memorySwap"),
        "memoryReservation": size("memoryReservation"),
        "cpus": round(float(cpus) * 10**9) if cpus is not None else None,  # NanoCpus
        "cpuShares": value.get("cpuShares"),
        "pidsLimit": value.get("pidsLimit"),
        "cpuset": runoptions.cpu_list(value.get("cpuset"), f"{field}.cpuset"),
        "blkioWeight": value.get("blkioWeight"),
    }


def _read_resources(info: Mapping[str, Any], names: Mapping[str, str]) -> dict[str, Any]:
    host = _host(info)
    out: dict[str, Any] = {}
    for limit in LIMITS:
        value = host.get(limit.engine)
        if limit.key == "memorySwap" and value == -1:
            out[limit.key] = -1  # unlimited swap
        elif limit.key == "cpuset":
            out[limit.key] = runoptions.cpu_list(value)
        else:
            out[limit.key] = value if value and value > 0 else None  # 0 / -1: no limit
    return out


def _expect_resources(value: Mapping[str, Any], ctx: Comparing) -> dict[str, Any]:
    resources = dict(value)
    if resources["memorySwap"] is None and resources["memory"] is not None:
        resources["memorySwap"] = 2 * resources["memory"]  # the engine's default
    return resources


def _compare_resources(row: Field, want: Mapping[str, Any], have: Any, ctx: Comparing) -> list[FieldChange]:
    """Per limit, in place; removing a limit the update API cannot lift is a replace."""
    have = have or {}
    swap_declared = ctx.desired.spec["resources"]["memorySwap"] is not None
    changes = []
    memory_changes = want.get("memory") != have.get("memory")
    for key in sorted(set(want) | set(have)):
        new, old = want.get(key), have.get(key)
        if new == old:
            continue
        if key == "memorySwap" and not swap_declared and memory_changes:
            continue  # follows memory (twice it): one change, named by the field the user changed
        limit = LIMITS_BY_KEY[key]
        if new is None and old is not None and not limit.removable_in_place:
            note = "the engine cannot remove a limit in place"
            changes.append(FieldChange(f"resources.{key}", limit.show(old), None, Action.REPLACE, note=note))
        else:
            changes.append(FieldChange(f"resources.{key}", limit.show(old), limit.show(new), Action.UPDATE))
    return changes


def _write_resources(value: Mapping[str, Any], call: CreateCall) -> None:
    for limit in LIMITS:
        call.host[limit.create] = value[limit.key]


def _update_resources(res: Mapping[str, Any], changed: list[str], body: dict[str, Any]) -> None:
    if "memory" in changed or "memorySwap" in changed:
        if res["memory"] is not None:
            body["Memory"] = res["memory"]
            # sent together: raising memory above the current swap limit fails otherwise
            body["MemorySwap"] = res["memorySwap"] if res["memorySwap"] is not None else 2 * res["memory"]
    for key in ("memoryReservation", "cpus", "cpuShares", "cpuset", "blkioWeight"):
        if key in changed and res[key] is not None:
            body[LIMITS_BY_KEY[key].engine] = res[key]
    if "pidsLimit" in changed:
        body["PidsLimit"] = res["pidsLimit"] if res["pidsLimit"] is not None else -1  # -1: unlimited


def _resource_steps(fields: list[FieldChange], desired: Desired) -> list[str]:
    return [f"update {', '.join(f.path.split('.', 1)[1] for f in fields)} in place"]


# --- image: the ID behind the reference -------------------------------------------------------------------------

IMAGE_MOVED = "the image behind the reference changed"
IMAGE_FOLLOW = "the image is being rebuilt or re-pulled; replaced only if its ID changes"


def _image_moved(changes: list[FieldChange], ctx: Comparing) -> list[FieldChange]:
    """The reference is unchanged but resolves to another image now (re-pull, rebuild, re-tag): replace."""
    facts = ctx.facts
    if any(c.path == "image" for c in changes):
        return []
    if facts.current_image_id and facts.current_image_id != facts.image_id:
        return [FieldChange("image", facts.image_id, facts.current_image_id, Action.REPLACE, note=IMAGE_MOVED)]
    return []


def _follow_image(spec: Mapping[str, Any], upstream: list[Change]) -> list[FieldChange]:
    """An Image it uses is about to be built or pulled: replace, unless (checked at apply time, by the note) the
    image ID did not move. A push or a tag clean-up (UPDATE) cannot move the ID and leaves the container be."""
    if any(u.kind == "Image" and u.pending and u.action in (Action.CREATE, Action.REPLACE) for u in upstream):
        return [FieldChange("image", spec["image"], spec["image"], Action.REPLACE, note=IMAGE_FOLLOW)]
    return []


# --- dependsOn --------------------------------------------------------------------------------------------------


def _normalize_depends_on(n: Normalizing) -> list[dict[str, Any]]:
    return [
        {
            "name": d["name"],
            "condition": d.get("condition", "started"),
            "timeout": parse_duration(d["timeout"], f"spec.dependsOn.{i}.timeout")
            if d.get("timeout") is not None
            else DEFAULT_DEPENDENCY_TIMEOUT_NS,
        }
        for i, d in enumerate(n.spec.get("dependsOn") or [])
    ]


# --- run options (canonical forms in drivers/engine/runoptions.py) -----------------------------------------------


def _spec_value(key: str, convert: Callable[[Any], Any]) -> Normalizer:
    """Normalizer: `spec.<key>` through `convert` (None when undeclared)."""
    return lambda n: convert(n.spec.get(key))


def _spec_checked(key: str, convert: Callable[[Any, str], Any]) -> Normalizer:
    """Normalizer: `spec.<key>` through `convert`, which names the field in its errors."""
    return lambda n: convert(n.spec.get(key), f"spec.{key}")


def _from_host(name: str, convert: Callable[[Any], Any]) -> Reader:
    return lambda info, names: convert(_host(info).get(name))


def _from_config(name: str, convert: Callable[[Any], Any]) -> Reader:
    return lambda info, names: convert(_config(info).get(name))


def to_host_raw(name: str, convert: Callable[[Any], Any] = _identity) -> Writer:
    """Writer: HostConfig key `name` as the engine API spells it (left out when undeclared)."""

    def write(value: Any, call: CreateCall) -> None:
        if value is not None:
            call.host_raw[name] = convert(value)

    return write


def _expect_logging(value: Mapping[str, Any] | None, ctx: Comparing) -> Any:
    """Undeclared: the daemon's default driver and options, whatever it is configured with (never drift); a
    declared driver-less `options`: the daemon's driver with these options."""
    have = ctx.have.get("logging") or {}
    if value is None:
        return ctx.have.get("logging")
    return {**value, "driver": value["driver"] or have.get("driver")}


def _write_logging(value: Mapping[str, Any] | None, call: CreateCall) -> None:
    if value is not None:
        call.host_raw["LogConfig"] = {"Type": value["driver"] or "", "Config": dict(value["options"])}


def _expect_ipc(value: str | None, ctx: Comparing) -> str | None:
    """Undeclared: the daemon's default-ipc-mode, `private` or `shareable` (Docker 20.10 from Debian: private)."""
    if value is not None:
        return value
    have = ctx.have.get("ipc")
    return have if have in runoptions.DAEMON_IPC_MODES else "private"


def _compare_security_opt(row: Field, want: Any, have: Any, ctx: Comparing) -> list[FieldChange]:
    """As a set; without the `label=disable` the engine adds (SELinux) to a container sharing the host's IPC or PID
    namespace or privileged (Docker 20.10 daemon/create.go, generateSecurityOpt), unless a `label` option is
    declared: it follows those fields, which are compared themselves."""
    if not any(opt.startswith("label=") for opt in want or []):
        have = [opt for opt in have or [] if opt != runoptions.LABEL_DISABLE] or None
    return as_set(row, want, have, ctx)


def _expect_stop_signal(value: str | None, ctx: Comparing) -> str | None:
    return value if value is not None else ctx.facts.defaults.stop_signal


def _expect_exposed(value: list[str] | None, ctx: Comparing) -> list[str] | None:
    """The engine exposes the declared ports, the image's EXPOSE and every published port."""
    published = [f"{p['containerPort']}/{p['protocol']}" for p in ctx.desired.spec["ports"]]
    return runoptions.exposed([*(value or []), *ctx.facts.defaults.exposed, *published])


def _write_expose(value: list[str] | None, call: CreateCall) -> None:
    if value:
        call.kwargs["ports"] = [*(call.kwargs.get("ports") or []), *runoptions.engine_ports(value)]


def _compare_platform(row: Field, want: str | None, have: Any, ctx: Comparing) -> list[FieldChange]:
    """Against the platform of the image the container runs (the engine keeps only the OS on the container)."""
    image = ctx.facts.defaults.platform
    if want is None or platform.matches(want, image):
        return []
    return [FieldChange(row.key, image or None, want, row.action, note="the image the container runs")]


# --- labels -----------------------------------------------------------------------------------------------------


def _read_labels(info: Mapping[str, Any], names: Mapping[str, str]) -> dict[str, str]:
    return {k: v for k, v in (_config(info).get("Labels") or {}).items() if not k.startswith(LABEL_PREFIX)}


def _expect_labels(value: Any, ctx: Comparing) -> dict[str, str]:
    # an image built by reconcile carries its own ownership labels; the container's are stamped over them
    return {**user_labels(ctx.facts.defaults.labels), **ctx.desired.resource.labels}


def _write_labels(value: Any, call: CreateCall) -> None:
    call.kwargs["labels"] = dict(call.labels)


# --- the table --------------------------------------------------------------------------------------------------

REPLACE, UPDATE, NONE = Action.REPLACE, Action.UPDATE, Action.NONE


def _run_option(key: str, **columns: Any) -> Field:
    """A run option's row: replaced when changed (the engine's update API changes none of them), hashed only
    when declared."""
    return Field(key, (f"spec.{key}",), action=REPLACE, hashed_when_set=True, **columns)


FIELDS: tuple[Field, ...] = (
    Field(
        **IMAGE.columns(),
        read=lambda info, names: canonical_reference(_config(info).get("Image") or ""),
        action=REPLACE,
        create=to_create("image"),
        after=_image_moved,
        follow=_follow_image,
        compose=("image",),
        doc="short form of the reference; the image ID behind it is compared too (`after`)",
    ),
    Field(
        **COMMAND.columns(),
        read=lambda info, names: list(_config(info).get("Cmd") or []),
        action=REPLACE,
        create=to_create("command"),
        expect=_expect_command,
        compose=("command",),
        doc="undeclared: the image's CMD, or none when an entrypoint is declared",
    ),
    Field(
        **ENTRYPOINT.columns(),
        read=lambda info, names: list(_config(info).get("Entrypoint") or []),
        action=REPLACE,
        create=to_create("entrypoint"),
        expect=_expect_entrypoint,
        compose=("entrypoint",),
    ),
    Field(
        **ENV.columns(),
        read=lambda info, names: env_dict(_config(info).get("Env")),
        action=REPLACE,
        create=_write_env,
        expect=lambda value, ctx: {**ctx.facts.defaults.env, **value},
        compare=_compare_env,
        compose=("environment", "env_file"),
        doc="env files under env; compared per name (`env.NAME`), sensitive values masked",
    ),
    Field(
        "ports",
        ("spec.ports",),
        normalize=_normalize_ports,
        read=_read_ports,
        action=REPLACE,
        create=_write_ports,
        compose=("ports",),
    ),
    Field(
        "mounts",
        ("spec.mounts",),
        normalize=_normalize_mounts,
        read=_read_mounts,
        action=REPLACE,
        create=_write_mounts,
        expect=lambda value, ctx: engine_mounts(value),
        show=_show_mounts,
        hash_form=engine_mounts,
        compose=("volumes", "tmpfs", "secrets", "configs"),
        doc="HostConfig.Mounts (anonymous image VOLUMEs are not there: never drift), and Binds / Tmpfs for the "
        "options only their strings carry (SELinux relabel, tmpfs exec: mountopts.py); allowSensitive is no state",
    ),
    Field(
        "networks",
        ("spec.networks",),
        normalize=_normalize_networks,
        read=_read_networks,
        action=UPDATE,
        create=_write_networks,
        update=InPlace(3, _network_steps, run=run_networks),
        compare=_compare_networks,
        compose=("networks",),
        doc="compared per network (`networks.NAME`); changed by disconnect / connect",
    ),
    Field(
        "networkMode",
        ("spec.networkMode", "spec.networks"),
        normalize=lambda n: n.spec.get("networkMode") or (None if n.spec.get("networks") else "bridge"),
        read=_read_network_mode,
        action=REPLACE,
        create=_write_network_mode,
        drifts=_namespace_pinned,
        follow=_follows_namespace("networkMode", "network"),
        compose=("network_mode",),
        doc="None when user networks are declared; `container:<id>` is read back as `container:<name>`",
    ),
    Field(
        "restartPolicy",
        ("spec.restartPolicy",),
        normalize=_normalize_restart,
        read=_read_restart,
        action=UPDATE,
        create=_write_restart,
        update=InPlace(2, lambda fields, desired: ["update restart policy in place"], body=_update_restart),
        compose=("restart", "deploy"),
    ),
    Field(
        "state",
        ("spec.state",),
        normalize=lambda n: n.spec.get("state", "running"),
        read=_read_state,
        action=UPDATE,
        update=InPlace(4, _state_steps, run=run_state),
        compare=_compare_state,
        doc="no part of the create call: the driver starts a container declared running after creating it; "
        "`completed` is met by an exit 0 (oneshot.py)",
    ),
    Field(
        "completionTimeout",
        ("spec.completionTimeout",),
        normalize=lambda n: (
            parse_duration(n.spec["completionTimeout"], "spec.completionTimeout")
            if n.spec.get("completionTimeout") is not None
            else oneshot.DEFAULT_COMPLETION_TIMEOUT_NS
        ),
        read=None,
        action=NONE,
        doc="how long apply waits for a `state: completed` container to exit, no engine state",
    ),
    Field(
        "healthcheck",
        ("spec.healthcheck",),
        normalize=_normalize_healthcheck,
        read=lambda info, names: health_spec(_config(info).get("Healthcheck")),
        action=REPLACE,
        create=_write_healthcheck,
        expect=or_image("healthcheck"),
        compose=("healthcheck",),
        doc="durations in nanoseconds, engine defaults filled in",
    ),
    Field(
        "resources",
        ("spec.resources",),
        normalize=_normalize_resources,
        read=_read_resources,
        action=UPDATE,
        create=_write_resources,
        update=InPlace(1, _resource_steps, body=_update_resources),
        expect=_expect_resources,
        compare=_compare_resources,
        compose=(
            "mem_limit",
            "mem_reservation",
            "memswap_limit",
            "cpus",
            "cpu_shares",
            "cpuset",
            "pids_limit",
            "deploy",
            "blkio_config",
        ),
        doc="compared per limit (`resources.memory`, see LIMITS); removing most limits is a replace",
    ),
    Field(
        **USER.columns(),
        read=lambda info, names: _config(info).get("User") or "",
        action=REPLACE,
        create=to_create("user"),
        expect=or_image("user"),
        compose=("user",),
    ),
    Field(
        **WORKING_DIR.columns(),
        read=lambda info, names: _config(info).get("WorkingDir") or "",
        action=REPLACE,
        create=to_create("working_dir"),
        expect=or_image("working_dir"),
        compose=("working_dir",),
    ),
    Field(
        **HOSTNAME.columns(),
        read=lambda info, names: _config(info).get("Hostname") or "",
        action=REPLACE,
        create=to_create("hostname"),
        # undeclared, the engine assigns one (the short ID, or the host's / other container's): never drift
        expect=lambda value, ctx: value if value is not None else ctx.have.get("hostname", ""),
        compose=("hostname",),
    ),
    Field(
        "capAdd",
        ("spec.capAdd",),
        normalize=lambda n: sorted({capability(c) for c in n.spec.get("capAdd") or []}),
        read=lambda info, names: sorted({capability(c) for c in _host(info).get("CapAdd") or []}),
        action=REPLACE,
        create=to_host("cap_add", empty_is_none=True),
        compare=as_set,
        compose=("cap_add",),
        doc="upper case without CAP_",
    ),
    Field(
        "capDrop",
        ("spec.capDrop",),
        normalize=lambda n: sorted({capability(c) for c in n.spec.get("capDrop") or []}),
        read=lambda info, names: sorted({capability(c) for c in _host(info).get("CapDrop") or []}),
        action=REPLACE,
        create=to_host("cap_drop", empty_is_none=True),
        compare=as_set,
        compose=("cap_drop",),
    ),
    Field(
        "privileged",
        ("spec.privileged",),
        normalize=lambda n: bool(n.spec.get("privileged", False)),
        read=lambda info, names: bool(_host(info).get("Privileged")),
        action=REPLACE,
        create=to_host("privileged"),
        compose=("privileged",),
    ),
    Field(
        "allowPrivileged",
        ("spec.allowPrivileged",),
        normalize=lambda n: bool(n.spec.get("allowPrivileged", False)),
        read=None,
        action=NONE,
        compose=("privileged",),
        doc="an opt-in the checks read, no engine state",
    ),
    Field(
        "readOnlyRootfs",
        ("spec.readOnlyRootfs",),
        normalize=lambda n: bool(n.spec.get("readOnlyRootfs", False)),
        read=lambda info, names: bool(_host(info).get("ReadonlyRootfs")),
        action=REPLACE,
        create=to_host("read_only"),
        compose=("read_only",),
    ),
    Field(
        "stopTimeout",
        ("spec.stopTimeout",),
        normalize=lambda n: int(n.spec.get("stopTimeout", DEFAULT_STOP_TIMEOUT)),
        read=lambda info, names: (
            DEFAULT_STOP_TIMEOUT if _config(info).get("StopTimeout") is None else int(_config(info)["StopTimeout"])
        ),
        action=REPLACE,
        create=to_create("stop_timeout"),
        compose=("stop_grace_period",),
    ),
    _run_option(
        "logging",
        normalize=_spec_value("logging", runoptions.logging),
        read=_from_host("LogConfig", runoptions.read_logging),
        create=_write_logging,
        expect=_expect_logging,
        compose=("logging",),
        doc="undeclared: the daemon's driver and options (never drift); option values are strings",
    ),
    _run_option(
        "ulimits",
        normalize=_spec_checked("ulimits", runoptions.ulimits),
        read=_from_host("Ulimits", runoptions.read_ulimits),
        create=to_host_raw("Ulimits", runoptions.engine_ulimits),
        compose=("ulimits",),
        doc="`{name: {soft, hard}}`; a single number is both",
    ),
    _run_option(
        "shmSize",
        normalize=lambda n: (
            parse_bytes(n.spec["shmSize"], "spec.shmSize") if n.spec.get("shmSize") is not None else None
        ),
        read=_from_host("ShmSize", runoptions.nonzero),
        create=to_host_raw("ShmSize"),
        expect=lambda value, ctx: value if value is not None else runoptions.DEFAULT_SHM_SIZE,
        show=shown_size,
        compose=("shm_size",),
        doc="bytes; undeclared: the engine's 64m",
    ),
    _run_option(
        "sysctls",
        normalize=_spec_value("sysctls", runoptions.sysctls),
        read=_from_host("Sysctls", runoptions.sysctls),
        create=to_host_raw("Sysctls"),
        compose=("sysctls",),
    ),
    _run_option(
        "init",
        normalize=lambda n: None if n.spec.get("init") is None else bool(n.spec["init"]),
        read=lambda info, names: _host(info).get("Init"),
        create=to_host_raw("Init"),
        compose=("init",),
        doc="true/false/None as the engine keeps it (None: the daemon's default)",
    ),
    _run_option(
        "securityOpt",
        opt_in=runoptions.security_opt_in,
        normalize=_spec_value("securityOpt", runoptions.security_opt),
        read=_from_host("SecurityOpt", runoptions.security_opt),
        create=to_host_raw("SecurityOpt"),
        compare=_compare_security_opt,
        compose=("security_opt",),
        doc="`name=value`, sorted; the engine adds label=disable beside host namespaces; unconfined ones need "
        "allowPrivileged",
    ),
    _run_option(
        "stopSignal",
        normalize=_spec_value("stopSignal", runoptions.stop_signal),
        read=_from_config("StopSignal", runoptions.stop_signal),
        create=to_create("stop_signal"),
        expect=_expect_stop_signal,
        compose=("stop_signal",),
        doc="`SIG` + upper-case name, or a number; undeclared: the image's STOPSIGNAL",
    ),
    _run_option(
        "extraHosts",
        normalize=_spec_value("extraHosts", runoptions.extra_hosts),
        read=_from_host("ExtraHosts", runoptions.extra_hosts),
        create=to_host_raw("ExtraHosts"),
        compose=("extra_hosts",),
        doc="`name:address`, sorted",
    ),
    _run_option(
        "dns",
        normalize=_spec_value("dns", runoptions.text_list),
        read=_from_host("Dns", runoptions.text_list),
        create=to_host_raw("Dns"),
        compose=("dns",),
        doc="in order (tried in order)",
    ),
    _run_option(
        "dnsSearch",
        normalize=_spec_value("dnsSearch", runoptions.text_list),
        read=_from_host("DnsSearch", runoptions.text_list),
        create=to_host_raw("DnsSearch"),
        compose=("dns_search",),
    ),
    _run_option(
        "dnsOptions",
        normalize=_spec_value("dnsOptions", runoptions.text_list),
        read=_from_host("DnsOptions", runoptions.text_list),
        create=to_host_raw("DnsOptions"),
        compose=("dns_opt",),
    ),
    _run_option(
        "groupAdd",
        normalize=_spec_value("groupAdd", runoptions.sorted_texts),
        read=_from_host("GroupAdd", runoptions.sorted_texts),
        create=to_host_raw("GroupAdd"),
        compose=("group_add",),
        doc="names or IDs as strings, sorted",
    ),
    _run_option(
        "oomScoreAdj",
        normalize=_spec_value("oomScoreAdj", runoptions.nonzero),
        read=_from_host("OomScoreAdj", runoptions.nonzero),
        create=to_host_raw("OomScoreAdj"),
        compose=("oom_score_adj",),
        doc="0 (the engine's default) is None",
    ),
    _run_option(
        "tty",
        normalize=_spec_value("tty", runoptions.true_or_none),
        read=_from_config("Tty", runoptions.true_or_none),
        create=to_create("tty"),
        compose=("tty",),
        doc="true or None (false is the engine's only value otherwise)",
    ),
    _run_option(
        "stdinOpen",
        normalize=_spec_value("stdinOpen", runoptions.true_or_none),
        read=_from_config("OpenStdin", runoptions.true_or_none),
        create=to_create("stdin_open"),
        compose=("stdin_open",),
    ),
    _run_option(
        "ipc",
        opt_in=runoptions.host_namespace_opt_in("IPC"),
        normalize=_spec_value("ipc", runoptions.mode),
        read=_read_namespace("IpcMode"),
        create=to_host_raw("IpcMode"),
        expect=_expect_ipc,
        drifts=_namespace_pinned,
        follow=_follows_namespace("ipc", "IPC"),
        compose=("ipc",),
        doc="undeclared: the daemon's default-ipc-mode (private or shareable); host needs allowPrivileged; "
        "`container:<id>` is read back as `container:<name>`",
    ),
    _run_option(
        "pid",
        opt_in=runoptions.host_namespace_opt_in("PID"),
        normalize=_spec_value("pid", runoptions.mode),
        read=_read_namespace("PidMode"),
        create=to_host_raw("PidMode"),
        drifts=_namespace_pinned,
        follow=_follows_namespace("pid", "PID"),
        compose=("pid",),
        doc="host needs allowPrivileged; `container:<id>` is read back as `container:<name>`",
    ),
    _run_option(
        "uts",
        normalize=_spec_value("uts", runoptions.mode),
        read=_from_host("UTSMode", runoptions.mode),
        create=to_host_raw("UTSMode"),
        compose=("uts",),
    ),
    _run_option(
        "expose",
        normalize=_spec_checked("expose", runoptions.expose),
        read=lambda info, names: runoptions.exposed(_config(info).get("ExposedPorts") or ()),
        create=_write_expose,
        expect=_expect_exposed,
        compose=("expose",),
        doc="`port/proto`, ranges expanded; the engine adds the image's EXPOSE and the published ports",
    ),
    _run_option(
        "devices",
        opt_in=lambda value: "it gives the container host devices" if value else None,
        normalize=_spec_value("devices", runoptions.devices),
        read=_from_host("Devices", runoptions.read_devices),
        create=to_host_raw("Devices", runoptions.engine_devices),
        compose=("devices",),
        doc="`host:container:permissions`, sorted; needs allowPrivileged",
    ),
    _run_option(
        "deviceCgroupRules",
        opt_in=lambda value: "it gives the container access to host devices" if value else None,
        normalize=_spec_value("deviceCgroupRules", runoptions.sorted_texts),
        read=_from_host("DeviceCgroupRules", runoptions.sorted_texts),
        create=to_host_raw("DeviceCgroupRules"),
        compose=("device_cgroup_rules",),
        doc="sorted; needs allowPrivileged",
    ),
    _run_option(
        "gpus",
        normalize=_spec_value("gpus", runoptions.gpus),
        read=_from_host("DeviceRequests", runoptions.read_gpus),
        create=to_host_raw("DeviceRequests", runoptions.engine_gpus),
        compose=("gpus",),
        doc="the engine's device requests: count -1 is all, capabilities one set",
    ),
    _run_option(
        "macAddress",
        normalize=_spec_value("macAddress", runoptions.lower),
        read=_from_config("MacAddress", runoptions.lower),
        create=to_create("mac_address"),
        compose=("mac_address",),
        doc="lower case; undeclared: assigned by the engine (not in Config, never drift)",
    ),
    _run_option(
        "runtime",
        opt_in=runoptions.runtime_opt_in,
        normalize=_spec_value("runtime", runoptions.mode),
        read=_from_host("Runtime", runoptions.mode),
        create=to_host_raw("Runtime"),
        expect=lambda value, ctx: value if value is not None else ctx.have.get("runtime"),
        compose=("runtime",),
        doc="undeclared: the daemon's default runtime (never drift); another than runc needs allowPrivileged",
    ),
    _run_option(
        "cgroupParent",
        normalize=_spec_value("cgroupParent", runoptions.mode),
        read=_from_host("CgroupParent", runoptions.mode),
        create=to_host_raw("CgroupParent"),
        compose=("cgroup_parent",),
    ),
    _run_option(
        "platform",
        normalize=_spec_value("platform", platform.platform),
        read=lambda info, names: None,  # the image's, compared by _compare_platform
        create=to_create("platform"),
        compare=_compare_platform,
        compose=("platform",),
        doc="`os/arch[/variant]`, lower case; read back from the image the container runs (declared parts compared)",
    ),
    Field(
        "dependsOn",
        ("spec.dependsOn",),
        normalize=_normalize_depends_on,
        read=None,
        action=NONE,
        compose=("depends_on",),
        doc="ordering and waits before a start, no engine state",
    ),
    Field(
        "sensitiveEnv",
        ("spec.sensitiveEnv",),
        normalize=lambda n: sorted(n.spec.get("sensitiveEnv") or []),
        read=None,
        action=NONE,
        compose=("environment",),
        doc="which env names are masked (stamped as a label by the driver), no engine state",
    ),
    Field(
        "labels",
        ("metadata.labels",),
        normalize=None,
        read=_read_labels,
        action=REPLACE,
        create=_write_labels,
        expect=_expect_labels,
        compose=("labels",),
        doc="hashed with the spec (spec_hash takes the labels); the engine's are the image's plus the declared",
    ),
)
BY_KEY = {row.key: row for row in FIELDS}
# In-place fields in the order their changes are made (one update call first, then reconnects, then start/stop).
IN_PLACE = tuple(sorted((row for row in FIELDS if row.update), key=lambda row: row.update.order if row.update else 0))
# Engine state that is set otherwise than by the create call's arguments.
NOT_CREATED = {"state": "the driver starts the new container after the create call when it is declared running"}
# Manifest keys that are no field of the canonical spec.
NOT_FIELDS = {
    "metadata.name": "the container's name: its identity, not a setting (renamed back in place)",
    "spec.hosts": "placement: which Hosts get the object; reconciler.core.placement reads it and removes it from "
    "the spec before the driver normalizes",
}


def in_place_body(spec: Mapping[str, Any], changed: Mapping[str, list[str]]) -> dict[str, Any]:
    """The `POST /containers/{id}/update` body for the in-place fields in `changed` (field key -> the changed
    keys under it, e.g. `resources` -> [`memory`])."""
    body: dict[str, Any] = {}
    for row in IN_PLACE:
        assert row.update is not None
        if row.update.body is not None and row.key in changed:
            row.update.body(spec[row.key], list(changed[row.key]), body)
    return body
