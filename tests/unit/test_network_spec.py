"""Network spec: canonical spellings, pools compared by subnet, CIDR checks, overlaps across declared networks."""

from __future__ import annotations

from pathlib import Path

from reconciler.contract import DriverContext
from reconciler.core.catalog import build_catalog
from reconciler.drivers.network.driver import NetworkDriver
from reconciler.drivers.network.spec import check_network, normalize_network
from reconciler.model import Observed, Resource, Source


def net(name: str, spec: dict) -> Resource:
    return Resource("Network", name, spec, {}, Source("n.yaml", 1, Path("/tmp/n.yaml")), {"spec": 4})


def test_equivalent_spellings_normalize_alike() -> None:
    """`fd00:0::/64` and `fd00::/64` (and a padded gateway) are one spec with one hash."""
    a = normalize_network(net("n", {"ipam": {"config": [{"subnet": "fd00:dead:beef:0::/64"}]}}))
    b = normalize_network(net("n", {"ipam": {"config": [{"subnet": "fd00:dead:beef::/64"}]}}))
    assert a.spec == b.spec and a.spec_hash == b.spec_hash


def test_engine_pool_order_and_assigned_gateway_are_not_changes() -> None:
    """Pools reported IPv4-first with engine-assigned gateways compare equal to a manifest listing IPv6 first."""
    driver = NetworkDriver(DriverContext("p", Path("/tmp")))
    desired = normalize_network(
        net(
            "n",
            {
                "enableIPv6": True,
                "ipam": {"config": [{"subnet": "fd00:1::/64"}, {"subnet": "10.9.0.0/24", "ipRange": "10.9.0.128/25"}]},
            },
        )
    )
    engine = {
        "Name": "n",
        "Id": "x",
        "Driver": "bridge",
        "EnableIPv6": True,
        "IPAM": {
            "Driver": "default",
            "Config": [
                {"Subnet": "10.9.0.0/24", "IPRange": "10.9.0.128/25", "Gateway": "10.9.0.1"},
                {"Subnet": "fd00:1::/64", "Gateway": "fd00:1::1"},
            ],
        },
        "Labels": {"io.reconciler.project": "p"},
    }
    observed: Observed = driver._observed(engine)
    change = driver.diff(desired, observed)
    assert change.fields == ()


def test_gateway_on_the_network_address_is_refused() -> None:
    """A gateway equal to the network (or broadcast) address is an error at its field."""
    desired = normalize_network(net("n", {"ipam": {"config": [{"subnet": "10.0.0.0/16", "gateway": "10.0.0.0"}]}}))
    assert [p for p, _ in check_network(desired.spec)] == ["spec.ipam.config.0.gateway"]


def test_overlapping_declared_networks_are_refused() -> None:
    """Two declared networks whose subnets overlap are each reported (the engine would refuse the second)."""
    driver = NetworkDriver(DriverContext("p", Path("/tmp")))
    res = [
        net("a", {"ipam": {"config": [{"subnet": "10.0.5.0/24"}]}}),
        net("b", {"ipam": {"config": [{"subnet": "10.0.5.0/25"}]}}),
    ]
    _, problems = build_catalog(res, {"Network": driver})
    assert sorted(p.message for p in problems) == [
        "overlaps 10.0.5.0/24 of Network/a",
        "overlaps 10.0.5.0/25 of Network/b",
    ]
