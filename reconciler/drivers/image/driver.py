"""Image driver: pull (by pull policy), build (rebuilt exactly when the build inputs change), push, and removal of
the tags this project created or pulled once their manifest is gone.

Ownership is by reference. A built image carries the ownership labels; a pulled one cannot (its labels come from
the registry), so the references this project pulled are remembered in a small state file (`image_state`).
An image of the declared reference that the project neither built nor pulled is used as it is and never removed:
unlike a container name, an image reference is not "taken" (`claims_names = False` tells the planner so).
Only an image built by *another* project blocks a build of the same reference (no takeover).
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import cached_property
from pathlib import Path
from typing import Any

from reconciler.contract import Catalog, DriverContext, Step, input_path, run_steps
from reconciler.core.indexes import per_catalog
from reconciler.drivers.engine.client import project_filter
from reconciler.drivers.engine.common import DockerDriver, concurrently
from reconciler.drivers.engine.reference import parse_reference
from reconciler.drivers.image import apply as image_apply
from reconciler.drivers.image.diff import REMOVE_STEP, diff_build, diff_pull
from reconciler.drivers.image.observe import (
    ABSENT,
    BUILT,
    FOREIGN,
    PULLED,
    observed_declared,
    observed_orphan,
    pulled_by_us,
)
from reconciler.drivers.image.pulled import PulledImages, pulled_path
from reconciler.drivers.image.registry import RegistryError, is_insecure, remote_digest
from reconciler.drivers.image.spec import (
    build_labels,
    context_warning,
    normalize_image,
)
from reconciler.errors import PermanentError
from reconciler.model import (
    LABEL_NAME,
    Action,
    Change,
    Desired,
    FieldChange,
    Observed,
    Resource,
    ownership_labels,
)


def _by_reference(catalog: Catalog) -> dict[str, list[str]]:
    """Reference -> the names of the Images declaring it, in name order (one index per catalog, not a scan of
    every Image for every Image)."""
    found: dict[str, list[str]] = {}
    for image in catalog.of_kind("Image"):
        found.setdefault(image.spec["reference"], []).append(image.name)
    return found


class ImageDriver(DockerDriver):
    kind = "Image"
    rank = 0
    claims_names = False  # the planner must not treat an existing image of the reference as a name clash

    def __init__(self, ctx: DriverContext) -> None:
        super().__init__(ctx)
        self._lock = threading.Lock()
        self._kept: dict[str, dict[str, list[str]]] = {}  # pruned name -> tags kept, with the containers using them

    # ---- pure ----------------------------------------------------------------------------------------------
    def normalize(self, resource: Resource) -> Desired:
        desired = normalize_image(resource, self.ctx.manifest_dir)
        warning = context_warning(resource, self.ctx.manifest_dir)
        if warning:
            self.log.warning("image.context.outside", name=resource.name, source=resource.source.file, detail=warning)
        return desired

    def inputs(self, resource: Resource) -> Iterable[Path]:
        """The build context (the Dockerfile is in it or named relative to it)."""
        build = resource.spec.get("build") or {}
        if build.get("context"):
            context = input_path(resource, str(build["context"]))
            yield context
            dockerfile = input_path(resource, str(context / str(build.get("dockerfile") or "Dockerfile")))
            if not dockerfile.is_relative_to(context):
                yield dockerfile

    def check(self, desired: Desired, catalog: Catalog) -> Iterable[tuple[str, str]]:
        spec = desired.spec
        ref = parse_reference(spec["reference"])
        for other in per_catalog(catalog, "image.references", _by_reference).get(spec["reference"], ()):
            if other != desired.name:
                yield "spec.reference", f"{spec['reference']} is also declared by Image/{other}"
        if spec["build"] is not None and ref.digest:
            yield "spec.reference", "a built image needs a name:tag reference, not a digest"

    # ---- observe (reads only) ------------------------------------------------------------------------------
    @cached_property
    def pulled(self) -> PulledImages:
        with self.errors("*", "info"):
            engine_id = str(self.api.info().get("ID") or self.ctx.engine_url or "engine")
        if self.ctx.state_key:  # engines sharing /etc/docker share an ID: a fleet's Hosts are told apart
            engine_id = f"{engine_id} {self.ctx.state_key}"
        return PulledImages(pulled_path(self.project, engine_id))

    @cached_property
    def _registry_config(self) -> tuple[dict[str, Any], list[str]]:
        with self.errors("*", "info"):
            config = self.api.info().get("RegistryConfig") or {}
        return dict(config.get("IndexConfigs") or {}), list(config.get("InsecureRegistryCIDRs") or [])

    def _remote(self, reference: str) -> tuple[str | None, str | None]:
        """(digest, None) or (None, one-line error) for `reference` in its registry."""
        ref = parse_reference(reference)
        index, cidrs = self._registry_config
        try:
            return remote_digest(ref, insecure=is_insecure(ref.registry, index, cidrs)), None
        except RegistryError as exc:
            return None, str(exc)

    def _needs_registry(self, desired: Desired, present: bool) -> bool:
        spec = desired.spec
        if spec["build"] is not None:
            return spec["push"]
        if spec["pullPolicy"] == "Never":
            return False
        if not present:
            return True  # check now, so a missing tag or a bad registry is a plan error, not an apply surprise
        return spec["pullPolicy"] == "Always" and parse_reference(spec["reference"]).digest is None

    def observe(self, desired: Sequence[Desired]) -> dict[str, Observed]:
        """Per declared name: what the engine has under its reference (present or not) and what the registry
        says when the policy needs it. Plus every owned name whose manifest is gone (built or pulled tags)."""
        wanted = {d.name: d for d in desired}
        with self.errors("*", "list"):
            built = self.api.images(filters=project_filter(self.project, self.kind))
        owned: dict[str, dict[str, str]] = defaultdict(dict)  # name -> {reference: built|pulled}
        for image in built:
            name = (image.get("Labels") or {}).get(LABEL_NAME)
            for tag in image.get("RepoTags") or []:
                if name and tag != "<none>:<none>":
                    owned[name][tag] = BUILT
        pulled = self.pulled.load()
        refs = {d.spec["reference"] for d in wanted.values()} | set(pulled) | {r for m in owned.values() for r in m}
        with self.errors("*", "inspect"):
            images = concurrently(self.inspect_image, refs)
        for reference, entry in pulled.items():
            if pulled_by_us(reference, images.get(reference), pulled) and entry.get("name"):
                owned[str(entry["name"])].setdefault(reference, PULLED)
        # A reference declared now belongs to its declaring manifest, whatever name it was recorded under
        # (a renamed manifest must not prune the image it still declares).
        declared_refs = {d.spec["reference"] for d in wanted.values()}
        for name in list(owned):
            keep = wanted[name].spec["reference"] if name in wanted else None
            owned[name] = {r: how for r, how in owned[name].items() if r == keep or r not in declared_refs}
            if not owned[name]:
                del owned[name]
        lookups = [
            d.spec["reference"] for d in wanted.values() if self._needs_registry(d, d.spec["reference"] in images)
        ]
        remote = concurrently(self._remote, lookups)

        found: dict[str, Observed] = {}
        for name, declared in wanted.items():
            reference = declared.spec["reference"]
            found[name] = observed_declared(
                self.project, name, reference, images.get(reference), pulled, owned.get(name, {}), remote.get(reference)
            )
        for name, references in owned.items():
            if name not in wanted:
                found[name] = observed_orphan(self.project, name, references, images, pulled)
        return found

    # ---- diff / prune (read the engine at most) ------------------------------------------------------------
    def diff(self, desired: Desired, observed: Observed | None) -> Change:
        spec = desired.spec
        reference = spec["reference"]
        obs: Mapping[str, Any] = observed.spec if observed is not None else {"owner": ABSENT, "previous": {}}
        notes = [w for w in [context_warning(desired.resource, self.ctx.manifest_dir)] if w]
        if spec["build"] is not None:
            action, fields, steps, blocked = diff_build(self.project, desired, observed, obs)
        else:
            action, fields, steps, blocked = diff_pull(desired, obs)
        previous = dict(obs.get("previous") or {})
        if previous:
            steps.extend(Step(f"{REMOVE_STEP}{r}", "remove", r) for r in sorted(previous))
            if action is Action.NONE:
                action = Action.UPDATE
                fields.append(FieldChange("reference", sorted(previous)[0], reference, Action.UPDATE))
            notes.append(
                f"reference changed: the old tag{'s' if len(previous) > 1 else ''} "
                f"{', '.join(sorted(previous))} of this project will be removed if no container uses it"
            )
        if obs["owner"] == FOREIGN and action is not Action.NONE and blocked is None:
            notes.append(f"{reference} exists but was not built or pulled by this project; it is never removed")
        return Change(
            self.kind, desired.name, action, tuple(fields), desired, observed, blocked, tuple(steps), tuple(notes)
        )

    def prune(self, observed: Observed) -> Change:
        """Remove the tags of a gone manifest that no container uses; keep (and say why) the others."""
        removable: list[str] = []
        kept: dict[str, list[str]] = {}
        for reference, image_id in sorted(observed.spec.get("ids", {}).items()):
            using = image_apply.users(self.api, image_id)
            if using:
                kept[reference] = list(using)
            else:
                removable.append(reference)
        self._kept[observed.name] = kept
        return self._prune_change(observed, removable, kept)

    def _prune_change(self, observed: Observed, removable: list[str], kept: Mapping[str, list[str]]) -> Change:
        notes = tuple(
            f"manifest gone; image {ref} kept: used by containers {', '.join(users)}" for ref, users in kept.items()
        )
        if not removable:
            return Change(self.kind, observed.name, Action.NONE, observed=observed, notes=notes)
        steps = tuple(Step(f"{REMOVE_STEP}{r}", "remove", r) for r in removable)
        return Change(self.kind, observed.name, Action.DELETE, observed=observed, steps=steps, notes=notes)

    def after_plan(self, change: Change, changes: Mapping[tuple[str, str], Change]) -> Change:
        """A tag kept only for containers that this plan removes is removed too (after them: deletes of
        images wait for the container changes)."""
        kept = self._kept.get(change.name)
        if change.desired is not None or change.observed is None or not kept:
            return change
        removed = {name for (kind, name), c in changes.items() if kind == "Container" and c.action is Action.DELETE}
        freed = [ref for ref, users in kept.items() if set(users) <= removed]
        if not freed:
            return change
        removable = [s.args[0] for s in change.steps if s.op == "remove"] + freed  # type: ignore[attr-defined]
        still = {ref: users for ref, users in kept.items() if ref not in freed}
        return self._prune_change(change.observed, sorted(removable), still)

    # ---- apply ---------------------------------------------------------------------------------------------
    def _where(self, change: Change) -> str:
        return change.source or change.subject

    def apply(self, change: Change) -> None:
        """Exactly the steps the plan shows: build, pull, push, remove tag."""
        where = self._where(change)
        desired = change.desired
        strict = change.action is Action.DELETE

        def need() -> Desired:
            assert desired is not None
            return desired

        run_steps(
            change,
            {
                "build": lambda: self._build(need(), change, where),
                "pull": lambda: self._pull(need(), where),
                "push": lambda: image_apply.push(
                    self.api, need().spec["reference"], self.log, where, self._reporter(change)
                ),
                "remove": lambda reference: self._remove(reference, where, strict=strict),
            },
        )

    def _reporter(self, change: Change) -> Callable[[str, str], None]:
        """Progress of this change's pull, build or push, for the live view."""
        return lambda state, detail: self.ctx.progress(change.key, state, detail)

    def _pull(self, desired: Desired, where: str) -> None:
        reference = desired.spec["reference"]
        image_apply.pull(self.api, reference, self.log, where, lambda s, d: self.ctx.progress(desired.key, s, d))
        with self.errors(desired.name, "inspect"):
            image_id = self.api.inspect_image(reference)["Id"]
        self.pulled.record(reference, desired.name, desired.resource.source.file, image_id)

    def _build(self, desired: Desired, change: Change, where: str) -> None:
        reference = desired.spec["reference"]
        labels = {**ownership_labels(desired, self.project, revision=self.ctx.revision), **build_labels(desired)}
        old_id = change.observed.id if change.observed is not None else ""
        new_id = image_apply.build(self.api, desired.spec, labels, self.log, where, self._reporter(change))
        self.pulled.forget(reference)  # ours by its labels from now on
        if old_id and old_id != new_id:
            self._drop_previous_build(old_id, change)

    def _drop_previous_build(self, old_id: str, change: Change) -> None:
        """The image a rebuild replaced, if it was ours and is now untagged and unused (never forced)."""
        observed = change.observed
        if observed is None or observed.spec.get("owner") != BUILT:
            return
        try:
            old = self.api.inspect_image(old_id)
            if old.get("RepoTags") or image_apply.users(self.api, old_id):
                return
            self.api.remove_image(old_id, force=False, noprune=False)
            self.log.info("image.previous.removed", id=old_id[:19])
        except Exception as exc:  # housekeeping only: the build itself succeeded
            self.log.info("image.previous.kept", id=old_id[:19], reason=str(exc).splitlines()[0][:200])

    def _remove(self, reference: str, where: str, strict: bool) -> None:
        """Untag `reference` unless a container uses its image (checked again now: the plan may be old).
        `strict`: a kept tag fails the change (a prune); otherwise it is logged and retried on a later apply
        (an old tag after a reference change, still used until its containers follow the new image)."""
        try:
            image_id = self.api.inspect_image(reference)["Id"]
        except Exception:
            self.pulled.forget(reference)
            return  # gone already
        using = image_apply.users(self.api, image_id)
        if using:
            if strict:
                raise PermanentError(f"{where}: image {reference} kept: used by containers {', '.join(using)}")
            self.log.info("image.old.kept", reference=reference, containers=using)
            return
        image_apply.untag(self.api, reference, self.log, where)
        self.pulled.forget(reference)
