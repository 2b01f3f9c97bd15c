"""The nftables backend's pure parts: the table as `nft -f` input, the canonical form nft reads back, reading
`nft -j` output, and choosing the backend from the engine's `GET /info`."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from reconciler.contract import DriverContext
from reconciler.drivers.firewall import detect, nft_backend
from reconciler.drivers.firewall import driver as driver_module
from reconciler.drivers.firewall.detect import Selection, choose
from reconciler.drivers.firewall.driver import FirewallDriver, FirewallOptions
from reconciler.drivers.firewall.nft import (
    canonical_chainset,
    canonical_sources,
    from_nft_comment,
    render_rule,
    render_table,
    table_name,
    to_nft_comment,
)
from reconciler.drivers.firewall.nft_backend import NftBackend, engine_firewall_driver
from reconciler.drivers.firewall.nft_parse import parse_table, rules_from_json
from reconciler.drivers.firewall.rules import AllowList, Rule, build_chains, jump_rule, main_chain
from reconciler.drivers.firewall.spec import normalize_spec
from reconciler.errors import PermanentError

# `nft -j list table ip reconciler-8d9001d3` (nft 1.0.6) of project "shop" with one list "office", after two hand
# edits: `insert rule ... RECONCILE-8d9001d3-4d6051 ip saddr 10.9.9.9 counter return` and `add rule ... forward
# counter`.
CAPTURED = json.loads((Path(__file__).parent / "data" / "nft_list_table.json").read_text())


def office(sources: list[str] | None = None, **extra: Any) -> AllowList:
    spec = {"interfaces": ["eth0"], "sources": sources or ["192.168.1.0/24", "10.0.0.5-10.0.0.9", "10.0.0.7"]}
    spec = normalize_spec({**spec, "ports": [{"port": 8080}], **extra})
    return AllowList.from_spec("office", spec, "v1-abc")


def test_table_name_is_per_project_and_matches_the_chain_hash() -> None:
    """Two projects never share a table; the table's hash is the one in the project's chain names."""
    assert table_name("shop") != table_name("ops")
    assert table_name("shop") == "reconciler-" + main_chain("shop").removeprefix("RECONCILE-")


def test_render_replaces_the_table_whole_in_one_file() -> None:
    """`table` + `delete table` + the new table; the base chain hooks forward before Docker (filter - 10)."""
    text = render_table(4, "shop", build_chains("shop", [office()], 4))
    lines = text.splitlines()
    assert lines[:3] == [
        f"table ip {table_name('shop')}",
        f"delete table ip {table_name('shop')}",
        f"table ip {table_name('shop')} {{",
    ]
    assert "type filter hook forward priority filter - 10; policy accept;" in text
    # the jump names the project; other comments leave it out (the table is the project's): nft's 128 bytes
    assert f'jump {main_chain("shop")} comment "reconciler:shop"' in text
    assert 'drop comment "reconciler"\n' in text
    # conntrack's original destination: the published port as the client used it, gated on DNAT/ORIGINAL
    assert "ct status dnat ct direction original ct original proto-dst 8080 goto" in text
    # one set per list in a group, written merged (10.0.0.7 is in the range); a marker is a rule with `continue`,
    # never a bare comment (that would be the chain's comment)
    assert 'ip saddr { 10.0.0.5-10.0.0.9, 192.168.1.0/24 } return comment "reconciler:office"' in text
    assert 'continue comment "reconciler:office spec-hash=v1-abc"' in text


def test_render_nothing_deletes_the_table_only() -> None:
    """Removing the last list leaves no table behind (the `table` line makes the delete safe when absent)."""
    assert render_table(6, "shop", None) == f"table ip6 {table_name('shop')}\ndelete table ip6 {table_name('shop')}\n"


def test_render_ipv6_uses_ip6_matches() -> None:
    """IPv6 destinations and sources are matched with `ct original ip6 daddr` / `ip6 saddr`."""
    text = render_table(6, "shop", build_chains("shop", [office(["2001:db8::/64"], destinations=["2001:db8:9::1"])], 6))
    assert "ct original ip6 daddr 2001:db8:9::1/128" in text
    assert "ip6 saddr { 2001:db8::/64 } return" in text


def test_the_longest_names_fit_in_an_nft_comment() -> None:
    """A 63-character project and list name with a full spec hash fit nft's 128 bytes of comment (the project is
    left out of rule comments); a comment that does not fit is an error before anything is written."""
    project, name = "p" * 63, "l" * 63
    spec = normalize_spec({"interfaces": ["eth0"], "sources": ["192.0.2.1"]})
    longest = AllowList.from_spec(name, spec, "v1-" + "0" * 32)
    text = render_table(4, project, build_chains(project, [longest], 4))
    assert f'continue comment "reconciler:{name} spec-hash=v1-{"0" * 32}"' in text
    with pytest.raises(ValueError, match="128"):
        render_rule(Rule(comment="x" * 129, target="DROP"), 4, project)


def test_comments_translate_both_ways() -> None:
    """The project is taken out of our comments and put back on reading; other comments pass unchanged."""
    for comment in ("reconciler:shop", "reconciler:shop:office", "reconciler:shop:office spec-hash=v1-a", "mine"):
        assert from_nft_comment(to_nft_comment(comment, "shop"), "shop") == comment
    assert to_nft_comment("reconciler:ops:x", "shop") == "reconciler:ops:x"


def test_canonical_sources_merge_like_an_nft_interval_set() -> None:
    """Overlapping and adjacent entries merge; an interval that is one CIDR reads as that CIDR, a single address
    as /32, anything else as a range; all in address order."""
    rules = [
        Rule(src="10.0.0.128/25", target="RETURN"),
        Rule(src="10.0.0.0/25", target="RETURN"),
        Rule(src_range="10.0.1.5-10.0.1.9", target="RETURN"),
        Rule(src="10.0.1.7/32", target="RETURN"),
        Rule(src_range="10.0.2.0-10.0.2.0", target="RETURN"),
    ]
    assert [(r.src, r.src_range) for r in canonical_sources(rules)] == [
        ("10.0.0.0/24", None),
        (None, "10.0.1.5-10.0.1.9"),
        ("10.0.2.0/32", None),
    ]


def test_captured_table_reads_back_with_hand_edits_as_drift() -> None:
    """The captured table: our rules read back as the canonical desired ones; the hand-inserted rule (a counter)
    stays foreign, and the counter in the base chain means the jump is no longer alone there."""
    live = parse_table(CAPTURED, 4, "shop")
    want = canonical_chainset(build_chains("shop", [office()], 4))
    assert want is not None
    assert (live.jumps, live.jump_index, live.foreign_above, live.jump_on_top) == (1, 1, 1, False)
    assert live.chains[want.main] == want.chains[want.main]
    (group,) = [name for name in want.chains if name != want.main]
    hand, *ours = live.chains[group]
    assert hand.src == "10.9.9.9/32" and hand.extra and hand.target == "RETURN"
    assert tuple(ours) == want.chains[group]


def _base(prio: int = -10, rules: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    items: list[dict[str, Any]] = [
        {"chain": {"name": "forward", "type": "filter", "hook": "forward", "prio": prio, "policy": "accept"}},
        {"chain": {"name": main_chain("shop")}},
    ]
    for expr in rules if rules is not None else [{"jump": {"target": main_chain("shop")}}]:
        items.append({"rule": {"chain": "forward", "comment": "reconciler:shop", "expr": [expr]}})
    return {"nftables": items}


def test_base_chain_with_another_priority_counts_as_no_jump() -> None:
    """A base chain moved after Docker's (or with another hook/policy) is drift: it reads as having no jump."""
    assert parse_table(_base(), 4, "shop").jump_on_top
    assert parse_table(_base(prio=10), 4, "shop").jumps == 0


