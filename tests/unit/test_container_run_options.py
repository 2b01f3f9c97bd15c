"""The Container run options (reconciler/drivers/engine/runoptions.py and their rows in fields.py): each
normalized to one canonical form, read back from an inspect document (as Docker 20.10 reports it) into exactly that
form, undeclared equal to the engine's default, a change a replace, and the isolation-weakening ones refused
without allowPrivileged. The two-sample checks every row gets are in test_container_fields.py; the real engine's
read-back in tests/integration/test_container_run_options.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import docker
import pytest

from reconciler.contract import DriverContext
from reconciler.core.catalog import build_catalog
from reconciler.drivers.container.apply import create_config
from reconciler.drivers.container.diff import diff_container
from reconciler.drivers.container.driver import ContainerDriver
from reconciler.drivers.container.fields import BY_KEY
from reconciler.drivers.container.observe import ContainerFacts, ImageDefaults, image_defaults, observed_spec
from reconciler.drivers.container.spec import normalize_container
from reconciler.drivers.engine import runoptions
from reconciler.errors import SpecError
from reconciler.model import LABEL_SPEC_HASH, Action, Desired, Observed, Resource, Source

IMAGE = "127.0.0.1:5000/reconciler/busybox:1.35"
RUN_OPTIONS = [row.key for row in BY_KEY.values() if row.hashed_when_set]


def problems(spec: dict[str, Any], directory: Path) -> list[str]:
    """The problems loading a Container manifest with `spec` finds (schema and checks)."""
    resource = Resource("Container", "web", spec, {}, Source("web.yaml", 1, directory / "web.yaml"), {"spec": 4})
    _, found = build_catalog([resource], {"Container": ContainerDriver(DriverContext("p", Path(".")))})
    return [f"{p.subject}: {p.field}: {p.message}" for p in found]


def desired_of(spec: dict[str, Any]) -> Desired:
    resource = Resource("Container", "web", {"image": IMAGE, **spec}, {}, Source("w.yaml", 1, Path("/tmp/w.yaml")))
    return normalize_container(resource)


# the inspect document of a container created without any run option (Docker 20.10 from Debian, captured)
PLAIN = {
    "Id": "c" * 64,
    "Config": {"StopSignal": None, "Tty": False, "OpenStdin": False, "ExposedPorts": None},
    "HostConfig": {
        "LogConfig": {"Type": "json-file", "Config": {}},
        "Ulimits": [],
        "ShmSize": 67108864,
        "Sysctls": None,
        "Init": None,
        "SecurityOpt": None,
        "ExtraHosts": None,
        "Dns": [],
        "DnsSearch": [],
        "DnsOptions": [],
        "GroupAdd": None,
        "OomScoreAdj": 0,
        "IpcMode": "private",
        "PidMode": "",
        "UTSMode": "",
        "Devices": [],
        "DeviceCgroupRules": None,
        "Runtime": "runc",
        "CgroupParent": "",
    },
    "State": {},
    "NetworkSettings": {},
}
# ... and of one created by `docker create --log-opt max-size=10m --log-opt max-file=3 --ulimit nofile=1024:2048
# --ulimit nproc=512 --shm-size 128m --sysctl net.ipv4.ip_forward=1 --init --security-opt no-new-privileges=true
# --stop-signal SIGINT --add-host foo:10.0.0.1 --dns 1.1.1.1 --dns-search example.com --dns-option ndots:2
# --group-add 1234 --group-add audio --oom-score-adj 100 -t -i --ipc shareable --uts host --expose 8080
# --expose 9000-9001/udp --device /dev/null:/dev/mynull --device-cgroup-rule 'c 1:3 mr' --runtime
# io.containerd.runc.v2 --cgroup-parent /runopts-probe` (and the API's MacAddress)
FULL = {
    "Id": "d" * 64,
    "Config": {
        "StopSignal": "SIGINT",
        "MacAddress": "02:42:AC:11:00:99",
        "Tty": True,
        "OpenStdin": True,
        "ExposedPorts": {"8080/tcp": {}, "9000/udp": {}, "9001/udp": {}},
    },
    "HostConfig": {
        "LogConfig": {"Type": "json-file", "Config": {"max-file": "3", "max-size": "10m"}},
        "Ulimits": [{"Name": "nofile", "Hard": 2048, "Soft": 1024}, {"Name": "nproc", "Hard": 512, "Soft": 512}],
        "ShmSize": 134217728,
        "Sysctls": {"net.ipv4.ip_forward": "1"},
        "Init": True,
        "SecurityOpt": ["no-new-privileges=true"],
        "ExtraHosts": ["foo:10.0.0.1"],
        "Dns": ["1.1.1.1"],
        "DnsSearch": ["example.com"],
        "DnsOptions": ["ndots:2"],
        "GroupAdd": ["1234", "audio"],
        "OomScoreAdj": 100,
        "IpcMode": "shareable",
        "PidMode": "",
        "UTSMode": "host",
        "Devices": [{"PathOnHost": "/dev/null", "PathInContainer": "/dev/mynull", "CgroupPermissions": "rwm"}],
        "DeviceCgroupRules": ["c 1:3 mr"],
        "Runtime": "io.containerd.runc.v2",
        "CgroupParent": "/runopts-probe",
    },
    "State": {},
    "NetworkSettings": {},
}
# the manifest that says what FULL runs, in forms people write
FULL_MANIFEST = {
    "logging": {"driver": "json-file", "options": {"max-size": "10m", "max-file": 3}},
    "ulimits": {"nofile": {"soft": 1024, "hard": 2048}, "nproc": 512},
    "shmSize": "128m",
    "sysctls": ["net.ipv4.ip_forward=1"],
    "init": True,
    "securityOpt": ["no-new-privileges"],
    "stopSignal": "int",
    "extraHosts": ["foo=10.0.0.1"],
    "dns": "1.1.1.1",
    "dnsSearch": "example.com",
    "dnsOptions": ["ndots:2"],
    "groupAdd": ["audio", 1234],
    "oomScoreAdj": 100,
    "tty": True,
    "stdinOpen": True,
    "ipc": "shareable",
    "uts": "host",
    "expose": ["9000-9001/udp", 8080],
    "devices": ["/dev/null:/dev/mynull"],
    "deviceCgroupRules": ["c 1:3 mr"],
    "macAddress": "02:42:ac:11:00:99",
    "runtime": "io.containerd.runc.v2",
    "cgroupParent": "/runopts-probe",
    "allowPrivileged": True,
}


def diff_against(info: dict[str, Any], desired: Desired, defaults: ImageDefaults | None = None) -> Any:
    """`desired` against the container `info`, compared field by field (a hash from an older normalizer)."""
    facts = ContainerFacts(info["Id"], "web", "sha256:a", "sha256:a", defaults or ImageDefaults())
    observed = Observed("Container", "web", info["Id"], {LABEL_SPEC_HASH: "v0-old"}, observed_spec(info), raw=facts)
    return [f for f in diff_container(desired, observed).fields if f.path in RUN_OPTIONS]


def test_undeclared_is_the_engines_default() -> None:
    """A container declaring none of them is in sync with what the engine reports for it."""
    assert all(desired_of({}).spec[key] is None for key in RUN_OPTIONS)
    assert diff_against(PLAIN, desired_of({})) == []


def test_declared_reads_back_as_declared() -> None:
    """Each option normalized from the manifest equals the one read back from the engine."""
    spec = desired_of(FULL_MANIFEST).spec
    have = observed_spec(FULL)
    assert {k: have[k] for k in RUN_OPTIONS} == {k: spec[k] for k in RUN_OPTIONS}
    assert diff_against(FULL, desired_of(FULL_MANIFEST)) == []


# undeclared, logging and runtime are the daemon's and ipc either daemon default: removing them is no change
@pytest.mark.parametrize("key", [k for k in FULL_MANIFEST if k not in ("logging", "ipc", "runtime", "allowPrivileged")])
def test_removing_one_is_a_replace_named_by_it(key: str) -> None:
    manifest = {k: v for k, v in FULL_MANIFEST.items() if k != key}
    [change] = diff_against(FULL, desired_of(manifest))
    assert (change.path, change.action) == (key, Action.REPLACE)


def test_engine_defaults_declared_are_in_sync() -> None:
    """Declaring what the engine does anyway is no change (tty: false, oomScoreAdj: 0, shmSize: 64m, ipc)."""
    same = {"tty": False, "stdinOpen": False, "oomScoreAdj": 0, "shmSize": "64m", "ipc": "private", "dns": []}
    assert diff_against(PLAIN, desired_of(same)) == []


def test_the_daemons_own_defaults_are_never_drift() -> None:
    """Undeclared logging and IPC mode are whatever the daemon is configured with (`log-driver`,
    `default-ipc-mode`): another daemon default is no change."""
    other = {**PLAIN, "HostConfig": {**PLAIN["HostConfig"], "IpcMode": "shareable"}}
    other["HostConfig"]["LogConfig"] = {"Type": "journald", "Config": {"tag": "x"}}
    assert diff_against(other, desired_of({})) == []
    assert [c.path for c in diff_against(other, desired_of({"ipc": "private"}))] == ["ipc"]
    assert [c.path for c in diff_against(PLAIN, desired_of({"ipc": "none"}))] == ["ipc"]
    [change] = diff_against(other, desired_of({"logging": {"options": {"tag": "y"}}}))
    assert change.path == "logging" and change.new == {"driver": "journald", "options": {"tag": "y"}}


def test_the_images_stop_signal_and_exposed_ports() -> None:
    """Undeclared, the engine reports the image's STOPSIGNAL and EXPOSE (and the published ports): no change."""
    image = {"Config": {"StopSignal": "SIGQUIT", "ExposedPorts": {"80/tcp": {}}}}
    info = {**PLAIN, "Config": {**PLAIN["Config"], "StopSignal": "SIGQUIT"}}
    info["Config"]["ExposedPorts"] = {"80/tcp": {}, "8080/tcp": {}, "53/udp": {}}
    spec = {"ports": [{"containerPort": 53, "protocol": "udp"}], "expose": [8080]}
    assert diff_against(info, desired_of(spec), image_defaults(image)) == []
    [change] = diff_against(info, desired_of({**spec, "stopSignal": "TERM"}), image_defaults(image))
    assert (change.path, change.old, change.new) == ("stopSignal", "SIGQUIT", "SIGTERM")


