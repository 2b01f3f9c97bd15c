"""End to end on a real Docker engine: a container publishes a port, two client namespaces wired to the engine's
network namespace by veth connect to it, and a FirewallAllowList decides who gets through.

The engine is engine a of the test fleet (scripts/fleetenv.sh): a real dockerd with Docker's iptables rules in a
network namespace of its own, so its DOCKER-USER chain is always there and its own, whatever engine DOCKER_HOST
names (the main test engine may be another machine's, or one without iptables) and whichever iptables backend
the host uses. The rules go into that namespace's DOCKER-USER: one jump for a unique project, whose chains match
only this test's own veth interfaces. Everything is removed afterwards, also on failure.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import docker
import docker.errors
import pytest

from reconciler.contract import DriverContext
from reconciler.core.catalog import build_catalog
from reconciler.core.executor import execute, succeeded
from reconciler.core.planner import observe_all, plan_changes
from reconciler.drivers.firewall.detect import choose
from reconciler.drivers.firewall.driver import FirewallDriver, FirewallOptions
from reconciler.drivers.firewall.rules import main_chain
from reconciler.model import LABEL_PROJECT, Action, Plan, Resource, Source
from tests.helpers import BASE_IMAGE

pytestmark = [
    pytest.mark.engine,
    pytest.mark.netns,
    pytest.mark.skipif(os.geteuid() != 0 or shutil.which("ip") is None, reason="needs root and iproute2"),
]

CONNECT_CODE = """
import socket, sys
try:
    s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=1.5)
    s.settimeout(1.5)
    print(s.recv(2).decode())
except OSError as exc:
    print(type(exc).__name__)
"""


@dataclass
class Client:
    netns: str
    host_if: str
    address: str
    host_address: str  # the host address this client connects to (a published port listens on every address)


def _wire(client: Client, engine_netns: str) -> None:
    """A namespace with one veth to the engine's netns, a /30 from TEST-NET on each side."""
    from pyroute2 import IPRoute, netns

    netns.create(client.netns)
    with IPRoute(netns=engine_netns) as ipr:
        ipr.link("add", ifname=client.host_if, kind="veth", peer={"ifname": "eth0", "net_ns_fd": client.netns})
        idx = ipr.link_lookup(ifname=client.host_if)[0]
        ipr.addr("add", index=idx, address=client.host_address, prefixlen=30)
        ipr.link("set", index=idx, state="up")
    with IPRoute(netns=client.netns) as ipr:
        idx = ipr.link_lookup(ifname="eth0")[0]
        ipr.addr("add", index=idx, address=client.address, prefixlen=30)
        ipr.link("set", index=idx, state="up")
        ipr.route("add", dst="0.0.0.0/0", gateway=client.host_address)


