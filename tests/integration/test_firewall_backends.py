"""Backends and detection against real (namespaced) tables: both families, others' rules untouched, blocked
plans without DOCKER-USER. Every test uses fresh network namespaces; the host's ruleset is never touched."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from reconciler.contract import DriverContext
from reconciler.core.catalog import build_catalog
from reconciler.core.planner import observe_all, plan_changes
from reconciler.drivers.firewall.backend import Backend
from reconciler.drivers.firewall.detect import choose
from reconciler.drivers.firewall.driver import FirewallDriver, FirewallOptions
from reconciler.drivers.firewall.iptc import IptcBackend
from reconciler.drivers.firewall.restore import RestoreBackend
from reconciler.drivers.firewall.rules import AllowList, build_chains
from reconciler.drivers.firewall.spec import normalize_spec
from reconciler.model import Action, Plan, Resource, Source

pytestmark = [
    pytest.mark.netns,
    pytest.mark.skipif(os.geteuid() != 0 or shutil.which("ip") is None, reason="needs root and iproute2"),
]

FOREIGN = ["-s", "10.9.9.9/32", "-j", "DROP"]  # someone else's DOCKER-USER rule


def sh(netns: str, *argv: str) -> str:
    return subprocess.run(
        ["ip", "netns", "exec", netns, *argv], capture_output=True, text=True, timeout=30, check=True
    ).stdout


@pytest.fixture
def namespace() -> Iterator[Callable[[str | None], str]]:
    """Factory of fresh namespaces; `variant` (nft | legacy | None) gives both families a Docker-like
    DOCKER-USER with a foreign rule and Docker's trailing RETURN."""
    from pyroute2 import netns

    made: list[str] = []

    def make(variant: str | None) -> str:
        name = f"fwb{uuid.uuid4().hex[:6]}"
        netns.create(name)
        made.append(name)
        if variant:
            for tool in (f"iptables-{variant}", f"ip6tables-{variant}"):
                sh(name, tool, "-N", "DOCKER-USER")
                sh(name, tool, "-A", "FORWARD", "-j", "DOCKER-USER")
                if tool.startswith("iptables"):
                    sh(name, tool, "-A", "DOCKER-USER", *FOREIGN)
                sh(name, tool, "-A", "DOCKER-USER", "-j", "RETURN")
        return name

    yield make
    for name in made:
        netns.remove(name)


def lists() -> list[AllowList]:
    spec = normalize_spec(
        {
            "interfaces": ["eth0"],
            "sources": ["192.0.2.1", "2001:db8::5", "192.0.2.9-192.0.2.12"],
            "ports": [{"port": 8080}, {"port": 53, "protocol": "udp"}],
        }
    )
    other = normalize_spec({"interfaces": ["eth0"], "sources": [], "destinations": ["2001:db8:1::/64"]})
    return [AllowList.from_spec("web", spec, "v1-a"), AllowList.from_spec("v6only", other, "v1-b")]


@pytest.mark.parametrize(
    ("variant", "make_backend"),
    [
        ("nft", lambda ns: RestoreBackend("nft", ns)),
        ("legacy", lambda ns: RestoreBackend("legacy", ns)),
        ("legacy", lambda ns: IptcBackend(ns)),
    ],
    ids=["restore-nft", "restore-legacy", "iptc-legacy"],
)
def test_write_read_back_and_remove_in_both_families(
    namespace: Callable[[str | None], str], variant: str, make_backend: Callable[[str], Backend]
) -> None:
    """What a backend writes reads back equal in IPv4 and IPv6, the jump sits first, other rules of
    DOCKER-USER stay in place, and removing everything leaves DOCKER-USER as it was."""
    ns = namespace(variant)
    backend = make_backend(ns)
    before = sh(ns, f"iptables-{variant}-save", "-t", "filter")
    for family in (4, 6):
        want = build_chains("proj", lists(), family)
        backend.write(family, "proj", want)
        backend.write(family, "proj", want)  # idempotent: still one jump
        live = backend.read(family, "proj")
        assert dict(live.chains) == dict(want.chains)
        assert (live.jumps, live.jump_index) == (1, 1)
    saved = sh(ns, f"iptables-{variant}-save", "-t", "filter")
    assert "-A DOCKER-USER -s 10.9.9.9/32 -j DROP" in saved and "-A DOCKER-USER -j RETURN" in saved
    assert "2001:db8::5" in sh(ns, f"ip6tables-{variant}-save", "-t", "filter")
    for family in (4, 6):
        backend.write(family, "proj", None)
        live = backend.read(family, "proj")
        assert live.jumps == 0 and not live.chains
    after = sh(ns, f"iptables-{variant}-save", "-t", "filter")
    strip = lambda text: [ln for ln in text.splitlines() if not ln.startswith("#")]  # noqa: E731
    assert strip(after) == strip(before)


