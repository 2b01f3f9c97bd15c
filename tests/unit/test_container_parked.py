"""How the next plan settles a container an interrupted replace (or `apply --adopt`) parked as
`<name>__reconciler_old` (issue 24, defect 4): removed when the new container runs, standing for `<name>` again
when nothing holds the name or the new container never ran (which is then removed first)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from reconciler.drivers.container.diff import steps_for
from reconciler.drivers.container.observe import ContainerFacts, ImageDefaults
from reconciler.drivers.container.parked import compose_name, resume_interrupted
from reconciler.drivers.container.spec import normalize_container
from reconciler.model import LABEL_KIND, LABEL_NAME, LABEL_PROJECT, Action, Observed, Resource, Source

P = "shop"
ASIDE = "web__reconciler_old"
COMPOSE = {
    "com.docker.compose.project": P,
    "com.docker.compose.service": "web",
    "com.docker.compose.container-number": "1",
    "com.docker.compose.version": "1.29.2",
}


def container(key: str, engine: str, state: str, cid: str, adopted: bool = False, aside: bool = False) -> Observed:
    labels = {LABEL_PROJECT: P, LABEL_KIND: "Container", LABEL_NAME: "web", **(COMPOSE if adopted else {})}
    facts = ContainerFacts(cid, engine, "sha256:a", "sha256:a", ImageDefaults(), aside=aside, adopted=adopted)
    return Observed("Container", key, cid, labels, {"state": state}, raw=facts)


def facts(obs: Observed) -> ContainerFacts:
    assert isinstance(obs.raw, ContainerFacts)
    return obs.raw


def test_a_parked_compose_container_with_nothing_under_its_name_stands_for_it() -> None:
    """Killed after the rename: the Compose container (seen by its listing, with or without --adopt) is the old
    container of `web` again, parked, so the plan continues the replace without parking it twice."""
    parked = container(ASIDE, ASIDE, "stopped", "old", adopted=True)
    found = resume_interrupted({}, {ASIDE: parked}, {"web": "running"}, P)
    assert list(found) == ["web"]
    assert facts(found["web"]).aside and facts(found["web"]).adopted and facts(found["web"]).discard is None


def test_the_parked_container_is_a_leftover_once_the_new_one_runs() -> None:
    new = container("web", "web", "running", "new")
    own = container(ASIDE, ASIDE, "stopped", "old")
    compose = container(ASIDE, ASIDE, "stopped", "old", adopted=True)
    assert resume_interrupted({"web": new, ASIDE: own}, {}, {"web": "running"}, P) == {"web": new, ASIDE: own}
    assert resume_interrupted({"web": new}, {ASIDE: compose}, {"web": "running"}, P) == {"web": new, ASIDE: compose}
    stopped = container("web", "web", "stopped", "new")  # declared stopped: created is its final state
    assert resume_interrupted({"web": stopped}, {ASIDE: compose}, {"web": "stopped"}, P)[ASIDE] is compose


def test_a_new_container_that_never_ran_is_discarded_and_the_parked_one_stands_for_the_name() -> None:
    """Killed after the create, before the start: starting the new one blindly would skip its settle window (a
    crash would go unseen and the old one be dropped), so the plan removes it and replaces the parked one."""
    created = container("web", "web", "stopped", "new")
    for found, extra in (
        ({"web": created, ASIDE: container(ASIDE, ASIDE, "stopped", "old")}, {}),
        ({"web": created}, {ASIDE: container(ASIDE, ASIDE, "stopped", "old", adopted=True)}),
    ):
        settled = resume_interrupted(found, extra, {"web": "running"}, P)
        assert list(settled) == ["web"] and settled["web"].id == "old"
        assert facts(settled["web"]).aside and facts(settled["web"]).discard == "new"


def test_a_container_of_someone_else_under_the_name_is_left_alone() -> None:
    foreign = Observed("Container", "web", "x", {}, {"state": "stopped"}, raw=facts(container("web", "web", "s", "x")))
    compose = container(ASIDE, ASIDE, "stopped", "old", adopted=True)
    assert resume_interrupted({"web": foreign}, {ASIDE: compose}, {"web": "running"}, P) == {"web": foreign}


def test_the_plan_removes_the_never_run_container_before_the_parked_one_is_touched() -> None:
    res = Resource("Container", "web", {"image": "busybox:1.35"}, {}, Source("w.yaml", 1, Path("/tmp/w.yaml")))
    desired = normalize_container(res)
    parked = container("web", ASIDE, "stopped", "old", aside=True)
    settled = dataclasses.replace(facts(parked), discard="n" * 64)
    steps = steps_for(Action.REPLACE, desired, [], settled)
    assert [s.op for s in steps] == ["discard", "stop-old", "create", "start", "drop-old"]  # type: ignore[attr-defined]
    assert steps[0].startswith("remove web (nnnnnnnnnnnn, created by an interrupted replace, never ran)")


def test_a_restored_compose_container_gets_its_compose_name_back() -> None:
    assert compose_name(COMPOSE, "fallback") == "shop_web_1"
    assert compose_name({**COMPOSE, "com.docker.compose.version": "2.20.0"}, "fallback") == "shop-web-1"
    assert compose_name({}, "fallback") == "fallback"
