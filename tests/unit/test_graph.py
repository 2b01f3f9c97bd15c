"""Dependency graph: stable topological order and cycle detection."""

from __future__ import annotations

import pytest

from reconciler.graph import find_cycle, topological_order


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
