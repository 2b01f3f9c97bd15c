"""Desired x observed container -> one Change, naming each changed field once, with the least disruptive action.

Pure: works on the canonical desired spec, the observed spec and the ContainerFacts beside it.

Two modes (see docs/containers.md):
- the stamped spec hash equals the desired one (same normalizer version): the immutable configuration is what
  the manifest says, so only what can drift by hand is compared (resources, restart policy, networks, running
  state, the image behind the tag);
- otherwise every field is compared, each undeclared one against what the engine fills in (image defaults), so an
  unchanged manifest never shows a change even after a normalizer upgrade.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from reconciler.drivers.container.observe import ContainerFacts
from reconciler.drivers.container.spec import LABEL_SENSITIVE_ENV, aside_name
from reconciler.drivers.engine.common import user_labels
from reconciler.model import LABEL_NAME, Action, Change, Desired, FieldChange, Observed
from reconciler.spechash import NORMALIZER_VERSION, hash_version

KIND = "Container"
IN_PLACE = ("resources", "restartPolicy", "networks", "state")
# Removing one of these limits cannot be done in place: the update API ignores zero values.
NOT_REMOVABLE_IN_PLACE = ("memory", "memoryReservation", "cpus", "cpuShares")
IMAGE_MOVED = "the image behind the reference changed"
IMAGE_FOLLOW = "the image is being rebuilt or re-pulled; replaced only if its ID changes"


def expected_spec(desired: Desired, observed_spec: Mapping[str, Any], facts: ContainerFacts) -> dict[str, Any]:
    """The observed spec this container should have: declared values, and engine/image defaults elsewhere."""
    spec = desired.spec
    image = facts.defaults
    entrypoint = spec["entrypoint"]
    if spec["command"] is not None:
        command = spec["command"]
    elif entrypoint is not None:
        command = []  # the engine drops the image's CMD when the entrypoint is overridden
    else:
        command = list(image.command)
    mode = spec["networkMode"]
    hostname = spec["hostname"]
    if hostname is None:
        # the engine assigns one (the short ID, or the host's / other container's): never drift
        hostname = observed_spec.get("hostname", "")
    resources = dict(spec["resources"])
    if resources["memorySwap"] is None and resources["memory"] is not None:
        resources["memorySwap"] = 2 * resources["memory"]  # the engine's default
    return {
        "image": spec["image"],
        "command": command,
        "entrypoint": list(entrypoint) if entrypoint is not None else list(image.entrypoint),
        "env": {**image.env, **spec["env"]},
        "ports": spec["ports"],
        "mounts": [{k: v for k, v in m.items() if k != "allowSensitive"} for m in spec["mounts"]],
        "networks": spec["networks"],
        "networkMode": mode,
        "restartPolicy": spec["restartPolicy"],
        "state": spec["state"],
        "healthcheck": spec["healthcheck"] if spec["healthcheck"] is not None else image.healthcheck,
        "resources": resources,
        "user": spec["user"] if spec["user"] is not None else image.user,
        "workingDir": spec["workingDir"] if spec["workingDir"] is not None else image.working_dir,
        "hostname": hostname,
        "capAdd": spec["capAdd"],
        "capDrop": spec["capDrop"],
        "privileged": spec["privileged"],
        "readOnlyRootfs": spec["readOnlyRootfs"],
        "stopTimeout": spec["stopTimeout"],
        # an image built by reconcile carries its own ownership labels; the container's are stamped over them
        "labels": {**user_labels(image.labels), **desired.resource.labels},
    }


def shown_old_env(desired: Desired, observed: Observed, facts: ContainerFacts) -> frozenset[str]:
    """The env names whose OBSERVED value may be printed: declared in plain `env` now (and not recorded as
    sensitive when the container was created), or still the image's own value. Anything else may have come from
    an env file or a sensitiveEnv entry since removed from the manifest: never shown."""
    recorded = set(filter(None, observed.labels.get(LABEL_SENSITIVE_ENV, "").split(",")))
    plain = {str(k) for k in desired.resource.spec.get("env") or {}}
    plain -= {p.removeprefix("env.") for p in desired.sensitive}
    have = observed.spec.get("env") or {}
    image = facts.defaults.env
    shown = {k for k in have if k not in recorded and (k in plain or (k in image and image[k] == have[k]))}
    return frozenset(shown)


def _env_changes(
    want: Mapping[str, str], have: Mapping[str, str], sensitive: frozenset[str], shown_old: frozenset[str]
) -> list[FieldChange]:
    """One REPLACE per differing name; sensitive when either side's value must not be shown (one flag masks both)."""
    changes = []
    for key in sorted(set(want) | set(have)):
        if want.get(key) != have.get(key):
            path = f"env.{key}"
            secret = path in sensitive or (key in have and key not in shown_old)
            changes.append(FieldChange(path, have.get(key), want.get(key), Action.REPLACE, sensitive=secret))
    return changes


