"""Services on a real two-node swarm: the fleet's manager `a` and its worker `b`, each a dockerd in its own
network namespace (scripts/fleetenv.sh up --swarm; tests/fleetenv.py). The fleet has no IPVS, so these services
publish no ports and join no network: what is checked is where swarm puts their tasks."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from tests import fleetenv
from tests.swarmhelpers import doc, remove_swarm_objects, service

pytestmark = [pytest.mark.engine, pytest.mark.netns]


@pytest.fixture
def fleet_env(fleet_swarm_env: fleetenv.Fleet) -> fleetenv.Fleet:
    return fleet_swarm_env


@pytest.fixture
def manager(fleet_env: fleetenv.Fleet, project_name: str) -> Iterator[tuple[Any, str]]:
    """(client, URL) of the fleet's swarm manager; the project's swarm objects there are removed afterwards."""
    assert fleet_env.swarm_manager is not None
    url = fleet_env[fleet_env.swarm_manager].unix
    client = fleet_env.client(fleet_env.swarm_manager)
    ready = [n for n in client.nodes() if n["Status"]["State"] == "ready"]
    assert len(ready) >= 2, "the fleet's swarm has fewer than two ready nodes"
    yield client, url
    remove_swarm_objects(client, project_name)
    for network in client.networks(filters={"label": [f"io.reconciler.project={project_name}"]}):
        client.remove_network(network["Id"])
    client.close()


def node_names(client: Any) -> dict[str, str]:
    return {n["ID"]: n["Description"]["Hostname"] for n in client.nodes()}


def running_nodes(client: Any, service_name: str, timeout: float = 60) -> list[str]:
    """Hostnames of the nodes running a task of the service (sorted), once every wanted task runs."""
    deadline = time.monotonic() + timeout
    names = node_names(client)
    while True:
        tasks = client.tasks(filters={"service": service_name, "desired-state": "running"})
        if tasks and all(t["Status"]["State"] == "running" for t in tasks):
            return sorted(names[t["NodeID"]] for t in tasks)
        if time.monotonic() > deadline:
            pytest.fail(f"tasks of {service_name} not running: {[t['Status'] for t in tasks]}")
        time.sleep(0.5)


def test_replicated_service_spreads_over_both_nodes_and_global_runs_on_each(
    fleet_env: fleetenv.Fleet, manager: tuple[Any, str], project_name: str, reconcile: Any, tmp_manifests: Any
) -> None:
    """Two replicas at most one per node land on manager and worker; a global service runs once on every node;
    a second plan is empty."""
    client, url = manager
    image = fleet_env.base_image
    spread, agent = f"{project_name}-spread", f"{project_name}-agent"
    docs = [
        doc("Service", spread, service(image, replicas=2, placement={"maxReplicasPerNode": 1})),
        doc("Service", agent, service(image, mode="global")),
    ]
    tmp_manifests("m.yaml", yaml.safe_dump_all(docs, sort_keys=False))
    env = {"DOCKER_HOST": url}
    proc = reconcile("apply", tmp_manifests.dir, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    hosts = sorted(n["Description"]["Hostname"] for n in client.nodes() if n["Status"]["State"] == "ready")
    assert running_nodes(client, spread) == hosts
    assert running_nodes(client, agent) == hosts
    proc = reconcile("plan", tmp_manifests.dir, "--output", "json", env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr

    # three replicas at most one per node cannot all run on two nodes: apply gives up after --service-timeout
    # saying why the third task waits (a scale is not rolled back: nothing ran that could fail)
    docs[0] = doc("Service", spread, service(image, replicas=3, placement={"maxReplicasPerNode": 1}))
    tmp_manifests("m.yaml", yaml.safe_dump_all(docs, sort_keys=False))
    proc = reconcile("apply", tmp_manifests.dir, "--service-timeout", "5", env=env)
    assert proc.returncode == 1
    assert "not converged after 5s: 2/3 tasks running (pending): no suitable node" in proc.stdout, proc.stdout


def test_tasks_on_both_nodes_reach_each_other_over_an_overlay(
    fleet_env: fleetenv.Fleet, manager: tuple[Any, str], project_name: str, reconcile: Any, tmp_manifests: Any
) -> None:
    """An overlay network declared with the service: the task on the manager fetches a page from the task on
    the worker by the service's DNS name (endpointMode dnsrr: the fleet has no IPVS for a virtual IP)."""
    client, url = manager
    net, web = f"{project_name}-net", f"{project_name}-web"
    spec = service(
        fleet_env.base_image,
        replicas=2,
        placement={"maxReplicasPerNode": 1},
        endpointMode="dnsrr",
        networks=[{"name": net}],
        command=["sh", "-c", "mkdir -p /www && hostname > /www/index.html && exec httpd -f -p 8080 -h /www"],
    )
    docs = [doc("Network", net, {"driver": "overlay", "attachable": True}), doc("Service", web, spec)]
    tmp_manifests("m.yaml", yaml.safe_dump_all(docs, sort_keys=False))
    proc = reconcile("apply", tmp_manifests.dir, env={"DOCKER_HOST": url})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert len(set(running_nodes(client, web))) == 2
    [local] = client.containers(filters={"label": f"com.docker.swarm.service.name={web}"})
    run = client.exec_create(
        local["Id"],
        [
            "sh",
            "-c",
            f"for ip in $(nslookup tasks.{web} | sed -n 's/^Address[ 0-9]*: *//p' | grep -v ':53$'); do "
            "printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 5 $ip 8080 | tail -n 1; done",
        ],
    )
    pages = sorted(client.exec_start(run["Id"]).decode().split())
    hostnames = sorted(
        t["Spec"]["ContainerSpec"].get("Hostname") or t["Status"]["ContainerStatus"]["ContainerID"][:12]
        for t in client.tasks(filters={"service": web, "desired-state": "running"})
    )
    assert pages == hostnames  # both tasks answered: the one here and the one on the other node


