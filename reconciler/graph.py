"""Dependency graph over object keys: topological order and cycles spelled out."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

Key = tuple[str, str]


def find_cycle(edges: Mapping[Key, Iterable[Key]]) -> list[Key] | None:
    """One cycle as a path that starts and ends on the same key, or None. Deterministic (sorted)."""
    white, grey, black = 0, 1, 2
    color: dict[Key, int] = {}
    stack: list[Key] = []

    def visit(node: Key) -> list[Key] | None:
        color[node] = grey
        stack.append(node)
        for dep in sorted(edges.get(node, ())):
            state = color.get(dep, white)
            if state == grey:
                return [*stack[stack.index(dep) :], dep]
            if state == white:
                found = visit(dep)
                if found:
                    return found
        stack.pop()
        color[node] = black
        return None

    for node in sorted(edges):
        if color.get(node, white) == white:
            found = visit(node)
            if found:
                return found
    return None


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
