"""Proof by packets for the nftables backend: throw-away namespaces where the "host" runs Docker's nftables
firewall as Docker 29 lays it out (table `ip docker-bridges`: DNAT of published ports at `dstnat`, masquerade at
`srcnat`, a `filter` forward chain that accepts published traffic and drops the rest into the bridge), and real
TCP connections through the table reconcile writes beside it.

    client A (10.231.1.2) --exta--\\                    /--srv0-- "container" S (10.231.3.2), port 80
                                   host (rules, DNAT)
    client B (10.231.2.2) --extb--/                    \\--srv1-- "container" C (10.231.4.2)

The host publishes 8080 and 8081 to S:80 (and 8080 over IPv6, through `ip6 docker-bridges`). The lists guard
8080 on exta and extb, so an allowed source passing proves the rules see the original (pre-DNAT) port: after
DNAT the packet is for port 80.

Nothing here touches the host's own ruleset: every nft call runs inside a fresh network namespace, the subnets
are 10.231.0.0/16 and fd31::/16 (no route of this machine), and the namespaces take everything with them.
"""

from __future__ import annotations

import json
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
from reconciler.drivers.firewall.nft import table_name
from reconciler.drivers.firewall.rules import main_chain
from reconciler.model import Action, Plan, Resource, Source

pytestmark = [
    pytest.mark.netns,
    pytest.mark.skipif(
        os.geteuid() != 0 or shutil.which("ip") is None or shutil.which("nft") is None,
        reason="needs root, iproute2 and nft (package nftables)",
    ),
]

PUBLISHED, OTHER_PUBLISHED = 8080, 8081
HOST_A, CLIENT_A = "10.231.1.1", "10.231.1.2"
HOST_B, CLIENT_B = "10.231.2.1", "10.231.2.2"
SERVER = "10.231.3.2"  # the container whose port 80 is published
PEER = "10.231.4.2"  # another container, on another bridge
# IPv6 (unique local fd31:..., no route of this machine): host side ::1, peer ::2 of one /64 per link
V6 = {"exta": "fd31:0:0:1::", "extb": "fd31:0:0:2::", "srv0": "fd31:0:0:3::"}
HOST_A6, CLIENT_A6 = V6["exta"] + "1", V6["exta"] + "2"
HOST_B6, CLIENT_B6 = V6["extb"] + "1", V6["extb"] + "2"
SERVER6 = V6["srv0"] + "2"

SERVER_CODE = """
import socket, sys, threading
def serve(c):
    c.sendall(b"ok")  # then echo until the client closes
    try:
        while data := c.recv(64):
            c.sendall(data)
    except OSError:
        pass
    finally:
        c.close()
s = socket.create_server(("::", int(sys.argv[1])), family=socket.AF_INET6, dualstack_ipv6=True, backlog=16)
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

# Docker 29's nftables layout, reduced to one bridge (srv0) with 8080 and 8081 published to SERVER:80: DNAT at
# dstnat for traffic to a local address, masquerade of the bridge's traffic leaving it, and Docker's filter chain
# (priority filter) that accepts replies and published traffic into the bridge and drops everything else.
DOCKER_NFTABLES = f"""
table ip docker-bridges {{
    chain nat-prerouting {{
        type nat hook prerouting priority dstnat; policy accept;
        fib daddr type local tcp dport {{ {PUBLISHED}, {OTHER_PUBLISHED} }} dnat to {SERVER}:80
    }}
    chain nat-postrouting {{
        type nat hook postrouting priority srcnat; policy accept;
        ip saddr 10.231.3.0/24 oifname != "srv0" masquerade
    }}
    chain filter-forward {{
        type filter hook forward priority filter; policy accept;
        oifname "srv0" ct state established,related accept
        oifname "srv0" ip daddr {SERVER} tcp dport 80 accept
        oifname "srv0" drop
    }}
}}
table ip6 docker-bridges {{
    chain nat-prerouting {{
        type nat hook prerouting priority dstnat; policy accept;
        fib daddr type local tcp dport {PUBLISHED} dnat to [{SERVER6}]:80
    }}
    chain filter-forward {{
        type filter hook forward priority filter; policy accept;
        oifname "srv0" ct state established,related accept
        oifname "srv0" ip6 daddr {SERVER6} tcp dport 80 accept
        oifname "srv0" drop
    }}
}}
"""


def sh(*argv: str, netns: str | None = None, check: bool = True, stdin: str | None = None) -> str:
    full = ["ip", "netns", "exec", netns, *argv] if netns else list(argv)
    return subprocess.run(full, capture_output=True, text=True, timeout=30, check=check, input=stdin).stdout


@dataclass
class Lab:
    tag: str
    host: str
    server: str
    peer: str
    client_a: str
    client_b: str

    @property
    def project(self) -> str:
        return f"fwnft-{self.tag}"

    def connects(self, client: str, address: str, port: int = PUBLISHED) -> bool:
        """Whether a TCP connect from namespace `client` to address:port gets the server's greeting."""
        return sh(sys.executable, "-c", CONNECT_CODE, address, str(port), "1.5", netns=client).strip() == "ok"

    def nft(self, *args: str) -> str:
        return sh("nft", *args, netns=self.host)

    def tables(self) -> set[tuple[str, str]]:
        items = json.loads(self.nft("-j", "list", "tables"))["nftables"]
        return {(i["table"]["family"], i["table"]["name"]) for i in items if "table" in i}


