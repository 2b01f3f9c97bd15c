"""A declared volume against the engine's: which fields differ, and what that asks for. A volume cannot change in
place (only the reclaim policy, which reconcile records itself), so a differing driver, option or label asks for
a replace, which destroys the data: allowed only with `reclaimPolicy: Delete`.

Pure: the driver adds what only the engine can tell (which containers use the volume)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from reconciler.contract import Step
from reconciler.diffing import REPLACE, diff_specs
from reconciler.model import Action, Change, Desired, FieldChange, Observed

RULES = {"driver": REPLACE, "driverOpts": REPLACE}


def field_changes(desired: Desired, observed: Observed, policies: Path) -> list[FieldChange]:
    """The fields that differ; a changed reclaim policy is an UPDATE recorded in the `policies` file."""
    want = {
        **{k: v for k, v in desired.spec.items() if k in RULES},
        "labels": dict(desired.resource.labels),
    }
    rules = {**RULES, "labels": REPLACE}
    have = {k: v for k, v in observed.spec.items() if k not in ("reclaimPolicy", "adopting")}  # not in RULES
    fields = diff_specs(want, have, rules)
    if observed.spec["reclaimPolicy"] != desired.spec["reclaimPolicy"]:
        fields.append(
            FieldChange(
                "reclaimPolicy",
                observed.spec["reclaimPolicy"],
                desired.spec["reclaimPolicy"],
                Action.UPDATE,
                note=f"recorded in {policies}: volume labels cannot change",
            )
        )
    return fields


def replace_refused(desired: Desired, fields: list[FieldChange]) -> str | None:
    """Why a needed replace is not made (the data would be lost without `reclaimPolicy: Delete`), or None."""
    if desired.spec["reclaimPolicy"] == "Delete":
        return None
    changed = ", ".join(f.path for f in fields)
    return (
        f"{changed} changed, and replacing a volume destroys its data; "
        "set reclaimPolicy: Delete to allow it, or revert the change"
    )


def replace_steps(own_users: Iterable[str]) -> tuple[Step, ...]:
    """The steps of a replace: the project's containers on the volume off (their own change creates them again),
    then the volume removed and created again."""
    return (
        *(Step(f"stop and remove container {c} (created again on the new volume)", "unmount", c) for c in own_users),
        Step("remove volume (its data is lost)", "remove"),
        Step("create volume", "create"),
    )


def adoption(
    kind: str, project: str, desired: Desired, observed: Observed, fields: list[FieldChange], notes: tuple[str, ...]
) -> Change:
    """A Compose volume of the same name: taken over as it is, with its data; one that differs from the
    manifest is not (adopting never recreates a volume)."""
    differ = [f.path for f in fields if f.path != "reclaimPolicy"]
    owner = FieldChange("owner", f"Compose project {project}", f"project {project}", Action.UPDATE, note="data kept")
    step = Step(f"adopt volume {desired.name} from Compose project {project} (its data is kept)", "adopt")
    blocked = (
        f"{', '.join(differ)} differ from the Compose volume; adopting keeps a volume and its data as they are: "
        "make the manifest match it"
        if differ
        else None
    )
    return Change(kind, desired.name, Action.UPDATE, (owner, *fields), desired, observed, blocked, (step,), notes)
