"""Container plan cases on pure normalize + diff: create / update / replace / delete / none, one field each.

The observed side is an engine inspect document shaped as Docker 20.10 returns it (CAP_ prefixes, MemorySwap
doubled, short-ID aliases, image Env/Cmd/Labels merged in), run through the real translation.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from reconciler.drivers.container.diff import diff_container, follow_upstream, leftover_of, prune_container
from reconciler.drivers.container.fields import IMAGE_FOLLOW, IMAGE_MOVED
from reconciler.drivers.container.observe import ContainerFacts, image_defaults, observed_spec
from reconciler.drivers.container.spec import normalize_container, sensitive_env_label
from reconciler.drivers.engine import runoptions
from reconciler.model import Action, Change, Desired, Observed, Resource, Source, ownership_labels

IMAGE = "127.0.0.1:5000/reconciler/busybox:1.35"
CID = "c0ffee" + "0" * 58
IMAGE_ID = "sha256:" + "1" * 64
IMAGE_DOC = {
    "Id": IMAGE_ID,
    "Config": {"Env": ["PATH=/bin"], "Cmd": ["sh"], "Labels": {"org.opencontainers.image.title": "base"}},
}
BASE_SPEC: dict[str, Any] = {
    "image": IMAGE,
    "command": ["httpd", "-f", "-p", "80"],
    "env": {"A": "1"},
    "ports": [{"containerPort": 80, "hostPort": 8080, "hostIP": "127.0.0.1"}],
    "mounts": [{"type": "volume", "source": "data", "target": "/data"}],
    "networks": [{"name": "backend", "aliases": ["web"]}],
    "resources": {"memory": "64m", "pidsLimit": 100},
    "restartPolicy": {"name": "unless-stopped"},
    "healthcheck": {"test": ["CMD", "true"], "interval": "1s"},
}


def desired_of(spec: dict, labels: dict | None = None) -> Desired:
    res = Resource("Container", "web", spec, labels or {}, Source("web.yaml", 1, Path("/tmp/web.yaml")))
    return normalize_container(res)


def engine_inspect(desired: Desired, image: dict = IMAGE_DOC) -> dict:
    """What the engine reports for a container created from `desired` (its documented readback quirks)."""
    spec = desired.spec
    img = image["Config"]
    env = dict(e.split("=", 1) for e in img.get("Env", []))
    env.update(spec["env"])
    res = spec["resources"]
    health = spec["healthcheck"]
    networks = {
        n["name"]: {
            "Aliases": [*n["aliases"], CID[:12]],
            "IPAMConfig": {"IPv4Address": n["ipv4Address"]} if n["ipv4Address"] else None,
            "IPAddress": "10.1.0.7",
            "MacAddress": "02:42:0a:01:00:07",
            "NetworkID": "9" * 64,
            # the engine has an endpoint only while the container runs (a stopped one keeps the config)
            "EndpointID": "e" * 64 if spec["state"] == "running" else "",
        }
        for n in spec["networks"]
    }
    if spec["networkMode"] == "bridge":
        networks["bridge"] = {"Aliases": None, "IPAMConfig": None, "IPAddress": "172.17.0.2", "EndpointID": "b" * 64}
    bindings: dict[str, list] = {}
    for p in spec["ports"]:
        bindings.setdefault(f"{p['containerPort']}/{p['protocol']}", []).append(
            {"HostIp": "" if p["hostIP"] == "0.0.0.0" else p["hostIP"], "HostPort": str(p["hostPort"] or "")}
        )
    mounts = []
    for m in spec["mounts"]:
        if m["type"] == "tmpfs":
            mounts.append({"Type": "tmpfs", "Target": m["target"], "TmpfsOptions": {"SizeBytes": m["size"]}})
        else:
            mounts.append({"Type": m["type"], "Source": m["source"], "Target": m["target"], "ReadOnly": m["readOnly"]})
    return {
        "Id": CID,
        "Name": "/web",
        "Image": image["Id"],
        "Config": {
            "Hostname": spec["hostname"] or CID[:12],
            "User": spec["user"] or "",
            "Env": [f"{k}={v}" for k, v in env.items()],
            "Cmd": spec["command"] if spec["command"] is not None else (None if spec["entrypoint"] else img["Cmd"]),
            "Entrypoint": spec["entrypoint"],
            "Image": spec["image"],
            "WorkingDir": spec["workingDir"] or "",
            "Labels": {**img.get("Labels", {}), **ownership_labels(desired, "p")},
            "StopTimeout": spec["stopTimeout"],
            "StopSignal": spec["stopSignal"],
            "MacAddress": spec["macAddress"],
            "Tty": bool(spec["tty"]),
            "OpenStdin": bool(spec["stdinOpen"]),
            # the engine exposes the published ports too
            "ExposedPorts": {
                **{e: {} for e in spec["expose"] or []},
                **{f"{p['containerPort']}/{p['protocol']}": {} for p in spec["ports"]},
            }
            or None,
            "Healthcheck": None
            if health is None
            else {
                "Test": health["test"],
                "Interval": health.get("interval", 0),
                "Timeout": health.get("timeout", 0),
                "StartPeriod": health.get("startPeriod", 0),
                "Retries": health.get("retries", 0),
            },
        },
        "HostConfig": {
            "NetworkMode": spec["networkMode"] or spec["networks"][0]["name"],
            "PortBindings": bindings,
            "Mounts": mounts,
            "RestartPolicy": {"Name": spec["restartPolicy"]["name"], "MaximumRetryCount": 0},
            "CapAdd": [f"CAP_{c}" for c in spec["capAdd"]] or None,
            "CapDrop": [f"CAP_{c}" for c in spec["capDrop"]] or None,
            "Privileged": spec["privileged"],
            "ReadonlyRootfs": spec["readOnlyRootfs"],
            "Memory": res["memory"] or 0,
            "MemorySwap": res["memorySwap"] or (2 * res["memory"] if res["memory"] else 0),
            "MemoryReservation": res["memoryReservation"] or 0,
            "NanoCpus": res["cpus"] or 0,
            "CpuShares": res["cpuShares"] or 0,
            "CpusetCpus": res["cpuset"] or "",
            "PidsLimit": res["pidsLimit"],
            # the run options as Docker 20.10 reports them, its defaults where undeclared
            "LogConfig": {
                "Type": (spec["logging"] or {}).get("driver") or "json-file",
                "Config": (spec["logging"] or {}).get("options") or {},
            },
            "Ulimits": [{"Name": k, "Soft": v["soft"], "Hard": v["hard"]} for k, v in (spec["ulimits"] or {}).items()],
            "ShmSize": spec["shmSize"] or 64 * 1024**2,
            "Sysctls": spec["sysctls"],
            "Init": spec["init"],
            "SecurityOpt": spec["securityOpt"],
            "ExtraHosts": spec["extraHosts"],
            "Dns": spec["dns"] or [],
            "DnsSearch": spec["dnsSearch"] or [],
            "DnsOptions": spec["dnsOptions"] or [],
            "GroupAdd": spec["groupAdd"],
            "OomScoreAdj": spec["oomScoreAdj"] or 0,
            "IpcMode": spec["ipc"] or "private",
            "PidMode": spec["pid"] or "",
            "UTSMode": spec["uts"] or "",
            "Devices": [
                dict(zip(("PathOnHost", "PathInContainer", "CgroupPermissions"), d.split(":"), strict=True))
                for d in spec["devices"] or []
            ],
            "DeviceCgroupRules": spec["deviceCgroupRules"],
            "DeviceRequests": runoptions.engine_gpus(spec["gpus"]) if spec["gpus"] else None,
            "Runtime": spec["runtime"] or "runc",
            "CgroupParent": spec["cgroupParent"] or "",
        },
        "State": {"Running": spec["state"] == "running", "Status": "running"},
        "NetworkSettings": {"Networks": networks},
    }


def observed_of(info: dict, current_image: str = IMAGE_ID, aside: bool = False, renamed: bool = False) -> Observed:
    facts = ContainerFacts(
        CID,
        info["Name"].lstrip("/"),
        info["Image"],
        current_image,
        image_defaults(IMAGE_DOC),
        aside=aside,
        renamed=renamed,
    )
    return Observed("Container", "web", CID, info["Config"]["Labels"], observed_spec(info), raw=facts)


def plan(before: dict, after: dict, full: bool = False, **observed: Any) -> Change:
    """Create a container from `before`, then diff `after` against it (`full` forces a field comparison)."""
    info = engine_inspect(desired_of(before))
    want = desired_of(after)
    if full:
        want = dataclasses.replace(want, spec_hash="v0-older-normalizer")
    return diff_container(want, observed_of(info, **observed))


def test_create_when_missing() -> None:
    """No container: CREATE, with the dependency waits shown as steps."""
    change = diff_container(desired_of({**BASE_SPEC, "dependsOn": [{"name": "db", "condition": "healthy"}]}), None)
    assert change.action is Action.CREATE
    assert change.steps[0] == "wait for container db to be healthy"


@pytest.mark.parametrize("full", [False, True])
def test_unchanged_manifest_is_in_sync(full: bool) -> None:
    """Same manifest: no change, by hash or by a full field comparison against the engine's readback."""
    change = plan(BASE_SPEC, BASE_SPEC, full=full)
    assert change.action is Action.NONE, change.fields


