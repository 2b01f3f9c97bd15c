"""What the Secret and Config drivers share (SwarmDataDriver; the two classes are in driver.py): content-addressed
versions of a file's bytes.

Swarm secrets and configs are immutable (only their labels change). So every version is its own engine object,
named `<name>-<sha256 prefix>` and labelled with its manifest name: new content is a new object (CREATE), the
services using it are repointed by their own changes (the Service driver's after_plan), and the versions no
longer wanted are removed once nothing uses them (pruned after the services, and even under --no-prune, since
they are leftovers of a declared object). The bytes are read from the file at apply and never printed.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

from reconciler.contract import Key, input_path
from reconciler.core.agefiles import AgeOptions, Identities, is_encrypted
from reconciler.core.safeio import UnsafeFile
from reconciler.drivers.engine import lazy
from reconciler.drivers.engine.client import project_filter
from reconciler.drivers.engine.common import DockerDriver, user_labels
from reconciler.drivers.swarm.diff import sends_update
from reconciler.drivers.swarm.spec import normalize_data, read_data
from reconciler.drivers.swarm.values import list_on_manager, not_a_manager
from reconciler.errors import SpecError, TemporaryError
from reconciler.model import (
    LABEL_NAME,
    LABEL_PROJECT,
    Action,
    Change,
    Desired,
    FieldChange,
    Observed,
    Resource,
    ownership_labels,
)

LABEL_CONTENT_HASH = "io.reconciler.content-hash"


class SwarmDataDriver(DockerDriver):
    """What Secret and Config share; subclasses name the engine calls."""

    rank = 1  # before the services that use them; old versions go after them (delete_after_users)
    noun: ClassVar[str] = ""  # "secret" / "config"
    ref_key: ClassVar[str] = ""  # "SecretName" / "ConfigName" in a service's ContainerSpec

    def __init__(self, ctx: Any) -> None:
        super().__init__(ctx)
        # engine ID -> [(service, its project, "current" or "previous": which of its specs refers to it)]
        self._users: dict[str, list[tuple[str, str | None, str]]] = {}
        self._not_a_manager: str | None = None  # why this engine cannot hold secrets or configs

    # -- engine calls, per kind --------------------------------------------------------------------------------
    def _list(self, filters: Mapping[str, Any]) -> list[dict[str, Any]]:
        raise NotImplementedError

    def _create(self, name: str, data: bytes, labels: Mapping[str, str]) -> str:
        raise NotImplementedError

    def _remove(self, engine_id: str) -> None:
        raise NotImplementedError

    # -- pure ------------------------------------------------------------------------------------------------
    def normalize(self, resource: Resource) -> Desired:
        return normalize_data(resource, self._identities(resource.spec.get("file")))

    def _identities(self, file: object = ".age") -> Identities | None:
        """`--age-identity`'s keys, asked for only when a file is encrypted (a bad identity file is then a problem
        of that manifest's `spec.file`)."""
        if not is_encrypted(str(file or "")):
            return None
        try:
            return self.ctx.options_for(AgeOptions).identities()
        except UnsafeFile as exc:
            raise SpecError("spec.file", str(exc)) from None

    def inputs(self, resource: Resource) -> Iterable[Path]:
        """The secret's or config's file (watch applies a rotated secret at once)."""
        if resource.spec.get("file"):
            yield input_path(resource, str(resource.spec["file"]))

    def diff(self, desired: Desired, observed: Observed | None) -> Change:
        if self._not_a_manager is not None:
            return Change(self.kind, desired.name, Action.CREATE, desired=desired, blocked=self._not_a_manager)
        if observed is None:
            return Change(
                self.kind,
                desired.name,
                Action.CREATE,
                desired=desired,
                steps=(f"create {self.noun} {desired.spec['engineName']}",),
            )
        # observe keys a version under the declared name only when it holds exactly the wanted content
        fields = []
        if user_labels(observed.labels) != dict(desired.resource.labels):
            fields.append(
                FieldChange(
                    "labels",
                    user_labels(observed.labels),
                    dict(desired.resource.labels),
                    Action.UPDATE,
                    note="labels are the only thing swarm lets change in place",
                )
            )
        if not fields:
            return Change(self.kind, desired.name, Action.NONE, desired=desired, observed=observed)
        return Change(
            self.kind,
            desired.name,
            Action.UPDATE,
            tuple(fields),
            desired,
            observed,
            steps=(f"update the labels of {self.noun} {desired.spec['engineName']}",),
        )

    def prune(self, observed: Observed) -> Change:
        """An old version (or a version of a manifest that is gone): removed once no service uses it; kept, with
        a note, while a service of another owner does (in its current or its previous spec). after_plan keeps it
        too while a service of the project will still refer to it."""
        foreign = sorted({s for s, p, _ in self._users.get(observed.id, []) if p != self.project})
        if foreign:
            return Change(
                self.kind,
                observed.name,
                Action.NONE,
                observed=observed,
                notes=(f"kept: used by service(s) this project does not own: {', '.join(foreign)}",),
            )
        return Change(
            self.kind,
            observed.name,
            Action.DELETE,
            observed=observed,
            steps=(f"remove {self.noun} {observed.spec['engineName']} once no service uses it",),
        )

    def after_plan(self, change: Change, changes: Mapping[Key, Change]) -> Change:
        """Keep an old version the project's services will still refer to once this plan is applied: one their
        current spec uses (an update makes it the previous spec, what a rollback returns to), or their previous
        spec unless this plan sends them a new spec (or removes them)."""
        if change.action is not Action.DELETE or change.observed is None:
            return change
        for service, project, which in self._users.get(change.observed.id, []):
            if project != self.project:
                continue
            theirs = changes.get(("Service", service))
            if theirs is not None and theirs.action is Action.DELETE:
                continue
            if which == "previous" and theirs is not None and sends_update(theirs):
                continue
            return Change(self.kind, change.name, Action.NONE, observed=change.observed)
        return change

    def leftover_of(self, observed: Observed) -> str | None:
        """An older version of a declared Secret/Config: replace state, removed even under --no-prune."""
        label = observed.labels.get(LABEL_NAME)
        return label if label and observed.name != label else None

    # -- observe ---------------------------------------------------------------------------------------------
    def observe(self, desired: Sequence[Desired]) -> dict[str, Observed]:
        """The version each declared name wants under that name (when it exists), every other version of the
        project under its engine name; an object of another owner holding a wanted engine name, under the
        declared name (the planner then refuses to take it over)."""
        wanted = {d.spec["engineName"]: d.name for d in desired}
        with self.errors("*", "list"):
            listed = list_on_manager(lambda: self._list(project_filter(self.project, self.kind)))
        if listed is None:
            self._not_a_manager = not_a_manager(self.api, f"{self.noun}s") if wanted else None
            return {}
        if any(self._observed(i).spec["engineName"] not in wanted for i in listed):  # something may be pruned
            with self.errors("*", "list services"):
                self._note_users(self.api.services())
        found: dict[str, Observed] = {}
        owned = set()
        for item in listed:
            observed = self._observed(item)
            engine = observed.spec["engineName"]
            owned.add(engine)
            key = wanted.get(engine) if wanted.get(engine) == observed.labels.get(LABEL_NAME) else None
            found[key or engine] = observed
        for engine, name in wanted.items():
            if engine in owned:
                continue
            with self.errors(name, "look up"):
                others = [i for i in self._list({"name": engine}) if (i.get("Spec") or {}).get("Name") == engine]
            if others:
                found[name] = self._observed(others[0])
        return found

    def _note_users(self, services: list[Mapping[str, Any]]) -> None:
        """Which services (of which project, in which of their specs) use each version, for prune."""
        for service in services:
            spec = service.get("Spec") or {}
            project = (spec.get("Labels") or {}).get(LABEL_PROJECT)
            for which, engine_id in self._references(service):
                self._users.setdefault(engine_id, []).append((spec.get("Name", ""), project, which))

    def _references(self, service: Mapping[str, Any]) -> Iterable[tuple[str, str]]:
        """("current" or "previous", engine ID) for each version of this kind a service's specs refer to: the
        previous spec is what `rollback` returns to, so its versions must outlive it."""
        for which, key in (("current", "Spec"), ("previous", "PreviousSpec")):
            container = ((service.get(key) or {}).get("TaskTemplate") or {}).get("ContainerSpec") or {}
            for ref in container.get(self.ref_key.replace("Name", "s")) or []:
                yield which, str(ref.get(self.ref_key.replace("Name", "ID"), ""))

    def _still_used(self, engine_id: str) -> str | None:
        """Which service refers to a version now (read at apply: the plan may be older than the last update)."""
        with self.errors(engine_id[:12], "list services"):
            services = self.api.services()
        for service in services:
            for which, ref in self._references(service):
                if ref == engine_id:
                    return f"the {which} spec of service {(service.get('Spec') or {}).get('Name', '?')} refers to it"
        return None

    def _observed(self, item: Mapping[str, Any]) -> Observed:
        spec = item.get("Spec") or {}
        labels = spec.get("Labels") or {}
        engine = spec.get("Name", "")
        return Observed(
            self.kind,
            engine,
            item["ID"],
            labels,
            {"engineName": engine, "hash": labels.get(LABEL_CONTENT_HASH)},
            raw={"version": (item.get("Version") or {}).get("Index", 0)},
        )

    # -- apply -----------------------------------------------------------------------------------------------
    def apply(self, change: Change) -> None:
        if change.action is Action.DELETE:
            assert change.observed is not None
            used = self._still_used(change.observed.id)
            if used is not None:
                raise TemporaryError(f"{self.noun} {change.observed.spec['engineName']} kept: {used}; planned again")
            with self.errors(change.observed.spec["engineName"], "remove"):
                try:
                    self._remove(change.observed.id)
                except lazy.NotFound:
                    return
            self.log.info(f"{self.noun}.removed", name=change.observed.spec["engineName"])
            return
        desired = change.desired
        assert desired is not None
        labels = {
            **ownership_labels(desired, self.project, revision=self.ctx.revision),
            LABEL_CONTENT_HASH: desired.spec["hash"],
        }
        engine = desired.spec["engineName"]
        if change.action is Action.CREATE:
            data = read_data(desired, self._identities(desired.spec["file"]))
            with self.errors(engine, "create"):
                self._create(engine, data, labels)
            self.log.info(f"{self.noun}.created", name=engine)
            return
        assert change.observed is not None
        with self.errors(engine, "update labels"):
            url = self.api._url(f"/{self.noun}s/{{0}}/update", change.observed.id)
            body: dict[str, Any] = {"Name": engine, "Labels": labels}
            if self.kind == "Config":
                # a config update must restate its data
                body["Data"] = _b64(read_data(desired, self._identities(desired.spec["file"])))
            params = {"version": change.observed.raw["version"]}
            self.api._raise_for_status(self.api._post_json(url, data=body, params=params))
        self.log.info(f"{self.noun}.relabelled", name=engine)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()
