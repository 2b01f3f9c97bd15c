"""The rule model: layout, naming, parse/render round trips, and what the generated chains let through."""

from __future__ import annotations

import ipaddress
import shlex
from dataclasses import dataclass

import pytest

from reconciler.drivers.firewall.observe import enforced_view, read_list
from reconciler.drivers.firewall.rules import (
    MAX_CHAIN_NAME,
    AllowList,
    ChainSet,
    Rule,
    build_chains,
    group_chain,
    main_chain,
    parse_args,
)
from reconciler.drivers.firewall.spec import normalize_spec


def allow(name: str, **spec: object) -> AllowList:
    return AllowList.from_spec(name, normalize_spec({"interfaces": ["eth0"], **spec}), f"v1-{name}")


@dataclass(frozen=True)
class Packet:
    src: str
    dst: str = "203.0.113.10"  # original (pre-DNAT) destination
    port: int = 8080
    proto: str = "tcp"
    iface: str = "eth0"
    ctstate: str = "DNAT"  # or "RELATED", or "" for traffic not DNATed (containers talking out)
    ctdir: str = "ORIGINAL"


def _in(addr: str, net: str) -> bool:
    return ipaddress.ip_address(addr) in ipaddress.ip_network(net)


def _matches(rule: Rule, p: Packet) -> bool:
    if rule.iface and rule.iface != p.iface:
        return False
    if rule.proto and rule.proto != p.proto:
        return False
    if rule.src and not _in(p.src, rule.src):
        return False
    if rule.src_range:
        lo, hi = (ipaddress.ip_address(x) for x in rule.src_range.split("-"))
        if not lo <= ipaddress.ip_address(p.src) <= hi:
            return False
    if rule.ctstate and rule.ctstate not in p.ctstate.split(","):
        return False
    if rule.ctdir and rule.ctdir != p.ctdir:
        return False
    if rule.ctorigdst and not _in(p.dst, rule.ctorigdst):
        return False
    return not (rule.ctorigdstport and rule.ctorigdstport != p.port)


def verdict(cs: ChainSet | None, p: Packet) -> str:
    """What DOCKER-USER's jump into the project's chains does to `p`: "drop" or "pass" (back to DOCKER-USER)."""
    if cs is None:
        return "pass"
    chain = cs.main
    for _ in range(10):
        for rule in cs.chains[chain]:
            if not _matches(rule, p) or not rule.target:
                continue
            if rule.target == "DROP":
                return "drop"
            if rule.target == "RETURN":
                return "pass"
            assert rule.goto, "only gotos leave the main chain"
            chain = rule.target
            break
        else:
            return "pass"  # the end of a goto'd chain returns to DOCKER-USER
    raise AssertionError("loop")


def test_only_allowed_sources_pass_to_the_guarded_port() -> None:
    """Allowed address, CIDR and range pass; any other source to the guarded port is dropped."""
    cs = build_chains(
        "p", [allow("web", sources=["192.0.2.1", "198.51.100.0/24", "192.0.2.5-192.0.2.9"], ports=[{"port": 8080}])], 4
    )
    for src in ("192.0.2.1", "198.51.100.77", "192.0.2.7"):
        assert verdict(cs, Packet(src)) == "pass"
    for src in ("192.0.2.2", "192.0.2.10", "203.0.113.99"):
        assert verdict(cs, Packet(src)) == "drop"


def test_other_ports_interfaces_and_non_dnat_traffic_are_untouched() -> None:
    """Only DNATed, original-direction traffic on the interface to the port is filtered; RELATED passes."""
    cs = build_chains("p", [allow("web", sources=["192.0.2.1"], ports=[{"port": 8080}])], 4)
    stranger = "192.0.2.99"
    assert verdict(cs, Packet(stranger, port=9090)) == "pass"
    assert verdict(cs, Packet(stranger, proto="udp")) == "pass"
    assert verdict(cs, Packet(stranger, iface="docker0")) == "pass"
    assert verdict(cs, Packet(stranger, ctstate="")) == "pass"  # a container's own outbound traffic
    assert verdict(cs, Packet(stranger, ctdir="REPLY")) == "pass"  # replies are never matched
    assert verdict(cs, Packet(stranger, ctstate="RELATED,DNAT")) == "pass"  # ICMP errors


def test_lists_on_the_same_port_allow_the_union() -> None:
    """Two lists on one interface and port: a source of either passes."""
    cs = build_chains(
        "p",
        [
            allow("a", sources=["192.0.2.1"], ports=[{"port": 8080}]),
            allow("b", sources=["192.0.2.2"], ports=[{"port": 8080}]),
        ],
        4,
    )
    assert verdict(cs, Packet("192.0.2.1")) == "pass"
    assert verdict(cs, Packet("192.0.2.2")) == "pass"
    assert verdict(cs, Packet("192.0.2.3")) == "drop"


def test_overlapping_lists_allow_the_union_of_those_that_apply() -> None:
    """A list for one port and one for all ports of a destination: where both apply, either's sources pass;
    where only one applies, only its sources pass."""
    cs = build_chains(
        "p",
        [
            allow("port", sources=["192.0.2.1"], ports=[{"port": 8080}]),
            allow("host", sources=["192.0.2.2"], destinations=["203.0.113.10"]),
        ],
        4,
    )
    assert verdict(cs, Packet("192.0.2.1")) == "pass"  # both apply
    assert verdict(cs, Packet("192.0.2.2")) == "pass"
    assert verdict(cs, Packet("192.0.2.3")) == "drop"
    assert verdict(cs, Packet("192.0.2.1", port=9090)) == "drop"  # only "host" applies
    assert verdict(cs, Packet("192.0.2.2", port=9090)) == "pass"
    assert verdict(cs, Packet("192.0.2.2", dst="203.0.113.20")) == "drop"  # only "port" applies
    assert verdict(cs, Packet("192.0.2.1", dst="203.0.113.20")) == "pass"


