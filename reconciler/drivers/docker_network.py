"""Network driver. Engine networks are immutable: any change is a replace, carried out as explicit steps
(disconnect the project's containers, remove, create, reconnect them with their aliases and addresses)."""

from __future__ import annotations

import ipaddress
from collections.abc import Collection, Iterable, Mapping
from functools import cached_property
from typing import Any

from reconciler.diffing import REPLACE, Compare, Rule, diff_specs, overall_action
from reconciler.drivers.base import Catalog
from reconciler.drivers.docker_common import DockerDriver, user_labels
from reconciler.drivers.engine import project_filter
from reconciler.errors import PermanentError
from reconciler.model import Action, Change, Desired, Observed, Resource, ownership_labels
from reconciler.spechash import spec_hash

BUILTIN_NETWORKS = frozenset({"bridge", "host", "none"})
RULES = {
    "driver": REPLACE,
    "internal": REPLACE,
    "attachable": REPLACE,
    "enableIPv6": REPLACE,
    "ipam": REPLACE,
    # the engine adds options of its own (e.g. the overlay's vxlan id)
    "options": Rule(Action.REPLACE, Compare.AT_LEAST),
    "labels": Rule(Action.REPLACE, Compare.AT_LEAST),
}


def _ipam_entry(entry: Mapping[str, Any]) -> dict[str, str]:
    out = {"subnet": str(entry["subnet"])}
    for key in ("gateway", "ipRange"):
        if entry.get(key):
            out[key] = str(entry[key])
    return out


def normalize_network(resource: Resource) -> Desired:
    spec = resource.spec
    ipam = spec.get("ipam") or {}
    normalized = {
        "driver": spec.get("driver") or "bridge",
        "internal": bool(spec.get("internal", False)),
        "attachable": bool(spec.get("attachable", False)),
        "enableIPv6": bool(spec.get("enableIPv6", False)),
        "ipam": {
            "driver": ipam.get("driver") or "default",
            "config": [_ipam_entry(e) for e in ipam.get("config") or []],
        },
        "options": {str(k): str(v) for k, v in (spec.get("options") or {}).items()},
    }
    return Desired(resource, normalized, spec_hash("Network", normalized, resource.labels))


def check_network(spec: Mapping[str, Any]) -> Iterable[tuple[str, str]]:
    """CIDR sanity: valid subnets, gateway and ipRange inside their subnet, no overlapping subnets."""
    subnets: list[tuple[int, ipaddress.IPv4Network | ipaddress.IPv6Network]] = []
    for i, entry in enumerate(spec["ipam"]["config"]):
        base = f"spec.ipam.config.{i}"
        try:
            subnet = ipaddress.ip_network(entry["subnet"], strict=True)
        except ValueError as exc:
            yield f"{base}.subnet", f"invalid subnet: {exc}"
            continue
        for j, other in subnets:
            if subnet.version == other.version and subnet.overlaps(other):
                yield f"{base}.subnet", f"overlaps spec.ipam.config[{j}].subnet {other}"
        subnets.append((i, subnet))
        if "gateway" in entry:
            try:
                gateway = ipaddress.ip_address(entry["gateway"])
                if gateway not in subnet:
                    yield f"{base}.gateway", f"gateway {gateway} is outside subnet {subnet}"
            except ValueError as exc:
                yield f"{base}.gateway", f"invalid address: {exc}"
        if "ipRange" in entry:
            try:
                ip_range = ipaddress.ip_network(entry["ipRange"], strict=True)
                if ip_range.version != subnet.version or not ip_range.subnet_of(subnet):  # type: ignore[arg-type]
                    yield f"{base}.ipRange", f"ipRange {ip_range} is outside subnet {subnet}"
            except ValueError as exc:
                yield f"{base}.ipRange", f"invalid range: {exc}"
    if spec["attachable"] and spec["driver"] != "overlay":
        yield "spec.attachable", "attachable applies to overlay networks only"
    if spec["enableIPv6"] is False and any(s.version == 6 for _, s in subnets):
        yield "spec.enableIPv6", "an IPv6 subnet is declared; set enableIPv6: true"


