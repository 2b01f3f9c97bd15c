"""Whole-project validation: duplicates, normalization, references, cycles and each driver's own checks."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from reconciler.drivers.base import Driver
from reconciler.errors import Problem, ReconcileError, SpecError
from reconciler.graph import Key, find_cycles, format_cycle
from reconciler.manifests import display_path
from reconciler.model import Desired, Reference, Resource


@dataclass
class Catalog:
    """Every desired object of a project, normalized, with its dependencies."""

    desired: dict[Key, Desired] = field(default_factory=dict)
    references: dict[Key, list[Reference]] = field(default_factory=dict)

    def get(self, kind: str, name: str) -> Desired | None:
        return self.desired.get((kind, name))

    def of_kind(self, kind: str) -> list[Desired]:
        return [d for (k, _), d in sorted(self.desired.items()) if k == kind]

    def dependencies(self, key: Key) -> set[Key]:
        """Declared objects `key` must wait for."""
        return {(r.kind, r.name) for r in self.references.get(key, []) if (r.kind, r.name) in self.desired}


def _problem(resource: Resource, path: str, message: str) -> Problem:
    return Problem(resource.source.file, resource.line_of(path), resource.subject, display_path(path), message)


def build_catalog(resources: list[Resource], drivers: Mapping[str, Driver]) -> tuple[Catalog, list[Problem]]:
    """Normalize and cross-check `resources`; problems are returned, never raised."""
    problems: list[Problem] = []
    catalog = Catalog()
    first: dict[Key, Resource] = {}
    for res in resources:
        if res.key in first:
            other = first[res.key]
            problems.append(
                _problem(
                    res,
                    "metadata.name",
                    f"duplicate {res.kind} name (also at {other.source.file}:{other.source.line})",
                )
            )
            problems.append(
                _problem(
                    other,
                    "metadata.name",
                    f"duplicate {res.kind} name (also at {res.source.file}:{res.source.line})",
                )
            )
            continue
        first[res.key] = res
        driver = drivers.get(res.kind)
        if driver is None:
            problems.append(_problem(res, "kind", f"no driver installed for kind {res.kind}"))
            continue
        try:
            catalog.desired[res.key] = driver.normalize(res)
        except SpecError as exc:
            problems.append(_problem(res, exc.field, exc.message))
        except ReconcileError as exc:
            problems.append(_problem(res, "spec", str(exc)))

    for key, desired in sorted(catalog.desired.items()):
        res = desired.resource
        refs = list(drivers[desired.kind].references(desired))
        # optional hook: references only the whole catalog can resolve (a container's image -> Image manifest)
        more_refs = getattr(drivers[desired.kind], "catalog_references", None)
        if more_refs is not None:
            refs += list(more_refs(desired, catalog))
        catalog.references[key] = refs
        for ref in refs:
            if ref.required and (ref.kind, ref.name) not in first:
                problems.append(_problem(res, ref.path, f"refers to undeclared {ref.kind} {ref.name!r}"))
        for path, message in drivers[desired.kind].check(desired, catalog):
            problems.append(_problem(res, path, message))

    edges = {key: catalog.dependencies(key) for key in catalog.desired}
    for cycle in find_cycles(edges):
        res = catalog.desired[cycle[0]].resource
        path = next((r.path for r in catalog.references[cycle[0]] if (r.kind, r.name) == cycle[1]), "spec")
        problems.append(_problem(res, path, f"dependency cycle: {format_cycle(cycle)}"))
    return catalog, sorted(set(problems))