def test_the_label_the_engine_adds_beside_host_namespaces_is_not_drift() -> None:
    """`pid: host`, `ipc: host` or `privileged` make the engine add `label=disable` to SecurityOpt."""
    info = {**PLAIN, "HostConfig": {**PLAIN["HostConfig"], "PidMode": "host", "SecurityOpt": ["label=disable"]}}
    assert diff_against(info, desired_of({"pid": "host", "allowPrivileged": True})) == []
    changes = diff_against(info, desired_of({}))
    assert [c.path for c in changes] == ["pid"], "the label follows pid; it is not a change of its own"
    declared = desired_of({"pid": "host", "allowPrivileged": True, "securityOpt": ["label=level:s0"]})
    assert [c.path for c in diff_against(info, declared)] == ["securityOpt"]


@pytest.mark.parametrize(
    ("function", "raw", "canonical"),
    [
        (runoptions.logging, {"driver": "local", "options": {"compress": True, "max-file": 3}},
         {"driver": "local", "options": {"compress": "true", "max-file": "3"}}),
        (runoptions.sysctls, {"net.core.somaxconn": 1024}, {"net.core.somaxconn": "1024"}),
        (runoptions.sysctls, ["b.x=1", "a.y=2=3"], {"a.y": "2=3", "b.x": "1"}),
        (runoptions.sysctls, {}, None),
        (runoptions.security_opt, ["no-new-privileges:true", "label:disable", "no-new-privileges"],
         ["label=disable", "no-new-privileges=true"]),
        (runoptions.stop_signal, "quit", "SIGQUIT"),
        (runoptions.stop_signal, 9, "9"),
        (runoptions.stop_signal, "SIGRTMIN+3", "SIGRTMIN+3"),
        (runoptions.extra_hosts, {"b": "::1", "a": "10.0.0.1"}, ["a:10.0.0.1", "b:::1"]),
        (runoptions.extra_hosts, ["a=10.0.0.1", "a:10.0.0.1", "gw:host-gateway"], ["a:10.0.0.1", "gw:host-gateway"]),
        (runoptions.text_list, "1.1.1.1", ["1.1.1.1"]),
        (runoptions.text_list, ["9.9.9.9", "1.1.1.1", "9.9.9.9"], ["9.9.9.9", "1.1.1.1"]),
        (runoptions.text_list, [], None),
        (runoptions.sorted_texts, [1234, "audio", "1234"], ["1234", "audio"]),
        (runoptions.nonzero, 0, None),
        (runoptions.true_or_none, False, None),
        (runoptions.mode, "", None),
    ],
)  # fmt: skip
def test_canonical_forms(function: Any, raw: Any, canonical: Any) -> None:
    assert function(raw) == canonical


