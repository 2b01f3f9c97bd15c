"""Whole-project validation: duplicates, normalization, references, cycles and each driver's own checks."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from reconciler.contract import Driver
from reconciler.core.graph import Key, find_cycles, format_cycle
from reconciler.core.manifests import display_path
from reconciler.errors import Problem, ReconcileError, SpecError
from reconciler.model import Desired, Reference, Resource


@dataclass
class Catalog:
    """Every desired object of a project, normalized, with its dependencies."""

    desired: dict[Key, Desired] = field(default_factory=dict)
    references: dict[Key, list[Reference]] = field(default_factory=dict)
    _by_kind: dict[str, list[Desired]] | None = field(default=None, repr=False, compare=False)

    def add(self, desired: Desired) -> None:
        self.desired[desired.key] = desired
        self._by_kind = None

    def get(self, kind: str, name: str) -> Desired | None:
        return self.desired.get((kind, name))

    def of_kind(self, kind: str) -> list[Desired]:
        """The declared objects of `kind`, by name (indexed once: drivers ask this for every object)."""
        if self._by_kind is None:
            index: dict[str, list[Desired]] = {}
            for (k, _), d in sorted(self.desired.items()):
                index.setdefault(k, []).append(d)
            self._by_kind = index
        return list(self._by_kind.get(kind, ()))

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
            catalog.add(driver.normalize(res))
        except SpecError as exc:
            problems.append(_problem(res, exc.field, exc.message))
        except ReconcileError as exc:
            problems.append(_problem(res, "spec", str(exc)))

    for key, desired in sorted(catalog.desired.items()):
        res = desired.resource
        driver = drivers[desired.kind]
        refs = [*driver.references(desired), *driver.catalog_references(desired, catalog)]
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