@pytest.mark.parametrize("full", [False, True])
def test_minimal_manifest_is_in_sync_against_image_defaults(full: bool) -> None:
    """Undeclared fields compare against the image (Cmd, Env, Labels) and engine defaults (hostname, user)."""
    change = plan({"image": IMAGE}, {"image": "127.0.0.1:5000/reconciler/busybox:1.35"}, full=full)
    assert change.action is Action.NONE, change.fields


def test_entrypoint_without_command_drops_image_cmd() -> None:
    """With an entrypoint and no command the engine runs no image CMD: no perpetual diff."""
    spec = {"image": IMAGE, "entrypoint": ["sleep", "1000"]}
    assert plan(spec, spec, full=True).action is Action.NONE


CASES = [
    # (change to the manifest, expected action, the one field named)
    ({"resources": {"memory": "128m", "pidsLimit": 100}}, Action.UPDATE, ["resources.memory"]),
    ({"resources": {"memory": "64m", "pidsLimit": 200}}, Action.UPDATE, ["resources.pidsLimit"]),
    ({"resources": {"memory": "64m", "pidsLimit": 100, "cpus": 0.5}}, Action.UPDATE, ["resources.cpus"]),
    ({"resources": {"pidsLimit": 100}}, Action.REPLACE, ["resources.memory"]),  # removing a limit
    ({"resources": {"memory": "64m"}}, Action.UPDATE, ["resources.pidsLimit"]),  # pids: -1 in place
    ({"restartPolicy": {"name": "always"}}, Action.UPDATE, ["restartPolicy"]),
    ({"state": "stopped"}, Action.UPDATE, ["state"]),
    ({"networks": [{"name": "backend", "aliases": ["web", "www"]}]}, Action.UPDATE, ["networks.backend"]),
    (
        {"networks": [{"name": "backend", "aliases": ["web"]}, {"name": "front"}]},
        Action.UPDATE,
        ["networks.front"],
    ),
    ({"env": {"A": "2"}}, Action.REPLACE, ["env.A"]),
    ({"env": {"A": "1", "B": "x"}}, Action.REPLACE, ["env.B"]),
    ({"command": ["httpd", "-f", "-p", "81"]}, Action.REPLACE, ["command"]),
    ({"ports": [{"containerPort": 80, "hostPort": 8081, "hostIP": "127.0.0.1"}]}, Action.REPLACE, ["ports"]),
    ({"mounts": []}, Action.REPLACE, ["mounts"]),
    ({"healthcheck": {"test": ["CMD", "true"], "interval": "2s"}}, Action.REPLACE, ["healthcheck"]),
    ({"user": "1000"}, Action.REPLACE, ["user"]),
    ({"workingDir": "/srv"}, Action.REPLACE, ["workingDir"]),
    ({"hostname": "www"}, Action.REPLACE, ["hostname"]),
    ({"capDrop": ["ALL"]}, Action.REPLACE, ["capDrop"]),
    ({"readOnlyRootfs": True}, Action.REPLACE, ["readOnlyRootfs"]),
    ({"stopTimeout": 3}, Action.REPLACE, ["stopTimeout"]),
    ({"image": "127.0.0.1:5000/reconciler/busybox:1.36"}, Action.REPLACE, ["image"]),
    (
        {"resources": {"memory": "128m", "pidsLimit": 100}, "env": {"A": "2"}},
        Action.REPLACE,
        ["env.A", "resources.memory"],
    ),
]


