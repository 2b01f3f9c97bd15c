"""FirewallDriver planning and applying against an in-memory backend (no kernel)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from reconciler.contract import DriverContext
from reconciler.drivers.firewall import driver as driver_module
from reconciler.drivers.firewall.backend import LiveFamily
from reconciler.drivers.firewall.detect import NO_DOCKER_USER, Selection
from reconciler.drivers.firewall.driver import FirewallDriver
from reconciler.drivers.firewall.rules import ChainSet, Rule, main_chain
from reconciler.errors import PermanentError
from reconciler.model import Action, Resource, Source


class MemoryBackend:
    """One family's project chains and jump count, as a kernel would keep them."""

    name = "memory"

    def __init__(self, families: tuple[int, ...] = (4,)) -> None:
        self.tables = {f: LiveFamily(f, True) for f in families}
        self.writes = 0

    def read(self, family: int, project: str) -> LiveFamily:
        return self.tables[family]

    def write(self, family: int, project: str, want: ChainSet | None) -> None:
        self.writes += 1
        chains = dict(want.chains) if want else {}
        self.tables[family] = LiveFamily(family, True, 1 if want else 0, 1 if want else 0, chains)


class Catalog:
    def __init__(self, desired: list) -> None:
        self.desired = desired

    def of_kind(self, kind: str) -> list:
        return list(self.desired)


def resource(name: str, **spec: object) -> Resource:
    body = {"interfaces": ["lo"], **spec}
    return Resource("FirewallAllowList", name, body, {}, Source("fw.yaml", 1, Path("/tmp/fw.yaml")))


@pytest.fixture
def backend(monkeypatch: pytest.MonkeyPatch) -> MemoryBackend:
    mem = MemoryBackend()
    monkeypatch.setattr(driver_module, "choose", lambda *args, **kwargs: Selection(mem, "test", (4,)))
    monkeypatch.setattr(driver_module, "interface_names", lambda netns=None: {"lo", "eth0"})
    return mem


def make_driver() -> FirewallDriver:
    return FirewallDriver(DriverContext(project="proj", manifest_dir=Path("/tmp")))


def plan(drv: FirewallDriver, resources: list[Resource], prune: bool = True) -> dict:
    """What the planner does: normalize + check all, observe, diff each declared, prune each gone."""
    desired = [drv.normalize(r) for r in resources]
    for d in desired:
        list(drv.check(d, Catalog(desired)))
    observed = drv.observe(desired)
    changes = {d.name: drv.diff(d, observed.get(d.name)) for d in desired}
    if prune:
        for name, obs in observed.items():
            if name not in changes:
                changes[name] = drv.prune(obs)
    return changes


def converge(resources: list[Resource], drv: FirewallDriver | None = None, prune: bool = True) -> dict:
    drv = drv or make_driver()
    changes = plan(drv, resources, prune)
    for change in changes.values():
        if change.pending:
            drv.apply(change)
    return changes


def test_new_list_is_created_then_in_sync(backend: MemoryBackend) -> None:
    """A declared list plans CREATE, apply writes it, and the next plan is in sync."""
    web = resource("web", sources=["192.0.2.1"], ports=[{"port": 8080}])
    first = converge([web])
    assert first["web"].action is Action.CREATE
    assert first["web"].steps == (
        "traffic arriving on lo for any host address, 8080/tcp: allow 192.0.2.1; drop every other source",
    )
    assert backend.tables[4].jumps == 1
    again = plan(make_driver(), [web])
    assert again["web"].action is Action.NONE, again["web"].fields


def test_changed_sources_show_field_by_field(backend: MemoryBackend) -> None:
    """Changing the sources plans an UPDATE naming the `sources` field with old and new values."""
    converge([resource("web", sources=["192.0.2.1"])])
    change = plan(make_driver(), [resource("web", sources=["192.0.2.2"])])["web"]
    assert change.action is Action.UPDATE
    by_path = {f.path: f for f in change.fields}
    assert by_path["sources"].old == ["192.0.2.1"] and by_path["sources"].new == ["192.0.2.2"]


def test_hand_flushed_rules_are_drift(backend: MemoryBackend) -> None:
    """Rules removed by hand (a firewall reload) show as drift, and apply restores them."""
    web = resource("web", sources=["192.0.2.1"])
    converge([web])
    backend.tables[4] = LiveFamily(4, True, 0, 0, {})  # `iptables -F` + chains gone, jump gone
    change = plan(make_driver(), [web])["web"]
    assert change.action is Action.CREATE
    converge([web])
    assert plan(make_driver(), [web])["web"].action is Action.NONE


def test_hand_edited_group_rule_is_drift(backend: MemoryBackend) -> None:
    """A rule inserted by hand into the project's chains is drift of the lists it affects."""
    web = resource("web", sources=["192.0.2.1"])
    converge([web])
    main = main_chain("proj")
    live = backend.tables[4]
    hacked = dict(live.chains)
    hacked[main] = (Rule(target="RETURN"), *hacked[main])  # lets everything through
    backend.tables[4] = replace(live, chains=hacked)
    change = plan(make_driver(), [web])["web"]
    assert change.action is Action.UPDATE
    assert [f.path for f in change.fields] == ["rules.ipv4"]
    assert change.fields[0].old == [f"-A {main} -j RETURN"]