def connects(client: Client, port: int) -> bool:
    proc = subprocess.run(
        ["ip", "netns", "exec", client.netns, sys.executable, "-c", CONNECT_CODE, client.host_address, str(port)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    return proc.stdout.strip() == "ok"


@dataclass
class Engine:
    api: docker.APIClient
    netns: str


@pytest.fixture
def engine(fleet_env) -> Iterator[Engine]:
    """Engine a of the test fleet: its client and its network namespace."""
    api = fleet_env.client("a", "unix")
    try:
        yield Engine(api, fleet_env["a"].netns)
    finally:
        api.close()


@pytest.fixture
def published(engine: Engine, project_name: str) -> Iterator[int]:
    """A container of the project answering "ok" on a published port of the engine; yields that port."""
    api = engine.api
    try:
        api.inspect_image(BASE_IMAGE)
    except docker.errors.NotFound:
        api.pull(BASE_IMAGE)  # from the registry of scripts/testenv.sh, forwarded into the fleet's namespaces
    name = f"{project_name}-fw"
    host_config = api.create_host_config(port_bindings={80: ("0.0.0.0", None)})
    container = api.create_container(
        BASE_IMAGE,
        command=["nc", "-ll", "-p", "80", "-e", "echo", "ok"],
        name=name,
        ports=[80],
        host_config=host_config,
        labels={LABEL_PROJECT: project_name},
    )
    try:
        api.start(container["Id"])
        bindings = api.inspect_container(container["Id"])["NetworkSettings"]["Ports"]["80/tcp"]
        yield int(bindings[0]["HostPort"])
    finally:
        api.remove_container(container["Id"], force=True)


@pytest.fixture
def clients(engine: Engine, project_name: str) -> Iterator[tuple[Client, Client]]:
    from pyroute2 import netns

    tag = uuid.uuid4().hex[:5]
    n = 4 * random.randrange(1, 63)  # a random /30, so concurrent runs do not put one address on two links
    a = Client(f"fwe{tag}-a", f"fwe{tag}a", f"192.0.2.{n + 2}", f"192.0.2.{n + 1}")
    b = Client(f"fwe{tag}-b", f"fwe{tag}b", f"203.0.113.{n + 2}", f"203.0.113.{n + 1}")
    try:
        _wire(a, engine.netns)
        _wire(b, engine.netns)
        yield a, b
    finally:
        for client in (a, b):
            if client.netns in netns.listnetns():
                netns.remove(client.netns)  # removes the veth pair, and with it the host-side address


def plan_and_apply(project: str, netns: str, resources: list[Resource]) -> Plan:
    options = [FirewallOptions(backend="auto", netns=netns)]
    ctx = DriverContext(project=project, manifest_dir=Path("/tmp"), options=options)
    drivers = {"FirewallAllowList": FirewallDriver(ctx)}
    catalog, problems = build_catalog(resources, drivers)
    assert problems == []
    plan = plan_changes(catalog, drivers, project, observe_all(catalog, drivers))
    results = execute(plan, drivers)
    assert succeeded(results), [r.error for r in results]
    return plan


def allow(name: str, interfaces: list[str], sources: list[str], port: int) -> Resource:
    spec = {"interfaces": interfaces, "sources": sources, "ports": [{"port": port}]}
    return Resource("FirewallAllowList", name, spec, {}, Source("fw.yaml", 1, Path("/tmp/fw.yaml")))


def test_published_port_allow_list_on_the_real_engine(
    engine: Engine, published: int, clients: tuple[Client, Client], project_name: str
) -> None:
    """Allow A: A connects, B is dropped; allow B: the opposite; delete: both connect, no rule of ours left."""
    selection = choose("auto", engine.netns)
    assert selection.backend is not None, f"the fleet engine has no DOCKER-USER: {selection.reason}"
    a, b = clients
    port = published
    ifaces = [a.host_if, b.host_if]
    deadline = time.monotonic() + 15
    while not (connects(a, port) and connects(b, port)):  # the container's nc needs a moment
        assert time.monotonic() < deadline, "published port not reachable from the client namespaces"
        time.sleep(0.3)
    try:
        plan = plan_and_apply(project_name, engine.netns, [allow("clients", ifaces, [a.address], port)])
        assert [c.action for c in plan.changes] == [Action.CREATE]
        assert connects(a, port)
        assert not connects(b, port)

        plan_and_apply(project_name, engine.netns, [allow("clients", ifaces, [b.address], port)])
        assert connects(b, port)
        assert not connects(a, port)

        plan = plan_and_apply(project_name, engine.netns, [])
        assert [c.action for c in plan.changes] == [Action.DELETE]
        assert connects(a, port) and connects(b, port)
    finally:
        for family in selection.families:  # whatever happened above, leave no rule of ours behind
            selection.backend.write(family, project_name, None)
    for family in selection.families:
        live = selection.backend.read(family, project_name)
        assert live.jumps == 0 and not live.chains
    save = ["ip", "netns", "exec", engine.netns, "iptables-save", "-t", "filter"]
    assert main_chain(project_name) not in subprocess.run(save, capture_output=True, text=True, timeout=30).stdout
