"""The run options a Service shares with a Container, on the test engine's one-node swarm (Docker 20.10, API 1.41):
each reaches the task's container, reads back with no drift, a change of one is named by itself and rolls the
tasks, and taking them out of the manifest takes them off the service; options swarm has no field for are refused."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.helpers import wait_for
from tests.swarmhelpers import apply_ok, changes_of, doc, plan_json, remove_swarm_objects, service, write

pytestmark = pytest.mark.engine

OPTIONS: dict[str, Any] = {
    "logging": {"driver": "json-file", "options": {"max-size": "10m"}},
    "ulimits": {"nofile": {"soft": 1024, "hard": 2048}},
    "sysctls": {"net.core.somaxconn": 1024},
    "init": True,
    "stopSignal": "quit",
    "extraHosts": {"db.internal": "10.0.0.2"},
    "dns": ["192.0.2.53"],
    "dnsSearch": "example.com",
    "dnsOptions": ["ndots:2"],
    "groupAdd": [1234],
    "capAdd": ["net_admin"],
    "capDrop": ["CHOWN"],
    "readOnlyRootfs": True,
    "tty": True,
    "stdinOpen": True,
}


@pytest.fixture
def swarm_project(api: Any, project_name: str) -> Iterator[str]:
    info = api.info().get("Swarm") or {}
    if info.get("LocalNodeState") != "active" or not info.get("ControlAvailable"):
        pytest.fail("the test engine is not a swarm manager; run scripts/testenv.sh up")
    yield project_name
    remove_swarm_objects(api, project_name)


def task_info(api: Any, name: str, old: str | None = None) -> dict[str, Any]:
    """The inspect document of the service's running task container (another than `old`, after an update)."""

    def running() -> str | None:
        for c in api.containers(filters={"label": f"com.docker.swarm.service.name={name}"}):
            if c["Id"] != old and c["State"] == "running":
                return str(c["Id"])
        return None

    cid = wait_for(running, 60, f"a running task of {name}")
    return dict(api.inspect_container(cid))


def test_service_run_options_reach_the_tasks_and_round_trip(
    api: Any, swarm_project: str, reconcile: Any, tmp_manifests: Any, base_image: str
) -> None:
    name = f"{swarm_project}-svc"
    directory = write(tmp_manifests, [doc("Service", name, service(base_image, **OPTIONS))])
    apply_ok(reconcile, directory)
    assert plan_json(reconcile, directory)[0] == 0, "in sync after the create"

    info = task_info(api, name)
    host, config = info["HostConfig"], info["Config"]
    assert host["Ulimits"] == [{"Name": "nofile", "Soft": 1024, "Hard": 2048}]
    assert host["Sysctls"] == {"net.core.somaxconn": "1024"} and host["Init"] is True
    assert host["LogConfig"] == {"Type": "json-file", "Config": {"max-size": "10m"}}
    assert host["ExtraHosts"] == ["db.internal:10.0.0.2"]
    assert (host["Dns"], host["DnsSearch"], host["DnsOptions"]) == (["192.0.2.53"], ["example.com"], ["ndots:2"])
    assert host["GroupAdd"] == ["1234"] and host["CapAdd"] == ["CAP_NET_ADMIN"] and host["CapDrop"] == ["CAP_CHOWN"]
    assert host["ReadonlyRootfs"] is True and config["Tty"] is True and config["OpenStdin"] is True
    assert config["StopSignal"] == "SIGQUIT"

    # one changed: named by itself, an update that rolls the task
    write(
        tmp_manifests,
        [doc("Service", name, service(base_image, **{**OPTIONS, "sysctls": {"net.core.somaxconn": 2048}}))],
    )
    rc, plan = plan_json(reconcile, directory)
    assert rc == 2 and changes_of(plan)[("Service", name)] == ("update", ["sysctls"]), plan

    # all taken out (logging aside: undeclared, it is what the service has): off the service, in sync again
    write(tmp_manifests, [doc("Service", name, service(base_image, logging=OPTIONS["logging"]))])
    rc, plan = plan_json(reconcile, directory)
    [(action, paths)] = [v for k, v in changes_of(plan).items() if k == ("Service", name)]
    assert action == "update" and {p.split(".")[0] for p in paths} == set(OPTIONS) - {"logging"}, paths
    apply_ok(reconcile, directory)
    assert plan_json(reconcile, directory)[0] == 0
    host = task_info(api, name, old=info["Id"])["HostConfig"]
    assert not any(host.get(k) for k in ("Sysctls", "CapAdd", "Ulimits", "ReadonlyRootfs", "Init", "ExtraHosts"))


def test_options_swarm_cannot_carry_are_refused(reconcile: Any, tmp_manifests: Any, base_image: str) -> None:
    docs = [
        doc("Service", "svc-a", service(base_image, securityOpt=["no-new-privileges"])),
        doc("Service", "svc-b", service(base_image, capAdd=["SYS_ADMIN"])),
        doc("Service", "svc-c", service(base_image, logging={"options": {"max-size": "1m"}})),
    ]
    proc = reconcile("validate", write(tmp_manifests, docs))
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1
    assert "securityOpt" in out, out
    assert "capAdd SYS_ADMIN gives the tasks (nearly) the host" in out, out
    assert "Service/svc-c: spec.logging.driver: a Service names its log driver" in out, out
