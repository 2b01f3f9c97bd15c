"""Service driver: swarm services, planned field by field and applied as one update that is waited for.

observe: one label-filtered listing of the project's services (plus any service holding a declared name), the
network names and the project's secret/config versions to read them back by manifest name, and the registry's
digest for each declared tag. apply: create, update (from the current spec, with its version) or remove; then
wait until the tasks converge, rolling a failed update back to the previous spec.
"""

from __future__ import annotations

import copy
import datetime
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from reconciler.contract import Catalog, EngineEvent, Key, input_path, option
from reconciler.drivers.engine import lazy
from reconciler.drivers.engine.client import project_filter
from reconciler.drivers.engine.common import DockerDriver, concurrently
from reconciler.drivers.engine.errors import engine_errors, explain, registry_failure
from reconciler.drivers.swarm.apply import endpoint_spec, service_spec, task_template
from reconciler.drivers.swarm.converge import ServiceWaiter
from reconciler.drivers.swarm.diff import (
    IMAGE_FOLLOW,
    KIND,
    diff_service,
    follow_image,
    prune_service,
    with_data_versions,
)
from reconciler.drivers.swarm.fields import rolls_tasks
from reconciler.drivers.swarm.observe import ServiceFacts, observed_service
from reconciler.drivers.swarm.spec import normalize_service
from reconciler.drivers.swarm.values import NOT_A_MANAGER, canonical_reference, list_on_manager, scrub
from reconciler.errors import PermanentError, ReconcileError, TemporaryError
from reconciler.model import (
    LABEL_NAME,
    Action,
    Change,
    Desired,
    Observed,
    Reference,
    Resource,
    ownership_labels,
)

# A container of a service task names its service in this label (events of task containers carry it).
TASK_SERVICE_LABEL = "com.docker.swarm.service.name"
REMOVAL_WAIT_SECONDS = 60.0


@dataclass(frozen=True)
class ServiceOptions:
    no_wait: bool = option(False, "--no-wait", "apply: do not wait for services to converge (no rollback either)")
    service_timeout: float = option(
        300.0,
        "--service-timeout",
        "apply: seconds to wait for a service to converge before rolling it back (default 300)",
        env="RECONCILER_SERVICE_TIMEOUT",
    )


