"""The Container run options against the real engine (Docker 20.10 from Debian): a container declaring every one
is created, read back and in sync (by hash, and field by field as after a normalizer upgrade); a container declaring
none is in sync against the engine's own defaults; changing any one of them is found, named by itself, and replaces
the container (the engine's update call changes none of them), as does a mount option (a volume's noCopy, a
bind's propagation); `resources.cpuset` changes in place."""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from reconciler.core.project import ProjectRunner
from reconciler.drivers.container.diff import diff_container
from reconciler.drivers.engine.client import connect
from reconciler.model import Action
from tests.helpers import SLEEPER, apply_ok, doc, in_sync, plan_json, write

pytestmark = pytest.mark.engine

# every run option, declared with a value other than the engine's default
RUN_OPTIONS: dict[str, Any] = {
    "logging": {"driver": "json-file", "options": {"max-size": "10m", "max-file": 3}},
    "ulimits": {"nofile": {"soft": 1024, "hard": 2048}, "nproc": 512},
    "shmSize": "128m",
    "sysctls": {"net.core.somaxconn": 1024},
    "init": True,
    "securityOpt": ["no-new-privileges", "seccomp=unconfined"],
    "stopSignal": "quit",
    "extraHosts": {"db.internal": "10.0.0.2"},
    "dns": ["192.0.2.53", "192.0.2.54"],
    "dnsSearch": "example.com",
    "dnsOptions": ["ndots:2"],
    "groupAdd": [1234, "2345"],
    "oomScoreAdj": 100,
    "tty": True,
    "stdinOpen": True,
    "ipc": "shareable",
    "pid": "host",
    "uts": "host",
    "expose": [8080, "9000-9001/udp"],
    "devices": ["/dev/null:/dev/mynull"],
    "deviceCgroupRules": ["c 1:3 mr"],
    "macAddress": "02:42:AC:11:FE:01",
    "runtime": "io.containerd.runc.v2",
    "cgroupParent": "/docker",  # the cgroupfs driver's own parent: no cgroup is left behind
    # the mount options (VOLUME: the project's volume)
    "mounts": [
        {"type": "volume", "source": "VOLUME", "target": "/data", "noCopy": True},
        {"type": "bind", "source": "./conf", "target": "/conf", "propagation": "private"},
    ],
}
# another value of each (what the engine reads back differently)
CHANGED: dict[str, Any] = {
    "logging": {"driver": "json-file", "options": {"max-size": "20m", "max-file": 3}},
    "ulimits": {"nofile": {"soft": 1024, "hard": 4096}, "nproc": 512},
    "shmSize": "256m",
    "sysctls": {"net.core.somaxconn": 2048},
    "init": False,
    "securityOpt": ["no-new-privileges"],
    "stopSignal": "SIGINT",
    "extraHosts": ["db.internal:10.0.0.3"],
    "dns": ["192.0.2.54", "192.0.2.53"],
    "dnsSearch": ["example.org"],
    "dnsOptions": ["ndots:3"],
    "groupAdd": [1234],
    "oomScoreAdj": 200,  # lowering it needs CAP_SYS_RESOURCE the test engine may not have
    "tty": False,
    "stdinOpen": False,
    "ipc": "private",
    "pid": None,
    "uts": None,
    "expose": [8080],
    "devices": ["/dev/zero:/dev/myzero:r"],
    "deviceCgroupRules": ["c 1:5 r"],
    "macAddress": "02:42:ac:11:fe:02",
    "runtime": "runc",
    "cgroupParent": None,
    "mounts": [
        {"type": "volume", "source": "VOLUME", "target": "/data"},
        {"type": "bind", "source": "./conf", "target": "/conf", "propagation": "rprivate"},
    ],
}


# GPUs: the test engine has no device driver, so the container declaring them is created, never started
GPUS: Any = [{"driver": "nvidia", "deviceIds": ["0"], "capabilities": ["gpu", "compute"], "options": {"a": "b"}}]


def manifests(p: str, image: str, options: dict[str, Any], cpuset: str = "0", gpus: Any = GPUS) -> list[dict[str, Any]]:
    every = {"image": image, "command": ["sh", "-c", SLEEPER], "stopTimeout": 1, "allowPrivileged": True}
    every["resources"] = {"cpuset": cpuset}
    every.update({k: v for k, v in options.items() if v is not None})
    every["mounts"] = [{**m, "source": f"{p}-data"} if m["source"] == "VOLUME" else m for m in every["mounts"]]
    plain = {"image": image, "command": ["sh", "-c", SLEEPER], "stopTimeout": 1}
    return [
        doc("Volume", f"{p}-data", {}),
        doc("Container", f"{p}-opts", every),
        doc("Container", f"{p}-plain", plain),
        doc("Container", f"{p}-gpu", {"image": image, "state": "stopped", "gpus": gpus}),
    ]


