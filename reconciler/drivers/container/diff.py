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

from reconciler.drivers.container.fields import BY_KEY, FIELDS, IN_PLACE, Comparing, dependency_waits
from reconciler.drivers.container.observe import ContainerFacts
from reconciler.drivers.container.spec import aside_name
from reconciler.model import LABEL_NAME, Action, Change, Desired, FieldChange, Observed, Step
from reconciler.spechash import NORMALIZER_VERSION, hash_version

KIND = "Container"


def expected_spec(desired: Desired, observed_spec: Mapping[str, Any], facts: ContainerFacts) -> dict[str, Any]:
    """The observed spec this container should have: declared values, and engine/image defaults elsewhere (each
    engine-state field's `expect`)."""
    ctx = Comparing(desired, observed_spec, facts)
    return {row.key: row.expect(desired.spec.get(row.key), ctx) for row in FIELDS if row.read is not None}


def field_changes(desired: Desired, observed: Observed, facts: ContainerFacts, full: bool) -> list[FieldChange]:
    """Every differing field, each named by its row's comparator; `full` compares every engine-state field,
    otherwise only what can drift by hand (the in-place fields, and fields whose `drifts` says so)."""
    ctx = Comparing(desired, observed.spec, facts, observed.labels)
    want = expected_spec(desired, observed.spec, facts)
    have = observed.spec
    if full:
        keys = sorted(want)
    else:
        keys = sorted(row.key for row in FIELDS if row.action is Action.UPDATE)
        keys += [row.key for row in FIELDS if row.drifts is not None and row.drifts(want[row.key])]
    changes: list[FieldChange] = []
    for key in keys:
        row = BY_KEY[key]
        changes += row.compare(row, want[key], have.get(key), ctx)
    for row in FIELDS:
        if row.after is not None:
            changes += row.after(changes, ctx)
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
    waits = dependency_waits(desired)
    start = desired.spec["state"] == "running"
    create, starting = Step(f"create {name}", "create"), [Step(f"start {name}", "start")] if start else []
    if action is Action.CREATE:
        return [*waits, create, *starting]
    discard = [] if facts is None or facts.discard is None else [discard_step(name, facts.discard)]
    if action is Action.REPLACE:
        assert facts is not None
        old, aside = facts.engine_name, aside_name(name)
        stop = Step(f"stop {old}", "stop-old")
        parked = [stop] if facts.aside else [stop, Step(f"rename {old} to {aside}", "park")]
        drop = Step(f"remove {aside} (on failure: remove the new one, restore the old one)", "drop-old")
        return [*waits, *discard, *parked, create, *starting, drop]
    steps: list[str] = [*discard, *(f"rename {f.old} to {f.new}" for f in fields if f.path == "name")]
    for row in IN_PLACE:
        assert row.update is not None
        mine = row.changes_of(fields)
        if mine:
            steps += row.update.steps(mine, desired)
    return steps


def discard_step(name: str, cid: str) -> Step:
    """Removing the new container an interrupted replace created and never ran, before the parked one is back."""
    return Step(f"remove {name} ({cid[:12]}, created by an interrupted replace, never ran)", "discard", cid)


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
    steps = (Step(f"stop {name}", "stop"), Step(f"remove {name} (its volumes are kept)", "remove"))
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
    """Revise an existing container's change for what happens upstream first: a Volume it mounts is replaced (it
    is created again), or a field's `follow` asks for a replace (an Image it uses is rebuilt or re-pulled; the
    container whose network namespace it shares is replaced)."""
    if change.observed is None or change.desired is None or change.action is Action.DELETE:
        return change
    recreated = _on_replaced_volume(change, upstream)
    if recreated is not None:
        return recreated
    if change.action not in (Action.NONE, Action.UPDATE):
        return change
    # each field whose upstream may change under it says so (the image rebuilt, the namespace's container replaced)
    extra = [f for row in FIELDS if row.follow is not None for f in row.follow(change.desired.spec, upstream)]
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
