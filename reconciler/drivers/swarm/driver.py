"""The swarm drivers: Service (below), and Secret and Config (their shared SwarmDataDriver is in data.py).

Service: swarm services, planned field by field and applied as one update that is waited for.

observe: one label-filtered listing of the project's services (plus any service holding a declared name), the
network names and the project's secret/config versions to read them back by manifest name, and the registry's
digest for each declared tag. apply (the steps: apply.ServiceSteps): create, update (from the current spec, with
its version) or remove; then wait until the tasks converge, rolling a failed update back to the previous spec.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from reconciler.contract import Catalog, EngineEvent, Key, input_path, option
from reconciler.core.agefiles import SERVICE_BIND, encrypted_binds
from reconciler.drivers.engine import lazy
from reconciler.drivers.engine.client import project_filter
from reconciler.drivers.engine.common import DockerDriver, concurrently
from reconciler.drivers.engine.errors import explain
from reconciler.drivers.swarm.apply import ServiceSteps, reworded
from reconciler.drivers.swarm.data import SwarmDataDriver
from reconciler.drivers.swarm.diff import (
    KIND,
    diff_service,
    follow_image,
    prune_service,
    with_data_versions,
)
from reconciler.drivers.swarm.observe import observed_service
from reconciler.drivers.swarm.runfields import capability_problems, logging_problems
from reconciler.drivers.swarm.spec import normalize_service
from reconciler.drivers.swarm.values import canonical_reference, list_on_manager, not_a_manager, scrub
from reconciler.errors import PermanentError, ReconcileError
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


@dataclass(frozen=True)
class ServiceOptions:
    no_wait: bool = option(
        False, "--no-wait", "apply: do not wait for services to converge (no rollback either)", scope="apply"
    )
    service_timeout: float = option(
        300.0,
        "--service-timeout",
        "apply: seconds to wait for a service to converge before rolling it back (default 300)",
        env="RECONCILER_SERVICE_TIMEOUT",
        metavar="SECONDS",
        scope="apply",
    )


class ServiceDriver(DockerDriver):
    kind = KIND
    rank = 2
    options_type: ClassVar[type] = ServiceOptions

    def __init__(self, ctx: Any) -> None:
        super().__init__(ctx)
        self.options = ctx.options_for(ServiceOptions)
        self._digests: dict[str, str] = {}
        self._not_a_manager: str | None = None  # why this engine cannot hold services
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
            # an external network's driver is whoever made it's (the engine refuses a non-overlay one)
            if declared is not None and declared.spec.get("driver") != "overlay" and not declared.spec.get("external"):
                yield f"spec.networks.{i}.name", f"Network/{net['name']} is not an overlay network (driver: overlay)"
        yield from logging_problems(spec)
        yield from capability_problems(spec)
        yield from ((f"spec.mounts.{i}.source", SERVICE_BIND) for i, _ in encrypted_binds(raw.get("mounts")))
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
        if self._not_a_manager is not None:
            return Change(self.kind, desired.name, Action.CREATE, desired=desired, blocked=self._not_a_manager)
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
            self._not_a_manager = not_a_manager(self.api, "services") if declared else None
            return {}
        if not listed and not declared:
            return {}
        with self.errors("*", "list"):
            infos = {s["Spec"]["Name"]: s for s in listed}
            infos.update(concurrently(self._inspect_by_name, [n for n in declared if n not in infos]))
            networks = {n["Id"]: n["Name"] for n in self.api.networks(filters={"driver": "overlay"})}
            secrets = self._versions(self.api.secrets(filters=project_filter(self.project, "Secret")))
            configs = self._versions(self.api.configs(filters=project_filter(self.project, "Config")))
            # the tasks meant to run, to tell a service below its replicas (one listing for all)
            ids = sorted(s["ID"] for s in infos.values())
            tasks = self.api.tasks(filters={"service": ids, "desired-state": "running"}) if ids else []
        tags = {d.spec["image"] for d in desired if "@" not in d.spec["image"]}
        self._digests = {ref: digest for ref, digest in concurrently(self._registry_digest, tags).items() if digest}
        found = {}
        for name, info in infos.items():
            spec, facts = observed_service(info, networks, secrets, configs, tasks)
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
        steps = ServiceSteps(
            self.api,
            self.log,
            self.errors,
            lambda d: ownership_labels(d, self.project, revision=self.ctx.revision),
            self._wanted,
            self.wait,
            lambda: self.timeout,
        )
        try:
            steps.run(change)
        except ReconcileError as exc:
            secrets = []
            if change.desired is not None:
                env = change.desired.spec["env"]
                secrets = [env[p[4:]] for p in change.desired.sensitive if p[4:] in env]
            message = scrub(str(exc), secrets)
            if message == str(exc):
                raise
            raise reworded(exc, message) from None


class SecretDriver(SwarmDataDriver):
    kind = "Secret"
    noun = "secret"
    ref_key = "SecretName"

    def _list(self, filters: Mapping[str, Any]) -> list[dict[str, Any]]:
        return list(self.api.secrets(filters=dict(filters)))

    def _create(self, name: str, data: bytes, labels: Mapping[str, str]) -> str:
        return str(self.api.create_secret(name, data, labels=dict(labels))["ID"])

    def _remove(self, engine_id: str) -> None:
        self.api.remove_secret(engine_id)


class ConfigDriver(SwarmDataDriver):
    kind = "Config"
    noun = "config"
    ref_key = "ConfigName"

    def _list(self, filters: Mapping[str, Any]) -> list[dict[str, Any]]:
        return list(self.api.configs(filters=dict(filters)))

    def _create(self, name: str, data: bytes, labels: Mapping[str, str]) -> str:
        return str(self.api.create_config(name, data, labels=dict(labels))["ID"])

    def _remove(self, engine_id: str) -> None:
        self.api.remove_config(engine_id)