def full_comparison_finds_nothing(project: str, directory: Path, engine_host: str) -> None:
    """Compared field by field (a hash from an older normalizer): no field differs from what the engine reports."""
    runner = ProjectRunner(project, directory, engine_factory=lambda: connect(engine_host))
    containers = runner.load_valid().catalog.of_kind("Container")
    observed = runner.drivers["Container"].observe(containers)
    for desired in containers:
        older = dataclasses.replace(desired, spec_hash="v0-from-an-older-normalizer")
        change = diff_container(older, observed[desired.name])
        assert change.action is Action.NONE, (desired.name, change.fields)


def test_run_options_round_trip_and_each_change_replaces(
    reconcile: Any, tmp_manifests: Any, project_name: str, base_image: str, engine_host: str, api: Any
) -> None:
    p = project_name
    tmp_manifests("conf/app.conf", "x=1\n")
    directory = write(tmp_manifests, manifests(p, base_image, RUN_OPTIONS))
    apply_ok(reconcile, directory)
    in_sync(reconcile, directory)
    full_comparison_finds_nothing(p, directory, engine_host)

    info = api.inspect_container(f"{p}-opts")
    host = info["HostConfig"]
    assert host["LogConfig"] == {"Type": "json-file", "Config": {"max-size": "10m", "max-file": "3"}}
    assert host["ShmSize"] == 128 * 1024**2 and host["Init"] is True and host["PidMode"] == "host"
    assert info["Config"]["StopSignal"] == "SIGQUIT" and info["Config"]["Tty"] is True
    mounts = {m["Target"]: m for m in host["Mounts"]}
    assert mounts["/data"]["VolumeOptions"] == {"NoCopy": True}
    assert mounts["/conf"]["BindOptions"] == {"Propagation": "private"}
    assert info["NetworkSettings"]["MacAddress"] == "02:42:ac:11:fe:01" and host["Runtime"] == "io.containerd.runc.v2"
    plain = api.inspect_container(f"{p}-plain")
    assert plain["HostConfig"]["ShmSize"] == 64 * 1024**2, "the plain container has the engine's defaults"
    ids = {name: api.inspect_container(f"{p}-{name}")["Id"] for name in ("opts", "plain")}

    # each option changed alone: found, named by itself, a replace of that container only
    for key, value in CHANGED.items():
        options = copy.deepcopy(RUN_OPTIONS)
        options[key] = value
        write(tmp_manifests, manifests(p, base_image, options))
        rc, plan = plan_json(reconcile, directory)
        changes = [c for c in plan["changes"] if c["action"] != "none"]
        assert rc == 2 and [c["name"] for c in changes] == [f"{p}-opts"], (key, json.dumps(plan, indent=1))
        [change] = changes
        assert change["action"] == "replace", key
        assert {f["path"] for f in change["fields"]} == {key}, (key, change["fields"])

    # gpus: found, named by itself, a replace
    write(tmp_manifests, manifests(p, base_image, RUN_OPTIONS, gpus="all"))
    rc, plan = plan_json(reconcile, directory)
    [change] = [c for c in plan["changes"] if c["action"] != "none"]
    assert (change["name"], change["action"]) == (f"{p}-gpu", "replace")
    assert [f["path"] for f in change["fields"]] == ["gpus"]

    # resources.cpuset changes in place (the same container)
    if api.info()["NCPU"] >= 2:
        write(tmp_manifests, manifests(p, base_image, RUN_OPTIONS, cpuset="1,0"))
        rc, plan = plan_json(reconcile, directory)
        [change] = [c for c in plan["changes"] if c["action"] != "none"]
        assert change["action"] == "update" and [f["path"] for f in change["fields"]] == ["resources.cpuset"]
        apply_ok(reconcile, directory)
        in_sync(reconcile, directory)
        info = api.inspect_container(f"{p}-opts")
        assert info["Id"] == ids["opts"] and info["HostConfig"]["CpusetCpus"] == "0-1"

    # all of them at once: applied by a replace (a new container), then in sync again
    write(tmp_manifests, manifests(p, base_image, CHANGED))
    apply_ok(reconcile, directory)
    in_sync(reconcile, directory)
    full_comparison_finds_nothing(p, directory, engine_host)
    assert api.inspect_container(f"{p}-opts")["Id"] != ids["opts"], "a run option changes by a replace"
    assert api.inspect_container(f"{p}-plain")["Id"] == ids["plain"], "the plain container is left alone"


def test_isolation_weakening_options_need_the_opt_in(reconcile: Any, tmp_manifests: Any, base_image: str) -> None:
    spec = {
        "image": base_image,
        "pid": "host",
        "ipc": "host",
        "securityOpt": ["seccomp=unconfined", "apparmor=unconfined"],
    }
    directory = write(tmp_manifests, [doc("Container", "refused", spec)])
    proc = reconcile("validate", directory)
    assert proc.returncode == 1
    for text in ("pid: host", "ipc: host", "seccomp=unconfined", "apparmor=unconfined"):
        assert text in proc.stdout + proc.stderr, text