def test_an_empty_table_still_reads_as_something_to_remove() -> None:
    """A table left without chains reports an empty main chain, so removal deletes it instead of skipping."""
    live = parse_table({"nftables": [{"table": {"family": "ip", "name": table_name("shop")}}]}, 4, "shop")
    assert dict(live.chains) == {main_chain("shop"): ()}


def test_foreign_matches_and_repeated_fields_are_extra() -> None:
    """A negated match, a second verdict or an unknown expression never reads as one of our rules."""
    negated = {"expr": [{"match": {"op": "!=", "left": {"meta": {"key": "iifname"}}, "right": "eth0"}}, {"drop": None}]}
    assert rules_from_json(negated, 4, "shop")[0].extra
    log = {"expr": [{"log": {"prefix": "x"}}, {"drop": None}]}
    assert rules_from_json(log, 4, "shop")[0].extra
    ours = {"comment": "reconciler", "expr": [{"jump": {"target": main_chain("shop")}}]}
    assert rules_from_json(ours, 4, "shop") == [jump_rule("shop")]


def test_round_trip_of_every_rule_shape_through_the_json_form() -> None:
    """Each rule the builder makes reads back equal from the JSON nft would print for it."""
    built = canonical_chainset(build_chains("shop", [office(destinations=["203.0.113.10"])], 4))
    assert built is not None
    main_rules = built.chains[built.main]
    # a gate rule: iface, proto, DNAT, ORIGINAL, original destination and port, goto
    gate = next(r for r in main_rules if r.goto)
    expr = [
        {"match": {"op": "==", "left": {"meta": {"key": "iifname"}}, "right": "eth0"}},
        {"match": {"op": "==", "left": {"meta": {"key": "l4proto"}}, "right": "tcp"}},
        {"match": {"op": "in", "left": {"ct": {"key": "status"}}, "right": "dnat"}},
        {"match": {"op": "==", "left": {"ct": {"key": "direction"}}, "right": "original"}},
        {"match": {"op": "==", "left": {"ct": {"key": "ip daddr", "dir": "original"}}, "right": "203.0.113.10"}},
        {"match": {"op": "==", "left": {"ct": {"key": "proto-dst", "dir": "original"}}, "right": 8080}},
        {"goto": {"target": gate.target}},
    ]
    assert rules_from_json({"comment": "reconciler", "expr": expr}, 4, "shop") == [gate]


