"""Placement of one manifest tree on a fleet of engines: Host documents, `spec.hosts`, and their checks.

A tree without Host documents is one engine's, as it always was. With Hosts, every other object goes to the
Hosts its `spec.hosts` names (names, `{matchLabels: ...}`, or `all`); an object that names none goes to the Hosts
marked `default: true`, and is an error when no Host is (Terraform's default provider, not "everywhere": a
database declared once must not appear on every machine by accident). Placement is checked against the
dependency graph: an object may only go where everything it refers to goes too, except what its driver calls
`cluster_wide` (a swarm's attachable overlay network, declared once on a manager): objects on other Hosts may
refer to it, and `cluster_uses` lists those uses so that the fleet checks, on the engines, that those Hosts are
nodes of the same cluster, and applies the Hosts holding the object first.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from reconciler.contract import Driver, TlsFiles
from reconciler.core.catalog import Catalog
from reconciler.core.graph import Key
from reconciler.core.manifests import display_path
from reconciler.core.plugins import engine_class
from reconciler.errors import Problem
from reconciler.model import Desired, Resource

HOST_KIND = "Host"


@dataclass(frozen=True)
class ClusterUse:
    """`subject` on Host `host` refers to `target`, placed on `providers` (not on `host`), which its driver calls
    usable on every node of their cluster."""

    host: str
    subject: str
    target: Key
    providers: frozenset[str]


@dataclass(frozen=True)
class HostSpec:
    """One Host document, normalized: TLS paths resolved against its manifest file."""

    name: str
    labels: Mapping[str, str]
    engine: str
    tls: TlsFiles | None
    default: bool
    resource: Resource

    @property
    def local(self) -> bool:
        """Reached through a socket of this machine (what firewall rules written here can apply to)."""
        return bool(engine_class().is_local(self.engine))


def _problem(resource: Resource, path: str, message: str) -> Problem:
    return Problem(resource.source.file, resource.line_of(path), resource.subject, display_path(path), message)


def is_fleet(resources: Iterable[Resource]) -> bool:
    return any(r.kind == HOST_KIND for r in resources)


def host_specs(resources: Iterable[Resource]) -> tuple[list[HostSpec], list[Problem]]:
    """The Host documents among `resources`, normalized and checked (duplicates, TLS files)."""
    hosts: dict[str, HostSpec] = {}
    problems: list[Problem] = []
    for res in resources:
        if res.kind != HOST_KIND:
            continue
        if res.name in hosts:
            other = hosts[res.name].resource
            problems.append(
                _problem(res, "metadata.name", f"duplicate Host name (also at {other.source.file}:{other.source.line})")
            )
            continue
        engine = str(res.spec["engine"])
        tls = None
        if res.spec.get("tls"):
            base = res.source.path.parent
            files = {key: (base / str(res.spec["tls"][key])) for key in ("ca", "cert", "key")}
            for key, path in files.items():
                if not path.is_file():
                    problems.append(_problem(res, f"spec.tls.{key}", f"{path} is not a readable file"))
            tls = TlsFiles(files["ca"], files["cert"], files["key"])
        for field, message in engine_class().address_problems(engine, tls is not None):
            problems.append(_problem(res, field, message))
        hosts[res.name] = HostSpec(res.name, dict(res.labels), engine, tls, bool(res.spec.get("default")), res)
    return [hosts[n] for n in sorted(hosts)], problems


def without_hosts(resource: Resource) -> Resource:
    """The resource as its driver sees it: placement is the core's business, not part of the object's spec."""
    if "hosts" not in resource.spec:
        return resource
    return dataclasses.replace(resource, spec={k: v for k, v in resource.spec.items() if k != "hosts"})


def _chosen(resource: Resource, hosts: list[HostSpec]) -> tuple[list[str], list[Problem]]:
    choice: Any = resource.spec.get("hosts")
    if choice is None:
        defaults = [h.name for h in hosts if h.default]
        if not defaults:
            return [], [
                _problem(
                    resource,
                    "spec.hosts",
                    "names no hosts, and no Host is marked `default: true`: say where it goes",
                )
            ]
        return defaults, []
    if choice == "all":
        return [h.name for h in hosts], []
    if isinstance(choice, Mapping):
        want = dict(choice.get("matchLabels") or {})
        found = [h.name for h in hosts if all(h.labels.get(k) == v for k, v in want.items())]
        if not found:
            selector = ",".join(f"{k}={v}" for k, v in sorted(want.items()))
            return [], [_problem(resource, "spec.hosts.matchLabels", f"selector {selector} matches no Host")]
        return found, []
    known = {h.name for h in hosts}
    problems = [
        _problem(resource, f"spec.hosts.{i}", f"no Host named {name!r}")
        for i, name in enumerate(choice)
        if name not in known
    ]
    return [n for n in choice if n in known], problems


def place(
    resources: Iterable[Resource], hosts: list[HostSpec], catalog: Catalog, drivers: Mapping[str, Driver]
) -> tuple[dict[Key, frozenset[str]], list[Problem]]:
    """Which Hosts each object goes to, and every placement problem (file:line)."""
    placement: dict[Key, frozenset[str]] = {}
    problems: list[Problem] = []
    by_name = {h.name: h for h in hosts}
    sources: dict[Key, Resource] = {}
    for res in resources:
        if res.kind == HOST_KIND:
            continue
        sources[res.key] = res
        chosen, found = _chosen(res, hosts)
        problems += found
        placement[res.key] = frozenset(chosen)
        driver = drivers.get(res.kind)
        if driver is not None and driver.local_only:
            remote = sorted(n for n in chosen if not by_name[n].local)
            if remote:
                problems.append(
                    _problem(
                        res,
                        "spec.hosts",
                        f"{res.kind} is written with this machine's firewall and cannot be placed on "
                        f"{', '.join(remote)} (reached over {by_name[remote[0]].engine.split('://')[0]}); "
                        "place it on a Host reached through a local unix:// socket",
                    )
                )
        desired = catalog.desired.get(res.key)
        if driver is not None and desired is not None:
            problems += local_problems(desired, driver, [(n, by_name[n].engine) for n in chosen])
    for key, refs in sorted(catalog.references.items()):
        where = placement.get(key, frozenset())
        for ref in refs:
            target = (ref.kind, ref.name)
            if target not in placement:
                continue  # undeclared (a required one is reported by the catalog already)
            missing = sorted(where - placement[target])
            if missing and placement[target] and _cluster_wide(target, catalog, drivers):
                continue  # usable from the other nodes of its Hosts' cluster: checked on the engines (cluster_uses)
            if missing:
                problems.append(
                    _problem(
                        sources[key],
                        ref.path,
                        f"placed on {', '.join(missing)}, where {ref.kind}/{ref.name} is not placed",
                    )
                )
    return placement, problems


def _cluster_wide(target: Key, catalog: Catalog, drivers: Mapping[str, Driver]) -> bool:
    desired = catalog.get(*target)
    driver = drivers.get(target[0])
    return desired is not None and driver is not None and bool(driver.cluster_wide(desired))


def cluster_uses(
    placement: Mapping[Key, frozenset[str]], catalog: Catalog, drivers: Mapping[str, Driver]
) -> list[ClusterUse]:
    """Every reference from an object on a Host to a cluster-wide object placed elsewhere (see `place`)."""
    uses = []
    for key, refs in sorted(catalog.references.items()):
        for ref in refs:
            target = (ref.kind, ref.name)
            providers = placement.get(target, frozenset())
            if not providers or not _cluster_wide(target, catalog, drivers):
                continue
            for host in sorted(placement.get(key, frozenset()) - providers):
                uses.append(ClusterUse(host, f"{key[0]}/{key[1]}", target, providers))
    return uses


def local_problems(desired: Desired, driver: Driver, engines: Iterable[tuple[str, str]]) -> list[Problem]:
    """The object's parts that act on this machine (`Driver.local_fields`) refused on each engine, (name,
    address), that is not reached through a local socket: whatever is written here, that engine cannot see."""
    remote = [(name, address) for name, address in engines if not engine_class().is_local(address)]
    if not remote:
        return []
    names = ", ".join(name for name, _ in remote)
    over = remote[0][1].split("://")[0]
    return [
        _problem(
            desired.resource,
            path,
            f"{what}, which the engine of {names} (reached over {over}) cannot see; "
            "use an engine reached through a local unix:// socket",
        )
        for path, what in driver.local_fields(desired)
    ]


def for_host(catalog: Catalog, placement: Mapping[Key, frozenset[str]], host: str) -> Catalog:
    """The part of `catalog` placed on `host`."""
    keep = {key for key, where in placement.items() if host in where}
    return Catalog(
        desired={k: d for k, d in catalog.desired.items() if k in keep},
        references={k: r for k, r in catalog.references.items() if k in keep},
    )


def select_hosts(
    hosts: list[HostSpec], names: Iterable[str] = (), selectors: Iterable[str] = ()
) -> tuple[list[HostSpec], list[str]]:
    """The Hosts `--host NAME` and `--selector k=v` keep (all when neither is given), and one-line errors for
    names or selectors that match nothing."""
    names, selectors = list(names), list(selectors)
    errors: list[str] = []
    known = {h.name for h in hosts}
    errors += [f"--host {n}: no Host of that name" for n in names if n not in known]
    wanted: list[tuple[str, str]] = []
    for sel in selectors:
        key, sep, value = sel.partition("=")
        if not sep or not key:
            errors.append(f"--selector {sel}: use KEY=VALUE")
            continue
        wanted.append((key, value))
    chosen = [h for h in hosts if (not names or h.name in names) and all(h.labels.get(k) == v for k, v in wanted)]
    if errors:
        return [], errors
    if not chosen:
        return [], ["no Host matches --host/--selector"]
    return chosen, []
