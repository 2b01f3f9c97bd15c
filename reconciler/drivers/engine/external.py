"""External volumes and networks (`spec.external: true`, Compose's `external: true`): objects made outside the
project that its containers use. Each must exist when the plan is made (its absence stops the plan: one error line
naming the manifest's file:line, exit 1, nothing changed); reconcile never creates, changes, labels, adopts or
removes one. The Volume and Network drivers route a declared external object through here.

The planner refuses a declared name held by an object the project does not own; an external object is not
claimed but used, so it is observed as the project's (the labels the planner reads) with the one spec field
`external`, and diffed to nothing. It is never in a listing of the project's objects, so it is never pruned.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from reconciler.drivers.engine.adoption import as_owned
from reconciler.errors import Problem, ValidationFailed
from reconciler.model import Action, Change, Desired, Observed, Resource

# what an external object's manifest may say besides `external` (placement, read before the driver normalizes)
ALLOWED = frozenset({"external", "hosts"})


def is_external(desired: Desired | Resource) -> bool:
    return bool((desired.spec or {}).get("external"))


def problems(resource: Resource) -> Iterable[tuple[str, str]]:
    """An external object is described by whoever made it: no other spec field, no labels (never written)."""
    kind = resource.kind.lower()
    for key in sorted(set(resource.spec or {}) - ALLOWED):
        yield f"spec.{key}", f"an external {kind} is not reconcile's to configure: `external: true` takes no {key}"
    if resource.labels:
        yield "metadata.labels", f"an external {kind} is never labelled by reconcile: drop metadata.labels"


def observed(kind: str, name: str, project: str, obj: Mapping[str, Any], object_id: str) -> Observed:
    """The engine's object of a declared external name, as the planner must see it: used by the project (its
    labels say the project's, never written to the engine), spec `{external: true}`."""
    labels = as_owned(obj.get("Labels") or {}, kind, name, project)
    return Observed(kind, name, object_id, labels, {"external": True}, raw=obj)


def diff(desired: Desired, found: Observed | None) -> Change:
    """Nothing to do when it exists; its absence stops the plan (a ValidationFailed naming the manifest)."""
    if found is None:
        source = desired.resource.source
        kind = desired.kind.lower()
        message = (
            f"external {kind} {desired.name!r} does not exist on the engine; reconcile never creates an external "
            f"{kind}: create it (docker {kind} create {desired.name}) or drop `external: true`"
        )
        subject = f"{desired.kind}/{desired.name}"
        raise ValidationFailed([Problem(source.file, source.line, subject, "spec.external", message)])
    return Change(desired.kind, desired.name, Action.NONE, desired=desired, observed=found)