# --- choosing the backend ---------------------------------------------------------------------------------------


def test_engine_info_shapes() -> None:
    """Engines with API 1.49+ say `FirewallBackend: {Driver, Info}`; a 20.10 engine has no such key (or null)."""
    assert engine_firewall_driver({"ServerVersion": "20.10.24", "Driver": "overlay2"}) is None
    assert engine_firewall_driver({"FirewallBackend": None}) is None
    assert engine_firewall_driver({"FirewallBackend": {"Driver": "iptables"}}) == "iptables"
    info = {"FirewallBackend": {"Driver": "nftables", "Info": [["ReloadedAt", "2025-01-01T00:00:00Z"]]}}
    assert engine_firewall_driver(info) == "nftables"


@pytest.fixture
def nft_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(nft_backend.shutil, "which", lambda name: f"/usr/sbin/{name}")


def test_auto_takes_nftables_when_the_engine_says_so(nft_installed: None) -> None:
    """No table is probed: the engine's word decides, and both families are served."""
    sel = choose("auto", engine_firewall="nftables")
    assert isinstance(sel.backend, NftBackend)
    assert sel.families == (4, 6) and "engine reports" in sel.reason


def test_forced_nftables_without_nft_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    """--firewall-backend nftables on a host without the nft binary blocks with the package to install."""
    monkeypatch.setattr(nft_backend.shutil, "which", lambda name: None)
    sel = choose("nftables")
    assert sel.backend is None and "nftables" in sel.reason and "not installed" in sel.reason