@pytest.mark.parametrize(("edit", "action", "fields"), CASES)
def test_each_field_change_names_one_field_with_its_action(edit: dict, action: Action, fields: list[str]) -> None:
    """Every real change shows exactly the changed field(s) and the least disruptive action."""
    change = plan(BASE_SPEC, {**BASE_SPEC, **edit})
    assert change.action is action
    assert sorted(f.path for f in change.fields) == fields
    assert change.steps


def test_removing_an_env_var_is_a_change() -> None:
    """A variable dropped from the manifest (but present on the container) is a replace naming it."""
    change = plan({**BASE_SPEC, "env": {"A": "1", "B": "2"}}, BASE_SPEC)
    assert [(f.path, f.action) for f in change.fields] == [("env.B", Action.REPLACE)]


def test_label_change_is_a_replace() -> None:
    """Labels live on the container and are immutable: a change replaces it."""
    info = engine_inspect(desired_of(BASE_SPEC))
    change = diff_container(desired_of(BASE_SPEC, labels={"tier": "front"}), observed_of(info))
    assert change.action is Action.REPLACE
    assert [f.path for f in change.fields] == ["labels"]


def test_moved_image_tag_replaces() -> None:
    """The reference now resolves to another image ID: replace, noted as such."""
    change = plan(BASE_SPEC, BASE_SPEC, current_image="sha256:" + "2" * 64)
    assert change.action is Action.REPLACE
    assert [(f.path, f.note) for f in change.fields] == [("image", IMAGE_MOVED)]


