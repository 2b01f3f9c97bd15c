"""Route sanity of bridge networks: overlap with the host's routes and addresses, own bridge, opt-in, remote."""

from __future__ import annotations

import ipaddress
from pathlib import Path

import pytest

from reconciler.contract import DriverContext
from reconciler.drivers.network.driver import NetworkDriver
from reconciler.drivers.network.routes import HostRoute, bridge_name, conflicting_route, first_conflict
from reconciler.drivers.network.spec import normalize_network
from reconciler.model import Action, Observed, Resource, Source

ROUTES = [
    HostRoute(ipaddress.ip_network("0.0.0.0/0"), "eth0"),
    HostRoute(ipaddress.ip_network("192.0.2.0/24"), "eth0"),
    HostRoute(ipaddress.ip_network("192.0.2.2/24", strict=False), "eth0", "address"),
    HostRoute(ipaddress.ip_network("10.40.0.0/16"), "br-0123456789ab"),
    HostRoute(ipaddress.ip_network("fe80::/64"), "eth0"),
    HostRoute(ipaddress.ip_network("fd00::/64"), "eth0", "address"),
]


def net(ip: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    return ipaddress.ip_network(ip)


@pytest.mark.parametrize(
    ("subnet", "own", "interface"),
    [
        ("192.0.2.0/24", None, "eth0"),  # the uplink's own subnet
        ("192.0.2.128/25", None, "eth0"),  # inside it
        ("192.0.0.0/16", None, "eth0"),  # around it
        ("10.40.1.0/24", None, "br-0123456789ab"),
        ("10.40.1.0/24", "br-0123456789ab", None),  # the network's own bridge holds that route
        ("10.41.0.0/24", None, None),  # free; the default route never counts
        ("fd00::/64", None, "eth0"),
        ("fe80::/64", None, None),  # link-local is on every link, never a conflict
    ],
)
def test_conflicting_route(subnet: str, own: str | None, interface: str | None) -> None:
    """A subnet conflicts with a route or address on another interface than its own bridge."""
    found = conflicting_route(net(subnet), ROUTES, own)
    assert (found.interface if found else None) == interface


def test_reason_names_the_interface_and_the_opt_in() -> None:
    """The blocked reason names the subnet, the route, the interface and how to allow it."""
    reason = first_conflict([net("10.41.0.0/24"), net("192.0.2.0/25")], ROUTES, None)
    assert reason is not None
    assert "192.0.2.0/25 overlaps the host's route 192.0.2.0/24 on interface eth0" in reason
    assert "allowRouteOverlap" in reason


def test_bridge_name() -> None:
    """A bridge is `br-<id[:12]>` unless the network names it with an option."""
    assert bridge_name("0123456789abcdef", {}) == "br-0123456789ab"
    assert bridge_name("x", {"com.docker.network.bridge.name": "lan0"}) == "lan0"


def _desired(spec: dict):
    return normalize_network(Resource("Network", "lan", spec, {}, Source("n.yaml", 2, Path("/tmp/n.yaml"))))


def _driver() -> NetworkDriver:

    driver = NetworkDriver(DriverContext("p", Path("/tmp")))
    driver.__dict__["all_subnets"] = []  # no other engine networks
    driver.host_routes = ROUTES
    return driver


def test_create_is_blocked_unless_allowed() -> None:
    """A create over the uplink's subnet is blocked naming eth0; allowRouteOverlap lets it through."""
    driver = _driver()
    change = driver.diff(_desired({"ipam": {"config": [{"subnet": "192.0.2.0/24"}]}}), None)
    assert change.action is Action.CREATE and "interface eth0" in (change.blocked or "")
    allowed = driver.diff(_desired({"allowRouteOverlap": True, "ipam": {"config": [{"subnet": "192.0.2.0/24"}]}}), None)
    assert allowed.blocked is None
    macvlan = driver.diff(_desired({"driver": "macvlan", "ipam": {"config": [{"subnet": "192.0.2.0/24"}]}}), None)
    assert macvlan.blocked is None


def test_allow_route_overlap_is_not_part_of_the_spec() -> None:
    """The opt-in is a plan-time policy: toggling it changes neither the spec nor its hash (no replace)."""
    a = _desired({"ipam": {"config": [{"subnet": "10.41.0.0/24"}]}})
    b = _desired({"allowRouteOverlap": True, "ipam": {"config": [{"subnet": "10.41.0.0/24"}]}})
    assert a.spec == b.spec and a.spec_hash == b.spec_hash


def test_in_sync_network_on_its_own_bridge_is_not_blocked() -> None:
    """An existing network whose route is its own bridge's is in sync, not blocked."""
    desired = _desired({"ipam": {"config": [{"subnet": "10.40.0.0/16"}]}})
    observed = Observed(
        "Network",
        "lan",
        "0123456789abcdef",
        {},
        {
            "driver": "bridge",
            "internal": False,
            "attachable": False,
            "enableIPv6": False,
            "ipam": {"driver": "default", "config": [{"subnet": "10.40.0.0/16"}]},
            "options": {},
            "encrypted": False,
            "labels": {},
        },
    )
    change = NetworkDriver.diff(_driver(), desired, observed)
    assert change.action is Action.NONE and change.blocked is None


def test_remote_engine_skips_the_check(monkeypatch: pytest.MonkeyPatch) -> None:
    """Routes are not read for an engine reached over tcp:// (its host is another machine)."""
    calls = []
    monkeypatch.setattr("reconciler.drivers.network.driver.read_host_routes", lambda: calls.append(1) or ROUTES)
    driver = NetworkDriver(DriverContext("p", Path("/tmp")))
    desired = [_desired({"ipam": {"config": [{"subnet": "192.0.2.0/24"}]}})]
    monkeypatch.setattr(DriverContext, "engine_url", property(lambda self: "tcp://198.51.100.7:2376"))
    assert driver._read_routes(desired) is None and not calls
    monkeypatch.setattr(DriverContext, "engine_url", property(lambda self: "unix:///run/docker.sock"))
    assert driver._read_routes(desired) == ROUTES and calls == [1]