def test_missing_jump_is_drift(backend: MemoryBackend) -> None:
    """A lost DOCKER-USER jump (Docker restart on an old engine) is drift of every list."""
    web = resource("web", sources=["192.0.2.1"])
    converge([web])
    backend.tables[4] = replace(backend.tables[4], jumps=0, jump_index=0)
    change = plan(make_driver(), [web])["web"]
    assert [f.path for f in change.fields] == ["jump.ipv4"]


def test_one_apply_writes_all_lists_and_later_applies_do_nothing(backend: MemoryBackend) -> None:
    """The first apply writes every list's rules; the others find the ruleset already right."""
    converge([resource("a", sources=["192.0.2.1"]), resource("b", sources=["192.0.2.2"])])
    assert backend.writes == 1


def test_removed_list_is_pruned_and_last_one_removes_everything(backend: MemoryBackend) -> None:
    """A gone list plans DELETE; deleting the last list removes the chains and the jump."""
    converge([resource("a", sources=["192.0.2.1"]), resource("b", sources=["192.0.2.2"])])
    changes = converge([resource("a", sources=["192.0.2.1"])])
    assert changes["b"].action is Action.DELETE
    assert "192.0.2.2" not in str(backend.tables[4].chains)
    changes = converge([])
    assert changes["a"].action is Action.DELETE
    assert backend.tables[4].chains == {} and backend.tables[4].jumps == 0


def test_no_prune_keeps_a_gone_list_enforced(backend: MemoryBackend) -> None:
    """With --no-prune a gone list keeps its rules even when another list's change rewrites the ruleset."""
    converge([resource("a", sources=["192.0.2.1"]), resource("b", sources=["192.0.2.2"], ports=[{"port": 9}])])
    converge([resource("a", sources=["192.0.2.3"])], prune=False)
    text = str(backend.tables[4].chains)
    assert "192.0.2.2" in text and "192.0.2.3" in text and "192.0.2.1" not in text


def test_no_docker_user_blocks_with_the_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without any DOCKER-USER chain the plan is blocked and says why; apply refuses."""
    monkeypatch.setattr(driver_module, "choose", lambda *args, **kwargs: Selection(None, NO_DOCKER_USER))
    drv = make_driver()
    change = plan(drv, [resource("web", sources=["192.0.2.1"])])["web"]
    assert change.blocked is not None and "--iptables=false" in change.blocked
    with pytest.raises(PermanentError):
        drv.apply(replace(change, blocked=None))


def test_plan_warns_about_missing_interfaces_and_empty_sources(backend: MemoryBackend) -> None:
    """A missing interface and an empty source list are plan notes, not errors."""
    change = plan(make_driver(), [resource("closed", interfaces=["nosuch0"], ports=[{"port": 8080}])])["closed"]
    assert change.blocked is None
    assert any("nosuch0 does not exist" in n for n in change.notes)
    assert any("allows no source: drops all traffic arriving on nosuch0" in n for n in change.notes)
    assert any("IPv6" in n for n in change.notes)


def test_normalize_hashes_the_canonical_spec() -> None:
    """Two spellings of the same list get the same spec hash; a real change gets another."""
    drv = make_driver()
    a = drv.normalize(resource("w", sources=["192.0.2.1/32", "198.51.100.0/24"]))
    b = drv.normalize(resource("w", sources=["198.51.100.0/24", "192.0.2.1"]))
    c = drv.normalize(resource("w", sources=["198.51.100.0/24"]))
    assert a.spec_hash == b.spec_hash != c.spec_hash
    assert list(drv.references(a)) == []


def test_validation_problems_name_the_manifest_field() -> None:
    """Through the core catalog, a bad source is reported at its own list index in the manifest."""
    from reconciler.core.catalog import build_catalog

    drv = make_driver()
    res = resource("web", sources=["192.0.2.1", "192.0.2.9-192.0.2.1"], ports=[{"port": 8080, "protocol": "gre"}])
    _, problems = build_catalog([res], {"FirewallAllowList": drv})
    assert sorted(p.field for p in problems) == ["spec.ports[0].protocol", "spec.sources[1]"]


def test_unreadable_rules_block_the_lists_instead_of_failing_the_plan(backend: MemoryBackend) -> None:
    """A backend read error becomes a blocked change with the reason (other kinds can still be planned)."""
    from reconciler.errors import TemporaryError

    def broken(family: int, project: str) -> LiveFamily:
        raise TemporaryError("iptables-nft-save timed out")

    backend.read = broken  # type: ignore[method-assign]
    change = plan(make_driver(), [resource("web", sources=["192.0.2.1"])])["web"]
    assert change.blocked is not None and "timed out" in change.blocked


def test_a_jump_below_other_rules_is_drift_and_apply_moves_it_to_the_top(backend: MemoryBackend) -> None:
    """Other rules above the project's jump in DOCKER-USER (e.g. Docker's -j RETURN) are drift of the jump,
    and apply rewrites it at the top; other reconcile projects' jumps above it are not drift."""
    converge([resource("web", sources=["192.0.2.1"])])
    backend.tables[4] = replace(backend.tables[4], jump_index=3, foreign_above=2)
    change = plan(make_driver(), [resource("web", sources=["192.0.2.1"])])["web"]
    assert change.action is Action.UPDATE
    assert [(f.path, f.old, f.new) for f in change.fields] == [("jump.ipv4", "rule 3", "rule 1")]
    converge([resource("web", sources=["192.0.2.1"])])
    assert backend.tables[4].jump_on_top
    backend.tables[4] = replace(backend.tables[4], jump_index=2, foreign_above=0)  # below another project's jump
    assert plan(make_driver(), [resource("web", sources=["192.0.2.1"])])["web"].action is Action.NONE
