"""A declared Image against what the engine and the registry have: pull it (absent, or the tag moved with
`pullPolicy: Always`), build it (absent, or its inputs or labels changed), push it (the registry's digest is not
the local one). Never takes over another project's image.

Pure: the driver assembles the change (earlier tags to remove, notes).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from reconciler.contract import Step
from reconciler.diffing import Compare, Rule, diff_specs
from reconciler.drivers.engine.reference import parse_reference
from reconciler.drivers.image.observe import ABSENT
from reconciler.drivers.image.spec import INPUT_FIELDS, LABEL_INPUT_HASH, stamped_inputs
from reconciler.model import LABEL_PROJECT, LABEL_SPEC_HASH, Action, Desired, FieldChange, Observed
from reconciler.spechash import NORMALIZER_VERSION, hash_version

REMOVE_STEP = "remove tag "
LABELS_RULE = Rule(Action.REPLACE, Compare.AT_LEAST)


def diff_pull(desired: Desired, obs: Mapping[str, Any]) -> tuple[Action, list, list, str | None]:
    spec = desired.spec
    reference = spec["reference"]
    error = obs.get("registryError")
    if obs["owner"] == ABSENT:
        if spec["pullPolicy"] == "Never":
            blocked = f"image {reference} is not on the engine and pullPolicy is Never (nothing will pull it)"
            return Action.CREATE, [], [], blocked
        return Action.CREATE, [], [Step(f"pull {reference}", "pull")], error
    if spec["pullPolicy"] != "Always" or parse_reference(reference).digest:
        return Action.NONE, [], [], None
    if error:
        return Action.NONE, [], [], f"cannot check the registry for a newer {reference}: {error}"
    local, remote = obs.get("localDigest"), obs.get("remoteDigest")
    if remote == local:
        return Action.NONE, [], [], None
    field = FieldChange("digest", local, remote, Action.REPLACE, note="the tag moved in the registry")
    return Action.REPLACE, [field], [Step(f"pull {reference}", "pull")], None


def diff_build(
    project: str, desired: Desired, observed: Observed | None, obs: Mapping[str, Any]
) -> tuple[Action, list, list, str | None]:
    spec = desired.spec
    reference = spec["reference"]
    steps = [Step(f"build {reference}", "build")] + ([Step(f"push {reference}", "push")] if spec["push"] else [])
    if observed is None or obs["owner"] == ABSENT:
        return Action.CREATE, [], steps, None
    image_labels = (observed.raw or {}).get("imageLabels") or {}
    holder = image_labels.get(LABEL_PROJECT)
    if holder and holder != project:
        blocked = (
            f"{reference} is an image built by project {holder!r}; reconcile never takes over another "
            "project's image (change the reference, or remove the Image manifest there)"
        )
        return Action.REPLACE, [], steps, blocked
    fields = input_changes(desired, image_labels) + label_changes(desired, image_labels)
    stamped = image_labels.get(LABEL_SPEC_HASH)
    if not fields and stamped != desired.spec_hash and hash_version(stamped) == NORMALIZER_VERSION:
        fields.append(FieldChange("labels", None, dict(desired.resource.labels), Action.REPLACE))
    if fields:
        return Action.REPLACE, fields, steps, None
    if spec["push"]:
        if obs.get("registryError") and "not found" not in obs["registryError"]:
            return Action.NONE, [], [], f"cannot check whether {reference} is pushed: {obs['registryError']}"
        local, remote = obs.get("localDigest"), obs.get("remoteDigest")
        if local is None or local != remote:
            field = FieldChange("pushed", remote, local, Action.UPDATE, note="registry digest")
            return Action.UPDATE, [field], [Step(f"push {reference}", "push")], None
    return Action.NONE, [], [], None


def _short(value: str | None) -> str | None:
    if value and value.startswith("sha256:"):
        return value[:19]
    return value


def input_changes(desired: Desired, labels: Mapping[str, str]) -> list[FieldChange]:
    """Which build inputs differ from those stamped on the image (by hash), one field each."""
    build = desired.spec["build"]
    if labels.get(LABEL_INPUT_HASH) == build["inputHash"]:
        return []
    old = stamped_inputs(labels)
    if old is None:
        return [FieldChange("build.inputHash", labels.get(LABEL_INPUT_HASH), build["inputHash"], Action.REPLACE)]
    changes = []
    for key in INPUT_FIELDS:
        was, now = old.get(key), build["inputs"][key]
        if was != now:
            note = "content hash" if key in ("context", "dockerfile", "args") else ""
            changes.append(FieldChange(f"build.{key}", _short(was), _short(now), Action.REPLACE, note=note))
    return changes or [FieldChange("build.inputHash", labels.get(LABEL_INPUT_HASH), build["inputHash"], Action.REPLACE)]


def label_changes(desired: Desired, image_labels: Mapping[str, str]) -> list[FieldChange]:
    """The user's labels, compared as 'at least' (images inherit their base image's labels)."""
    have = {k: v for k, v in image_labels.items() if not k.startswith("io.reconciler.")}
    return diff_specs({"labels": dict(desired.resource.labels)}, {"labels": have}, {"labels": LABELS_RULE})