def test_runtime_values_are_never_drift() -> None:
    """IPAM-assigned IPs, MACs, the short-ID alias and the generated hostname never show as changes."""
    info = engine_inspect(desired_of(BASE_SPEC))
    info["NetworkSettings"]["Networks"]["backend"]["IPAddress"] = "10.1.0.99"
    info["NetworkSettings"]["Networks"]["backend"]["MacAddress"] = "02:42:0a:01:00:63"
    want = dataclasses.replace(desired_of(BASE_SPEC), spec_hash="v0-x")
    assert diff_container(want, observed_of(info)).action is Action.NONE


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda i: i["HostConfig"].update(Memory=32 * 2**20, MemorySwap=64 * 2**20), "resources.memory"),
        (lambda i: i["NetworkSettings"]["Networks"].pop("backend"), "networks.backend"),
        # a failed reconnect leaves the config without an endpoint on a running container: not connected
        (lambda i: i["NetworkSettings"]["Networks"]["backend"].update(NetworkID="", EndpointID=""), "networks.backend"),
        (lambda i: i["State"].update(Running=False), "state"),
        (lambda i: i["HostConfig"].update(RestartPolicy={"Name": "no"}), "restartPolicy"),
    ],
)
def test_drift_by_hand_is_an_update(mutate: Any, field: str) -> None:
    """docker update / network disconnect / docker stop on an in-sync container: one UPDATE naming the field."""
    info = engine_inspect(desired_of(BASE_SPEC))
    mutate(info)
    change = diff_container(desired_of(BASE_SPEC), observed_of(info))
    assert change.action is Action.UPDATE
    assert [f.path for f in change.fields] == [field]


def test_sensitive_env_values_are_marked() -> None:
    """An env entry named in sensitiveEnv is marked sensitive in the change (render prints `(sensitive)`)."""
    change = plan(BASE_SPEC, {**BASE_SPEC, "env": {"A": "secret"}, "sensitiveEnv": ["A"]})
    [field] = change.fields
    assert field.path == "env.A" and field.sensitive


