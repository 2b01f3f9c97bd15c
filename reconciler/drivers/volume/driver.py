"""Volume driver: named volumes on the engine. Replacing or removing one destroys data, so both are gated
by `reclaimPolicy: Delete`, recorded on the volume when it is created (and in policy.py's record when it changes).

The smallest kind, and the template of a driver package: spec.py (normalize), observe.py (engine record ->
spec), diff.py (what differs and what that asks for), apply.py (the engine calls the steps run), this class
(the hooks, and the engine reads and state records that go with them), and policy.py, its own state file."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from reconciler.contract import Catalog, DriverContext, EngineEvent, Key, run_steps
from reconciler.diffing import overall_action
from reconciler.drivers.engine import external
from reconciler.drivers.engine.adoption import Adopted, adopting, as_owned, without_compose
from reconciler.drivers.engine.client import project_filter
from reconciler.drivers.engine.common import DockerDriver, by_name
from reconciler.drivers.engine.session import EngineOptions, named_event_key
from reconciler.drivers.volume import apply as volume_apply
from reconciler.drivers.volume.diff import adoption, field_changes, replace_refused, replace_steps
from reconciler.drivers.volume.observe import observed_spec
from reconciler.drivers.volume.policy import DELETE, RETAIN, VolumePolicies
from reconciler.drivers.volume.spec import LABEL_RECLAIM, normalize_volume
from reconciler.errors import PermanentError
from reconciler.model import Action, Change, Desired, Observed, Resource


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

    def check(self, desired: Desired, catalog: Catalog) -> Iterable[tuple[str, str]]:
        return external.problems(desired.resource) if external.is_external(desired) else ()

    def _observed(self, vol: Mapping[str, Any]) -> Observed:
        labels = vol.get("Labels") or {}
        spec = observed_spec(vol, self.policies.effective(vol, self._records, labels.get(LABEL_RECLAIM, RETAIN)))
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
        for d in desired:  # used, never claimed: observed as the project's, spec {external: true}
            if external.is_external(d) and d.name in found and d.name not in owned:
                found[d.name] = external.observed(self.kind, d.name, self.project, found[d.name].raw, d.name)
        return {n: o for n, o in found.items() if n in declared or n in owned or o.owned_by(self.project)}

    def diff(self, desired: Desired, observed: Observed | None) -> Change:
        if external.is_external(desired):
            return external.diff(desired, observed)
        if observed is None:
            return Change(self.kind, desired.name, Action.CREATE, desired=desired)
        fields = field_changes(desired, observed, self.policies.path)
        action = overall_action(fields)
        notes: list[str] = []
        if self._records is None:
            notes.append(f"{self.policies.path} cannot be read: every volume counts as reclaimPolicy Retain")
        blocked = None
        steps: tuple[str, ...] = ()
        if observed.spec.get("adopting"):
            return adoption(self.kind, self.project, desired, observed, fields, tuple(notes))
        if action is Action.REPLACE:
            blocked = replace_refused(desired, fields)
            if blocked is None:
                own, blocked = self.split_users(desired.name)
                steps = replace_steps(own)
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
            volume_apply.stop_and_remove(self.api, cid)
        self.log.info("volume.user_removed", name=name, container=container)

    def _remove_volume(self, name: str) -> None:
        with self.errors(name, "remove"):
            self.api.remove_volume(name)
        self.log.info("volume.removed", name=name)
        self.policies.forget(name)
        self.adopted.forget(self.kind, name)

    def _create_volume(self, desired: Desired) -> None:
        with self.errors(desired.name, "create"):
            created = volume_apply.create_volume(self.api, desired, self.project, self.ctx.revision)
        self.log.info("volume.created", name=desired.name)
        if desired.spec["reclaimPolicy"] == DELETE:
            self._record_delete(desired.name, created)

    def _adopt(self, change: Change) -> None:
        assert change.desired is not None and change.observed is not None
        created = change.observed.raw.get("CreatedAt")
        try:
            self.adopted.record(self.kind, change.name, str(created))
            self.policies.record(change.name, change.observed.raw, change.desired.spec["reclaimPolicy"])
        except OSError as exc:
            raise PermanentError(f"volume {change.name}: cannot record the adoption: {exc}") from None
        self.log.info("volume.adopted", name=change.name, compose_project=self.project)

    def _record_delete(self, name: str, created: Mapping[str, Any]) -> None:
        """Only a recorded Delete lets a volume go; unrecorded, it counts as Retain and the next plan says so."""
        try:
            self.policies.record(name, created, DELETE)
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
                self.policies.record(name, change.observed.raw, change.desired.spec["reclaimPolicy"])
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