def test_ulimits_and_expose_forms() -> None:
    assert runoptions.ulimits({"nproc": 512, "nofile": {"soft": 1, "hard": 2}}, "f") == {
        "nofile": {"soft": 1, "hard": 2},
        "nproc": {"soft": 512, "hard": 512},
    }
    assert runoptions.ulimits({"memlock": -1}, "f") == {"memlock": {"soft": -1, "hard": -1}}
    with pytest.raises(SpecError, match="above the hard limit"):
        runoptions.ulimits({"nofile": {"soft": 3, "hard": 2}}, "spec.ulimits")
    assert runoptions.expose([80, "53/udp", "9000-9002"], "f") == [
        "53/udp",
        "80/tcp",
        "9000/tcp",
        "9001/tcp",
        "9002/tcp",
    ]
    for bad in ("70000", "9-1", "1-5000"):
        with pytest.raises(SpecError):
            runoptions.expose([bad], "spec.expose")


def test_shm_size_is_bytes_shown_in_units() -> None:
    assert desired_of({"shmSize": "1g"}).spec["shmSize"] == 1024**3
    [change] = diff_against(PLAIN, desired_of({"shmSize": "1g"}))
    assert (change.old, change.new) == ("64m", "1g")


def test_create_call_sends_the_canonical_forms() -> None:
    api = docker.APIClient(base_url="unix:///nonexistent.sock", version="1.41")  # its config builders only
    config = create_config(api, desired_of(FULL_MANIFEST), {})
    host = config["host_config"]
    assert host["LogConfig"] == FULL["HostConfig"]["LogConfig"]
    assert host["Ulimits"] == [
        {"Name": "nofile", "Soft": 1024, "Hard": 2048},
        {"Name": "nproc", "Soft": 512, "Hard": 512},
    ]
    assert host["SecurityOpt"] == ["no-new-privileges=true"] and host["ExtraHosts"] == ["foo:10.0.0.1"]
    assert host["ShmSize"] == 134217728 and host["Init"] is True and host["IpcMode"] == "shareable"
    assert config["stop_signal"] == "SIGINT" and config["tty"] is True and config["stdin_open"] is True
    assert sorted(config["ports"]) == [(8080, "tcp"), (9000, "udp"), (9001, "udp")]
    plain = create_config(api, desired_of({}), {})
    assert not {"LogConfig", "Ulimits", "ShmSize", "IpcMode", "Init"} & set(plain["host_config"])


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"pid": "host"}, "spec.pid"),
        ({"ipc": "host"}, "spec.ipc"),
        ({"securityOpt": ["seccomp=unconfined"]}, "spec.securityOpt"),
        ({"securityOpt": ["apparmor:unconfined"]}, "spec.securityOpt"),
        ({"securityOpt": ["systempaths=unconfined"]}, "spec.securityOpt"),
        ({"devices": ["/dev/fuse"]}, "spec.devices"),
        ({"deviceCgroupRules": ["a *:* rwm"]}, "spec.deviceCgroupRules"),
        ({"runtime": "io.containerd.runc.v2"}, "spec.runtime"),
    ],
)
def test_isolation_weakening_options_need_allow_privileged(tmp_path: Path, spec: dict, field: str) -> None:
    found = problems({"image": IMAGE, **spec}, tmp_path)
    assert any(f": {field}: " in p and "allowPrivileged" in p for p in found), found
    allowed = {"image": IMAGE, **spec, "allowPrivileged": True}
    assert problems(allowed, tmp_path) == []