def test_a_rejected_transaction_keeps_the_old_rules(namespace: Callable[[str | None], str]) -> None:
    """If iptables-restore rejects the new rules, the previous ones stay in force untouched."""
    ns = namespace("nft")
    backend = RestoreBackend("nft", ns)
    want = build_chains("proj", lists(), 4)
    backend.write(4, "proj", want)
    bad = build_chains("proj", [AllowList.from_spec("x", normalize_spec({"interfaces": ["eth0"]}), "v1-c")], 4)
    broken = {
        name: tuple(r if r.target != "DROP" else r.__class__(target="NO-SUCH-CHAIN") for r in rules)
        for name, rules in bad.chains.items()
    }
    with pytest.raises(Exception, match="old rules kept"):
        backend.write(4, "proj", bad.__class__(bad.main, bad.jump, broken))
    assert dict(backend.read(4, "proj").chains) == dict(want.chains)


def test_detection_per_table(namespace: Callable[[str | None], str]) -> None:
    """auto picks restore for nf_tables and iptc for legacy; forcing iptc on nf_tables, or any backend without
    DOCKER-USER, selects nothing and says why."""
    nft, legacy, bare = namespace("nft"), namespace("legacy"), namespace(None)
    assert choose("auto", nft).backend.name == "restore (nf_tables)"
    assert choose("auto", nft).families == (4, 6)
    assert choose("auto", legacy).backend.name == "iptc (legacy)"
    assert choose("restore", legacy).backend.name == "restore (legacy)"
    forced = choose("iptc", nft)
    assert forced.backend is None and "legacy iptables only" in forced.reason
    none = choose("auto", bare)
    assert none.backend is None and "--iptables=false" in none.reason
    assert "filter" not in sh(bare, "cat", "/proc/net/ip_tables_names").split()  # looking created none


def test_plan_without_docker_user_is_blocked(namespace: Callable[[str | None], str]) -> None:
    """With no DOCKER-USER anywhere the plan holds a blocked change naming the reason."""
    ns = namespace(None)
    ctx = DriverContext(project="proj", manifest_dir=Path("/tmp"), options=[FirewallOptions(netns=ns)])
    drivers = {"FirewallAllowList": FirewallDriver(ctx)}
    res = Resource(
        "FirewallAllowList",
        "web",
        {"interfaces": ["eth0"], "sources": ["192.0.2.1"]},
        {},
        Source("fw.yaml", 3, Path("/tmp/fw.yaml")),
    )
    catalog, problems = build_catalog([res], drivers)
    assert problems == []
    plan = plan_changes(catalog, drivers, "proj", observe_all(catalog, drivers))
    (change,) = plan.changes
    assert change.action is Action.CREATE and change.blocked and "no DOCKER-USER chain" in change.blocked
    assert not plan.in_sync


def _docker_user(ns: str, variant: str) -> list[str]:
    saved = sh(ns, f"iptables-{variant}-save", "-t", "filter")
    return [ln for ln in saved.splitlines() if ln.startswith("-A DOCKER-USER ")]


@pytest.mark.parametrize(("variant", "mode"), [("nft", "restore"), ("legacy", "iptc")], ids=["restore", "iptc"])
def test_a_jump_moved_below_docker_return_is_drift_and_moved_back_to_the_top(
    namespace: Callable[[str | None], str], variant: str, mode: str
) -> None:
    """A jump deleted and appended after DOCKER-USER's `-j RETURN` (where none of our rules run) is drift of
    `jump.ipv4`, and apply moves it back to rule 1 leaving the other rules in their order."""
    ns = namespace(variant)
    ctx = DriverContext(project="proj", manifest_dir=Path("/tmp"), options=[FirewallOptions(backend=mode, netns=ns)])
    drivers = {"FirewallAllowList": FirewallDriver(ctx)}
    res = Resource(
        "FirewallAllowList",
        "web",
        {"interfaces": ["eth0"], "sources": ["192.0.2.1"], "ports": [{"port": 8080}]},
        {},
        Source("fw.yaml", 3, Path("/tmp/fw.yaml")),
    )

    def plan() -> Plan:
        catalog, problems = build_catalog([res], drivers)
        assert problems == []
        return plan_changes(catalog, drivers, "proj", observe_all(catalog, drivers))

    (create,) = plan().changes
    drivers["FirewallAllowList"].apply(create)
    assert plan().in_sync
    jump = _docker_user(ns, variant)[0]
    assert "reconciler:proj" in jump
    tool = f"iptables-{variant}"
    sh(ns, tool, "-D", *shlex.split(jump)[1:])
    sh(ns, tool, "-A", *shlex.split(jump)[1:])
    assert _docker_user(ns, variant)[-1] == jump  # now after Docker's -j RETURN: our rules never run
    drifted = plan()
    assert not drifted.in_sync
    (change,) = drifted.changes
    assert change.action is Action.UPDATE
    fields = {f.path: f for f in change.fields}
    assert set(fields) == {"jump.ipv4"} and (fields["jump.ipv4"].old, fields["jump.ipv4"].new) == ("rule 3", "rule 1")
    drivers["FirewallAllowList"].apply(change)
    rules = _docker_user(ns, variant)
    assert rules == [jump, "-A DOCKER-USER -s 10.9.9.9/32 -j DROP", "-A DOCKER-USER -j RETURN"]
    assert plan().in_sync
