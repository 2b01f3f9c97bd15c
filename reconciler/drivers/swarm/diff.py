"""Desired x observed service -> one Change, field by field, saying which changes roll tasks.

Pure: both sides are in the canonical shape (spec.py / observe.py); each field is compared as its row in
fields.FIELDS says. A service is never replaced except when its
mode changes (the engine refuses to turn a replicated service into a global one): every other difference is one
`update` of the service, whose fields are marked "rolls tasks" (task template, ports) or "no task restart"
(replicas, labels, update/rollback config).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from reconciler.drivers.swarm.fields import BY_KEY, FIELDS, NO_ROLL, ROLLS, note_for
from reconciler.drivers.swarm.observe import ServiceFacts
from reconciler.model import Action, Change, Desired, FieldChange, Observed

KIND = "Service"

# Not fields of the spec: where the service stands. A plan shows them so that a service whose update is still
# in flight, paused or rolling back, or that runs fewer tasks than it wants, is never "in sync"; apply waits for
# (or rolls back) what it finds, under the rules of its own updates (apply.ServiceSteps).
ROLLOUT = "rollout"
TASKS = "tasks"
MARKERS = frozenset({ROLLOUT, TASKS})
IN_FLIGHT = frozenset({"updating", "rollback_started"})
STALLED = frozenset({"paused", "rollback_paused"})
_ROLLOUT_NOTES = {
    "updating": "an update is in flight (an interrupted apply's, or one made by hand): apply waits for it as for "
    "its own, and rolls it back if it fails",
    "rollback_started": "a rollback is in flight: apply waits for it to finish (and fails: the update was rolled back)",
    "paused": "the update is paused: apply rolls it back to the previous spec (and fails)",
    "rollback_paused": "the rollback is paused: neither the declared nor the previous spec runs",
}


def sends_update(change: Change) -> bool:
    """The change sends the service a new spec (so its previous spec becomes the current one)."""
    if change.action is Action.REPLACE:
        return True
    return change.action is Action.UPDATE and any(f.path not in MARKERS for f in change.fields)


def standing(facts: ServiceFacts, fields: list[FieldChange]) -> list[FieldChange]:
    """The markers for where the service stands: an update in flight or stalled, or tasks missing (only when no
    field changes: the update that change sends is waited for anyway)."""
    state = facts.update_state or ""
    if state in IN_FLIGHT or state in STALLED:
        why = f": {facts.update_message}" if facts.update_message else ""
        return [FieldChange(ROLLOUT, state, "completed", Action.UPDATE, note=f"{_ROLLOUT_NOTES[state]}{why}")]
    if facts.tasks is None or any(f.path == "replicas" for f in fields) or fields:
        return []
    running, wanted = facts.tasks
    if running >= wanted:
        return []
    return [
        FieldChange(
            TASKS,
            f"{running}/{wanted} running",
            f"{wanted}/{wanted} running",
            Action.UPDATE,
            note=f"{NO_ROLL}; apply waits until they run",
        )
    ]


def expected_spec(desired: Desired, observed_spec: Mapping[str, Any]) -> dict[str, Any]:
    """The observed spec this service should have: each field's declared value as the engine reports it (a
    published port ingress chose, when the manifest gives none, taken as observed); the labels declared."""
    want = {}
    for row in FIELDS:
        value = desired.spec[row.key] if row.normalize is not None else dict(desired.resource.labels)
        want[row.key] = row.expect(value, observed_spec)
    return want


def field_changes(desired: Desired, observed: Observed) -> list[FieldChange]:
    """Field by field (in key order), each compared as its row says and marked as rolling tasks or not."""
    want = expected_spec(desired, observed.spec)
    have = observed.spec
    changes: list[FieldChange] = []
    for key in sorted(want):
        row = BY_KEY[key]
        changes += row.compare(row, want[key], have.get(key), desired, note_for(row))
    return changes


def digest_change(desired: Desired, observed: Observed, resolved: str | None) -> FieldChange | None:
    """The tag now names another digest in the registry than the one the service runs (found at observe)."""
    facts = observed.raw
    if resolved is None or not isinstance(facts, ServiceFacts) or facts.image_digest in (None, resolved):
        return None
    if "@" in desired.spec["image"] or observed.spec.get("image") != desired.spec["image"]:
        return None
    ref = desired.spec["image"]
    return FieldChange(
        "image",
        f"{ref}@{facts.image_digest}",
        f"{ref}@{resolved}",
        Action.UPDATE,
        note=f"{ROLLS}; the registry's digest for this tag moved",
    )


_FOUND_STEPS = {
    "updating": "wait for the update in flight to converge; on failure roll it back to the previous spec",
    "rollback_started": "wait for the rollback in flight to finish",
    "paused": "roll the paused update back to the previous spec",
    "rollback_paused": "report the paused rollback",
}


def found_steps(fields: list[FieldChange], wait: bool) -> list[str]:
    """What apply does about where the service stands (the MARKERS fields) before any update of its own."""
    steps = []
    for f in fields:
        if f.path == ROLLOUT:
            steps.append(_FOUND_STEPS[str(f.old)] if wait else f"leave the {f.old} update alone (--no-wait)")
        elif f.path == TASKS and wait:
            steps.append("wait until every task runs (and is healthy)")
    return steps


def steps_for(action: Action, desired: Desired, fields: list[FieldChange], wait: bool) -> list[str]:
    name = desired.name
    found = found_steps(fields, wait) if action is Action.UPDATE else []
    fields = [f for f in fields if f.path not in MARKERS]
    if action is Action.UPDATE and not fields:
        return found
    rolling = any(f.note.startswith(ROLLS) for f in fields)
    image = desired.spec["image"]
    resolve = [] if "@" in image else [f"resolve {image} to a digest in its registry"]
    order = desired.spec["update"]["order"]
    par = desired.spec["update"]["parallelism"]
    waited = (
        ["wait until every task runs (and is healthy) on the new spec; on failure roll back to the previous spec"]
        if wait
        else []
    )
    if action is Action.CREATE:
        return [*resolve, f"create service {name}", *(["wait until every task runs (and is healthy)"] if wait else [])]
    if action is Action.REPLACE:
        return [
            *resolve,
            f"remove service {name}",
            f"create service {name}",
            *(["wait until every task runs (and is healthy)"] if wait else []),
        ]
    if rolling:
        return [
            *found,
            *(resolve if any(f.path == "image" for f in fields) else []),
            f"update service {name}: rolls its tasks {order}, {par or 'all'} at a time",
            *waited,
        ]
    scaled = any(f.path == "replicas" for f in fields)
    return [
        *found,
        f"update service {name} (no task restarts)",
        *(["wait until the new replica count runs"] if wait and scaled else []),
    ]


def diff_service(desired: Desired, observed: Observed | None, resolved: str | None, wait: bool) -> Change:
    """The one change that brings `observed` to `desired`; `resolved` is the registry's digest for the tag now
    (None when unknown: then only the reference is compared)."""
    if observed is None:
        return Change(
            KIND, desired.name, Action.CREATE, desired=desired, steps=tuple(steps_for(Action.CREATE, desired, [], wait))
        )
    fields = field_changes(desired, observed)
    if not any(f.path == "image" for f in fields):
        moved = digest_change(desired, observed, resolved)
        if moved is not None:
            fields.append(moved)
    if isinstance(observed.raw, ServiceFacts) and not any(f.action is Action.REPLACE for f in fields):
        fields += standing(observed.raw, fields)
    action = (
        Action.REPLACE if any(f.action is Action.REPLACE for f in fields) else Action.UPDATE if fields else Action.NONE
    )
    steps = steps_for(action, desired, fields, wait) if action is not Action.NONE else []
    return Change(KIND, desired.name, action, tuple(fields), desired, observed, steps=tuple(steps))


def with_data_versions(change: Change, wanted: Mapping[str, Mapping[str, str]], wait: bool = True) -> Change:
    """Add a rolling field per Secret/Config whose version in use is not the one the plan wants.

    `wanted`: "secrets"/"configs" -> declared name -> engine name of the version to use."""
    if change.desired is None or change.observed is None or change.action is Action.DELETE:
        return change
    facts = change.observed.raw
    if not isinstance(facts, ServiceFacts):
        return change
    extra = []
    for key, in_use in (("secrets", facts.secret_versions), ("configs", facts.config_versions)):
        for name, engine in sorted(wanted.get(key, {}).items()):
            if name in in_use and in_use[name] != engine:
                extra.append(
                    FieldChange(
                        f"{key}.{name}",
                        in_use[name],
                        engine,
                        Action.UPDATE,
                        note=f"{ROLLS}; the {key[:-1]}'s content changed: the service is pointed at the new version",
                    )
                )
    if not extra:
        return change
    fields = (*change.fields, *extra)
    action = change.action if change.action is not Action.NONE else Action.UPDATE
    steps = change.steps if action is Action.REPLACE else tuple(steps_for(action, change.desired, list(fields), wait))
    return Change(
        change.kind, change.name, action, fields, change.desired, change.observed, steps=steps, notes=change.notes
    )


IMAGE_FOLLOW = f"{ROLLS}; the image is built or pulled first: pinned to its digest again (no update if unchanged)"


def follow_image(change: Change, upstream: list[Change], wait: bool = True) -> Change:
    """A pending build or pull of the Image this service runs (CREATE/REPLACE): the service is updated after it,
    so its tasks run the new digest."""
    if change.desired is None or change.observed is None or change.action in (Action.DELETE, Action.REPLACE):
        return change
    if any(f.path == "image" for f in change.fields):
        return change
    if not any(u.kind == "Image" and u.pending and u.action in (Action.CREATE, Action.REPLACE) for u in upstream):
        return change
    ref = change.desired.spec["image"]
    fields = (*change.fields, FieldChange("image", ref, ref, Action.UPDATE, note=IMAGE_FOLLOW))
    steps = tuple(steps_for(Action.UPDATE, change.desired, list(fields), wait))
    return Change(
        change.kind,
        change.name,
        Action.UPDATE,
        fields,
        change.desired,
        change.observed,
        steps=steps,
        notes=change.notes,
    )


def prune_service(observed: Observed) -> Change:
    return Change(
        KIND,
        observed.name,
        Action.DELETE,
        observed=observed,
        steps=(f"remove service {observed.name}", "wait until its tasks are gone"),
    )