class NetworkDriver(DockerDriver):
    kind = "Network"
    rank = 1
    # its delete disconnects the project's containers itself; a pruned network may hold a subnet a new one needs
    delete_after_users = False
    create_after_deletes = True

    def normalize(self, resource: Resource) -> Desired:
        if resource.name in BUILTIN_NETWORKS:
            from reconciler.errors import SpecError

            raise SpecError("metadata.name", f"{resource.name!r} is a built-in engine network; do not declare it")
        return normalize_network(resource)

    def check(self, desired: Desired, catalog: Catalog) -> Iterable[tuple[str, str]]:
        return check_network(desired.spec)

    def _observed(self, net: Mapping[str, Any]) -> Observed:
        labels = net.get("Labels") or {}
        ipam = net.get("IPAM") or {}
        config = []
        for entry in ipam.get("Config") or []:
            item = {"subnet": entry.get("Subnet", "")}
            if entry.get("Gateway"):
                item["gateway"] = entry["Gateway"]
            if entry.get("IPRange"):
                item["ipRange"] = entry["IPRange"]
            config.append(item)
        spec = {
            "driver": net.get("Driver"),
            "internal": bool(net.get("Internal")),
            "attachable": bool(net.get("Attachable")),
            "enableIPv6": bool(net.get("EnableIPv6")),
            "ipam": {"driver": ipam.get("Driver") or "default", "config": config},
            "options": dict(net.get("Options") or {}),
            "labels": user_labels(labels),
        }
        return Observed(self.kind, net["Name"], net["Id"], labels, spec, raw=net)

    def observe(self, declared: Collection[str]) -> dict[str, Observed]:
        with self.errors("*", "list"):
            listed = self.api.networks(filters=project_filter(self.project, self.kind))
        owned = {n["Name"]: self._observed(n) for n in listed}
        return self.observe_named(owned, declared, lambda n: self._observed(self.api.inspect_network(n)))

    @cached_property
    def swarm_active(self) -> bool:
        with self.errors("*", "info"):
            info = self.api.info()
        swarm = info.get("Swarm") or {}
        return swarm.get("LocalNodeState") == "active" and bool(swarm.get("ControlAvailable"))

    def _comparable(self, desired: Desired, observed: Observed) -> dict[str, Any]:
        """Observed spec without what the engine assigns when the manifest leaves it open."""
        have = {**observed.spec, "ipam": dict(observed.spec["ipam"])}
        want_config = desired.spec["ipam"]["config"]
        if not want_config:
            have["ipam"]["config"] = []
        else:
            have["ipam"]["config"] = [
                {k: v for k, v in got.items() if k in want}
                for got, want in zip(have["ipam"]["config"], want_config, strict=False)
            ] + have["ipam"]["config"][len(want_config) :]
        return have

    def diff(self, desired: Desired, observed: Observed | None) -> Change:
        blocked = None
        if desired.spec["driver"] == "overlay" and (observed is None or observed.spec["driver"] != "overlay"):
            if not self.swarm_active:
                blocked = "overlay networks need swarm mode; run `docker swarm init` on this engine first"
        if observed is None:
            return Change(self.kind, desired.name, Action.CREATE, desired=desired, blocked=blocked)
        want = {**desired.spec, "labels": dict(desired.resource.labels)}
        fields = diff_specs(want, self._comparable(desired, observed), RULES)
        action = overall_action(fields)
        steps: tuple[str, ...] = ()
        if action is Action.REPLACE:
            blocked = blocked or self.foreign_users(desired.name)
            users = sorted(c["Names"][0].lstrip("/") for c in self.users(desired.name))
            steps = (
                *(f"disconnect container {u}" for u in users),
                "remove network",
                "create network",
                *(f"reconnect container {u}" for u in users),
            )
        return Change(self.kind, desired.name, action, tuple(fields), desired, observed, blocked=blocked, steps=steps)

    def prune(self, observed: Observed) -> Change:
        return Change(
            self.kind,
            observed.name,
            Action.DELETE,
            observed=observed,
            blocked=self.foreign_users(observed.name),
        )

    def _create(self, desired: Desired) -> None:
        spec = desired.spec
        pools = [
            {
                "Subnet": e["subnet"],
                **({"Gateway": e["gateway"]} if "gateway" in e else {}),
                **({"IPRange": e["ipRange"]} if "ipRange" in e else {}),
            }
            for e in spec["ipam"]["config"]
        ]
        ipam = {"Driver": spec["ipam"]["driver"], "Config": pools, "Options": {}}
        with self.errors(desired.name, "create"):
            try:
                self.api.create_network(
                    desired.name,
                    driver=spec["driver"],
                    options=spec["options"] or None,
                    ipam=ipam,
                    internal=spec["internal"],
                    attachable=spec["attachable"] or None,
                    enable_ipv6=spec["enableIPv6"],
                    labels=ownership_labels(desired, self.project),
                    check_duplicate=True,
                )
            except Exception as exc:
                if "not a swarm manager" in str(exc):
                    raise PermanentError(
                        f"network {desired.name}: overlay networks need swarm mode (docker swarm init)"
                    ) from None
                raise
        self.log.info("network.created", name=desired.name, driver=spec["driver"])

    def _endpoints(self, name: str) -> list[tuple[str, dict[str, Any]]]:
        """(container id, how it is attached) for every container on the network, to reattach it the same way."""
        found = []
        for summary in self.users(name):
            with self.errors(name, "inspect attached container"):
                info = self.api.inspect_container(summary["Id"])
            endpoint = (info.get("NetworkSettings", {}).get("Networks") or {}).get(name) or {}
            short = info["Id"][:12]
            aliases = [a for a in endpoint.get("Aliases") or [] if a not in (short, info["Config"].get("Hostname"))]
            ipam = endpoint.get("IPAMConfig") or {}
            found.append((info["Id"], {"aliases": aliases or None, "ipv4_address": ipam.get("IPv4Address") or None}))
        return found

    def _remove(self, name: str) -> None:
        with self.errors(name, "remove"):
            self.api.remove_network(name)
        self.log.info("network.removed", name=name)

    def apply(self, change: Change) -> None:
        if change.action is Action.CREATE:
            assert change.desired is not None
            self._create(change.desired)
        elif change.action is Action.DELETE:
            for cid, _ in self._endpoints(change.name):  # only this project's containers can be left (see prune)
                with self.errors(change.name, "disconnect"):
                    self.api.disconnect_container_from_network(cid, change.name, force=True)
            self._remove(change.name)
        elif change.action is Action.REPLACE:
            assert change.desired is not None
            endpoints = self._endpoints(change.name)
            for cid, _ in endpoints:
                with self.errors(change.name, "disconnect"):
                    self.api.disconnect_container_from_network(cid, change.name, force=True)
                self.log.info("network.disconnected", name=change.name, container=cid[:12])
            self._remove(change.name)
            self._create(change.desired)
            for cid, how in endpoints:
                with self.errors(change.name, "reconnect"):
                    self.api.connect_container_to_network(cid, change.name, **how)
                self.log.info("network.reconnected", name=change.name, container=cid[:12])
