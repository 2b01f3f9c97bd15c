"""Dependency graph over object keys: topological order and cycles spelled out."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

Key = tuple[str, str]


def find_cycles(edges: Mapping[Key, Iterable[Key]]) -> list[list[Key]]:
    """Every cycle found by one depth-first walk, each as a path that starts and ends on the same key.
    Deterministic (sorted); iterative, so a dependency chain thousands long never hits the recursion limit."""
    white, grey, black = 0, 1, 2
    color: dict[Key, int] = {}
    cycles: list[list[Key]] = []
    for root in sorted(edges):
        if color.get(root, white) != white:
            continue
        color[root] = grey
        path = [root]
        pending = [iter(sorted(edges.get(root, ())))]
        while pending:
            dep = next(pending[-1], None)
            if dep is None:
                pending.pop()
                color[path.pop()] = black
                continue
            state = color.get(dep, white)
            if state == grey:
                cycles.append([*path[path.index(dep) :], dep])
            elif state == white:
                color[dep] = grey
                path.append(dep)
                pending.append(iter(sorted(edges.get(dep, ()))))
    return cycles


def find_cycle(edges: Mapping[Key, Iterable[Key]]) -> list[Key] | None:
    """One cycle as a path that starts and ends on the same key, or None. Deterministic (sorted)."""
    cycles = find_cycles(edges)
    return cycles[0] if cycles else None


def topological_order(nodes: Iterable[Key], edges: Mapping[Key, Iterable[Key]]) -> list[Key]:
    """Nodes with every dependency first; ties broken by key so the order is stable. Raises on a cycle."""
    nodes = sorted(set(nodes))
    pending = {n: {d for d in edges.get(n, ()) if d in nodes} for n in nodes}
    order: list[Key] = []
    while pending:
        ready = sorted(n for n, deps in pending.items() if not deps)
        if not ready:
            cycle = find_cycle(pending)
            raise ValueError(f"dependency cycle: {format_cycle(cycle or [])}")
        for n in ready:
            order.append(n)
            del pending[n]
        for deps in pending.values():
            deps.difference_update(ready)
    return order


def format_cycle(cycle: list[Key]) -> str:
    return " -> ".join(f"{k}/{n}" for k, n in cycle)
