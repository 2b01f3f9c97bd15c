"""Container driver: observe with one filtered listing and concurrent inspects, diff exactly, apply with the least
disruptive action (update in place, reconnect, start/stop) and replace safely when nothing else will do."""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import threading
from collections.abc import Iterable, Mapping, Sequence
from functools import partial
from pathlib import Path
from typing import Any, ClassVar, cast

from reconciler.contract import Catalog, DriverContext, EngineEvent, Key, input_path, run_steps
from reconciler.core.agefiles import AgeOptions, is_encrypted
from reconciler.drivers.container import agemounts
from reconciler.drivers.container.apply import (
    Replacer,
    create_config,
    ensure_image,
    output_tail,
    post_update,
    settle,
    wait_for,
)
from reconciler.drivers.container.checks import (
    check_container,
    container_references,
    engine_paths,
    image_manifest,
)
from reconciler.drivers.container.diff import (
    diff_container,
    follow_upstream,
    leftover_of,
    prune_container,
    steps_for,
)
from reconciler.drivers.container.discarded import refuse_discarded
from reconciler.drivers.container.fields import IMAGE_FOLLOW, IN_PLACE, in_place_body
from reconciler.drivers.container.inplace import Updating, connect_extra_networks
from reconciler.drivers.container.observe import (
    ContainerFacts,
    engine_name,
    image_defaults,
    is_aside,
    observed_spec,
)
from reconciler.drivers.container.oneshot import COMPLETED, run_to_completion
from reconciler.drivers.container.oneshot import outcome as exit_outcome
from reconciler.drivers.container.parked import base_name, compose_name, resume_interrupted
from reconciler.drivers.container.spec import (
    ASIDE_SUFFIX,
    normalize_container,
    scrub,
    sensitive_env_label,
    sensitive_values,
)
from reconciler.drivers.engine import lazy
from reconciler.drivers.engine.adoption import (
    COMPOSE_NUMBER,
    COMPOSE_PROJECT,
    COMPOSE_SERVICE,
    as_owned,
    compose_project,
    without_compose,
)
from reconciler.drivers.engine.client import project_filter
from reconciler.drivers.engine.common import DockerDriver, by_name, concurrently
from reconciler.drivers.engine.session import EngineOptions, container_event_key
from reconciler.errors import PermanentError, ReconcileError, SpecError, TemporaryError
from reconciler.model import (
    LABEL_NAME,
    LABEL_PROJECT,
    Action,
    Change,
    Desired,
    FieldChange,
    Observed,
    Reference,
    Resource,
    ownership_labels,
)