def test_harmless_options_need_no_opt_in(tmp_path: Path) -> None:
    spec = {"image": IMAGE, "ipc": "shareable", "runtime": "runc", "securityOpt": ["no-new-privileges"]}
    assert problems(spec, tmp_path) == []


# --- resources.cpuset: in place -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "canonical"), [("0", "0"), ("3,1,2", "1-3"), ("0-2,5,4", "0-2,4-5"), ("7,0-1", "0-1,7"), ("", None)]
)
def test_cpu_lists_are_sorted_ranges(raw: str, canonical: str | None) -> None:
    assert runoptions.cpu_list(raw) == canonical


@pytest.mark.parametrize("bad", ["a", "2-1", "1,,2", "-1"])
def test_a_bad_cpu_list_names_the_field(bad: str) -> None:
    with pytest.raises(SpecError, match="CPU list"):
        desired_of({"resources": {"cpuset": bad}})


def test_cpuset_changes_in_place_and_its_removal_replaces() -> None:
    from reconciler.drivers.container.fields import in_place_body

    info = {**PLAIN, "HostConfig": {**PLAIN["HostConfig"], "CpusetCpus": "0"}}
    info["Config"] = {**PLAIN["Config"], "Image": IMAGE, "StopTimeout": 10}
    info["State"] = {"Running": True}
    facts = ContainerFacts(info["Id"], "web", "sha256:a", "sha256:a", ImageDefaults())
    observed = Observed("Container", "web", info["Id"], {}, observed_spec(info), raw=facts)
    want = desired_of({"resources": {"cpuset": "1,0"}})
    change = diff_container(want, observed)
    assert change.action is Action.UPDATE
    assert [(f.path, f.old, f.new) for f in change.fields] == [("resources.cpuset", "0", "0-1")]
    assert in_place_body(want.spec, {"resources": ["cpuset"]}) == {"CpusetCpus": "0-1"}
    removed = diff_container(desired_of({}), observed)
    assert removed.action is Action.REPLACE and removed.fields[0].path == "resources.cpuset"
    assert diff_container(desired_of({"resources": {"cpuset": "0"}}), observed).action is Action.NONE