def test_a_service_placed_on_a_host_of_a_fleet(
    fleet_env: fleetenv.Fleet, manager: tuple[Any, str], project_name: str, reconcile: Any, tmp_manifests: Any
) -> None:
    """In a tree with Host manifests, a Secret and a Service placed with `spec.hosts` on the Host that is the
    fleet's swarm manager are created there (with its content-addressed secret) and plan in sync afterwards."""
    client, url = manager
    web, secret = f"{project_name}-web", f"{project_name}-pw"
    tmp_manifests("pw.txt", "fleet-secret\n")
    host = {"apiVersion": "reconciler/v1", "kind": "Host", "metadata": {"name": "mgr"}, "spec": {"engine": url}}
    docs = [
        host,
        doc("Secret", secret, {"file": "./pw.txt", "hosts": ["mgr"]}),
        doc("Service", web, {**service(fleet_env.base_image, secrets=[{"name": secret}]), "hosts": ["mgr"]}),
    ]
    tmp_manifests("m.yaml", yaml.safe_dump_all(docs, sort_keys=False))
    proc = reconcile("apply", tmp_manifests.dir)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "fleet-secret" not in proc.stdout + proc.stderr
    [used] = client.inspect_service(web)["Spec"]["TaskTemplate"]["ContainerSpec"]["Secrets"]
    assert used["SecretName"].startswith(f"{secret}-") and used["File"]["Name"] == secret
    assert running_nodes(client, web)
    proc = reconcile("plan", tmp_manifests.dir)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def host_doc(name: str, url: str) -> dict[str, Any]:
    return {"apiVersion": "reconciler/v1", "kind": "Host", "metadata": {"name": name}, "spec": {"engine": url}}


def container_doc(name: str, image: str, network: str, host: str) -> dict[str, Any]:
    spec = {"image": image, "command": ["sleep", "3600"], "networks": [{"name": network}], "hosts": [host]}
    return {"apiVersion": "reconciler/v1", "kind": "Container", "metadata": {"name": name}, "spec": spec}


@pytest.fixture
def fleet_containers(fleet_env: fleetenv.Fleet, project_name: str) -> Iterator[None]:
    """The project's containers on every engine of the fleet are removed afterwards (before `manager` removes
    its networks)."""
    yield
    for name in fleet_env.engines:
        client = fleet_env.client(name)
        for container in client.containers(all=True, filters={"label": f"io.reconciler.project={project_name}"}):
            client.remove_container(container["Id"], force=True)
        client.close()