def reworded(exc: ReconcileError, message: str) -> ReconcileError:
    """The same error (class, retry delay) saying `message`."""
    clone = copy.copy(exc)
    clone.args = (message,)
    return clone


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class ServiceDriver(DockerDriver):
    kind = KIND
    rank = 2
    options_type: ClassVar[type] = ServiceOptions

    def __init__(self, ctx: Any) -> None:
        super().__init__(ctx)
        self.options = ctx.options_for(ServiceOptions)
        self._digests: dict[str, str] = {}
        self._not_a_manager = False
        # service -> "secrets"/"configs" -> declared name -> engine name of the version this pass wants
        self._wanted: dict[str, dict[str, dict[str, str]]] = {}

    @property
    def wait(self) -> bool:
        return not self.options.no_wait

    @property
    def timeout(self) -> float:
        try:
            seconds = float(self.options.service_timeout)  # a string when given on the command line
        except (TypeError, ValueError):
            seconds = -1.0
        if seconds <= 0:
            raise PermanentError(
                f"--service-timeout: expected a positive number of seconds, got {self.options.service_timeout!r}"
            )
        return seconds

    # -- pure ------------------------------------------------------------------------------------------------
    def inputs(self, resource: Resource) -> Iterable[Path]:
        """Env files, as for containers."""
        for name in resource.spec.get("envFiles") or []:
            yield input_path(resource, str(name))

    def normalize(self, resource: Resource) -> Desired:
        return normalize_service(resource)

    def references(self, desired: Desired) -> Iterable[Reference]:
        spec = desired.spec
        for i, net in enumerate(spec["networks"]):
            yield Reference("Network", net["name"], f"spec.networks.{i}.name", required=False)
        for i, ref in enumerate(spec["secrets"]):
            yield Reference("Secret", ref["name"], f"spec.secrets.{i}.name", required=False)
        for i, ref in enumerate(spec["configs"]):
            yield Reference("Config", ref["name"], f"spec.configs.{i}.name", required=False)
        for i, mount in enumerate(spec["mounts"]):
            if mount["type"] == "volume":
                yield Reference("Volume", mount["source"], f"spec.mounts.{i}.source", required=False)

    def catalog_references(self, desired: Desired, catalog: Catalog) -> Iterable[Reference]:
        """The Image manifest with this service's reference, when declared: built or pulled (and pushed) first."""
        for image in catalog.of_kind("Image"):
            ref = image.spec.get("reference") or image.resource.spec.get("reference")
            if ref and canonical_reference(str(ref)) == desired.spec["image"]:
                yield Reference("Image", image.name, "spec.image", required=False)

    def follow(self, change: Change, upstream: list[Change]) -> Change:
        """An Image this service runs is built or pulled in the same plan: pin its digest again afterwards."""
        return follow_image(change, upstream, self.wait)

    def check(self, desired: Desired, catalog: Catalog) -> Iterable[tuple[str, str]]:
        spec = desired.spec
        raw = desired.resource.spec
        if spec["mode"] == "global":
            if raw.get("replicas") is not None:
                yield "spec.replicas", "a global service runs one task per node; replicas applies to mode replicated"
            if spec["placement"]["maxReplicasPerNode"]:
                yield "spec.placement.maxReplicasPerNode", "applies to mode replicated only"
        for i, net in enumerate(spec["networks"]):
            declared = catalog.get("Network", net["name"])
            if declared is not None and declared.spec.get("driver") != "overlay":
                yield f"spec.networks.{i}.name", f"Network/{net['name']} is not an overlay network (driver: overlay)"
        if spec["rollback"]["failureAction"] == "rollback":
            yield "spec.rollback.failureAction", "a rollback cannot itself roll back: pause or continue"
        if spec["endpointMode"] == "dnsrr" and any(p["publishMode"] == "ingress" for p in spec["ports"]):
            yield "spec.endpointMode", "dnsrr cannot publish ingress ports; use publishMode: host"
        seen: dict[tuple[int, str], int] = {}
        for i, port in enumerate(spec["ports"]):
            if port["hostPort"] is None:
                continue
            key = (port["hostPort"], port["protocol"])
            if key in seen:
                yield f"spec.ports.{i}.hostPort", f"host port {key[0]}/{key[1]} is published twice"
            seen[key] = i
        targets: set[str] = set()
        for kind in ("secrets", "configs"):
            for i, ref in enumerate(spec[kind]):
                if ref["target"] in targets:
                    yield f"spec.{kind}.{i}.target", f"target {ref['target']} is used twice"
                targets.add(ref["target"])

    def diff(self, desired: Desired, observed: Observed | None) -> Change:
        if self._not_a_manager:
            return Change(self.kind, desired.name, Action.CREATE, desired=desired, blocked=NOT_A_MANAGER)
        return diff_service(desired, observed, self._digests.get(desired.spec["image"]), self.wait)

    def prune(self, observed: Observed) -> Change:
        return prune_service(observed)

    def after_plan(self, change: Change, changes: Mapping[Key, Change]) -> Change:
        """Point the service at the version of each declared Secret/Config this plan wants (content-addressed:
        new content is a new engine object, so the service is repointed, which rolls its tasks)."""
        if change.desired is None:
            return change
        wanted = self._wanted[change.name] = self._wanted_versions(change.desired, changes)
        return with_data_versions(change, wanted, self.wait)

    @staticmethod
    def _wanted_versions(desired: Desired, changes: Mapping[Key, Change]) -> dict[str, dict[str, str]]:
        wanted: dict[str, dict[str, str]] = {"secrets": {}, "configs": {}}
        for key, kind in (("secrets", "Secret"), ("configs", "Config")):
            for ref in desired.spec[key]:
                data = changes.get((kind, ref["name"]))
                if data is not None and data.desired is not None:
                    wanted[key][ref["name"]] = data.desired.spec["engineName"]
        return wanted

    def event_keys(self, event: EngineEvent, project: str, known: set[Key]) -> Iterable[Key]:
        """Service events carry only the name; task containers name their service in a label."""
        attrs = (event.raw.get("Actor") or {}).get("Attributes") or {}
        if event.type == "service":
            name = attrs.get("name", "")
        elif event.type == "container":
            name = attrs.get(TASK_SERVICE_LABEL, "")
        else:
            return ()
        key = (self.kind, name)
        return (key,) if name and key in known else ()

    # -- observe (read only) ---------------------------------------------------------------------------------
    def observe(self, desired: Sequence[Desired]) -> dict[str, Observed]:
        """Nothing at all (and no further call) when no service is declared or owned, or the engine is no
        swarm manager: a tree of containers costs one listing here."""
        declared = {d.name for d in desired}
        with self.errors("*", "list"):
            listed = list_on_manager(lambda: self.api.services(filters=project_filter(self.project, self.kind)))
        if listed is None:
            self._not_a_manager = bool(declared)
            return {}
        if not listed and not declared:
            return {}
        with self.errors("*", "list"):
            infos = {s["Spec"]["Name"]: s for s in listed}
            infos.update(concurrently(self._inspect_by_name, [n for n in declared if n not in infos]))
            networks = {n["Id"]: n["Name"] for n in self.api.networks(filters={"driver": "overlay"})}
            secrets = self._versions(self.api.secrets(filters=project_filter(self.project, "Secret")))
            configs = self._versions(self.api.configs(filters=project_filter(self.project, "Config")))
        tags = {d.spec["image"] for d in desired if "@" not in d.spec["image"]}
        self._digests = {ref: digest for ref, digest in concurrently(self._registry_digest, tags).items() if digest}
        found = {}
        for name, info in infos.items():
            spec, facts = observed_service(info, networks, secrets, configs)
            labels = info["Spec"].get("Labels") or {}
            found[name] = Observed(self.kind, name, info["ID"], labels, spec, raw=facts)
        return found

    @staticmethod
    def _versions(listed: list[Mapping[str, Any]]) -> dict[str, str]:
        """Engine name -> manifest name of the project's secret or config versions."""
        out = {}
        for item in listed:
            spec = item.get("Spec") or {}
            label = (spec.get("Labels") or {}).get(LABEL_NAME)
            if label:
                out[spec.get("Name", "")] = label
        return out

    def _inspect_by_name(self, name: str) -> Mapping[str, Any]:
        """The service named exactly `name` (the engine also answers to IDs and ID prefixes)."""
        try:
            info = self.api.inspect_service(name)
        except lazy.APIError as exc:
            if exc.status_code == 404 or "not found" in explain(exc).lower():
                raise lazy.NotFound(name) from None
            raise
        if (info.get("Spec") or {}).get("Name") != name:
            raise lazy.NotFound(name)
        return info

    def _registry_digest(self, ref: str) -> str | None:
        """The registry's digest for `ref` now, or None when it cannot be asked (plan then compares the tag)."""
        try:
            return str(self.api.inspect_distribution(ref)["Descriptor"]["digest"])
        except Exception as exc:  # plan must not fail because a registry is down; apply says it clearly
            self.log.debug("service.digest_unknown", image=ref, error=str(exc)[:200])
            return None

    # -- apply -----------------------------------------------------------------------------------------------
    def apply(self, change: Change) -> None:
        try:
            self._apply(change)
        except ReconcileError as exc:
            secrets = []
            if change.desired is not None:
                env = change.desired.spec["env"]
                secrets = [env[p[4:]] for p in change.desired.sensitive if p[4:] in env]
            message = scrub(str(exc), secrets)
            if message == str(exc):
                raise
            raise reworded(exc, message) from None

    def _apply(self, change: Change) -> None:
        name = change.name
        if change.action is Action.DELETE:
            assert change.observed is not None
            self._remove(name, change.observed.id)
            return
        desired = change.desired
        assert desired is not None
        if change.action is Action.CREATE or change.action is Action.REPLACE:
            if change.action is Action.REPLACE:
                assert change.observed is not None
                self._remove(name, change.observed.id)
            self._create(desired, change)
            return
        assert change.observed is not None
        self._update(desired, change)

    def _resolve(self, desired: Desired) -> str:
        """`ref@digest` for the declared reference, from its registry (the engine's distribution inspect)."""
        ref = desired.spec["image"]
        if "@" in ref:
            return ref
        where = f"service {desired.name}: image {ref} cannot be resolved to a digest"
        try:
            digest = self.api.inspect_distribution(ref)["Descriptor"]["digest"]
        except lazy.APIError as exc:
            raise registry_failure(where, explain(exc)) from None
        except Exception as exc:
            raise TemporaryError(f"{where}: {exc}") from None
        return f"{ref}@{digest}"

    def _data_ids(
        self, desired: Desired, change: Change
    ) -> tuple[dict[str, tuple[str, str]], dict[str, tuple[str, str]]]:
        """Declared name -> (ID, engine name) of the secret/config version each attachment uses."""
        wanted = self._wanted.get(desired.name, {})
        facts = change.observed.raw if change.observed is not None else None
        found: dict[str, dict[str, tuple[str, str]]] = {"secrets": {}, "configs": {}}
        for key, list_fn in (("secrets", self.api.secrets), ("configs", self.api.configs)):
            in_use = getattr(facts, f"{key[:-1]}_versions", {}) if isinstance(facts, ServiceFacts) else {}
            for ref in desired.spec[key]:
                # the version the plan chose, else the one in use, else an engine object of that very name
                engine = wanted.get(key, {}).get(ref["name"]) or in_use.get(ref["name"]) or ref["name"]
                with self.errors(desired.name, f"find {key[:-1]} {engine}"):
                    matches = [s for s in list_fn(filters={"name": engine}) if s["Spec"]["Name"] == engine]
                if not matches:
                    raise PermanentError(f"service {desired.name}: {key[:-1]} {ref['name']} ({engine}) does not exist")
                found[key][ref["name"]] = (matches[0]["ID"], engine)
        return found["secrets"], found["configs"]

    def _labels(self, desired: Desired) -> dict[str, str]:
        return ownership_labels(desired, self.project)

    def _create(self, desired: Desired, change: Change) -> None:
        name = desired.name
        image = self._resolve(desired)
        secret_ids, config_ids = self._data_ids(desired, change)
        body = service_spec(
            name,
            desired.spec,
            self._labels(desired),
            task_template(desired.spec, image, secret_ids, config_ids),
            endpoint_spec(desired.spec),
        )
        since = _now()
        with self.errors(name, "create"):
            created = self.api._result(self.api._post_json(self.api._url("/services/create"), data=body), True)
        service_id = created["ID"]
        self.log.info("service.created", name=name, id=service_id[:12], image=image)
        if not self.wait:
            return
        try:
            with self.errors(name, "wait"):
                ServiceWaiter(self.api, self.log, self.timeout).wait(name, service_id, since)
        except ReconcileError as exc:
            # a service whose first tasks never run leaves nothing behind: the next apply creates it afresh
            with self.errors(name, "remove after a failed create"):
                self.api.remove_service(service_id)
            self.log.warning("service.create_failed", name=name, error=str(exc))
            raise reworded(exc, f"service {name}: created but did not converge ({exc}); removed again") from None
        self.log.info("service.converged", name=name)

    def _update(self, desired: Desired, change: Change) -> None:
        name = desired.name
        observed = change.observed
        assert observed is not None
        with self.errors(name, "inspect"):
            info = self.api.inspect_service(observed.id)
        current = info["Spec"]
        rolling = any(rolls_tasks(f.path) for f in change.fields)
        if rolling:
            image_changed = any(f.path == "image" for f in change.fields)
            running = current["TaskTemplate"]["ContainerSpec"]["Image"]
            image = self._resolve(desired) if image_changed else running
            if image == running and all(f.note == IMAGE_FOLLOW for f in change.fields):
                self.log.info("service.image_unchanged", name=name, image=image)
                return  # the rebuilt image has the digest the service runs: nothing to send
            secret_ids, config_ids = self._data_ids(desired, change)
            template = task_template(desired.spec, image, secret_ids, config_ids, current.get("TaskTemplate"))
            endpoint = endpoint_spec(desired.spec, current.get("EndpointSpec"))
        else:
            template, endpoint = current["TaskTemplate"], current.get("EndpointSpec") or {"Mode": "vip"}
        body = service_spec(name, desired.spec, self._labels(desired), template, endpoint, current)
        version = info["Version"]["Index"]
        since = _now()
        with self.errors(name, "update"):
            url = self.api._url("/services/{0}/update", observed.id)
            self.api._result(self.api._post_json(url, data=body, params={"version": version}), True)
        self.log.info("service.updated", name=name, rolling=rolling, fields=[f.path for f in change.fields])
        if not self.wait:
            return
        if not rolling and not any(f.path == "replicas" for f in change.fields):
            return
        try:
            with self.errors(name, "wait"):
                ServiceWaiter(self.api, self.log, self.timeout).wait(name, observed.id, since, expect_update=rolling)
        except ReconcileError as exc:
            if not rolling:
                raise reworded(exc, f"service {name}: {exc}") from None
            outcome = self._roll_back(name, observed.id)
            raise PermanentError(f"service {name}: update failed: {exc}; {outcome}") from None
        self.log.info("service.converged", name=name)

    def _roll_back(self, name: str, service_id: str) -> str:
        """Back to the spec before this update (swarm's own rollback, with the rollback config)."""
        waiter = ServiceWaiter(self.api, self.log, self.timeout)
        with self.errors(name, "inspect for rollback"):
            info = self.api.inspect_service(service_id)
        state = (info.get("UpdateStatus") or {}).get("State")
        if state not in ("rollback_started", "rollback_completed", "rollback_paused"):
            try:
                with engine_errors(f"service {name}: roll back"):
                    url = self.api._url("/services/{0}/update", service_id)
                    params = {"version": info["Version"]["Index"], "rollback": "previous"}
                    self.api._result(self.api._post_json(url, data=info["Spec"], params=params), True)
            except ReconcileError as exc:
                return f"the rollback failed too: {exc}"
            self.log.warning("service.rolling_back", name=name)
        final = waiter.wait_rollback(service_id)
        if final == "rollback_completed":
            self.log.warning("service.rolled_back", name=name)
            return "rolled back to the previous spec"
        return f"rollback did not complete: {final}"

    def _remove(self, name: str, service_id: str) -> None:
        """Remove the service and wait until its task containers are gone (they hold networks, secrets)."""
        with self.errors(name, "remove"):
            try:
                self.api.remove_service(service_id)
            except lazy.NotFound:
                return
        self.log.info("service.removed", name=name)
        deadline = time.monotonic() + REMOVAL_WAIT_SECONDS
        while time.monotonic() < deadline:
            with self.errors(name, "wait for its tasks to go"):
                left = self.api.containers(all=True, filters={"label": f"com.docker.swarm.service.id={service_id}"})
            if not left:
                return
            time.sleep(0.5)
        self.log.warning("service.tasks_linger", name=name, containers=len(left))