# --- the import: each row's Compose key ---------------------------------------------------------------------------

COMPOSE = """\
services:
  db:
    image: postgres:16
    logging: {driver: json-file, options: {max-size: 10m, max-file: "3"}}
    ulimits: {nofile: {soft: 20000, hard: 40000}, nproc: 65535}
    shm_size: 256m
    sysctls: [net.core.somaxconn=1024]
    init: true
    security_opt: ["no-new-privileges:true"]
    stop_signal: SIGINT
    extra_hosts: ["host.docker.internal:host-gateway"]
    dns: 1.1.1.1
    dns_search: example.com
    dns_opt: [ndots:2]
    group_add: [mail]
    oom_score_adj: 500
    tty: true
    stdin_open: true
    uts: host
    expose: ["5432"]
    mac_address: 02:42:ac:11:00:99
    cgroup_parent: /docker
    cpuset: 0-1
"""


def test_compose_keys_are_imported_as_run_options(tmp_path: Path) -> None:
    from reconciler.compose.loading import load_project
    from reconciler.compose.losses import LossReport
    from reconciler.compose.mapping import build_manifests

    (tmp_path / "compose.yml").write_text(COMPOSE)
    report = LossReport()
    compose = load_project([tmp_path / "compose.yml"], None, (), report, lambda loc, msg: None, environ={})
    manifests = build_manifests(
        compose.model, compose.name, compose.directory, tmp_path / "out", compose.profiles, report, compose.interpolated
    )
    [container] = [m for m in manifests if m.kind == "Container"]
    assert report.entries == []
    assert [p for p in problems(container.spec, tmp_path) if "undeclared Network" not in p] == []
    spec = desired_of(container.spec).spec
    assert spec["logging"] == {"driver": "json-file", "options": {"max-file": "3", "max-size": "10m"}}
    assert spec["ulimits"]["nproc"] == {"soft": 65535, "hard": 65535} and spec["shmSize"] == 256 * 1024**2
    assert spec["sysctls"] == {"net.core.somaxconn": "1024"} and spec["securityOpt"] == ["no-new-privileges=true"]
    assert spec["extraHosts"] == ["host.docker.internal:host-gateway"] and spec["dns"] == ["1.1.1.1"]
    assert (spec["init"], spec["tty"], spec["stdinOpen"], spec["uts"]) == (True, True, True, "host")
    assert spec["expose"] == ["5432/tcp"] and spec["groupAdd"] == ["mail"] and spec["oomScoreAdj"] == 500
    assert spec["macAddress"] == "02:42:ac:11:00:99" and spec["cgroupParent"] == "/docker"
    assert spec["resources"]["cpuset"] == "0-1" and spec["stopSignal"] == "SIGINT"


