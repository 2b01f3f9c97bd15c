"""The fleet test environment itself (scripts/fleetenv.sh): namespace engines over TLS and ssh, a two-node swarm
of their own, and a main engine left as it was."""

from __future__ import annotations

import contextlib
import subprocess
import time

import docker.errors
import docker.types
import pytest

from tests import fleetenv

pytestmark = [pytest.mark.engine, pytest.mark.netns]

FLEET_LABEL = "io.reconciler.test-fleetenv"


@pytest.fixture
def fleet_env(fleet_swarm_env: fleetenv.Fleet) -> fleetenv.Fleet:
    return fleet_swarm_env


@pytest.fixture
def tls_a(fleet_env):
    client = fleet_env.client("a", "tcp")
    yield client
    client.close()


@pytest.fixture
def ssh_b(fleet_env):
    client = fleet_env.client("b", "ssh")
    yield client
    client.close()


def run_once(client, image: str, name: str, text: str) -> str:
    """Create, start and wait for a container printing `text`; return its output (the container is kept)."""
    container = client.create_container(image, ["sh", "-c", f"echo {text}"], name=name, labels={FLEET_LABEL: name})
    client.start(container)
    assert client.wait(container, timeout=30)["StatusCode"] == 0
    return client.logs(container).decode()


def test_engine_a_over_verified_tls(fleet_env, tls_a):
    """Engine a answers on tcp://10.213.0.11:2376 with the fleet CA and client certificate; it is its own engine."""
    a = fleet_env["a"]
    assert a.tcp == f"tcp://{a.address}:2376"
    info = tls_a.info()
    assert info["Name"] == a.hostname
    assert "io.reconciler.fleet-engine=a" in info["Labels"]


def test_tls_is_refused_without_client_cert_or_with_a_wrong_ca(fleet_env):
    """No client certificate, one from another CA, or a CA that did not sign the server's: all refused (by the
    engine, or by the client's verification), while the right files work with the same client code."""
    import requests

    a = fleet_env["a"]
    good = fleetenv.tls_client(base_url=a.tcp, tls=fleet_env.tls_config(), version="1.41", timeout=10)
    try:
        assert good.ping() is True
    finally:
        good.close()
    # (what is tried, the TLS files, what the failure must say: the engine refusing the client (with TLS 1.3 the
    # client sees the engine's alert or, racing it, the closed connection), or the client's own verification)
    refused = "BAD_CERTIFICATE|CERTIFICATE_REQUIRED|EOF occurred|Connection reset"
    attempts = [
        ("no client certificate", fleet_env.tls_config(client=False), refused),
        (
            "a client certificate from another CA",
            fleet_env.tls_config(client=(fleet_env.rogue_cert, fleet_env.rogue_key)),
            refused,
        ),
        ("a CA that did not sign the engine's certificate", fleet_env.tls_config(ca=fleet_env.rogue_ca), "VERIFY_FAIL"),
    ]
    for what, tls, reason in attempts:
        client = fleetenv.tls_client(base_url=a.tcp, tls=tls, version="1.41", timeout=10)
        try:
            with pytest.raises(requests.exceptions.SSLError, match=reason):
                client.ping()
        except pytest.fail.Exception as exc:
            pytest.fail(f"engine a with {what}: {exc}")
        finally:
            client.close()
    # Plain HTTP on the TLS port is not served either.
    client = fleetenv.tls_client(base_url=a.tcp, version="1.41", timeout=10)
    try:
        with pytest.raises(docker.errors.APIError, match="HTTPS"):
            client.version()
    finally:
        client.close()