def test_auto_on_an_iptables_engine_never_probes_nftables(monkeypatch: pytest.MonkeyPatch) -> None:
    """An engine that reports iptables keeps the DOCKER-USER detection (Docker's nft table is not looked for)."""
    monkeypatch.setattr(detect, "nft_docker_user", lambda family, netns=None: True)
    monkeypatch.setattr(detect, "legacy_docker_user", lambda family, netns=None: False)
    probed = []
    monkeypatch.setattr(nft_backend, "docker_tables_present", lambda netns=None: probed.append(1) or True)
    sel = choose("auto", engine_firewall="iptables")
    assert sel.backend is not None and sel.backend.name == "restore (nf_tables)"
    assert probed == []


class FakeEngine:
    def __init__(self, info: dict[str, Any]) -> None:
        self._info = info

    def info(self) -> dict[str, Any]:
        return self._info


@pytest.mark.parametrize(
    ("info", "said"),
    [
        ({"ServerVersion": "20.10.24"}, None),  # this test engine: no FirewallBackend field
        ({"ServerVersion": "29.0.0", "FirewallBackend": {"Driver": "nftables"}}, "nftables"),
    ],
)
def test_driver_passes_the_engines_word_to_auto(
    monkeypatch: pytest.MonkeyPatch, info: dict[str, Any], said: str | None
) -> None:
    """The driver asks the engine's `GET /info` only in auto mode and hands `FirewallBackend.Driver` on."""
    seen: list[Any] = []

    def fake_choose(option: Any, netns: Any = None, engine_firewall: Any = None) -> Selection:
        seen.append(engine_firewall)
        return Selection(None, "test")

    monkeypatch.setattr(driver_module, "choose", fake_choose)
    ctx = DriverContext(project="p", manifest_dir=Path("/tmp"), engine_factory=lambda: FakeEngine(info))
    FirewallDriver(ctx).selection()
    forced = DriverContext(
        project="p",
        manifest_dir=Path("/tmp"),
        engine_factory=lambda: pytest.fail("a forced backend must not ask the engine"),
        options=[FirewallOptions(backend="nftables")],
    )
    FirewallDriver(forced).selection()
    assert seen == [said, None]


def test_an_unreachable_engine_falls_back_to_table_detection(monkeypatch: pytest.MonkeyPatch) -> None:
    """An engine that cannot answer is no error for the firewall: the engine's word is just missing."""
    seen: list[Any] = []

    def fake_choose(option: Any, netns: Any = None, engine_firewall: Any = None) -> Selection:
        seen.append(engine_firewall)
        return Selection(None, "")

    monkeypatch.setattr(driver_module, "choose", fake_choose)

    def broken() -> Any:
        raise PermanentError("no engine configured")

    FirewallDriver(DriverContext(project="p", manifest_dir=Path("/tmp"), engine_factory=broken)).selection()
    assert seen == [None]


def test_desired_rules_are_compared_in_the_backends_form() -> None:
    """With the nft backend, the expected ruleset is the canonical one (merged sets), so an in-sync table whose
    sources nft merged is not drift."""
    want = build_chains("shop", [office(["10.0.0.0/25", "10.0.0.128/25"])], 4)
    assert want is not None
    canonical = NftBackend().canonical(want)
    assert canonical is not None
    group = next(name for name in want.chains if name != want.main)
    assert [r.src for r in canonical.chains[group] if r.target == "RETURN"] == ["10.0.0.0/24"]
    assert replace(canonical, chains=want.chains) == want


def test_older_nft_spelling_of_the_original_destination_reads_the_same() -> None:
    """nft before 1.0 prints `ct original ip daddr` as key `daddr` with a `family`; both read as ctorigdst."""
    for ct in ({"key": "ip daddr", "dir": "original"}, {"key": "daddr", "family": "ip", "dir": "original"}):
        expr = [{"match": {"op": "==", "left": {"ct": ct}, "right": {"prefix": {"addr": "203.0.113.0", "len": 24}}}}]
        (rule,) = rules_from_json({"expr": expr}, 4, "shop")
        assert rule.ctorigdst == "203.0.113.0/24" and not rule.extra