def test_empty_sources_drop_everything_it_guards() -> None:
    """A list with no sources drops every DNATed connection to its ports on its interfaces."""
    cs = build_chains("p", [allow("closed", ports=[{"port": 8080}])], 4)
    assert verdict(cs, Packet("192.0.2.1")) == "drop"
    assert verdict(cs, Packet("192.0.2.1", port=22)) == "pass"


def test_families_are_split() -> None:
    """IPv4 sources go to the IPv4 ruleset, IPv6 ones to the IPv6 ruleset; destinations of the other family
    make a list absent from a family."""
    lists = [allow("mixed", sources=["192.0.2.1", "2001:db8::1"])]
    v4, v6 = build_chains("p", lists, 4), build_chains("p", lists, 6)
    assert verdict(v4, Packet("192.0.2.1")) == "pass"
    assert verdict(v6, Packet("2001:db8::1", dst="2001:db8:1::10")) == "pass"
    assert verdict(v6, Packet("2001:db8::2", dst="2001:db8:1::10")) == "drop"
    assert "2001:db8::1" not in "\n".join(v4.lines())
    only_v4 = build_chains("p", [allow("v4", sources=["2001:db8::1"], destinations=["203.0.113.10"])], 6)
    assert verdict(only_v4, Packet("2001:db8::2", dst="2001:db8:1::10")) == "pass"


def test_no_lists_means_no_chains() -> None:
    """Without lists the project has no chains at all (so the jump and chains are removed)."""
    assert build_chains("p", [], 4) is None


def test_chain_names_are_short_stable_and_per_project() -> None:
    """Names fit in 28 characters, differ between projects, and a group keeps its name when others change."""
    assert main_chain("a") != main_chain("b")
    long = "x" * 63
    group = ("eth0", None, ("tcp", 8080))
    assert len(group_chain(long, group)) <= MAX_CHAIN_NAME
    one = build_chains("p", [allow("a", ports=[{"port": 8080}])], 4)
    two = build_chains("p", [allow("a", ports=[{"port": 8080}]), allow("b", ports=[{"port": 9090}])], 4)
    assert set(one.chains) < set(two.chains)


def test_every_rule_names_the_project_and_source_rules_name_their_list() -> None:
    """Comments: `reconciler:<project>` on shared rules, `reconciler:<project>:<list>` on a list's rules."""
    cs = build_chains("proj", [allow("web", sources=["192.0.2.1"])], 4)
    rules = [r for rules in cs.chains.values() for r in rules]
    assert all((r.comment or "").startswith("reconciler:proj") for r in rules)
    assert {r.list_name for r in rules if r.src} == {"web"}


def test_rendered_rules_parse_back_equal() -> None:
    """Every generated rule survives render -> iptables-save style tokens -> parse unchanged."""
    cs = build_chains(
        "p",
        [
            allow(
                "web",
                sources=["192.0.2.1", "192.0.2.5-192.0.2.9"],
                destinations=["203.0.113.10"],
                ports=[{"port": 8080}],
            )
        ],
        4,
    )
    for chain, rules in cs.chains.items():
        for rule in rules:
            tokens = shlex.split(rule.text(chain))
            assert parse_args(tokens[2:]) == rule


def test_parse_normalizes_what_iptables_prints() -> None:
    """iptables-save's reordering and address forms parse to the same rule; unknown options become `extra`."""
    a = parse_args(
        shlex.split(
            "-i eth0 -p tcp -m conntrack --ctstate DNAT --ctorigdst 203.0.113.10 "
            "--ctorigdstport 8080 --ctdir ORIGINAL -j DROP"
        )
    )
    b = parse_args(
        shlex.split(
            "-p tcp -i eth0 -m conntrack --ctdir ORIGINAL --ctstate DNAT "
            "--ctorigdstport 8080 --ctorigdst 203.0.113.10/32 -j DROP"
        )
    )
    assert a == b and a.ctorigdst == "203.0.113.10/32"
    odd = parse_args(shlex.split("! -s 192.0.2.1/32 -j ACCEPT"))
    assert odd.extra == ("!",)


@pytest.mark.parametrize(
    "spec",
    [
        {"sources": ["192.0.2.1", "198.51.100.0/24"], "ports": [{"port": 8080}, {"port": 53, "protocol": "udp"}]},
        {"sources": [], "destinations": ["203.0.113.10-203.0.113.12"]},
        {"sources": ["192.0.2.5-192.0.2.9", "2001:db8::/64"]},
    ],
)
def test_a_list_reads_back_from_its_rules(spec: dict) -> None:
    """read_list recovers what a list guards and allows from the rules alone (destinations as CIDR blocks)."""
    normalized = normalize_spec({"interfaces": ["eth0", "eth1"], **spec})
    lists = [AllowList.from_spec("web", normalized, "v1-h"), allow("other", sources=["203.0.113.5"])]
    chainsets = {f: build_chains("p", lists, f) for f in (4, 6)}
    back = read_list(chainsets, "p", "web")
    assert back is not None and back.pop("spec-hash") == "v1-h"
    assert back == enforced_view(normalized)
    assert read_list(chainsets, "p", "absent") is None
