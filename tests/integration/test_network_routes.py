"""Route sanity against the real kernel: a Network over a subnet a host interface already routes is blocked."""

from __future__ import annotations

import json
import secrets
import subprocess

import pytest

pytestmark = [pytest.mark.engine, pytest.mark.netns]


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


@pytest.fixture
def routed_subnet(free_subnet):
    """(subnet, interface): a veth pair in this namespace with a route to a free test /24 on one end; removed after."""
    subnet = free_subnet()
    routes = subprocess.run(["ip", "-4", "route", "show", "match", subnet], capture_output=True, text=True).stdout
    assert all(line.startswith("default") for line in routes.splitlines()), f"{subnet} is already routed: {routes}"
    name = f"rc{secrets.token_hex(3)}"
    _ip("link", "add", name, "type", "veth", "peer", "name", f"{name}p")
    try:
        _ip("link", "set", name, "up")
        _ip("link", "set", f"{name}p", "up")
        _ip("route", "add", subnet, "dev", name)
        yield subnet, name
    finally:
        subprocess.run(["ip", "link", "del", name], capture_output=True, check=False)


def network(name: str, subnet: str, extra: str = "") -> str:
    return f"""
    apiVersion: reconciler/v1
    kind: Network
    metadata: {{name: {name}}}
    spec:
      ipam:
        config:
          - {{subnet: {subnet}}}
      {extra}
    """


def test_network_over_a_host_route_is_blocked_unless_allowed(
    api, project_name, reconcile, tmp_manifests, routed_subnet
):
    """plan blocks the create naming the interface (exit 1, nothing created); allowRouteOverlap lets it through."""
    subnet, interface = routed_subnet
    name = f"{project_name}-lan"
    tmp_manifests("net.yaml", network(name, subnet))
    proc = reconcile("plan", tmp_manifests.dir, "--output", "json")
    assert proc.returncode == 1, proc.stderr
    [change] = json.loads(proc.stdout)["changes"]
    assert f"overlaps the host's route {subnet} on interface {interface}" in change["blocked"]
    proc = reconcile("apply", tmp_manifests.dir)
    assert proc.returncode == 1 and f"interface {interface}" in proc.stdout
    assert not api.networks(names=[name])

    tmp_manifests("net.yaml", network(name, subnet, "allowRouteOverlap: true"))
    assert reconcile("plan", tmp_manifests.dir).returncode == 2
    assert reconcile("apply", tmp_manifests.dir).returncode == 0
    # the network's own bridge now routes the subnet too: in sync, not blocked by its own route
    assert reconcile("plan", tmp_manifests.dir).returncode == 0


def test_own_bridge_route_is_not_a_conflict(project_name, reconcile, tmp_manifests, free_subnet):
    """A created network is in sync afterwards although its bridge now routes its subnet."""
    tmp_manifests("net.yaml", network(f"{project_name}-own", free_subnet()))
    assert reconcile("apply", tmp_manifests.dir).returncode == 0
    proc = reconcile("plan", tmp_manifests.dir)
    assert proc.returncode == 0, proc.stdout + proc.stderr
