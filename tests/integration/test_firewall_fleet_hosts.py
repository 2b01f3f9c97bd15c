"""A fleet's firewall lists are this machine's rules, written for the local Host they are placed on. The other Hosts'
runs never see them: a Host reached over the network holds nothing of this machine, and another local Host of the
same tree is not theirs. Before, each of those runs observed the project's chain here and pruned the list as
undeclared: a fleet apply wrote it and removed it again, leaving the port open between the two."""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler.core.plugins import engine_class
from reconciler.core.project import ProjectRunner
from reconciler.drivers.firewall.driver import FirewallOptions
from reconciler.model import Action, Outcome
from tests.helpers import configured_docker_host

pytestmark = [pytest.mark.engine, pytest.mark.netns]


def host(name: str, engine: str) -> str:
    return f"apiVersion: reconciler/v1\nkind: Host\nmetadata: {{name: {name}}}\nspec:\n  engine: '{engine}'\n"


ALLOW_LIST = """apiVersion: reconciler/v1
kind: FirewallAllowList
metadata: {name: web}
spec:
  hosts: [here]
  interfaces: [eth0]
  ports: [{port: 8080, protocol: tcp}]
  sources: [10.99.0.0/24]
"""


@pytest.fixture
def netns() -> Iterator[str]:
    """A fresh namespace with a DOCKER-USER chain, as the engine makes it: the rules' stand-in for this machine."""
    from pyroute2 import netns as namespaces

    name = f"fwf{uuid.uuid4().hex[:6]}"
    namespaces.create(name)
    try:
        for argv in (["-N", "DOCKER-USER"], ["-A", "FORWARD", "-j", "DOCKER-USER"]):
            subprocess.run(["nsenter", f"--net=/run/netns/{name}", "iptables", *argv], check=True, timeout=30)
        yield name
    finally:
        namespaces.remove(name)


def rules(ns: str, project: str) -> list[str]:
    saved = subprocess.run(
        ["nsenter", f"--net=/run/netns/{ns}", "iptables-save", "-t", "filter"],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout
    return [line for line in saved.splitlines() if f"reconciler:{project}:web" in line]


def test_only_the_hosts_run_the_list_is_placed_on_sees_it(tmp_path: Path, netns: str, project_name: str) -> None:
    tree = tmp_path / "tree"
    tree.mkdir()
    local = configured_docker_host() or "unix:///var/run/docker.sock"
    hosts = [
        host("here", local),
        host("also", "unix:///run/another-engine.sock"),
        host("there", "ssh://tester@127.0.0.1"),
    ]
    (tree / "hosts.yaml").write_text("---\n".join(hosts))
    (tree / "fw.yaml").write_text(ALLOW_LIST)
    engines = engine_class()
    options = [FirewallOptions(backend="restore", netns=netns)]

    def runner(name: str) -> ProjectRunner:
        # every run talks to the test engine: what is under test is where the Host's spec says it is
        return ProjectRunner(project_name, tree, engine=engines.for_host(local, None), options=options, host=name)

    def firewall_changes(name: str) -> list[tuple[str, Action]]:
        run = runner(name)
        plan = run.plan(run.load_valid().catalog, prune=True)
        return [(c.name, c.action) for c in plan.changes if c.kind == "FirewallAllowList"]

    here = runner("here")
    results = here.apply(here.plan(here.load_valid().catalog, prune=True))
    assert [(r.change.name, r.outcome) for r in results] == [("web", Outcome.APPLIED)]
    assert rules(netns, project_name)
    assert firewall_changes("there") == []  # reached over the network: nothing of this machine is its
    assert firewall_changes("also") == []  # another local Host: the list is not placed on it
    assert firewall_changes("here") == [("web", Action.NONE)]

    (tree / "fw.yaml").unlink()  # declared nowhere now: this machine's local Hosts prune it, never a remote one
    assert firewall_changes("there") == []
    assert firewall_changes("also") == [("web", Action.DELETE)]
    here = runner("here")
    plan = here.plan(here.load_valid().catalog, prune=True)
    assert [(c.name, c.action) for c in plan.changes if c.kind == "FirewallAllowList"] == [("web", Action.DELETE)]
    here.apply(plan)
    assert rules(netns, project_name) == []