def test_leftover_aside_is_restored() -> None:
    """A container parked by an interrupted replace, primary missing: renamed back (and started) in place."""
    info = engine_inspect(desired_of(BASE_SPEC))
    info["Name"] = "/web__reconciler_old"
    info["State"]["Running"] = False
    change = diff_container(desired_of(BASE_SPEC), observed_of(info, aside=True))
    assert change.action is Action.UPDATE
    assert [f.path for f in change.fields] == ["name", "state"]
    assert change.steps[0] == "rename web__reconciler_old to web"


def test_prune_deletes_and_keeps_volumes() -> None:
    """A container whose manifest is gone is stopped and removed; the steps say volumes are kept."""
    info = engine_inspect(desired_of(BASE_SPEC))
    change = prune_container(observed_of(info))
    assert change.action is Action.DELETE
    assert "volumes are kept" in change.steps[-1]


def test_follow_turns_a_pending_image_rebuild_into_a_replace() -> None:
    """An upstream Image change makes an existing container's change a REPLACE noting the rebuild."""
    in_sync = plan(BASE_SPEC, BASE_SPEC)
    image_change = Change("Image", "web-image", Action.REPLACE)
    followed = follow_upstream(in_sync, [image_change])
    assert followed.action is Action.REPLACE
    assert [(f.path, f.note) for f in followed.fields] == [("image", IMAGE_FOLLOW)]
    created = diff_container(desired_of(BASE_SPEC), None)
    assert follow_upstream(created, [image_change]) is created


def test_an_image_push_or_tag_clean_up_leaves_its_containers_alone() -> None:
    """An in-place Image change (push retry, old tag removal) cannot move the image ID: no replace follows."""
    in_sync = plan(BASE_SPEC, BASE_SPEC)
    assert follow_upstream(in_sync, [Change("Image", "web-image", Action.UPDATE)]) is in_sync


def test_follow_replaces_a_container_sharing_a_replaced_namespace() -> None:
    """networkMode container:<db>: when db is replaced, the sharer is replaced after it (the namespace is by ID)."""
    spec = {"image": IMAGE, "networkMode": "container:db"}
    info = engine_inspect(desired_of(spec))
    info["HostConfig"]["NetworkMode"] = "container:" + "d" * 64
    observed = observed_of(info)
    in_sync = diff_container(
        desired_of(spec), dataclasses.replace(observed, spec={**observed.spec, "networkMode": "container:db"})
    )
    assert in_sync.action is Action.NONE
    followed = follow_upstream(in_sync, [Change("Container", "db", Action.REPLACE)])
    assert followed.action is Action.REPLACE and [f.path for f in followed.fields] == ["networkMode"]
    assert follow_upstream(in_sync, [Change("Container", "db", Action.UPDATE)]).action is Action.NONE
    # a target that is already gone (its ID no longer resolves to the name) is a change by itself
    assert diff_container(desired_of(spec), observed).action is Action.REPLACE


@pytest.mark.parametrize(("key", "host_key"), [("ipc", "IpcMode"), ("pid", "PidMode")])
def test_a_shared_ipc_or_pid_namespace_reads_back_by_name_and_follows(key: str, host_key: str) -> None:
    """The engine stores `container:<id>`: read back as `container:<name>` (names map), so in sync; a replaced
    target replaces the sharer after it; an ID that no longer names the target is a change by itself."""
    spec = {"image": IMAGE, key: "container:db"}
    info = engine_inspect(desired_of(spec))
    info["HostConfig"][host_key] = "container:" + "d" * 64
    observed = observed_of(info)
    observed = dataclasses.replace(observed, spec=observed_spec(info, {"d" * 64: "db"}))
    named = diff_container(desired_of(spec), observed)
    assert named.action is Action.NONE, named.fields
    followed = follow_upstream(named, [Change("Container", "db", Action.REPLACE)])
    assert followed.action is Action.REPLACE and [f.path for f in followed.fields] == [key]
    assert diff_container(desired_of(spec), observed_of(info)).action is Action.REPLACE
    assert named.desired.spec[key] == "container:db" and observed.spec[key] == "container:db"