# --- mount options ------------------------------------------------------------------------------------------------

MOUNTS = [
    {"type": "volume", "source": "data", "target": "/data", "noCopy": True},
    {"type": "bind", "source": "/srv/conf", "target": "/conf", "propagation": "rslave"},
]


def test_mount_options_round_trip() -> None:
    """noCopy and propagation go into the create call and read back as declared."""
    api = docker.APIClient(base_url="unix:///nonexistent.sock", version="1.41")
    desired = desired_of({"mounts": MOUNTS})
    created = create_config(api, desired, {})["host_config"]["Mounts"]
    assert created[1]["VolumeOptions"] == {"NoCopy": True}
    assert created[0]["BindOptions"] == {"Propagation": "rslave"}
    info = {**PLAIN, "HostConfig": {**PLAIN["HostConfig"], "Mounts": created}}
    assert observed_spec(info)["mounts"] == [
        {"type": "bind", "source": "/srv/conf", "target": "/conf", "readOnly": False, "propagation": "rslave"},
        {"type": "volume", "source": "data", "target": "/data", "readOnly": False, "noCopy": True},
    ]
    assert [m for m in desired.spec["mounts"]] == [
        {**observed_spec(info)["mounts"][0], "allowSensitive": False},
        observed_spec(info)["mounts"][1],
    ]


def test_mount_defaults_are_left_out() -> None:
    """`noCopy: false` and `propagation: rprivate` (the engine's) are the canonical form of saying nothing, so
    manifests without mount options hash as before they existed."""
    plain = [{"type": "volume", "source": "data", "target": "/data"}, {"type": "bind", "source": "/s", "target": "/c"}]
    spelled = [{**plain[0], "noCopy": False}, {**plain[1], "propagation": "rprivate"}]
    assert desired_of({"mounts": plain}).spec_hash == desired_of({"mounts": spelled}).spec_hash
    engine = [{"Type": "bind", "Source": "/s", "Target": "/c", "BindOptions": {"Propagation": "rprivate"}}]
    info = {**PLAIN, "HostConfig": {**PLAIN["HostConfig"], "Mounts": engine}}
    assert "propagation" not in observed_spec(info)["mounts"][0]


def test_gpus_read_back_as_declared() -> None:
    """Device requests as Docker 20.10 reports them (captured: null DeviceIDs and Options, Count 0 with IDs)."""
    engine = [
        {"Driver": "", "Count": -1, "DeviceIDs": None, "Capabilities": [["gpu"]], "Options": None},
        {
            "Driver": "nvidia",
            "Count": 0,
            "DeviceIDs": ["0"],
            "Capabilities": [["compute", "gpu"]],
            "Options": {"a": "b"},
        },
    ]
    info = {**PLAIN, "HostConfig": {**PLAIN["HostConfig"], "DeviceRequests": engine}}
    nvidia = {"driver": "nvidia", "deviceIds": ["0"], "capabilities": ["gpu", "compute"], "options": {"a": "b"}}
    want = runoptions.gpus([{"count": "all"}, nvidia])
    assert observed_spec(info)["gpus"] == want
    assert runoptions.engine_gpus(want)[0] == {**engine[0], "DeviceIDs": None, "Options": None}


def test_the_import_carries_an_isolation_opt_in_flagged(tmp_path: Path) -> None:
    """`pid: host` (node-exporter), `devices` and the like: imported with allowPrivileged, each flagged."""
    from reconciler.compose.loading import load_project
    from reconciler.compose.losses import LossReport
    from reconciler.compose.mapping import build_manifests

    text = "services:\n  agent:\n    image: busybox\n    pid: host\n    devices: [/dev/fuse]\n"
    (tmp_path / "compose.yml").write_text(text)
    report = LossReport()
    compose = load_project([tmp_path / "compose.yml"], None, (), report, lambda loc, msg: None, environ={})
    manifests = build_manifests(
        compose.model, compose.name, compose.directory, tmp_path / "out", compose.profiles, report, compose.interpolated
    )
    [container] = [m for m in manifests if m.kind == "Container"]
    assert container.spec["allowPrivileged"] is True and container.spec["pid"] == "host"
    assert [p for p in problems(container.spec, tmp_path) if "undeclared Network" not in p] == []
    flagged = {e.key for e in report.entries}
    assert {"services.agent.pid", "services.agent.devices"} <= flagged
