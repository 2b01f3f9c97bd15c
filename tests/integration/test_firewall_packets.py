"""Proof by packets, per backend: throw-away namespaces (a Docker-like "host" with DOCKER-USER and a DNAT of a
published port to a "server", and two clients) and real TCP connections through the rules reconcile writes.

Nothing here touches the host's own ruleset: every iptables call runs inside a fresh network namespace.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from reconciler.contract import DriverContext
from reconciler.core.catalog import build_catalog
from reconciler.core.executor import execute, succeeded
from reconciler.core.planner import observe_all, plan_changes
from reconciler.drivers.firewall.driver import FirewallDriver, FirewallOptions
from reconciler.drivers.firewall.rules import main_chain
from reconciler.model import Action, Plan, Resource, Source

pytestmark = [
    pytest.mark.netns,
    pytest.mark.skipif(os.geteuid() != 0 or shutil.which("ip") is None, reason="needs root and iproute2"),
]

PUBLISHED_PORT = 8080
CLIENT_A = "192.0.2.2"  # behind interface exta (host side 192.0.2.1)
CLIENT_B = "203.0.113.2"  # behind interface extb (host side 203.0.113.1)
SERVER = "198.51.100.2"  # the "container", behind srv0 (host side 198.51.100.1)
# IPv6 (documentation prefix): host side ::1, peer ::2 of one /64 per link
V6 = {"srv0": "2001:db8:5::", "exta": "2001:db8:a::", "extb": "2001:db8:b::"}
CLIENT_A6, CLIENT_B6, SERVER6 = V6["exta"] + "2", V6["extb"] + "2", V6["srv0"] + "2"

SERVER_CODE = """
import socket, threading
def serve(c):
    c.sendall(b"ok")  # then echo until the client closes
    try:
        while data := c.recv(64):
            c.sendall(data)
    except OSError:
        pass
    finally:
        c.close()
s = socket.create_server(("::", 80), family=socket.AF_INET6, dualstack_ipv6=True, backlog=16)
while True:
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
"""

CONNECT_CODE = """
import socket, sys
try:
    s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=float(sys.argv[3]))
    s.settimeout(float(sys.argv[3]))
    print(s.recv(2).decode())
except OSError as exc:
    print(type(exc).__name__)
"""


def sh(*argv: str, netns: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    full = ["ip", "netns", "exec", netns, *argv] if netns else list(argv)
    return subprocess.run(full, capture_output=True, text=True, timeout=30, check=check)


@dataclass
class Lab:
    tag: str
    variant: str  # iptables variant of the Docker-like fixture: nft | legacy
    host: str
    server: str
    client_a: str
    client_b: str

    def connects(self, client: str, address: str) -> bool:
        """Whether a TCP connect from `client` to the published port gets the server's answer."""
        proc = sh(sys.executable, "-c", CONNECT_CODE, address, str(PUBLISHED_PORT), "1.5", netns=client)
        return proc.stdout.strip() == "ok"

    def a_connects(self, family: int = 4) -> bool:
        return self.connects(self.client_a, "192.0.2.1" if family == 4 else V6["exta"] + "1")

    def b_connects(self, family: int = 4) -> bool:
        return self.connects(self.client_b, "203.0.113.1" if family == 4 else V6["extb"] + "1")

    def iptables(self, *args: str, family: int = 4) -> subprocess.CompletedProcess[str]:
        tool = f"{'iptables' if family == 4 else 'ip6tables'}-{self.variant}"
        return sh(tool, "-w", "5", *args, netns=self.host)

    def save(self) -> str:
        return sh(f"iptables-{self.variant}-save", "-t", "filter", netns=self.host).stdout


def _veth(host_ns: str, host_if: str, host_addr: str, peer_ns: str, peer_addr: str, gateway: str) -> None:
    from pyroute2 import IPRoute

    with IPRoute(netns=host_ns) as ipr:
        ipr.link("add", ifname=host_if, kind="veth", peer={"ifname": "eth0", "net_ns_fd": peer_ns})
        idx = ipr.link_lookup(ifname=host_if)[0]
        ipr.addr("add", index=idx, address=host_addr, prefixlen=24)
        ipr.link("set", index=idx, state="up")
    with IPRoute(netns=peer_ns) as ipr:
        idx = ipr.link_lookup(ifname="eth0")[0]
        ipr.addr("add", index=idx, address=peer_addr, prefixlen=24)
        ipr.link("set", index=idx, state="up")
        ipr.link("set", index=ipr.link_lookup(ifname="lo")[0], state="up")
        ipr.route("add", dst="0.0.0.0/0", gateway=gateway)


def _v6(lab: Lab, host_if: str, peer_ns: str) -> None:
    """IPv6 on a link made by _veth (with `nodad`, so the addresses are usable at once)."""
    prefix = V6[host_if]
    sh("ip", "-6", "addr", "add", f"{prefix}1/64", "dev", host_if, "nodad", netns=lab.host)
    sh("ip", "-6", "addr", "add", f"{prefix}2/64", "dev", "eth0", "nodad", netns=peer_ns)
    sh("ip", "-6", "route", "add", "default", "via", f"{prefix}1", netns=peer_ns)