def _veth(lab_host: str, host_if: str, host_addr: str, peer_ns: str, peer_addr: str) -> None:
    """A link host_if (host side) <-> eth0 (in peer_ns), a /24 each side, the host as the peer's default route."""
    sh("ip", "link", "add", host_if, "type", "veth", "peer", "name", "eth0", "netns", peer_ns, netns=lab_host)
    sh("ip", "addr", "add", f"{host_addr}/24", "dev", host_if, netns=lab_host)
    sh("ip", "link", "set", host_if, "up", netns=lab_host)
    sh("ip", "addr", "add", f"{peer_addr}/24", "dev", "eth0", netns=peer_ns)
    sh("ip", "link", "set", "eth0", "up", netns=peer_ns)
    sh("ip", "link", "set", "lo", "up", netns=peer_ns)
    sh("ip", "route", "add", "default", "via", host_addr, netns=peer_ns)


def _wait_listening(ns: str, address: str, port: int) -> None:
    deadline = time.monotonic() + 10
    while sh(sys.executable, "-c", CONNECT_CODE, address, str(port), "1", netns=ns).strip() != "ok":
        assert time.monotonic() < deadline, f"test server {address}:{port} did not come up"
        time.sleep(0.1)


@pytest.fixture
def lab() -> Iterator[Lab]:
    tag = uuid.uuid4().hex[:6]
    names = [f"nft{tag}-{role}" for role in ("h", "s", "c", "a", "b")]
    procs: list[subprocess.Popen[bytes]] = []
    created: list[str] = []
    try:
        for name in names:
            sh("ip", "netns", "add", name)
            created.append(name)
        lab = Lab(tag, *names)
        _veth(lab.host, "exta", HOST_A, lab.client_a, CLIENT_A)
        _veth(lab.host, "extb", HOST_B, lab.client_b, CLIENT_B)
        _veth(lab.host, "srv0", "10.231.3.1", lab.server, SERVER)
        _veth(lab.host, "srv1", "10.231.4.1", lab.peer, PEER)
        for host_if, peer in (("exta", lab.client_a), ("extb", lab.client_b), ("srv0", lab.server)):
            prefix = V6[host_if]
            sh("ip", "-6", "addr", "add", f"{prefix}1/64", "dev", host_if, "nodad", netns=lab.host)
            sh("ip", "-6", "addr", "add", f"{prefix}2/64", "dev", "eth0", "nodad", netns=peer)
            sh("ip", "-6", "route", "add", "default", "via", f"{prefix}1", netns=peer)
        sh("sysctl", "-qw", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1", netns=lab.host)
        sh("nft", "-f", "-", netns=lab.host, stdin=DOCKER_NFTABLES)
        # the published container, and a server on client B's port 8080 for the container to call out to
        for ns, port in ((lab.server, 80), (lab.client_b, PUBLISHED)):
            procs.append(subprocess.Popen(["ip", "netns", "exec", ns, sys.executable, "-c", SERVER_CODE, str(port)]))
        _wait_listening(lab.host, SERVER, 80)
        _wait_listening(lab.host, CLIENT_B, PUBLISHED)
        # the first IPv6 connection through the host may time out while neighbours are being resolved
        _wait_listening(lab.client_a, HOST_A6, PUBLISHED)
        _wait_listening(lab.client_b, HOST_B6, PUBLISHED)
        yield lab
    finally:
        for proc in procs:
            proc.kill()
            proc.wait(timeout=10)
        for name in created:
            sh("ip", "netns", "del", name, check=False)  # takes its veths, tables and conntrack entries with it


def allow(name: str, sources: list[str], port: int = PUBLISHED) -> Resource:
    spec = {"interfaces": ["exta", "extb"], "sources": sources, "ports": [{"port": port}]}
    return Resource("FirewallAllowList", name, spec, {}, Source("fw.yaml", 1, Path("/tmp/fw.yaml")))


def plan_and_apply(lab: Lab, resources: list[Resource], apply: bool = True, backend: str = "auto") -> Plan:
    """The real core path (catalog, observe, plan, execute) with the backend chosen as on a real host."""
    ctx = DriverContext(
        project=lab.project,
        manifest_dir=Path("/tmp"),
        options=[FirewallOptions(backend=backend, netns=lab.host)],
    )
    driver = FirewallDriver(ctx)
    drivers = {"FirewallAllowList": driver}
    catalog, problems = build_catalog(resources, drivers)
    assert problems == []
    plan = plan_changes(catalog, drivers, ctx.project, observe_all(catalog, drivers))
    expected = "restore (nf_tables)" if backend == "restore" else "nftables"
    assert driver.selection().backend is not None and driver.selection().backend.name == expected
    if apply:
        results = execute(plan, drivers)
        assert succeeded(results), [r.error for r in results]
    return plan


def test_only_allowed_sources_reach_the_published_port(lab: Lab) -> None:
    """Auto picks nftables from Docker's table; A is allowed on 8080 and connects, B is dropped; 8081 stays open
    to both; swapping the source swaps who gets in; removing the list leaves no table and both connect."""
    assert lab.connects(lab.client_a, HOST_A) and lab.connects(lab.client_b, HOST_B), "the lab must pass traffic"

    plan = plan_and_apply(lab, [allow("clients", [CLIENT_A])])
    assert [c.action for c in plan.changes] == [Action.CREATE]
    assert ("ip", table_name(lab.project)) in lab.tables()
    assert lab.connects(lab.client_a, HOST_A)
    assert not lab.connects(lab.client_b, HOST_B)
    assert not lab.connects(lab.client_b, HOST_A), "the destination address is not what is guarded here"
    assert lab.connects(lab.client_b, HOST_B, OTHER_PUBLISHED), "another published port is not affected"
    assert plan_and_apply(lab, [allow("clients", [CLIENT_A])], apply=False).in_sync

    plan = plan_and_apply(lab, [allow("clients", [CLIENT_B])])
    assert [c.action for c in plan.changes] == [Action.UPDATE]
    assert lab.connects(lab.client_b, HOST_B)
    assert not lab.connects(lab.client_a, HOST_A)

    plan = plan_and_apply(lab, [])
    assert [c.action for c in plan.changes] == [Action.DELETE]
    assert lab.connects(lab.client_a, HOST_A) and lab.connects(lab.client_b, HOST_B)
    assert not {t for t in lab.tables() if t[1] == table_name(lab.project)}, "no table of ours is left"
    assert ("ip", "docker-bridges") in lab.tables(), "Docker's table is never touched"


def test_the_container_port_is_not_the_published_one(lab: Lab) -> None:
    """A list on port 80 (the container's port, what the packet carries after DNAT) guards nothing published on
    8080: the rules see the port the client used."""
    plan_and_apply(lab, [allow("clients", [CLIENT_A], port=80)])
    assert lab.connects(lab.client_b, HOST_B)
    plan_and_apply(lab, [])


def test_container_traffic_is_never_blocked(lab: Lab) -> None:
    """With only A allowed: the container's own connection to B's port 8080 gets its replies (they arrive on a
    guarded interface from port 8080, but in the reply direction), and another container reaches the published
    port and the container itself (it does not arrive on a guarded interface)."""
    plan_and_apply(lab, [allow("clients", [CLIENT_A])])
    assert not lab.connects(lab.client_b, HOST_B)
    assert lab.connects(lab.server, CLIENT_B, PUBLISHED), "replies of the container's own connection pass"
    assert lab.connects(lab.peer, HOST_A), "container to published port passes"
    assert lab.connects(lab.peer, SERVER, 80), "container to container passes"
    plan_and_apply(lab, [])


def test_two_lists_allow_the_union(lab: Lab) -> None:
    """Two lists on the same interfaces and port: a source of either connects; pruning one drops its source."""
    plan_and_apply(lab, [allow("a", [CLIENT_A]), allow("b", [CLIENT_B])])
    assert lab.connects(lab.client_a, HOST_A) and lab.connects(lab.client_b, HOST_B)
    plan = plan_and_apply(lab, [allow("a", [CLIENT_A])])
    assert [(c.name, c.action) for c in plan.changes if c.action is not Action.NONE] == [("b", Action.DELETE)]
    assert lab.connects(lab.client_a, HOST_A)
    assert not lab.connects(lab.client_b, HOST_B)
    plan_and_apply(lab, [])


def _drop_rules(lab: Lab) -> list[tuple[str, int]]:
    """(chain, handle) of every drop rule in our IPv4 table (one per group chain)."""
    data = json.loads(lab.nft("-j", "list", "table", "ip", table_name(lab.project)))["nftables"]
    rules = [item["rule"] for item in data if "rule" in item]
    return [(r["chain"], r["handle"]) for r in rules if any("drop" in e for e in r["expr"])]


def test_a_rule_deleted_by_hand_is_drift_and_apply_restores_it(lab: Lab) -> None:
    """Deleting the groups' drop rules lets B in; plan shows the rules of the list as drifted; apply restores the
    table and B is dropped again."""
    lists = [allow("clients", [CLIENT_A])]
    plan_and_apply(lab, lists)
    drops = _drop_rules(lab)
    assert len(drops) == 2, "one group per guarded interface"
    for chain, handle in drops:
        assert chain.startswith(main_chain(lab.project) + "-")
        lab.nft("delete", "rule", "ip", table_name(lab.project), chain, "handle", str(handle))
    assert lab.connects(lab.client_b, HOST_B), "with the drops gone B gets through"

    (drift,) = plan_and_apply(lab, lists, apply=False).changes
    assert drift.action is Action.UPDATE
    assert [f.path for f in drift.fields] == ["rules.ipv4"]
    plan_and_apply(lab, lists)
    assert plan_and_apply(lab, lists, apply=False).in_sync
    assert not lab.connects(lab.client_b, HOST_B)
    assert lab.connects(lab.client_a, HOST_A)
    plan_and_apply(lab, [])


def test_a_table_deleted_by_hand_is_drift_and_apply_restores_it(lab: Lab) -> None:
    """`nft delete table` of both families (a firewall reload does that): the list is missing and planned as a
    create; apply writes the tables again. Deleting only the IPv4 table shows the list's IPv4 sources as gone."""
    lists = [allow("clients", [CLIENT_A])]
    plan_and_apply(lab, lists)
    lab.nft("delete", "table", "ip", table_name(lab.project))
    assert lab.connects(lab.client_b, HOST_B)
    (drift,) = plan_and_apply(lab, lists, apply=False).changes
    assert drift.action is Action.UPDATE
    assert [(f.path, f.old, f.new) for f in drift.fields] == [("sources", [], [CLIENT_A])]
    plan_and_apply(lab, lists)
    assert not lab.connects(lab.client_b, HOST_B)

    lab.nft("delete", "table", "ip", table_name(lab.project))
    lab.nft("delete", "table", "ip6", table_name(lab.project))
    (gone,) = plan_and_apply(lab, lists, apply=False).changes
    assert gone.action is Action.CREATE
    plan_and_apply(lab, lists)
    assert plan_and_apply(lab, lists, apply=False).in_sync
    assert not lab.connects(lab.client_b, HOST_B)
    assert lab.connects(lab.client_a, HOST_A)
    plan_and_apply(lab, [])
    assert not {t for t in lab.tables() if t[1] == table_name(lab.project)}


def test_a_base_chain_edited_by_hand_is_drift(lab: Lab) -> None:
    """A rule added to our base chain (e.g. an accept above nothing) is drift of the jump; apply rewrites it."""
    lists = [allow("clients", [CLIENT_A])]
    plan_and_apply(lab, lists)
    lab.nft("insert", "rule", "ip", table_name(lab.project), "forward", "counter")
    (drift,) = plan_and_apply(lab, lists, apply=False).changes
    assert [f.path for f in drift.fields] == ["jump.ipv4"]
    assert "priority filter - 10" in (drift.fields[0].note or "")
    plan_and_apply(lab, lists)
    assert plan_and_apply(lab, lists, apply=False).in_sync
    plan_and_apply(lab, [])


def test_revoked_source_loses_its_open_connection(lab: Lab) -> None:
    """A connection opened while A was allowed stops passing as soon as A is removed (no ESTABLISHED bypass)."""
    plan_and_apply(lab, [allow("clients", [CLIENT_A])])
    code = f"""
import socket, sys
s = socket.create_connection(("{HOST_A}", {PUBLISHED}), timeout=2)
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
        ["ip", "netns", "exec", lab.client_a, sys.executable, "-c", code],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdin is not None
        assert proc.stdout.readline().strip() == "okx"
        plan_and_apply(lab, [allow("clients", [CLIENT_B])])
        out, _ = proc.communicate("go\n", timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    assert out.strip() == "TimeoutError"
    plan_and_apply(lab, [])


def test_rules_an_iptables_backend_left_are_drift_and_removed(lab: Lab) -> None:
    """An engine moved from iptables to nftables leaves DOCKER-USER and the FORWARD jump to it in place, so the
    project's old iptables chains go on dropping. With the nftables backend they are drift (the plan says where
    they are) and the next apply removes them after writing the table; Docker's DOCKER-USER stays."""
    for args in (["-N", "DOCKER-USER"], ["-A", "FORWARD", "-j", "DOCKER-USER"], ["-A", "DOCKER-USER", "-j", "RETURN"]):
        sh("iptables-nft", "-w", "5", *args, netns=lab.host)
    plan_and_apply(lab, [allow("clients", [CLIENT_A])], backend="restore")
    assert not lab.connects(lab.client_b, HOST_B), "the iptables rules are in force"
    main = main_chain(lab.project)

    lists = [allow("clients", [CLIENT_A, CLIENT_B])]
    (create,) = plan_and_apply(lab, lists, apply=False).changes
    assert create.action is Action.CREATE, "nothing of the list is in nftables yet"
    plan_and_apply(lab, lists)
    assert lab.connects(lab.client_b, HOST_B), "no stale iptables rule drops B any more"
    saved = sh("iptables-nft-save", "-t", "filter", netns=lab.host)
    assert main not in saved and ":DOCKER-USER" in saved

    # Left behind again (a restore of an old saved ruleset): drift of the jump, with the reason
    plan_and_apply(lab, [allow("clients", [CLIENT_A])], backend="restore")
    (drift,) = plan_and_apply(lab, lists, apply=False).changes
    assert [f.path for f in drift.fields] == ["jump.ipv4"]
    assert "still in restore (nf_tables)" in (drift.fields[0].note or "")
    plan_and_apply(lab, lists)
    assert plan_and_apply(lab, lists, apply=False).in_sync
    assert main not in sh("iptables-nft-save", "-t", "filter", netns=lab.host)
    plan_and_apply(lab, [])


def test_ipv6_sources_are_enforced_by_the_ip6_table(lab: Lab) -> None:
    """A list naming A's IPv4 and IPv6 addresses lets A in over both families and drops B over both; the ip6
    table goes with the list."""
    assert lab.connects(lab.client_a, HOST_A6) and lab.connects(lab.client_b, HOST_B6), "the lab must pass IPv6"
    plan_and_apply(lab, [allow("clients", [CLIENT_A, CLIENT_A6])])
    assert lab.connects(lab.client_a, HOST_A) and lab.connects(lab.client_a, HOST_A6)
    assert not lab.connects(lab.client_b, HOST_B)
    assert not lab.connects(lab.client_b, HOST_B6)
    assert ("ip6", table_name(lab.project)) in lab.tables()
    plan_and_apply(lab, [])
    assert lab.connects(lab.client_b, HOST_B6)
    assert not {t for t in lab.tables() if t[1] == table_name(lab.project)}