def _resource_changes(want: Mapping[str, Any], have: Mapping[str, Any], swap_declared: bool) -> list[FieldChange]:
    changes = []
    memory_changes = want.get("memory") != have.get("memory")
    for key in sorted(set(want) | set(have)):
        new, old = want.get(key), have.get(key)
        if new == old:
            continue
        if key == "memorySwap" and not swap_declared and memory_changes:
            continue  # follows memory (twice it): one change, named by the field the user changed
        removing = new is None and old is not None
        if removing and key in NOT_REMOVABLE_IN_PLACE:
            changes.append(
                FieldChange(
                    f"resources.{key}",
                    _cpus(old) if key == "cpus" else _size(old) if key in BYTE_SIZED else old,
                    None,
                    Action.REPLACE,
                    note="the engine cannot remove a limit in place",
                )
            )
        elif key == "cpus":  # kept as NanoCpus; shown as CPUs, as written
            changes.append(FieldChange("resources.cpus", _cpus(old), _cpus(new), Action.UPDATE))
        elif key in BYTE_SIZED:  # kept in bytes; shown in the units people write
            changes.append(FieldChange(f"resources.{key}", _size(old), _size(new), Action.UPDATE))
        else:
            changes.append(FieldChange(f"resources.{key}", old, new, Action.UPDATE))
    return changes


BYTE_SIZED = frozenset({"memory", "memorySwap", "memoryReservation"})


def _size(value: Any) -> Any:
    """Bytes as `64m`-style text when a binary unit divides them exactly (-1, unlimited swap, stays -1)."""
    if not isinstance(value, int) or value <= 0:
        return value
    for unit, factor in (("g", 1024**3), ("m", 1024**2), ("k", 1024)):
        if value % factor == 0:
            return f"{value // factor}{unit}"
    return value


def _shown_mounts(mounts: list[Mapping[str, Any]]) -> list[dict[str, Any]]:
    return [{**m, "size": _size(m["size"])} if m.get("size") is not None else dict(m) for m in mounts]


def _cpus(nano: int | None) -> float | None:
    return None if nano is None else nano / 1e9


def _network_changes(
    want: list[Mapping[str, Any]], have: list[Mapping[str, Any]], implicit: frozenset[str]
) -> list[FieldChange]:
    """Per network: membership, aliases, static address. `implicit` aliases are the engine's own (the hostname)."""
    wanted = {n["name"]: dict(n) for n in want}
    had = {n["name"]: dict(n) for n in have}
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