def test_containers_on_manager_and_worker_share_the_managers_overlay(
    fleet_env: fleetenv.Fleet,
    manager: tuple[Any, str],
    fleet_containers: None,
    project_name: str,
    reconcile: Any,
    tmp_manifests: Any,
) -> None:
    """The seed's scenario (issue 24, defect 7): an attachable overlay Network declared once on the swarm
    manager's Host; a Container on the manager and one on the worker attached to it reach each other by name.
    A Service or an overlay Network placed on the worker is blocked saying workers cannot create them."""
    client, url = manager
    assert fleet_env.swarm_manager is not None
    worker = next(n for n in sorted(fleet_env.engines) if n != fleet_env.swarm_manager)
    net, on_a, on_b = f"{project_name}-net", f"{project_name}-a", f"{project_name}-b"
    image = fleet_env.base_image
    docs = [
        host_doc("mgr", url),
        host_doc("wrk", fleet_env[worker].unix),
        {
            "apiVersion": "reconciler/v1",
            "kind": "Network",
            "metadata": {"name": net},
            "spec": {"driver": "overlay", "attachable": True, "hosts": ["mgr"]},
        },
        container_doc(on_a, image, net, "mgr"),
        container_doc(on_b, image, net, "wrk"),
    ]
    tmp_manifests("m.yaml", yaml.safe_dump_all(docs, sort_keys=False))
    proc = reconcile("apply", tmp_manifests.dir)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    worker_client = fleet_env.client(worker)
    try:
        for here, there, other in ((worker_client, on_b, on_a), (client, on_a, on_b)):
            deadline = time.monotonic() + 30
            while True:
                run = here.exec_create(there, ["ping", "-c1", "-W2", other])
                output = here.exec_start(run["Id"]).decode()
                if here.exec_inspect(run["Id"])["ExitCode"] == 0:
                    break
                assert time.monotonic() < deadline, f"{there} cannot reach {other} by name: {output}"
                time.sleep(0.5)
    finally:
        worker_client.close()
    proc = reconcile("plan", tmp_manifests.dir)
    assert proc.returncode == 0, proc.stdout + proc.stderr

    # a Service and an overlay Network placed on the worker: blocked, naming the manager
    docs += [
        doc("Service", f"{project_name}-svc", {**service(image), "hosts": ["wrk"]}),
        {
            "apiVersion": "reconciler/v1",
            "kind": "Network",
            "metadata": {"name": f"{project_name}-wnet"},
            "spec": {"driver": "overlay", "hosts": ["wrk"]},
        },
    ]
    tmp_manifests("m.yaml", yaml.safe_dump_all(docs, sort_keys=False))
    proc = reconcile("plan", tmp_manifests.dir)
    manager_addr = f"manager at {fleet_env[fleet_env.swarm_manager].address}:"
    for what in ("services", "overlay networks"):
        line = f"this engine is a swarm worker, and workers cannot create {what}"
        assert line in proc.stdout and manager_addr in proc.stdout, proc.stdout + proc.stderr


def test_a_host_outside_the_swarm_cannot_use_its_overlay(
    fleet_env: fleetenv.Fleet,
    manager: tuple[Any, str],
    fleet_containers: None,
    project_name: str,
    reconcile: Any,
    tmp_manifests: Any,
    api: Any,
) -> None:
    """A Container on a Host that is no node of the manager's swarm (the test engine, manager of a swarm of its
    own) attached to the manager's overlay: that Host fails, saying it is not a node of that swarm; the manager's
    Host is applied."""
    _, url = manager
    from tests.conftest import configured_docker_host

    net, outside = f"{project_name}-net", f"{project_name}-x"
    docs = [
        host_doc("mgr", url),
        host_doc("other", configured_docker_host() or ""),
        {
            "apiVersion": "reconciler/v1",
            "kind": "Network",
            "metadata": {"name": net},
            "spec": {"driver": "overlay", "attachable": True, "hosts": ["mgr"]},
        },
        container_doc(outside, fleet_env.base_image, net, "other"),
    ]
    tmp_manifests("m.yaml", yaml.safe_dump_all(docs, sort_keys=False))
    proc = reconcile("apply", tmp_manifests.dir)
    assert proc.returncode == 1
    assert f"Container/{outside} uses Network/{net} of Host mgr, but Host other is not a node of the swarm" in (
        proc.stdout + proc.stderr
    )
    assert not api.containers(all=True, filters={"label": f"io.reconciler.project={project_name}"})
