"""Volume driver: named volumes on the engine. Replacing or removing one destroys data, so both are gated
by `reclaimPolicy: Delete`, recorded on the volume when it is created (and in volume_policy when it changes)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from reconciler.contract import DriverContext, EngineEvent, Key, Step, run_steps
from reconciler.diffing import REPLACE, diff_specs, overall_action
from reconciler.drivers.engine.adoption import Adopted, adopting, as_owned, without_compose
from reconciler.drivers.engine.client import project_filter
from reconciler.drivers.engine.common import DockerDriver, by_name, user_labels
from reconciler.drivers.engine.session import EngineOptions, named_event_key
from reconciler.drivers.volume.policy import DELETE, RETAIN, VolumePolicies
from reconciler.errors import PermanentError
from reconciler.model import Action, Change, Desired, FieldChange, Observed, Resource, ownership_labels
from reconciler.spechash import spec_hash

LABEL_RECLAIM = "io.reconciler.reclaim-policy"
RULES = {"driver": REPLACE, "driverOpts": REPLACE}


def normalize_volume(resource: Resource) -> Desired:
    spec = resource.spec
    normalized = {
        "driver": spec.get("driver") or "local",
        "driverOpts": {str(k): str(v) for k, v in (spec.get("driverOpts") or {}).items()},
    }
    # reclaimPolicy is a decision of reconcile, not a property of the volume: kept out of the hash so
    # changing it never asks for a (data-destroying) replace.
    policy = spec.get("reclaimPolicy", "Retain")
    full = {**normalized, "reclaimPolicy": policy}
    return Desired(resource, full, spec_hash("Volume", normalized, resource.labels))


class VolumeDriver(DockerDriver):
    kind = "Volume"
    rank = 1

    def __init__(self, ctx: DriverContext) -> None:
        super().__init__(ctx)
        self.policies = VolumePolicies(ctx.project, ctx.state_key)
        self.adopted = Adopted(ctx.project, ctx.state_key)
        self.adopt = ctx.options_for(EngineOptions).adopt
        self._records: dict[str, dict[str, Any]] | None = {}

    def normalize(self, resource: Resource) -> Desired:
        return normalize_volume(resource)

    def _observed(self, vol: Mapping[str, Any]) -> Observed:
        labels = vol.get("Labels") or {}
        spec = {
            "driver": vol.get("Driver"),
            "driverOpts": dict(vol.get("Options") or {}),
            "labels": user_labels(labels),
            "reclaimPolicy": self.policies.effective(dict(vol), self._records, labels.get(LABEL_RECLAIM, RETAIN)),
        }
        adopted = self.adopted.holds(self.kind, vol["Name"], vol.get("CreatedAt"))
        if adopted or adopting(self.adopt, labels, self.project):
            # a Compose volume: the project's once adopted (labels cannot change), compared without Compose's labels
            spec["labels"] = without_compose(labels)
            spec["adopting"] = not adopted
            labels = as_owned(labels, self.kind, vol["Name"], self.project)
        return Observed(self.kind, vol["Name"], vol["Name"], labels, spec, raw=vol)

    def event_keys(self, event: EngineEvent, project: str, known: set[Key]) -> Iterable[Key]:
        key = named_event_key(event, self.kind, known)
        return () if key is None else (key,)

    def observe(self, desired: Sequence[Desired]) -> dict[str, Observed]:
        declared = {d.name for d in desired}
        self._records = self.policies.load()
        with self.errors("*", "list"):
            listed = self.api.volumes(filters=project_filter(self.project, self.kind)).get("Volumes") or []
        owned = {v["Name"]: self._observed(v) for v in listed}
        adopted = set(self.adopted.load().get(self.kind, {}))  # no label says they are ours: the record does
        found = self.observe_named(
            owned, declared | adopted, lambda n: self._observed(by_name(self.api.inspect_volume)(n))
        )
        return {n: o for n, o in found.items() if n in declared or n in owned or o.owned_by(self.project)}

    def diff(self, desired: Desired, observed: Observed | None) -> Change:
        if observed is None:
            return Change(self.kind, desired.name, Action.CREATE, desired=desired)
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
                    note=f"recorded in {self.policies.path}: volume labels cannot change",
                )
            )
        action = overall_action(fields)
        notes: list[str] = []
        if self._records is None:
            notes.append(f"{self.policies.path} cannot be read: every volume counts as reclaimPolicy Retain")
        blocked = None
        steps: tuple[str, ...] = ()
        if observed.spec.get("adopting"):
            return self._adoption(desired, observed, fields, tuple(notes))
        if action is Action.REPLACE:
            if desired.spec["reclaimPolicy"] != "Delete":
                changed = ", ".join(f.path for f in fields)
                blocked = (
                    f"{changed} changed, and replacing a volume destroys its data; "
                    "set reclaimPolicy: Delete to allow it, or revert the change"
                )
            else:
                own, blocked = self.split_users(desired.name)
                steps = (
                    *(
                        Step(f"stop and remove container {c} (created again on the new volume)", "unmount", c)
                        for c in own
                    ),
                    Step("remove volume (its data is lost)", "remove"),
                    Step("create volume", "create"),
                )
        return Change(
            self.kind,
            desired.name,
            action,
            tuple(fields),
            desired,
            observed,
            blocked=blocked,
            steps=steps,
            notes=tuple(notes),
        )

    def _adoption(
        self, desired: Desired, observed: Observed, fields: list[FieldChange], notes: tuple[str, ...]
    ) -> Change:
        """A Compose volume of the same name: taken over as it is, with its data; one that differs from the
        manifest is not (adopting never recreates a volume)."""
        differ = [f.path for f in fields if f.path != "reclaimPolicy"]
        owner = FieldChange(
            "owner", f"Compose project {self.project}", f"project {self.project}", Action.UPDATE, note="data kept"
        )
        step = Step(f"adopt volume {desired.name} from Compose project {self.project} (its data is kept)", "adopt")
        blocked = (
            f"{', '.join(differ)} differ from the Compose volume; adopting keeps a volume and its data as they are: "
            "make the manifest match it"
            if differ
            else None
        )
        return Change(
            self.kind, desired.name, Action.UPDATE, (owner, *fields), desired, observed, blocked, (step,), notes
        )

    def prune(self, observed: Observed) -> Change:
        if observed.spec["reclaimPolicy"] != DELETE:
            return Change(
                self.kind,
                observed.name,
                Action.NONE,
                observed=observed,
                notes=("manifest gone; volume retained (reclaimPolicy: Retain)",),
            )
        return Change(
            self.kind,
            observed.name,
            Action.DELETE,
            observed=observed,
            blocked=self.foreign_users(observed.name),
        )

    def _remove_user(self, name: str, container: str, users: dict[str, str]) -> None:
        """The engine refuses to remove a volume in use: the project's containers on it go first (their own
        change creates them again, on the new volume). Others' containers were ruled out at plan time, and
        `users` (read at apply time) refuses one that appeared since."""
        cid = users.get(container)
        if cid is None:
            return  # gone since the plan
        with self.errors(name, "remove a container using it"):
            info = self.api.inspect_container(cid)
            stop_timeout = info["Config"].get("StopTimeout")
            self.api.stop(cid, timeout=10 if stop_timeout is None else stop_timeout)
            self.api.remove_container(cid, v=False)
        self.log.info("volume.user_removed", name=name, container=container)

    def _remove_volume(self, name: str) -> None:
        with self.errors(name, "remove"):
            self.api.remove_volume(name)
        self.log.info("volume.removed", name=name)
        self.policies.forget(name)
        self.adopted.forget(self.kind, name)

    def _create_volume(self, desired: Desired) -> None:
        labels = ownership_labels(desired, self.project)
        labels[LABEL_RECLAIM] = desired.spec["reclaimPolicy"]
        with self.errors(desired.name, "create"):
            created = self.api.create_volume(
                name=desired.name,
                driver=desired.spec["driver"],
                driver_opts=desired.spec["driverOpts"] or None,
                labels=labels,
            )
        self.log.info("volume.created", name=desired.name)
        if desired.spec["reclaimPolicy"] == DELETE:
            self._record_delete(desired.name, created)

    def _adopt(self, change: Change) -> None:
        assert change.desired is not None and change.observed is not None
        created = change.observed.raw.get("CreatedAt")
        try:
            self.adopted.record(self.kind, change.name, str(created))
            self.policies.record(change.name, created, change.desired.spec["reclaimPolicy"])
        except OSError as exc:
            raise PermanentError(f"volume {change.name}: cannot record the adoption: {exc}") from None
        self.log.info("volume.adopted", name=change.name, compose_project=self.project)

    def _record_delete(self, name: str, created: dict[str, Any]) -> None:
        """Only a recorded Delete lets a volume go; unrecorded, it counts as Retain and the next plan says so."""
        try:
            self.policies.record(name, created.get("CreatedAt"), DELETE)
        except OSError as exc:
            self.log.warning("volume.policy_not_recorded", name=name, error=str(exc))

    def apply(self, change: Change) -> None:
        name = change.name
        if change.action is Action.UPDATE and change.steps:  # an adoption: the plan's one step
            run_steps(change, {"adopt": lambda: self._adopt(change)})
            return
        if change.action is Action.UPDATE:  # only the reclaim policy changes in place
            assert change.desired is not None and change.observed is not None
            try:
                self.policies.record(name, change.observed.raw.get("CreatedAt"), change.desired.spec["reclaimPolicy"])
            except OSError as exc:
                raise PermanentError(f"volume {name}: cannot record reclaimPolicy: {exc}") from None
            self.log.info("volume.policy_recorded", name=name, policy=change.desired.spec["reclaimPolicy"])
            return
        desired = change.desired
        if change.action is Action.DELETE:
            self._remove_volume(name)
        elif change.action is Action.CREATE:
            assert desired is not None
            self._create_volume(desired)
        elif change.action is Action.REPLACE:  # the plan's steps: its containers off, remove, create
            assert desired is not None
            users = {u["Names"][0].lstrip("/"): u["Id"] for u in self.own_users(name, "the volume is not replaced")}
            run_steps(
                change,
                {
                    "unmount": lambda container: self._remove_user(name, container, users),
                    "remove": lambda: self._remove_volume(name),
                    "create": lambda: self._create_volume(desired),
                },
            )