def field_changes(desired: Desired, observed: Observed, facts: ContainerFacts, full: bool) -> list[FieldChange]:
    """Every differing field; `full` compares the whole spec, otherwise only what can drift by hand."""
    want = expected_spec(desired, observed.spec, facts)
    have = observed.spec
    changes: list[FieldChange] = []
    keys = sorted(want) if full else sorted(IN_PLACE)
    if not full and str(want["networkMode"]).startswith("container:"):
        keys.append("networkMode")  # the engine pins the namespace by container ID: replaced target = change
    for key in keys:
        new, old = want[key], have.get(key)
        if key == "env":
            changes += _env_changes(new, old or {}, desired.sensitive, shown_old_env(desired, observed, facts))
        elif key == "resources":
            changes += _resource_changes(new, old or {}, desired.spec["resources"]["memorySwap"] is not None)
        elif key == "networks":
            changes += _network_changes(new, old or [], frozenset({have.get("hostname") or ""}))
        elif key == "mounts" and new != old:  # tmpfs sizes are kept in bytes; shown like memory (`64m`)
            changes.append(FieldChange(key, _shown_mounts(old or []), _shown_mounts(new), Action.REPLACE))
        elif new != old:
            action = Action.UPDATE if key in IN_PLACE else Action.REPLACE
            changes.append(FieldChange(key, old, new, action))
    image_changed = any(c.path == "image" for c in changes)
    if not image_changed and facts.current_image_id and facts.current_image_id != facts.image_id:
        changes.append(FieldChange("image", facts.image_id, facts.current_image_id, Action.REPLACE, note=IMAGE_MOVED))
    if facts.aside or facts.renamed:
        note = (
            "an earlier replace was interrupted: give the container its name back"
            if facts.aside
            else "renamed on the engine: give the container its name back"
        )
        changes.insert(0, FieldChange("name", facts.engine_name, desired.name, Action.UPDATE, note=note))
    return changes


def needs_full_comparison(desired: Desired, observed: Observed) -> bool:
    stamped = observed.spec_hash
    return stamped != desired.spec_hash or hash_version(stamped) != NORMALIZER_VERSION


def steps_for(action: Action, desired: Desired, fields: list[FieldChange], facts: ContainerFacts | None) -> list[str]:
    """The engine operations a change will make, in order, as shown in the plan."""
    name = desired.name
    waits = [f"wait for container {d['name']} to be {d['condition']}" for d in desired.spec["dependsOn"]]
    start = desired.spec["state"] == "running"
    if action is Action.CREATE:
        return [*waits, f"create {name}", *([f"start {name}"] if start else [])]
    if action is Action.REPLACE:
        assert facts is not None
        old = facts.engine_name
        parked = [f"stop {old}"] if facts.aside else [f"stop {old}", f"rename {old} to {aside_name(name)}"]
        return [
            *waits,
            *parked,
            f"create {name}",
            *([f"start {name}"] if start else []),
            f"remove {aside_name(name)} (on failure: remove the new one, restore the old one)",
        ]
    steps = []
    for f in fields:
        if f.path == "name":
            steps.append(f"rename {f.old} to {f.new}")
    resources = [f.path.split(".", 1)[1] for f in fields if f.path.startswith("resources.")]
    if resources:
        steps.append(f"update {', '.join(resources)} in place")
    if any(f.path == "restartPolicy" for f in fields):
        steps.append("update restart policy in place")
    for f in fields:
        if f.path.startswith("networks."):
            net = f.path.split(".", 1)[1]
            if f.new is None:
                steps.append(f"disconnect from network {net}")
            elif f.old is None:
                steps.append(f"connect to network {net}")
            else:
                steps.append(f"reconnect to network {net}")
    for f in fields:
        if f.path == "state" and f.old == "paused":
            steps += [f"unpause {name}", *([f"stop {name}"] if f.new == "stopped" else [])]
        elif f.path == "state":
            steps += [*waits, f"start {name}"] if f.new == "running" else [f"stop {name}"]
    return steps


def diff_container(desired: Desired, observed: Observed | None) -> Change:
    """The one change that brings `observed` to `desired`."""
    if observed is None:
        return Change(
            KIND, desired.name, Action.CREATE, desired=desired, steps=tuple(steps_for(Action.CREATE, desired, [], None))
        )
    facts = observed.raw
    assert isinstance(facts, ContainerFacts)
    fields = field_changes(desired, observed, facts, needs_full_comparison(desired, observed))
    action = (
        Action.REPLACE
        if any(f.action is Action.REPLACE for f in fields)
        else (Action.UPDATE if fields else Action.NONE)
    )
    steps = steps_for(action, desired, fields, facts) if action is not Action.NONE else []
    return Change(KIND, desired.name, action, tuple(fields), desired, observed, steps=tuple(steps))