def test_image_built_by_reconcile_adds_no_label_diff() -> None:
    """A container of an image carrying reconcile's own labels (a built image) shows only the real change."""
    built = {
        "Id": IMAGE_ID,
        "Config": {
            "Env": ["PATH=/bin"],
            "Cmd": ["sh"],
            "Labels": {"io.reconciler.kind": "Image", "io.reconciler.input-hash": "sha256:x", "title": "api"},
        },
    }
    info = engine_inspect(desired_of(BASE_SPEC), image=built)
    want = dataclasses.replace(desired_of({**BASE_SPEC, "env": {"A": "2"}}), spec_hash="v0-older-normalizer")
    facts = ContainerFacts(CID, "web", IMAGE_ID, IMAGE_ID, image_defaults(built))
    change = diff_container(
        want, Observed("Container", "web", CID, info["Config"]["Labels"], observed_spec(info), raw=facts)
    )
    assert [f.path for f in change.fields] == ["env.A"]


def test_memory_changes_are_shown_in_the_units_people_write() -> None:
    """A memory limit change is one in-place field shown as 64m -> 128m, not in bytes."""
    change = plan(BASE_SPEC, {**BASE_SPEC, "resources": {"memory": "128m", "pidsLimit": 100}})
    assert change.action is Action.UPDATE
    assert [(f.path, f.old, f.new) for f in change.fields] == [("resources.memory", "64m", "128m")]


def _secret_desired(tmp_path: Path, spec: dict) -> Desired:
    res = Resource("Container", "web", spec, {}, Source("web.yaml", 1, tmp_path / "web.yaml"))
    return normalize_container(res)


def test_removed_env_file_secret_is_masked_on_the_old_side(tmp_path: Path) -> None:
    """A value from an env file that is no longer declared is sensitive: its old value is never shown."""
    (tmp_path / "secret.env").write_text("SECRET_TOKEN=hunter2supersecret\n")
    before = _secret_desired(tmp_path, {**BASE_SPEC, "envFiles": ["secret.env"]})
    after = _secret_desired(tmp_path, BASE_SPEC)
    change = diff_container(after, observed_of(engine_inspect(before)))
    [field] = change.fields
    assert field.path == "env.SECRET_TOKEN" and field.old == "hunter2supersecret" and field.sensitive


def test_env_file_key_moved_to_plain_env_is_masked(tmp_path: Path) -> None:
    """A key moved from an env file to plain env with a new value: the recorded name keeps the old value masked."""
    (tmp_path / "secret.env").write_text("SECRET_TOKEN=hunter2supersecret\n")
    before = _secret_desired(tmp_path, {**BASE_SPEC, "envFiles": ["secret.env"]})
    after = _secret_desired(tmp_path, {**BASE_SPEC, "env": {"A": "1", "SECRET_TOKEN": "public"}})
    info = engine_inspect(before)
    info["Config"]["Labels"].update(sensitive_env_label(before))
    [field] = diff_container(after, observed_of(info)).fields
    assert field.path == "env.SECRET_TOKEN" and field.sensitive


def test_plain_and_image_env_old_values_stay_visible() -> None:
    """Old values of plainly declared env and of the image's own Env are shown (not sensitive)."""
    change = plan(BASE_SPEC, {**BASE_SPEC, "env": {"A": "2", "PATH": "/usr/bin"}})
    assert [(f.path, f.sensitive) for f in change.fields] == [("env.A", False), ("env.PATH", False)]
    removed = plan({**BASE_SPEC, "env": {"A": "1", "B": "2"}}, BASE_SPEC)
    assert [(f.path, f.sensitive) for f in removed.fields] == [("env.B", True)]  # no longer declared: masked


def test_stopped_container_keeps_its_networks() -> None:
    """A stopped container has no endpoint (EndpointID empty) but is still a member: only `state` differs."""
    info = engine_inspect(desired_of(BASE_SPEC))
    info["State"]["Running"] = False
    info["NetworkSettings"]["Networks"]["backend"]["EndpointID"] = ""
    change = diff_container(desired_of(BASE_SPEC), observed_of(info))
    assert [f.path for f in change.fields] == ["state"]