def test_engine_b_over_ssh(fleet_env, ssh_b):
    """Engine b answers on ssh://root@10.213.0.12 through the system ssh client and the generated config."""
    b = fleet_env["b"]
    assert b.ssh == f"ssh://root@{b.address}"
    assert ssh_b.info()["Name"] == b.hostname
    # The same config works for a plain ssh command, with the host key checked against the generated known_hosts.
    proc = subprocess.run(
        ["ssh", "-o", "StrictHostKeyChecking=yes", f"root@{b.address}", "hostname -I"],
        env=fleet_env.ssh_env(),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, proc.stderr
    assert b.address in proc.stdout.split()


def test_each_engine_has_its_own_containers_and_runs_the_base_image(fleet_env, tls_a, ssh_b, api, unique_name):
    """A container made on a is on a only (not on b, not on the main engine); the base image runs on a and b."""
    name = unique_name("fleet")
    try:
        assert run_once(tls_a, fleet_env.base_image, name, "hello-a").strip() == "hello-a"
        assert run_once(ssh_b, fleet_env.base_image, name, "hello-b").strip() == "hello-b"
        on_a = tls_a.containers(all=True, filters={"label": f"{FLEET_LABEL}={name}"})
        on_b = ssh_b.containers(all=True, filters={"label": f"{FLEET_LABEL}={name}"})
        on_main = api.containers(all=True, filters={"name": name})
        assert len(on_a) == 1 and len(on_b) == 1 and on_main == []
        assert on_a[0]["Id"] != on_b[0]["Id"]
        # Containers on a live in a's namespace: a's docker0 is 10.214.1.1/24, b's 10.214.2.1/24.
        assert tls_a.inspect_network("bridge")["IPAM"]["Config"][0]["Gateway"] == "10.214.1.1"
        assert ssh_b.inspect_network("bridge")["IPAM"]["Config"][0]["Gateway"] == "10.214.2.1"
    finally:
        for client in (tls_a, ssh_b):
            for c in client.containers(all=True, filters={"label": f"{FLEET_LABEL}={name}"}):
                client.remove_container(c["Id"], force=True)


def test_swarm_worker_runs_a_service_task(fleet_env, unique_name):
    """Engine a manages a swarm that b joined as a worker; a service constrained to workers runs its task on b,
    pulling the image from the registry through b's namespace."""
    assert fleet_env.swarm_manager == "a"
    manager = fleet_env.client("a")
    worker = fleet_env.client("b")
    name = unique_name("fleet-svc")
    try:
        nodes = {n["Description"]["Hostname"]: n for n in manager.nodes()}
        b_node = nodes[fleet_env["b"].hostname]
        assert b_node["Spec"]["Role"] == "worker" and b_node["Status"]["State"] == "ready"
        assert b_node["Status"]["Addr"] == fleet_env["b"].address
        assert nodes[fleet_env["a"].hostname]["ManagerStatus"]["Addr"] == f"{fleet_env['a'].address}:2377"

        task = docker.types.TaskTemplate(
            container_spec=docker.types.ContainerSpec(fleet_env.base_image, ["sleep", "300"]),
            placement=docker.types.Placement(constraints=["node.role==worker"]),
        )
        service = manager.create_service(task, name=name, labels={FLEET_LABEL: name})
        deadline = time.monotonic() + 45
        tasks: list[dict] = []
        while time.monotonic() < deadline:
            tasks = manager.tasks(filters={"service": name})
            if any(t["Status"]["State"] == "running" for t in tasks):
                break
            time.sleep(0.5)
        running = [t for t in tasks if t["Status"]["State"] == "running"]
        assert running, f"no task of {name} running within 45 s: {[t['Status'] for t in tasks]}"
        assert running[0]["NodeID"] == b_node["ID"]
        containers = worker.containers(filters={"label": f"com.docker.swarm.service.id={service['ID']}"})
        assert len(containers) == 1
    finally:
        with contextlib.suppress(docker.errors.NotFound):
            manager.remove_service(name)
        # The worker removes the task's container once the service is gone; wait for it (bounded).
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and worker.containers(
            all=True, filters={"label": f"com.docker.swarm.service.name={name}"}
        ):
            time.sleep(0.5)
        leftovers = worker.containers(all=True, filters={"label": f"com.docker.swarm.service.name={name}"})
        manager.close()
        worker.close()
    assert leftovers == [], f"task containers of {name} left on b"


def test_up_is_idempotent_and_status_is_clean(fleet_env):
    """A second `up --swarm` keeps the same dockerds and sshds; `status` exits 0."""

    def pids() -> dict[str, str]:
        run = fleetenv.RUN_DIR
        return {p.relative_to(run).as_posix(): p.read_text().strip() for p in run.glob("*/*.pid")}

    before = pids()
    assert {"a/docker.pid", "b/docker.pid", "a/sshd.pid", "b/sshd.pid"} <= before.keys()
    started = time.monotonic()
    proc = fleetenv.run_script("up", "--swarm")
    assert proc.returncode == 0, proc.stderr
    assert time.monotonic() - started < 15
    assert pids() == before
    status = fleetenv.run_script("status")
    assert status.returncode == 0, status.stderr


def test_main_engine_is_undisturbed(fleet_env, api):
    """The main engine keeps its own one-node swarm on 127.0.0.1; no fleet engine joined it; the host's iptables
    rules know nothing of the fleet (inter-engine traffic is bridged in the hub namespace)."""
    info = api.info()
    assert info["Swarm"]["LocalNodeState"] == "active"
    assert info["Swarm"]["NodeAddr"] == "127.0.0.1"
    hostnames = {n["Description"]["Hostname"] for n in api.nodes()}
    assert not {e.hostname for e in fleet_env.engines.values()} & hostnames
    assert api.info()["Name"] != fleet_env["a"].hostname
    rules = (
        subprocess.run(["iptables", "-w", "5", "-S"], capture_output=True, text=True, timeout=30, check=True).stdout
        + subprocess.run(
            ["iptables", "-w", "5", "-t", "nat", "-S"], capture_output=True, text=True, timeout=30, check=True
        ).stdout
    )
    assert "rfleet" not in rules and "10.213.0." not in rules
