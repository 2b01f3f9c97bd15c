"""FirewallAllowList spec normalization and validation (pure)."""

from __future__ import annotations

import pytest

from reconciler.drivers.firewall.spec import check_spec, describe, normalize_spec, parse_address_set


def test_address_forms_are_canonical() -> None:
    """Addresses, CIDRs and ranges get one canonical text; a /32 and a one-address range become the address."""
    assert parse_address_set("192.0.2.1").text == "192.0.2.1"
    assert parse_address_set("192.0.2.1/32").text == "192.0.2.1"
    assert parse_address_set(" 198.51.100.0/24 ").text == "198.51.100.0/24"
    assert parse_address_set("192.0.2.5-192.0.2.9").text == "192.0.2.5-192.0.2.9"
    assert parse_address_set("192.0.2.5-192.0.2.5").text == "192.0.2.5"
    assert parse_address_set("2001:DB8:0::1").text == "2001:db8::1"
    assert parse_address_set("2001:db8::/64").family == 6


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("192.0.2.9-192.0.2.5", "starts after it ends"),
        ("192.0.2.1-2001:db8::1", "mixes IPv4 and IPv6"),
        ("192.0.2.1/24", "did you mean 192.0.2.0/24"),
        ("192.0.2.300", "not a valid address"),
        ("192.0.2.0/33", "not a valid CIDR"),
    ],
)
def test_bad_address_sets_are_explained(text: str, fragment: str) -> None:
    """Invalid entries raise ValueError with a message saying what is wrong."""
    with pytest.raises(ValueError, match=fragment):
        parse_address_set(text)


def test_range_is_split_into_exact_blocks() -> None:
    """A range converts to the CIDR blocks that cover exactly it (conntrack matches CIDRs only)."""
    blocks = [str(n) for n in parse_address_set("203.0.113.10-203.0.113.12").networks()]
    assert blocks == ["203.0.113.10/31", "203.0.113.12/32"]


def test_normalize_sorts_dedupes_and_fills_defaults() -> None:
    """Sources sorted by family and address, duplicates merged, ports default to tcp, destinations to []."""
    spec = normalize_spec(
        {
            "interfaces": ["eth1", "eth0", "eth0"],
            "sources": ["2001:db8::1", "198.51.100.0/24", "192.0.2.1/32", "192.0.2.1"],
            "ports": [{"port": 8080}, {"port": 53, "protocol": "udp"}, {"port": 8080, "protocol": "tcp"}],
        }
    )
    assert spec == {
        "interfaces": ["eth0", "eth1"],
        "sources": ["192.0.2.1", "198.51.100.0/24", "2001:db8::1"],
        "destinations": [],
        "ports": [{"port": 8080, "protocol": "tcp"}, {"port": 53, "protocol": "udp"}],
    }


def test_normalize_is_order_independent() -> None:
    """The same list written in another order normalizes to the same spec (so the same hash)."""
    a = normalize_spec({"interfaces": ["eth0"], "sources": ["192.0.2.2", "192.0.2.1"]})
    b = normalize_spec({"interfaces": ["eth0"], "sources": ["192.0.2.1", "192.0.2.2", "192.0.2.1"]})
    assert a == b


def test_check_reports_each_bad_field_by_path() -> None:
    """check_spec names every problem by its path in the manifest as written (its own list order)."""
    spec = {
        "interfaces": ["eth0", "bad/name"],
        "sources": ["192.0.2.9-192.0.2.1"],
        "destinations": ["203.0.113.0/33"],
        "ports": [{"port": 70000}, {"port": 80, "protocol": "icmp"}],
    }
    paths = {path for path, _ in check_spec(spec)}
    assert paths == {
        "spec.interfaces.1",
        "spec.sources.0",
        "spec.destinations.0",
        "spec.ports.0.port",
        "spec.ports.1.protocol",
    }


def test_check_accepts_a_valid_mixed_family_list() -> None:
    """Mixing IPv4 and IPv6 entries in one list is fine; an empty source list is valid."""
    spec = normalize_spec({"interfaces": ["eth0"], "sources": ["192.0.2.1", "2001:db8::/64"]})
    assert check_spec(spec) == []
    assert check_spec(normalize_spec({"interfaces": ["eth0"], "sources": []})) == []


def test_check_requires_an_interface() -> None:
    """A list guarding no interface is an error."""
    assert check_spec(normalize_spec({"interfaces": []})) == [("spec.interfaces", "at least one interface is required")]


def test_describe_says_which_traffic() -> None:
    """The words used in plan notes name interfaces, destinations and ports."""
    spec = normalize_spec({"interfaces": ["eth0"], "ports": [{"port": 8080}]})
    assert describe(spec) == "traffic arriving on eth0 for any host address, 8080/tcp"