def _docker_like_firewall(lab: Lab, family: int) -> None:
    """What Docker sets up for a container publishing 8080->80: DNAT in nat, DOCKER-USER first in FORWARD."""

    def ipt(*args: str) -> None:
        lab.iptables(*args, family=family)

    server = SERVER if family == 4 else SERVER6
    target = f"{server}:80" if family == 4 else f"[{server}]:80"
    port = str(PUBLISHED_PORT)
    ipt("-t", "nat", "-A", "PREROUTING", "-p", "tcp", "--dport", port, "-j", "DNAT", "--to-destination", target)
    ipt("-P", "FORWARD", "DROP")
    ipt("-N", "DOCKER-USER")
    ipt("-A", "FORWARD", "-j", "DOCKER-USER")
    ipt("-A", "FORWARD", "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "ACCEPT")
    ipt("-A", "FORWARD", "-d", server, "-o", "srv0", "-p", "tcp", "--dport", "80", "-j", "ACCEPT")
    ipt("-A", "FORWARD", "-i", "srv0", "-j", "ACCEPT")
    ipt("-A", "DOCKER-USER", "-j", "RETURN")  # what Docker up to 28.2.1 leaves at the end


@pytest.fixture(params=[("restore", "nft"), ("iptc", "legacy")], ids=["restore-nft", "iptc-legacy"])
def lab(request: pytest.FixtureRequest) -> Iterator[tuple[Lab, str]]:
    from pyroute2 import netns

    backend, variant = request.param
    tag = uuid.uuid4().hex[:6]
    names = [f"fw{tag}-{role}" for role in ("h", "s", "a", "b")]
    server_proc: subprocess.Popen[bytes] | None = None
    created: list[str] = []
    try:
        for name in names:
            netns.create(name)
            created.append(name)
            # No duplicate address detection: link-local addresses are usable at once (NDP for forwarding).
            sh("sysctl", "-qw", "net.ipv6.conf.default.accept_dad=0", "net.ipv6.conf.all.accept_dad=0", netns=name)
        lab = Lab(tag, variant, *names)
        _veth(lab.host, "srv0", "198.51.100.1", lab.server, SERVER, "198.51.100.1")
        _veth(lab.host, "exta", "192.0.2.1", lab.client_a, CLIENT_A, "192.0.2.1")
        _veth(lab.host, "extb", "203.0.113.1", lab.client_b, CLIENT_B, "203.0.113.1")
        for host_if, peer in (("srv0", lab.server), ("exta", lab.client_a), ("extb", lab.client_b)):
            _v6(lab, host_if, peer)
        sh("sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1", netns=lab.host)
        _docker_like_firewall(lab, 4)
        _docker_like_firewall(lab, 6)
        server_proc = subprocess.Popen(["ip", "netns", "exec", lab.server, sys.executable, "-c", SERVER_CODE])
        deadline = time.monotonic() + 10
        while True:
            if sh(sys.executable, "-c", CONNECT_CODE, SERVER, "80", "1", netns=lab.host).stdout.strip() == "ok":
                break
            assert time.monotonic() < deadline, "test server did not come up"
            time.sleep(0.1)
        yield lab, backend
    finally:
        if server_proc is not None:
            server_proc.kill()
            server_proc.wait(timeout=10)
        for name in created:
            netns.remove(name)  # takes its veths, rules and conntrack entries with it


def resource(name: str, sources: list[str]) -> Resource:
    spec = {"interfaces": ["exta", "extb"], "sources": sources, "ports": [{"port": PUBLISHED_PORT}]}
    return Resource("FirewallAllowList", name, spec, {}, Source("fw.yaml", 1, Path("/tmp/fw.yaml")))


def plan_and_apply(lab: Lab, backend: str, resources: list[Resource], apply: bool = True) -> Plan:
    """The real core path: catalog (normalize + check), observe, plan, execute."""
    ctx = DriverContext(
        project=f"fwtest-{lab.tag}",
        manifest_dir=Path("/tmp"),
        options=[FirewallOptions(backend=backend, netns=lab.host)],
    )
    drivers = {"FirewallAllowList": FirewallDriver(ctx)}
    catalog, problems = build_catalog(resources, drivers)
    assert problems == []
    plan = plan_changes(catalog, drivers, ctx.project, observe_all(catalog, drivers))
    if apply:
        results = execute(plan, drivers)
        assert succeeded(results), [r.error for r in results]
    return plan


def test_allow_list_lets_only_its_sources_through(lab: tuple[Lab, str]) -> None:
    """Allow A: A connects, B is dropped; allow B instead: the opposite; delete the list: both connect again,
    and the project's chains and jump are gone while Docker's own DOCKER-USER rule stays."""
    lab_, backend = lab
    assert lab_.a_connects() and lab_.b_connects(), "the lab must pass traffic before any list exists"

    plan = plan_and_apply(lab_, backend, [resource("clients", [CLIENT_A])])
    assert [c.action for c in plan.changes] == [Action.CREATE]
    assert lab_.a_connects()
    assert not lab_.b_connects()

    plan = plan_and_apply(lab_, backend, [resource("clients", [CLIENT_B])])
    assert [c.action for c in plan.changes] == [Action.UPDATE]
    assert lab_.b_connects()
    assert not lab_.a_connects()

    plan = plan_and_apply(lab_, backend, [])
    assert [c.action for c in plan.changes] == [Action.DELETE]
    assert lab_.a_connects() and lab_.b_connects()
    saved = lab_.save()
    assert main_chain(f"fwtest-{lab_.tag}") not in saved
    assert "-A DOCKER-USER -j RETURN" in saved


def test_two_lists_on_one_port_allow_the_union(lab: tuple[Lab, str]) -> None:
    """Two lists guarding the same interfaces and port: a source of either list connects."""
    lab_, backend = lab
    plan_and_apply(lab_, backend, [resource("a", [CLIENT_A]), resource("b", [CLIENT_B])])
    assert lab_.a_connects() and lab_.b_connects()
    plan_and_apply(lab_, backend, [resource("a", [CLIENT_A])])  # prunes b
    assert lab_.a_connects()
    assert not lab_.b_connects()
    plan_and_apply(lab_, backend, [])


def test_hand_removed_rules_are_drift_and_apply_restores_them(lab: tuple[Lab, str]) -> None:
    """Deleting the IPv4 jump and flushing the IPv4 main chain by hand shows as drift; apply restores it."""
    lab_, backend = lab
    lists = [resource("clients", [CLIENT_A])]
    plan_and_apply(lab_, backend, lists)
    assert plan_and_apply(lab_, backend, lists, apply=False).in_sync
    main = main_chain(f"fwtest-{lab_.tag}")
    lab_.iptables("-D", "DOCKER-USER", "-m", "comment", "--comment", f"reconciler:fwtest-{lab_.tag}", "-j", main)
    lab_.iptables("-F", main)
    assert lab_.b_connects(), "with the rules gone B gets through"
    (drift,) = plan_and_apply(lab_, backend, lists, apply=False).changes
    # The IPv4 half is gone (marker included); the IPv6 half still names the list, without A's IPv4 source.
    assert drift.action is Action.UPDATE
    assert [(f.path, f.old, f.new) for f in drift.fields] == [("sources", [], [CLIENT_A])]
    plan_and_apply(lab_, backend, lists)
    assert plan_and_apply(lab_, backend, lists, apply=False).in_sync
    assert lab_.a_connects()
    assert not lab_.b_connects()
    plan_and_apply(lab_, backend, [])


def test_revoked_source_loses_its_open_connection(lab: tuple[Lab, str]) -> None:
    """A connection opened while A was allowed stops passing as soon as A is removed (no ESTABLISHED bypass)."""
    lab_, backend = lab
    plan_and_apply(lab_, backend, [resource("clients", [CLIENT_A])])
    code = """
import socket, sys
s = socket.create_connection(("192.0.2.1", 8080), timeout=2)
s.sendall(b"x")
got = b""
while len(got) < 3:
    got += s.recv(3 - len(got))
print(got.decode(), flush=True)  # "okx": the greeting and the echo
sys.stdin.readline()  # wait until the list changed
s.sendall(b"y")
try:
    print("flows" if s.recv(1) == b"y" else "closed", flush=True)
except OSError as exc:
    print(type(exc).__name__, flush=True)
"""
    proc = subprocess.Popen(
        ["ip", "netns", "exec", lab_.client_a, sys.executable, "-c", code],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdin is not None
        assert proc.stdout.readline().strip() == "okx"
        plan_and_apply(lab_, backend, [resource("clients", [CLIENT_B])])
        out, _ = proc.communicate("go\n", timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    assert out.strip() == "TimeoutError"
    plan_and_apply(lab_, backend, [])


def test_ipv6_sources_are_enforced_by_ip6tables(lab: tuple[Lab, str]) -> None:
    """A list naming A's IPv4 and IPv6 addresses lets A in over both families and drops B over both."""
    lab_, backend = lab
    assert lab_.a_connects(6) and lab_.b_connects(6), "the lab must pass IPv6 traffic before any list exists"
    plan_and_apply(lab_, backend, [resource("clients", [CLIENT_A, CLIENT_A6])])
    assert lab_.a_connects(4) and lab_.a_connects(6)
    assert not lab_.b_connects(4)
    assert not lab_.b_connects(6)
    plan_and_apply(lab_, backend, [])
    assert lab_.b_connects(6)