class ContainerDriver(DockerDriver):
    kind = "Container"
    rank = 2
    options_type: ClassVar[type] = AgeOptions  # --age-identity: `.age` env files (issue 22)
    create_after_deletes = True  # a pruned container may hold the name, host port or static IP of a new one

    def __init__(self, ctx: DriverContext) -> None:
        super().__init__(ctx)
        # per pass: each image reference is checked (pulled when missing or of another platform than the declared
        # one) once per platform, not once per container
        self._images_ready: set[tuple[str, str | None]] = set()
        self._image_locks: dict[tuple[str, str | None], threading.Lock] = {}
        self._image_locks_guard = threading.Lock()
        # `.age` bind sources: their plaintext files for this project and engine (agemounts.py)
        self._plaintexts = agemounts.PlaintextDir.of(self.project, ctx.engine_url)
        self._age_mounts = agemounts.AgeMounts(self._plaintexts, ctx.options_for(AgeOptions))

    # -- pure ------------------------------------------------------------------------------------------------
    def normalize(self, resource: Resource) -> Desired:
        if resource.name.endswith(ASIDE_SUFFIX):
            raise SpecError("metadata.name", f"names ending in {ASIDE_SUFFIX} are reserved for replacements")
        return normalize_container(resource, self.ctx.options_for(AgeOptions), self._plaintexts)

    def references(self, desired: Desired) -> Iterable[Reference]:
        return container_references(desired)

    def inputs(self, resource: Resource) -> Iterable[Path]:
        """Env files, and read-only bind sources (configuration; writable ones are data, changing all the time)."""
        for name in resource.spec.get("envFiles") or []:
            yield input_path(resource, str(name))
        for mount in resource.spec.get("mounts") or []:
            readonly = mount.get("readOnly", is_encrypted(str(mount.get("source"))))  # an .age file: by default
            if mount.get("type") == "bind" and readonly and mount.get("source"):
                yield input_path(resource, str(mount["source"]))

    def catalog_references(self, desired: Desired, catalog: Catalog) -> Iterable[Reference]:
        """The Image manifest with this container's reference, when declared (found through the catalog)."""
        image = image_manifest(desired, catalog)
        if image is not None:
            yield Reference("Image", image.name, "spec.image", required=False)

    def local_fields(self, desired: Desired) -> Iterable[tuple[str, str]]:
        return agemounts.local_fields(desired.resource)

    def check(self, desired: Desired, catalog: Catalog) -> Iterable[tuple[str, str]]:
        return check_container(desired, catalog, engine_paths(self.ctx.engine_url))

    def diff(self, desired: Desired, observed: Observed | None) -> Change:
        change = self._age_mounts.diff(diff_container(desired, observed))
        if observed is not None and isinstance(observed.raw, ContainerFacts) and observed.raw.adopted:
            return self._adoption(change, desired, observed.raw)
        return change

    def _adoption(self, change: Change, desired: Desired, facts: ContainerFacts) -> Change:
        """A container of the Compose project being adopted is replaced by one of this project (with the same
        downtime as any replace: the old one runs until the new one is created)."""
        owner = FieldChange(
            "owner",
            f"Compose project {self.project} ({facts.engine_name})",
            f"project {self.project}",
            Action.REPLACE,
            note="replaced by a container of this project; volumes are kept",
        )
        fields = (owner, *change.fields)
        steps = steps_for(Action.REPLACE, desired, list(fields), facts)
        return dataclasses.replace(change, action=Action.REPLACE, fields=fields, steps=tuple(steps))

    def prune(self, observed: Observed) -> Change:
        return prune_container(observed)

    def leftover_of(self, observed: Observed) -> str | None:
        """Planner hook: a leftover aside container is replace state, pruned even under --no-prune."""
        return leftover_of(observed)

    def follow(self, change: Change, upstream: list[Change]) -> Change:
        return follow_upstream(change, upstream)

    # -- observe (read only) ---------------------------------------------------------------------------------
    def event_keys(self, event: EngineEvent, project: str, known: set[Key]) -> Iterable[Key]:
        key = container_event_key(event, project)
        return () if key is None else (key,)

    def observe(self, desired: Sequence[Desired]) -> dict[str, Observed]:
        declared = {d.name for d in desired}
        """One filtered listing, then every inspect the comparison needs, concurrently."""
        with self.errors("*", "list"):
            listed = self.api.containers(all=True, filters=project_filter(self.project, self.kind))
        with self.errors("*", "inspect"):
            # in a watch, only containers an engine event named since the last pass are inspected again
            infos = self.api.remembered.containers(listed, lambda ids: concurrently(self.api.inspect_container, ids))
            listed_names = {engine_name(i) for i in infos.values()}
            others = concurrently(by_name(self.api.inspect_container), [n for n in declared if n not in listed_names])
            wanted_images = {i["Image"] for i in infos.values()} | {
                i["Config"]["Image"] for i in infos.values() if i["Config"].get("Image")
            }
            images = concurrently(self.inspect_image, wanted_images)
        names = {i["Id"]: engine_name(i) for i in [*infos.values(), *others.values()]}
        found: dict[str, Observed] = {}
        for info in infos.values():
            label = (info["Config"].get("Labels") or {}).get(LABEL_NAME)
            # known by its label when nothing else holds that name: parked aside by an unfinished replace, or
            # renamed by hand (both are given their name back); otherwise by its engine name (a leftover, pruned)
            free = bool(label) and label not in listed_names and label not in others
            aside = free and is_aside(info, label)
            renamed = free and not aside and engine_name(info) != label
            key = cast(str, label) if aside or renamed else engine_name(info)  # both imply a label
            found[key] = self._observed(info, images, names, aside, key, renamed)
        for name, info in others.items():
            found[name] = self._observed(info, {}, names, False, name)
        wanted = {d.name: d.spec["state"] for d in desired}
        found = resume_interrupted(found, self._compose_parked(), wanted, self.project)
        if self.ctx.options_for(EngineOptions).adopt:
            found.update(self._compose_containers(declared, found))
        self._age_mounts.observed(desired, found)
        return found

    def _compose_parked(self) -> dict[str, Observed]:
        """Containers of the Compose project of this name that an interrupted `apply --adopt` parked, by engine
        name, as this project's (it began taking them over): looked for with or without --adopt."""
        with self.errors("*", "list parked containers"):
            listed = self.api.containers(
                all=True, filters={"name": [ASIDE_SUFFIX], "label": [f"{COMPOSE_PROJECT}={self.project}"]}
            )
        ids = [
            c["Id"]
            for c in listed
            if compose_project(c.get("Labels")) == self.project and base_name(c["Names"][0].lstrip("/"))
        ]
        if not ids:
            return {}
        with self.errors("*", "inspect"):
            infos = concurrently(self.api.inspect_container, ids)
            refs = {i["Image"] for i in infos.values()} | {i["Config"].get("Image") or "" for i in infos.values()}
            images = concurrently(self.inspect_image, refs - {""})
        parked: dict[str, Observed] = {}
        for info in infos.values():
            engine = engine_name(info)
            obs = self._observed(info, images, {info["Id"]: engine}, False, engine)
            parked[engine] = self._as_adopted(obs, base_name(engine) or engine)
        return parked

    def _as_adopted(self, obs: Observed, name: str) -> Observed:
        """A Compose container seen as this project's `name`, to be replaced by one of its own."""
        labels = as_owned(obs.labels, self.kind, name, self.project)
        spec = {**obs.spec, "labels": without_compose(obs.spec.get("labels"))}  # Compose's own are no news
        return dataclasses.replace(obs, labels=labels, spec=spec, raw=dataclasses.replace(obs.raw, adopted=True))

    def _compose_containers(self, declared: set[str], found: Mapping[str, Observed]) -> dict[str, Observed]:
        """With --adopt: for each declared name that no container of this project holds, the container of the
        Compose project of the same name that holds it, or runs the service of that name (the first replica)."""
        candidates: dict[str, str] = {}
        for name, obs in found.items():
            if name in declared and compose_project(obs.labels) == self.project:
                candidates[name] = obs.id
        missing = {n for n in declared if n not in found}
        if missing:
            with self.errors("*", "list the Compose project's containers"):
                listed = self.api.containers(all=True, filters={"label": [f"{COMPOSE_PROJECT}={self.project}"]})
            for summary in sorted(listed, key=lambda c: ((c.get("Labels") or {}).get(COMPOSE_NUMBER, ""), c["Id"])):
                labels = summary.get("Labels") or {}
                if compose_project(labels) != self.project or base_name(summary["Names"][0].lstrip("/")):
                    continue  # parked ones were settled by resume_interrupted
                service, number = labels.get(COMPOSE_SERVICE), labels.get(COMPOSE_NUMBER)
                # `import compose` names a container `<project>-<service>-<number>`, as Compose v2 does (v1: `_`)
                keys = (summary["Names"][0].lstrip("/"), f"{self.project}-{service}-{number}", service)
                for key in keys:
                    if key in missing and key not in candidates:
                        candidates[key] = summary["Id"]
                        break
        if not candidates:
            return {}
        with self.errors("*", "inspect"):
            infos = concurrently(self.api.inspect_container, sorted(set(candidates.values())))
            images = concurrently(self.inspect_image, {i["Image"] for i in infos.values()})
        names = {i["Id"]: engine_name(i) for i in infos.values()}
        adopted: dict[str, Observed] = {}
        for name, cid in candidates.items():
            adopted[name] = self._as_adopted(self._observed(infos[cid], images, names, False, name), name)
        return adopted

    def _observed(
        self,
        info: Mapping[str, Any],
        images: Mapping[str, Mapping[str, Any]],
        names: Mapping[str, str],
        aside: bool,
        key: str,
        renamed: bool = False,
    ) -> Observed:
        ref = info["Config"].get("Image") or ""
        current = images.get(ref)
        facts = ContainerFacts(
            id=info["Id"],
            engine_name=engine_name(info),
            image_id=info["Image"],
            current_image_id=current["Id"] if current else None,
            outcome=exit_outcome(info),
            defaults=image_defaults(images.get(info["Image"])),
            aside=aside,
            renamed=renamed,
        )
        labels = info["Config"].get("Labels") or {}
        return Observed(self.kind, key, info["Id"], labels, observed_spec(info, names), raw=facts)

    # -- apply -----------------------------------------------------------------------------------------------
    def apply(self, change: Change) -> None:
        try:
            self._apply(change)
        except ReconcileError as exc:
            # the engine quotes rejected values back (e.g. "TOK=<value>"): sensitive ones never leave this driver
            message = scrub(str(exc), sensitive_values(change.desired))
            if message == str(exc):
                raise
            clone = copy.copy(exc)
            clone.args = (message,)
            raise clone from None

    def _apply(self, change: Change) -> None:
        """The steps the plan showed (create, replace, delete); an in-place update runs its fields' rows. The
        plaintext of `.age` bind sources is written first and removed with the container (agemounts.py)."""
        name = change.name
        self._age_mounts.collect()
        if change.action is Action.DELETE:
            assert change.observed is not None
            with self.errors(name, "remove"):
                self._remove(change)
            self._age_mounts.removed(change.observed.name)
            return
        desired = change.desired
        assert desired is not None
        self._age_mounts.write(desired)
        self._apply_to(change, desired)
        self._age_mounts.keep_only(desired)

    def _apply_to(self, change: Change, desired: Desired) -> None:
        name = change.name
        created: dict[str, str] = {}

        def wait(dependency: str, condition: str, timeout: int) -> None:
            self.ctx.progress(desired.key, "waiting", f"for {dependency} to be {condition}")
            self._wait_one(dependency, condition, timeout)
            if condition == "healthy":
                self.ctx.progress((self.kind, dependency), "healthy", "")

        def create() -> None:
            created["id"] = self._create(desired)

        def start() -> None:
            self._start(desired, created["id"])

        if change.action is Action.CREATE:
            with self.errors(name, "create"):
                try:
                    # a command that exits at once fails the create here, not as drift in the next plan
                    run_steps(change, {"wait": wait, "create": create, "start": start})
                except Exception:
                    if desired.spec["state"] != COMPLETED:  # a failed one-shot is kept: its logs, its re-run
                        self._discard_failed_create(name)
                    raise
            return
        assert change.observed is not None
        facts = change.observed.raw
        assert isinstance(facts, ContainerFacts)
        if change.action is Action.REPLACE and self._replace_needed(change, facts):
            # a parked old container was stopped by the replace that parked it: restored, it runs again as declared
            running = change.observed.spec["state"] in ("running", "paused") or (
                facts.aside and desired.spec["state"] == "running"
            )
            restore_as = None
            if facts.adopted:
                restore_as = compose_name(change.observed.labels, name) if facts.aside else facts.engine_name
            replacer = Replacer(
                self.api,
                self.log,
                self.project,
                name,
                facts.id,
                running,
                change.observed.spec["stopTimeout"],
                parked=facts.aside,
                restore_as=restore_as,
            )
            with self.errors(name, "replace"):
                # the waits come first: a failed dependency never stops a healthy container
                run_steps(
                    change,
                    {
                        "wait": wait,
                        "discard": self._discard,
                        "stop-old": replacer.stop_old,
                        "park": replacer.park,
                        "create": replacer.guarded(create),
                        "start": replacer.guarded(start),
                        "drop-old": replacer.drop_old,
                    },
                )
            return
        try:
            with self.errors(name, "update"):
                self._update(change, facts)
        except PermanentError:
            if not self._gone(facts.id):
                raise
            # removed from outside after the plan looked (a `docker rm -f` whose die event started this pass):
            # the plan's premise is gone, not the spec's fault; the next pass observes the absence and creates it
            raise TemporaryError(f"container {name}: update: the container was removed meanwhile") from None

    def _gone(self, cid: str) -> bool:
        try:
            self.api.inspect_container(cid)
        except lazy.NotFound:
            return True
        except Exception:  # the engine failing again says nothing about the container
            return False
        return False

    def _replace_needed(self, change: Change, facts: ContainerFacts) -> bool:
        """A replace asked for only because an upstream image was rebuilt is skipped when its ID did not move."""
        replacing = [f for f in change.fields if f.action is Action.REPLACE]
        if any(f.note != IMAGE_FOLLOW for f in replacing):
            return True
        assert change.desired is not None
        try:
            current = self.api.inspect_image(change.desired.spec["image"])["Id"]
        except lazy.ImageNotFound:
            return True
        if current == facts.image_id:
            self.log.info("container.image_unchanged", name=change.name, image=current[:19])
            return False
        return True

    def _wait_for_dependencies(self, desired: Desired) -> None:
        for dep in desired.spec["dependsOn"]:
            self.ctx.progress(desired.key, "waiting", f"for {dep['name']} to be {dep['condition']}")
            self._wait_one(dep["name"], dep["condition"], dep["timeout"])

    def _wait_one(self, name: str, condition: str, timeout: int) -> None:
        wait_for(by_name(self.api.inspect_container), name, condition, timeout)

    def _create(self, desired: Desired) -> str:
        self.ctx.progress(desired.key, "starting", "creating the container")
        self._ensure_image(desired.spec["image"], desired.spec["platform"])
        labels = {
            **ownership_labels(desired, self.project, self.references(desired), self.ctx.revision),
            **sensitive_env_label(desired),
        }
        config = create_config(self.api, desired, labels)
        response = self.api.create_container(**config)
        cid = response["Id"]
        try:
            refuse_discarded(response.get("Warnings"), "create")
        except PermanentError:
            self.api.remove_container(cid, v=False, force=True)  # never started: nothing of it is lost
            raise
        self.log.info("container.created", name=desired.name, id=cid[:12])
        connect_extra_networks(self.api, cid, desired.spec)
        return cid

    def _ensure_image(self, reference: str, wanted: str | None) -> None:
        """The image is there for the declared platform (pulled when missing): asked once per reference and
        platform and pass, however many containers use it (fifty new containers of one missing image make one
        pull, not fifty)."""
        key = (reference, wanted)
        with self._image_locks_guard:
            lock = self._image_locks.setdefault(key, threading.Lock())
        with lock:
            if key not in self._images_ready:
                ensure_image(self.api, reference, wanted)
                self._images_ready.add(key)

    def _start(self, desired: Desired, cid: str) -> None:
        self.ctx.progress(desired.key, "starting", "")
        secrets = [*desired.secret_values(), *self._age_mounts.secret_values(desired.name)]
        if desired.spec["state"] == COMPLETED:  # a one-shot: started once, waited for until it exits 0
            self.ctx.progress(desired.key, "waiting", "for it to complete")
            tail = lambda c: output_tail(self.api, c, secrets)  # noqa: E731
            run_to_completion(self.api, cid, desired.spec["completionTimeout"], tail)
            self.log.info("container.completed", name=desired.name)
            return
        self.api.start(cid)
        self.log.info("container.started", name=desired.name)
        self.ctx.progress(desired.key, "settling", "checking it stays up")
        settle(self.api.inspect_container, cid, output=lambda c: output_tail(self.api, c, secrets))

    def _update(self, change: Change, facts: ContainerFacts) -> None:
        desired = change.desired
        assert desired is not None
        name = change.name
        if facts.discard is not None:
            self._discard(facts.discard)
        # an update runs only when every field is in place (or is an image follow whose image did not move)
        fields = [f for f in change.fields if f.action is Action.UPDATE]
        if any(f.path == "name" for f in fields):
            self.api.rename(facts.id, name)
            self.log.info("container.renamed_back", name=name, was=facts.engine_name)
        # one update call for every in-place field changed through it, then each field's own operation, in order
        changed: dict[str, list[str]] = {}
        for row in IN_PLACE:
            mine = row.changes_of(fields)
            if mine and row.update is not None and row.update.body is not None:
                changed[row.key] = [sub for f in mine if (sub := f.path.partition(".")[2])]
        if changed:
            body = in_place_body(desired.spec, changed)
            post_update(self.api, facts.id, body)
            self.log.info("container.updated", name=name, fields=sorted(body))
        had = change.observed.spec if change.observed else {}
        secrets = [*desired.secret_values(), *self._age_mounts.secret_values(desired.name)]
        updating = Updating(
            self.api,
            self.log,
            name,
            facts.id,
            desired,
            had,
            partial(self._wait_for_dependencies, desired),
            tail=lambda c: output_tail(self.api, c, secrets),
        )
        for row in IN_PLACE:
            mine = row.changes_of(fields)
            if mine and row.update is not None and row.update.run is not None:
                row.update.run(updating, mine)

    def _discard(self, cid: str) -> None:
        """Remove the new container an interrupted replace created and never ran (its volumes are kept)."""
        with contextlib.suppress(lazy.NotFound):
            self.api.remove_container(cid, v=False, force=True)
        self.log.info("container.discarded", id=cid[:12])

    def _discard_failed_create(self, name: str) -> None:
        """A container created but not started leaves nothing behind: the next apply creates it afresh."""
        try:
            info = by_name(self.api.inspect_container)(name)
        except lazy.NotFound:
            return
        if (info["Config"].get("Labels") or {}).get(LABEL_PROJECT) == self.project:
            self.api.remove_container(info["Id"], v=False, force=True)

    def _remove(self, change: Change) -> None:
        observed = change.observed
        assert observed is not None
        timeout = observed.spec.get("stopTimeout", 10)
        gone = False

        def stop() -> None:
            nonlocal gone
            try:
                self.api.stop(observed.id, timeout=timeout)
            except lazy.NotFound:
                gone = True  # already gone: the goal of a removal

        def remove() -> None:
            if not gone:
                with contextlib.suppress(lazy.NotFound):
                    self.api.remove_container(observed.id, v=False, force=True)  # never the volumes

        run_steps(change, {"stop": stop, "remove": remove})
        self.log.info("container.removed", name=observed.name, id=observed.id[:12])
