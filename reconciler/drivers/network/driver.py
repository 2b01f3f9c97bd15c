"""Network driver. Engine networks are immutable: any change is a replace, carried out as explicit steps
(disconnect the project's containers, remove, create, reconnect them with their aliases and addresses)."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from functools import cached_property
from typing import Any

from reconciler.contract import Catalog, EngineEvent, Key, run_steps
from reconciler.core.indexes import per_catalog
from reconciler.diffing import diff_specs, overall_action
from reconciler.drivers.engine import external, lazy
from reconciler.drivers.engine.adoption import Adopted, adopting, as_owned, without_compose
from reconciler.drivers.engine.client import project_filter
from reconciler.drivers.engine.common import DockerDriver, by_name
from reconciler.drivers.engine.session import EngineOptions, named_event_key
from reconciler.drivers.engine.swarmnode import worker_problem
from reconciler.drivers.network import apply as network_apply
from reconciler.drivers.network import duplicates
from reconciler.drivers.network.diff import RULES, adoption, comparable, replace_steps
from reconciler.drivers.network.observe import observed_spec
from reconciler.drivers.network.routes import HostRoute, bridge_name, first_conflict, read_host_routes
from reconciler.drivers.network.spec import (
    SubnetIndex,
    check_network,
    normalize_network,
    subnets_of,
)
from reconciler.errors import EngineFault, PermanentError, ReconcileError, SpecError
from reconciler.model import (
    LABEL_PROJECT,
    Action,
    Change,
    Desired,
    FieldChange,
    Observed,
    Resource,
    ownership_labels,
)

BUILTIN_NETWORKS = frozenset({"bridge", "host", "none"})


class NetworkDriver(DockerDriver):
    kind = "Network"
    rank = 1
    # its delete disconnects the project's containers itself; a pruned network may hold a subnet a new one needs
    delete_after_users = False
    create_after_deletes = True

    def normalize(self, resource: Resource) -> Desired:
        if resource.name in BUILTIN_NETWORKS:
            raise SpecError("metadata.name", f"{resource.name!r} is a built-in engine network; do not declare it")
        return normalize_network(resource)

    def cluster_wide(self, desired: Desired) -> bool:
        """An attachable overlay network made on a swarm manager: containers on every node of that swarm (workers
        too) can attach to it by name."""
        return desired.spec["driver"] == "overlay" and bool(desired.spec.get("attachable"))

    def check(self, desired: Desired, catalog: Catalog) -> Iterable[tuple[str, str]]:
        if external.is_external(desired):
            yield from external.problems(desired.resource)
            return
        yield from check_network(desired.spec)
        index = per_catalog(catalog, "network.subnets", lambda c: SubnetIndex(c.of_kind(self.kind)))
        clashes: list[tuple[str, int, ipaddress.IPv4Network | ipaddress.IPv6Network]] = []
        for i, subnet in enumerate(subnets_of(desired.spec)):
            clashes.extend((other, i, net) for other, net in index.clashes(desired.name, subnet))
        for other, i, clash in sorted(clashes):  # as before: by the other network's name, then this subnet
            yield f"spec.ipam.config.{i}.subnet", f"overlaps {clash} of Network/{other}"

    def _observed(self, net: Mapping[str, Any]) -> Observed:
        labels = net.get("Labels") or {}
        spec = observed_spec(net)
        adopted = self.adopted.holds(self.kind, net["Name"], net["Id"])
        if adopted or adopting(self.ctx.options_for(EngineOptions).adopt, labels, self.project):
            # a Compose network: the project's once adopted (labels cannot change), compared without Compose's
            spec["labels"] = without_compose(labels)
            spec["adopting"] = not adopted
            labels = as_owned(labels, self.kind, net["Name"], self.project)
        return Observed(self.kind, net["Name"], net["Id"], labels, spec, raw=net)

    @cached_property
    def adopted(self) -> Adopted:
        return Adopted(self.project, self.ctx.state_key)

    def event_keys(self, event: EngineEvent, project: str, known: set[Key]) -> Iterable[Key]:
        key = named_event_key(event, self.kind, known)
        return () if key is None else (key,)

    def observe(self, desired: Sequence[Desired]) -> dict[str, Observed]:
        declared = {d.name for d in desired}
        self.__dict__.pop("all_subnets", None)  # per plan: other networks come and go
        with self.errors("*", "list"):
            listed = self.api.networks(filters=project_filter(self.project, self.kind))
        if any(n.get("Scope") == "swarm" for n in listed) and not self.swarm_active:
            # a worker lists a manager's overlay (with its labels) once a container here uses it: the manager's
            # Host owns it, never this one
            listed = [n for n in listed if n.get("Scope") != "swarm"]
        owned = self._one_per_name(listed)
        self.host_routes = self._read_routes(desired)
        adopted = set(self.adopted.load().get(self.kind, {}))  # no label says they are ours: the record does
        found = self.observe_named(
            owned, declared | adopted, lambda n: self._observed(by_name(self.api.inspect_network)(n))
        )
        for d in desired:  # used, never claimed: observed as the project's, spec {external: true}
            if external.is_external(d) and d.name in found and d.name not in owned:
                net = found[d.name].raw
                found[d.name] = external.observed(self.kind, d.name, self.project, net, net["Id"])
        return {n: o for n, o in found.items() if n in declared or n in owned or o.owned_by(self.project)}

    host_routes: list[HostRoute] | None = None  # None: not read (a remote engine, or no subnet to check)
    # per plan: the project's networks that share a name with the observed one (duplicates.py)
    duplicates: Mapping[str, duplicates.Duplicates] = {}

    def _one_per_name(self, listed: Sequence[Mapping[str, Any]]) -> dict[str, Observed]:
        """The project's networks by name; of several with one name, the one duplicates.split keeps is observed
        and the others are remembered for the plan to remove (an inspect each: only then, the list has no
        containers)."""
        by_name: dict[str, list[Mapping[str, Any]]] = {}
        for net in listed:
            by_name.setdefault(net["Name"], []).append(net)
        found, extra = {}, {}
        for name, nets in by_name.items():
            if len(nets) > 1:
                with self.errors(name, "inspect the networks of this name"):
                    inspected = [self.api.inspect_network(n["Id"]) for n in nets]
                kept, extra[name] = duplicates.split(inspected)
                nets = [kept]
            found[name] = self._observed(nets[0])
        self.duplicates = extra
        return found

    def _read_routes(self, desired: Sequence[Desired]) -> list[HostRoute] | None:
        """This machine's routes and addresses, when a declared bridge subnet must be checked against them and the
        engine runs here (a tcp:// or ssh:// engine's host cannot be read from this one)."""
        if not any(self._route_checked(d) for d in desired):
            return None
        url = self.ctx.engine_url
        if url is not None and not url.startswith("unix://"):
            self.log.info("network.route_check.skipped", reason="the engine is remote", engine=url)
            return None
        try:
            routes = read_host_routes()
        except Exception as exc:  # advisory: a netlink failure must not stop the plan
            self.log.warning("network.route_check.failed", error=str(exc))
            return None
        if not self._engine_is_here(routes):
            self.log.info("network.route_check.skipped", reason="the engine runs in another network namespace")
            return None
        return routes

    def _engine_is_here(self, routes: list[HostRoute]) -> bool:
        """A unix socket may lead to an engine in another network namespace (whose routes are not these): the
        engine is here when its default bridge's gateway is an address on that bridge here. Unknown: assume so."""
        try:
            bridge = self.api.inspect_network("bridge")
        except Exception:
            return True
        name = (bridge.get("Options") or {}).get("com.docker.network.bridge.name", "docker0")
        gateways = [c.get("Gateway") for c in (bridge.get("IPAM") or {}).get("Config") or [] if c.get("Gateway")]
        if not gateways:
            return True
        gateway = ipaddress.ip_address(gateways[0])
        return any(r.what == "address" and r.interface == name and gateway in r.network for r in routes)

    @staticmethod
    def _route_checked(desired: Desired) -> bool:
        return (
            desired.spec["driver"] == "bridge"
            and bool(desired.spec["ipam"]["config"])
            and not desired.resource.spec.get("allowRouteOverlap", False)
        )

    def _route_conflict(self, desired: Desired, observed: Observed | None) -> str | None:
        """Why the declared subnet would clash with a route or address of this host not on its own bridge."""
        if self.host_routes is None or not self._route_checked(desired):
            return None
        own = None
        if observed is not None and observed.spec["driver"] == "bridge":
            own = bridge_name(observed.id, observed.spec["options"])
        return first_conflict(subnets_of(desired.spec), self.host_routes, own)

    @cached_property
    def swarm(self) -> dict[str, Any]:
        """The engine's `info()["Swarm"]`: whether it is a swarm manager, a worker, or in no swarm."""
        with self.errors("*", "info"):
            info = self.api.info()
        return dict(info.get("Swarm") or {})

    @property
    def swarm_active(self) -> bool:
        return self.swarm.get("LocalNodeState") == "active" and bool(self.swarm.get("ControlAvailable"))

    @cached_property
    def all_subnets(self) -> list[tuple[str, ipaddress.IPv4Network | ipaddress.IPv6Network]]:
        """(network name, subnet) of every network on the engine, for the pre-flight overlap check."""
        with self.errors("*", "list all"):
            networks = self.api.networks()
        found = []
        for net in networks:
            for entry in (net.get("IPAM") or {}).get("Config") or []:
                try:
                    found.append((net["Name"], ipaddress.ip_network(entry.get("Subnet", ""), strict=False)))
                except ValueError:
                    continue
        return found

    def _overlap(self, desired: Desired) -> str | None:
        """Why the engine would refuse the create ("Pool overlaps"), found before anything is removed."""
        for subnet in subnets_of(desired.spec):
            for name, other in self.all_subnets:
                if name != desired.name and other.version == subnet.version and other.overlaps(subnet):
                    return f"subnet {subnet} overlaps {other} of network {name} on the engine"
        return None

    def diff(self, desired: Desired, observed: Observed | None) -> Change:
        if external.is_external(desired):
            return external.diff(desired, observed)
        blocked = None
        if desired.spec["driver"] == "overlay" and (observed is None or observed.spec["driver"] != "overlay"):
            if not self.swarm_active:
                blocked = worker_problem(self.swarm, "overlay networks") or (
                    "overlay networks need swarm mode; run `docker swarm init` on this engine first"
                )
        if observed is None:
            return Change(
                self.kind,
                desired.name,
                Action.CREATE,
                desired=desired,
                blocked=blocked or self._overlap(desired) or self._route_conflict(desired, None),
            )
        want, have = comparable(desired, observed)
        fields = diff_specs(want, have, RULES)
        if observed.spec.get("adopting") and not fields:
            return adoption(self.kind, self.project, desired, observed, blocked)
        if observed.spec.get("adopting"):  # differs from the manifest: replaced, its Compose containers reattached
            note = "the Compose network differs from the manifest: replaced by the project's own"
            owner = FieldChange(
                "owner", f"Compose project {self.project}", f"project {self.project}", Action.REPLACE, note=note
            )
            fields = [owner, *fields]
        dups = None if observed.spec.get("adopting") else self.duplicates.get(desired.name)
        if dups is not None:
            fields = [duplicates.field(dups), *fields]
        action = overall_action(fields)
        steps: tuple[str, ...] = duplicates.steps(dups) if dups is not None else ()
        if action is Action.REPLACE:
            users, foreign = self.split_users(desired.name)
            blocked = blocked or foreign or self._overlap(desired) or self._route_conflict(desired, observed)
            steps = (*steps, *replace_steps(users))
        elif dups is not None:  # containers of other owners on either network: never moved
            blocked = blocked or self.foreign_users(desired.name)
        return Change(self.kind, desired.name, action, tuple(fields), desired, observed, blocked=blocked, steps=steps)

    def prune(self, observed: Observed) -> Change:
        dups = self.duplicates.get(observed.name)
        return Change(
            self.kind,
            observed.name,
            Action.DELETE,
            (duplicates.field(dups),) if dups is not None else (),
            observed=observed,
            blocked=self.foreign_users(observed.name),
            steps=duplicates.steps(dups) if dups is not None else (),
        )

    def _create(self, name: str, spec: Mapping[str, Any], labels: Mapping[str, str]) -> None:
        try:
            with self.errors(name, "create"):
                made = network_apply.create_network(self.api, name, spec, labels)
        except PermanentError as exc:
            # listed only for that refusal: any other create error stays what it was, with no request more
            if "already exists" in str(exc) and any(
                self._observed(n).owned_by(self.project) for n in self._named(name)
            ):
                # a create of the project's that was still running when the plan was made (an apply killed
                # while it was in flight): a fresh plan compares it with the manifest
                raise EngineFault(f"{exc} (made by the project since the plan: planned again)") from None
            raise
        self.log.info("network.created", name=name, driver=spec["driver"])
        self._remove_twins(name, made)

    def _named(self, name: str) -> list[dict[str, Any]]:
        """Every network the engine lists under exactly `name` (its filter matches a part of a name)."""
        with self.errors(name, "list the networks of this name"):
            listed = self.api.networks(names=[name])
        return [n for n in listed if n["Name"] == name]

    def _remove_twins(self, name: str, made: str) -> None:
        """Another network of the project's with this name, made by a create that ran at the same time as this
        one (duplicates.py): removed now, while nothing is on it, before a container start finds the name
        ambiguous. One that has containers is left for the next plan to move them off."""
        for twin in duplicates.others_of(self._named(name), name, made, (LABEL_PROJECT, self.project)):
            with self.errors(name, f"remove duplicate {twin[:12]}"):
                try:
                    if self.api.inspect_network(twin).get("Containers"):
                        continue
                    self.api.remove_network(twin)
                except lazy.NotFound:
                    continue
            self.log.info("network.duplicate_removed", name=name, duplicate=twin[:12])

    def _endpoints(self, name: str) -> list[tuple[str, dict[str, Any]]]:
        """(container id, how it is attached) for every container on the network, to reattach it the same way.
        Refuses when a container of another owner joined since the plan was made: those are never touched."""
        found = []
        for summary in self.own_users(name, "it is left alone and the network is not changed"):
            with self.errors(name, "inspect attached container"):
                info = self.api.inspect_container(summary["Id"])
            found.append((info["Id"], _attached_how(info, name)))
        return found

    def _move_off_duplicate(self, change: Change, net_id: str, cid: str) -> None:
        """One container from a duplicate network of `change.name` to the kept one, as it was attached."""
        assert change.observed is not None
        name = change.name
        with self.errors(name, "inspect attached container"):
            try:
                info = self.api.inspect_container(cid)
            except lazy.NotFound:
                return  # gone since the plan
        with self.errors(name, f"disconnect {cid[:12]} from duplicate {net_id[:12]}"):
            self.api.disconnect_container_from_network(cid, net_id, force=True)
        failed = self._reconnect_all(change.observed.id, change.observed.spec, [(cid, _attached_how(info, name))])
        if failed:
            raise PermanentError("; ".join(failed))
        self.log.info("network.duplicate_left", name=name, container=cid[:12], duplicate=net_id[:12])

    def _remove_duplicate(self, name: str, net_id: str) -> None:
        with self.errors(name, f"remove duplicate {net_id[:12]}"):
            self.api.remove_network(net_id)
        self.log.info("network.duplicate_removed", name=name, duplicate=net_id[:12])

    def _duplicate_steps(self, change: Change) -> dict[str, Any]:
        return {
            "move_off_duplicate": lambda net_id, cid: self._move_off_duplicate(change, net_id, cid),
            "remove_duplicate": lambda net_id: self._remove_duplicate(change.name, net_id),
        }

    def _disconnect_all(self, name: str, endpoints: list[tuple[str, dict[str, Any]]]) -> None:
        for cid, _ in endpoints:
            with self.errors(name, "disconnect"):
                self.api.disconnect_container_from_network(cid, name, force=True)
            self.log.info("network.disconnected", name=name, container=cid[:12])

    def _reconnect_all(
        self, name: str, spec: Mapping[str, Any], endpoints: list[tuple[str, dict[str, Any]]]
    ) -> list[str]:
        """Reconnect every container, each on its own: one failure does not leave the others off the network.
        A static address outside the new subnets is dropped (the container's own change sets its new one)."""
        subnets = subnets_of(spec)
        errors = []
        for cid, how in endpoints:
            address = how.get("ipv4_address")
            if address and not any(ipaddress.ip_address(address) in s for s in subnets if s.version == 4):
                how = {**how, "ipv4_address": None}
            try:
                with self.errors(name, f"reconnect {cid[:12]}"):
                    self.api.connect_container_to_network(cid, name, **how)
                self.log.info("network.reconnected", name=name, container=cid[:12])
            except ReconcileError as exc:
                errors.append(str(exc))
        return errors

    def _replace(self, change: Change) -> None:
        """The plan's steps: disconnect its containers, remove, create (on failure: the old one again, and its
        containers back on it), reconnect them."""
        desired, observed, name = change.desired, change.observed, change.name
        assert desired is not None and observed is not None
        endpoints = dict(self._endpoints(name))  # also refuses containers of other owners that joined since
        by_name = {self._container_name(cid): (cid, how) for cid, how in endpoints.items()}
        detached: list[tuple[str, dict[str, Any]]] = []
        errors: list[str] = []

        def disconnect(container: str) -> None:
            if container in by_name:  # gone since the plan: nothing to take off or put back
                self._disconnect_all(name, [by_name[container]])
                detached.append(by_name[container])

        def create() -> None:
            try:
                self._create(name, desired.spec, ownership_labels(desired, self.project, revision=self.ctx.revision))
            except ReconcileError as exc:
                # never leave the project's containers without their network: put the old one back
                self._create(name, observed.spec, observed.labels)
                failed = self._reconnect_all(name, observed.spec, detached)
                raise PermanentError(
                    f"{exc}; the old network was recreated and its containers reconnected"
                    + (f" (except: {'; '.join(failed)})" if failed else "")
                ) from None

        def reconnect(container: str) -> None:
            if container in by_name:
                errors.extend(self._reconnect_all(name, desired.spec, [by_name[container]]))

        run_steps(
            change,
            {
                **self._duplicate_steps(change),
                "disconnect": disconnect,
                "remove": lambda: self._remove(name),
                "create": create,
                "reconnect": reconnect,
            },
        )
        if errors:
            raise PermanentError("; ".join(errors))

    def _container_name(self, cid: str) -> str:
        with self.errors(cid[:12], "inspect attached container"):
            return str(self.api.inspect_container(cid)["Name"]).lstrip("/")

    def _adopt(self, change: Change) -> None:
        assert change.observed is not None
        try:
            self.adopted.record(self.kind, change.name, change.observed.id)
        except OSError as exc:
            raise PermanentError(f"network {change.name}: cannot record the adoption: {exc}") from None
        self.log.info("network.adopted", name=change.name, compose_project=self.project)

    def _remove(self, name: str) -> None:
        with self.errors(name, "remove"):
            self.api.remove_network(name)
        self.adopted.forget(self.kind, name)
        self.log.info("network.removed", name=name)

    def apply(self, change: Change) -> None:
        if change.action is Action.UPDATE:  # an adoption, or duplicates of the name removed
            run_steps(change, {"adopt": lambda: self._adopt(change), **self._duplicate_steps(change)})
        elif change.action is Action.CREATE:
            assert change.desired is not None
            self._create(
                change.name,
                change.desired.spec,
                ownership_labels(change.desired, self.project, revision=self.ctx.revision),
            )
        elif change.action is Action.DELETE:
            run_steps(change, self._duplicate_steps(change))  # first: the name is the engine's to resolve again
            self._disconnect_all(change.name, self._endpoints(change.name))
            self._remove(change.name)
        elif change.action is Action.REPLACE:
            self._replace(change)


def _attached_how(info: Mapping[str, Any], name: str) -> dict[str, Any]:
    """How a container (its inspect) is attached to network `name`: its own aliases and static address."""
    endpoint = (info.get("NetworkSettings", {}).get("Networks") or {}).get(name) or {}
    short = info["Id"][:12]
    aliases = [a for a in endpoint.get("Aliases") or [] if a not in (short, info["Config"].get("Hostname"))]
    ipam = endpoint.get("IPAMConfig") or {}
    return {"aliases": aliases or None, "ipv4_address": ipam.get("IPv4Address") or None}
