"""Dependency graph: stable topological order and cycle detection."""

from __future__ import annotations

import itertools

import pytest

from reconciler.core.graph import find_cycle, find_cycles, topological_order


def test_order_puts_dependencies_first_and_is_stable() -> None:
    """Every node comes after what it depends on; ties are broken by key."""
    edges = {("C", "web"): {("C", "api")}, ("C", "api"): {("N", "net"), ("V", "data")}}
    nodes = [("C", "web"), ("C", "api"), ("N", "net"), ("V", "data"), ("I", "img")]
    assert topological_order(nodes, edges) == [("I", "img"), ("N", "net"), ("V", "data"), ("C", "api"), ("C", "web")]


def test_cycle_found_and_order_refuses() -> None:
    """A cycle is returned as a closed path, and ordering it raises."""
    edges = {("C", "a"): {("C", "b")}, ("C", "b"): {("C", "a")}}
    assert find_cycle(edges) == [("C", "a"), ("C", "b"), ("C", "a")]
    with pytest.raises(ValueError, match="cycle"):
        topological_order(edges.keys(), edges)


def test_no_cycle() -> None:
    """A diamond is not a cycle."""
    edges = {("x", "a"): {("x", "b"), ("x", "c")}, ("x", "b"): {("x", "d")}, ("x", "c"): {("x", "d")}}
    assert find_cycle(edges) is None


def test_every_separate_cycle_is_found() -> None:
    """A self-dependency and a separate three-cycle are both reported, each once."""
    edges = {
        ("C", "x"): {("C", "x")},
        ("C", "y1"): {("C", "y2")},
        ("C", "y2"): {("C", "y3")},
        ("C", "y3"): {("C", "y1")},
    }
    assert find_cycles(edges) == [[("C", "x"), ("C", "x")], [("C", "y1"), ("C", "y2"), ("C", "y3"), ("C", "y1")]]


def test_a_chain_far_longer_than_the_recursion_limit_is_walked() -> None:
    """5000 objects each depending on the next: no cycle, no RecursionError, and ordering works."""
    nodes = [("C", f"c{i:05}") for i in range(5000)]
    edges = {a: {b} for a, b in itertools.pairwise(nodes)}
    assert find_cycle(edges) is None
    assert topological_order(nodes, edges)[0] == nodes[-1]