def test_removing_a_static_address_is_an_update() -> None:
    """ipv4Address dropped from the manifest while the engine keeps the static reservation: reconnect without it."""
    static = {**BASE_SPEC, "networks": [{"name": "backend", "aliases": ["web"], "ipv4Address": "10.1.0.7"}]}
    change = plan(static, BASE_SPEC)
    assert change.action is Action.UPDATE
    [field] = change.fields
    assert field.path == "networks.backend" and field.old["ipv4Address"] == "10.1.0.7"
    assert field.new["ipv4Address"] is None
    assert change.steps == ("reconnect to network backend",)


@pytest.mark.parametrize(
    ("declared", "steps"), [("running", ("unpause web",)), ("stopped", ("unpause web", "stop web"))]
)
def test_paused_container_is_unpaused(declared: str, steps: tuple[str, ...]) -> None:
    """`docker pause` is its own state (never 'stopped', which would try a start): unpause, then stop if declared."""
    info = engine_inspect(desired_of(BASE_SPEC))
    info["State"].update(Running=True, Paused=True, Status="paused")
    change = diff_container(desired_of({**BASE_SPEC, "state": declared}), observed_of(info))
    assert change.action is Action.UPDATE
    assert [(f.path, f.old, f.new) for f in change.fields] == [("state", "paused", declared)]
    assert change.steps == steps


def test_container_renamed_by_hand_is_renamed_back() -> None:
    """An owned container found under another engine name (by its name label) is renamed back in place."""
    info = engine_inspect(desired_of(BASE_SPEC))
    info["Name"] = "/webx"
    change = diff_container(desired_of(BASE_SPEC), observed_of(info, renamed=True))
    assert change.action is Action.UPDATE
    assert [(f.path, f.old, f.new) for f in change.fields] == [("name", "webx", "web")]
    assert change.steps == ("rename webx to web",)


def test_leftover_aside_prune_explains_itself() -> None:
    """An aside container next to its primary is a leftover of a replace: its removal says so (not 'manifest gone')."""
    info = engine_inspect(desired_of(BASE_SPEC))
    info["Name"] = "/web__reconciler_old"
    observed = dataclasses.replace(observed_of(info), name="web__reconciler_old")
    assert leftover_of(observed) == "web"
    change = prune_container(observed)
    assert change.action is Action.DELETE
    assert change.notes == ("leftover of an interrupted replace of web, which holds its name again",)
    plain = prune_container(observed_of(engine_inspect(desired_of(BASE_SPEC))))
    assert leftover_of(plain.observed) is None and plain.notes == ()


def test_tmpfs_size_changes_are_shown_in_the_units_people_write() -> None:
    """A tmpfs size change is one replace of `mounts` showing 64m -> 128m, not bytes."""
    mounts = [{"type": "tmpfs", "target": "/tmp", "size": "64m"}]
    change = plan({**BASE_SPEC, "mounts": mounts}, {**BASE_SPEC, "mounts": [{**mounts[0], "size": "128m"}]})
    [field] = change.fields
    assert field.path == "mounts" and field.action is Action.REPLACE
    assert field.old[0]["size"] == "64m" and field.new[0]["size"] == "128m"


def test_follow_recreates_a_container_whose_volume_is_replaced() -> None:
    """A replaced volume it mounts makes the container a CREATE (the volume driver removes it first); a blocked
    volume replace, or one of another volume, changes nothing."""
    in_sync = plan(BASE_SPEC, BASE_SPEC)
    replaced = Change("Volume", "data", Action.REPLACE)
    followed = follow_upstream(in_sync, [replaced])
    assert followed.action is Action.CREATE and followed.observed is None
    assert [f.path for f in followed.fields] == ["mounts"]
    assert follow_upstream(in_sync, [Change("Volume", "data", Action.REPLACE, blocked="Retain")]) is in_sync
    assert follow_upstream(in_sync, [Change("Volume", "other", Action.REPLACE)]) is in_sync