def leftover_of(observed: Observed) -> str | None:
    """The container whose interrupted replace left `observed` parked aside while it holds its name again."""
    label = observed.labels.get(LABEL_NAME)
    engine = observed.raw.engine_name if isinstance(observed.raw, ContainerFacts) else observed.name
    if label and engine == aside_name(label) and observed.name == engine:
        return label
    return None


def prune_container(observed: Observed) -> Change:
    """An owned container whose manifest is gone (or a leftover aside container): stop and remove it."""
    name = observed.raw.engine_name if isinstance(observed.raw, ContainerFacts) else observed.name
    steps = (f"stop {name}", f"remove {name} (its volumes are kept)")
    primary = leftover_of(observed)
    notes = (f"leftover of an interrupted replace of {primary}, which holds its name again",) if primary else ()
    return Change(KIND, observed.name, Action.DELETE, observed=observed, steps=steps, notes=notes)


def _on_replaced_volume(change: Change, upstream: list[Change]) -> Change | None:
    """A volume it mounts is replaced: the Volume driver removes the project's containers on it first (the
    engine refuses to remove a volume in use), so this container is created again afterwards, on the new one."""
    assert change.desired is not None
    mounted = {m["source"] for m in change.desired.spec["mounts"] if m["type"] == "volume"}
    replaced = sorted(
        u.name
        for u in upstream
        if u.kind == "Volume" and u.action is Action.REPLACE and u.pending and u.name in mounted
    )
    if not replaced:
        return None
    note = f"volume {replaced[0]} is replaced: the container is removed with it and created again on the new one"
    field = FieldChange("mounts", replaced[0], replaced[0], Action.REPLACE, note=note)
    steps = steps_for(Action.CREATE, change.desired, [field], None)
    return Change(
        KIND, change.name, Action.CREATE, (field,), change.desired, None, steps=tuple(steps), notes=change.notes
    )


def follow_upstream(change: Change, upstream: list[Change]) -> Change:
    """Revise an existing container's change for what happens upstream first: an Image it uses is rebuilt or
    re-pulled, or the container whose network namespace it shares (`networkMode: container:<name>`) is replaced
    (the engine pins the namespace by container ID). Either way this container is replaced afterwards."""
    if change.observed is None or change.desired is None or change.action is Action.DELETE:
        return change
    recreated = _on_replaced_volume(change, upstream)
    if recreated is not None:
        return recreated
    if change.action not in (Action.NONE, Action.UPDATE):
        return change
    extra: list[FieldChange] = []
    # only a build or a pull can move the image ID; a push or a tag clean-up (UPDATE) leaves the container be
    if any(u.kind == "Image" and u.pending and u.action in (Action.CREATE, Action.REPLACE) for u in upstream):
        ref = change.desired.spec["image"]
        extra.append(FieldChange("image", ref, ref, Action.REPLACE, note=IMAGE_FOLLOW))
    mode = str(change.desired.spec["networkMode"])
    target = mode.partition(":")[2] if mode.startswith("container:") else None
    if any(u.kind == KIND and u.name == target and u.action is Action.REPLACE and u.pending for u in upstream):
        note = f"container {target} is replaced; its network namespace goes with it"
        extra.append(FieldChange("networkMode", mode, mode, Action.REPLACE, note=note))
    if not extra:
        return change
    fields = (*change.fields, *extra)
    facts = change.observed.raw
    steps = steps_for(
        Action.REPLACE, change.desired, list(fields), facts if isinstance(facts, ContainerFacts) else None
    )
    return Change(
        change.kind,
        change.name,
        Action.REPLACE,
        fields,
        change.desired,
        change.observed,
        steps=tuple(steps),
        notes=change.notes,
    )
