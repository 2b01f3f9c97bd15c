"""End to end on the real test engine: a container publishes a port, two client namespaces wired to the host by
veth connect to it, and a FirewallAllowList decides who gets through.

This writes to the host's real DOCKER-USER (that of the test engine's iptables backend): only one jump for a
unique project, whose chains match only this test's own veth interfaces. Everything is removed afterwards, also
on failure.
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
import pytest

from reconciler.contract import DriverContext
from reconciler.core.catalog import build_catalog
from reconciler.core.executor import execute, succeeded
from reconciler.core.planner import observe_all, plan_changes
from reconciler.drivers.firewall.detect import choose
from reconciler.drivers.firewall.driver import FirewallDriver, FirewallOptions
from reconciler.drivers.firewall.rules import main_chain
from reconciler.model import LABEL_PROJECT, Action, Plan, Resource, Source

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


def _wire(client: Client) -> None:
    """A namespace with one veth to the host netns, a /30 from TEST-NET on each side."""
    from pyroute2 import IPRoute, netns

    netns.create(client.netns)
    with IPRoute() as ipr:
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


@pytest.fixture
def published(api: docker.APIClient, base_image: str, project_name: str) -> Iterator[int]:
    """A container of the project answering "ok" on a published host port; yields that port."""
    name = f"{project_name}-fw"
    host_config = api.create_host_config(port_bindings={80: ("0.0.0.0", None)})
    container = api.create_container(
        base_image,
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
def clients(project_name: str) -> Iterator[tuple[Client, Client]]:
    from pyroute2 import netns

    tag = uuid.uuid4().hex[:5]
    n = 4 * random.randrange(1, 63)  # a random /30, so concurrent runs do not put one address on two links
    a = Client(f"fwe{tag}-a", f"fwe{tag}a", f"192.0.2.{n + 2}", f"192.0.2.{n + 1}")
    b = Client(f"fwe{tag}-b", f"fwe{tag}b", f"203.0.113.{n + 2}", f"203.0.113.{n + 1}")
    try:
        _wire(a)
        _wire(b)
        yield a, b
    finally:
        for client in (a, b):
            if client.netns in netns.listnetns():
                netns.remove(client.netns)  # removes the veth pair, and with it the host-side address


def plan_and_apply(project: str, resources: list[Resource]) -> Plan:
    ctx = DriverContext(project=project, manifest_dir=Path("/tmp"), options=[FirewallOptions(backend="auto")])
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
    published: int, clients: tuple[Client, Client], project_name: str
) -> None:
    """Allow A: A connects, B is dropped; allow B: the opposite; delete: both connect, no rule of ours left."""
    selection = choose("auto")
    if selection.backend is None:
        pytest.skip(f"test engine has no DOCKER-USER: {selection.reason}")
    a, b = clients
    port = published
    ifaces = [a.host_if, b.host_if]
    deadline = time.monotonic() + 15
    while not (connects(a, port) and connects(b, port)):  # the container's nc needs a moment
        assert time.monotonic() < deadline, "published port not reachable from the client namespaces"
        time.sleep(0.3)
    try:
        plan = plan_and_apply(project_name, [allow("clients", ifaces, [a.address], port)])
        assert [c.action for c in plan.changes] == [Action.CREATE]
        assert connects(a, port)
        assert not connects(b, port)

        plan_and_apply(project_name, [allow("clients", ifaces, [b.address], port)])
        assert connects(b, port)
        assert not connects(a, port)

        plan = plan_and_apply(project_name, [])
        assert [c.action for c in plan.changes] == [Action.DELETE]
        assert connects(a, port) and connects(b, port)
    finally:
        for family in selection.families:  # whatever happened above, leave no rule of ours behind
            selection.backend.write(family, project_name, None)
    for family in selection.families:
        live = selection.backend.read(family, project_name)
        assert live.jumps == 0 and not live.chains
    assert (
        main_chain(project_name)
        not in subprocess.run(["iptables-save", "-t", "filter"], capture_output=True, text=True, timeout=30).stdout
    )
