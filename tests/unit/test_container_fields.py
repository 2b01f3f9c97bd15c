"""The container field table (reconciler/drivers/container/fields.py) is complete and consistent.

Every manifest key of schemas/Container.schema.json is made into a row (or listed in NOT_FIELDS with why: checked
with the Service table in test_field_tables.py), every row
says everything the walkers need, and each row's columns say what the code does: SAMPLES gives two values of each
field, and changing one of them is checked against the row's action (hash, create call, in-place update, diff).
A new field needs its row and a SAMPLES entry here; the tests below fail until both exist.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import docker
import pytest

from reconciler.drivers.container.apply import create_config
from reconciler.drivers.container.diff import diff_container, expected_spec
from reconciler.drivers.container.fields import (
    BY_KEY,
    FIELDS,
    IN_PLACE,
    LIMITS,
    NOT_CREATED,
    Field,
    in_place_body,
)
from reconciler.drivers.container.observe import ContainerFacts, ImageDefaults, observed_spec
from reconciler.drivers.container.spec import hashed_spec, normalize_container
from reconciler.model import LABEL_SPEC_HASH, Action, Desired, FieldChange, Observed, Resource, Source

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"
IMAGE = "127.0.0.1:5000/reconciler/busybox:1.35"

# Two manifest values of each field (merged into {"image": IMAGE}; `metadata.labels` goes to the labels).
SAMPLES: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "image": ({}, {"image": "busybox:1.36"}),
    "command": ({"command": "sleep 1"}, {"command": ["sleep", "2"]}),
    "entrypoint": ({}, {"entrypoint": "/bin/sh"}),
    "env": ({"env": {"A": "1"}}, {"env": {"A": "2"}}),
    "ports": ({"ports": [{"containerPort": 80}]}, {"ports": [{"containerPort": 80, "hostPort": 8080}]}),
    "mounts": (
        {"mounts": [{"type": "volume", "source": "a", "target": "/a"}]},
        {"mounts": [{"type": "tmpfs", "target": "/a", "size": "1m"}]},
    ),
    "networks": ({"networks": [{"name": "a"}]}, {"networks": [{"name": "a", "aliases": ["x"]}, {"name": "b"}]}),
    "networkMode": ({"networkMode": "host"}, {"networkMode": "none"}),
    "restartPolicy": ({}, {"restartPolicy": {"name": "on-failure", "maximumRetryCount": 3}}),
    "state": ({}, {"state": "stopped"}),
    "completionTimeout": ({"state": "completed"}, {"state": "completed", "completionTimeout": "30s"}),
    "healthcheck": ({"healthcheck": {"test": "true"}}, {"healthcheck": {"test": "true", "interval": "5s"}}),
    "resources": ({"resources": {"memory": "64m"}}, {"resources": {"memory": "128m", "pidsLimit": 10}}),
    "user": ({}, {"user": "1000:1000"}),
    "workingDir": ({}, {"workingDir": "/srv"}),
    "hostname": ({"hostname": "a"}, {"hostname": "b"}),
    "capAdd": ({}, {"capAdd": ["net_admin"]}),
    "capDrop": ({"capDrop": ["ALL"]}, {"capDrop": ["CHOWN"]}),
    "privileged": ({}, {"privileged": True, "allowPrivileged": True}),
    "allowPrivileged": ({}, {"allowPrivileged": True}),
    "readOnlyRootfs": ({}, {"readOnlyRootfs": True}),
    "stopTimeout": ({}, {"stopTimeout": 3}),
    "logging": (
        {"logging": {"driver": "json-file"}},
        {"logging": {"driver": "json-file", "options": {"max-size": "10m"}}},
    ),
    "ulimits": ({}, {"ulimits": {"nofile": 1024}}),
    "shmSize": ({}, {"shmSize": "128m"}),
    "sysctls": ({}, {"sysctls": {"net.core.somaxconn": 1024}}),
    "init": ({}, {"init": True}),
    "securityOpt": ({}, {"securityOpt": ["no-new-privileges"]}),
    "stopSignal": ({}, {"stopSignal": "quit"}),
    "extraHosts": ({}, {"extraHosts": {"db": "10.0.0.2"}}),
    "dns": ({"dns": "1.1.1.1"}, {"dns": ["1.1.1.1", "9.9.9.9"]}),
    "dnsSearch": ({}, {"dnsSearch": "example.com"}),
    "dnsOptions": ({}, {"dnsOptions": ["ndots:2"]}),
    "groupAdd": ({}, {"groupAdd": [1234, "audio"]}),
    "oomScoreAdj": ({}, {"oomScoreAdj": 500}),
    "tty": ({}, {"tty": True}),
    "stdinOpen": ({}, {"stdinOpen": True}),
    "ipc": ({}, {"ipc": "shareable"}),
    "pid": ({}, {"pid": "host", "allowPrivileged": True}),
    "uts": ({}, {"uts": "host"}),
    "expose": ({}, {"expose": [8080, "9000-9001/udp"]}),
    "devices": ({}, {"devices": ["/dev/null:/dev/mynull"], "allowPrivileged": True}),
    "deviceCgroupRules": ({}, {"deviceCgroupRules": ["c 1:3 mr"], "allowPrivileged": True}),
    "gpus": ({"gpus": "all"}, {"gpus": [{"deviceIds": ["0"], "capabilities": ["gpu", "compute"]}]}),
    "macAddress": ({}, {"macAddress": "02:42:AC:11:00:99"}),
    "runtime": ({"runtime": "runc"}, {"runtime": "io.containerd.runc.v2", "allowPrivileged": True}),
    "cgroupParent": ({}, {"cgroupParent": "/reconciler"}),
    "platform": ({}, {"platform": "linux/arm64"}),
    "dependsOn": ({}, {"dependsOn": [{"name": "db", "condition": "healthy"}]}),
    "sensitiveEnv": ({"env": {"A": "1"}}, {"env": {"A": "1"}, "sensitiveEnv": ["A"]}),
    "labels": ({}, {"metadata.labels": {"team": "a"}}),
}


class BuilderApi:
    """Only the pure config builders of docker-py's APIClient (no engine)."""

    def __init__(self) -> None:
        self._real = docker.APIClient(base_url="unix:///nonexistent.sock", version="1.41")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


def desired_of(fragment: dict[str, Any]) -> Desired:
    spec = {"image": IMAGE, **fragment}
    labels = spec.pop("metadata.labels", {})
    return normalize_container(Resource("Container", "web", spec, labels, Source("w.yaml", 1, Path("/tmp/w.yaml"))))


# --- the table covers the schema (with Service's: test_field_tables.py) -------------------------------------------


def test_resource_limits_are_the_schemas() -> None:
    container = json.loads((SCHEMAS / "Container.schema.json").read_text())
    declared = set(container["properties"]["spec"]["properties"]["resources"]["properties"])
    assert {limit.key for limit in LIMITS} == declared


def test_every_field_has_samples() -> None:
    assert set(SAMPLES) == {row.key for row in FIELDS}, "give each field two values in SAMPLES"


# --- each row is complete ---------------------------------------------------------------------------------------


def test_keys_are_unique() -> None:
    assert len(BY_KEY) == len(FIELDS)


@pytest.mark.parametrize("row", FIELDS, ids=lambda row: row.key)
def test_row_is_complete(row: Field) -> None:
    assert row.manifest, "name the manifest keys the field is made from"
    assert row.action in (Action.REPLACE, Action.UPDATE, Action.NONE)
    if row.normalize is None:
        assert all(k.startswith("metadata.") for k in row.manifest), "only metadata lives outside the spec"
    if row.action is Action.NONE:
        # not engine state: never read back, never in the create call, never compared
        assert row.read is None and row.create is None and row.update is None
        assert row.after is None and row.drifts is None and row.follow is None
        assert row.doc, "say what the field is for when it is no engine state"
        return
    assert row.read is not None, "engine state is read back from the inspect document"
    assert row.create is not None or row.key in NOT_CREATED, "engine state goes into the create call"
    if row.action is Action.UPDATE:
        assert row.update is not None, "an in-place field says how it is updated"
        assert row.update.body is not None or row.update.run is not None
        assert row.drifts is None, "in-place fields are always compared"
    else:
        assert row.update is None, "a field without an update writer needs a new container: REPLACE"
    if row.follow is not None or row.after is not None:
        assert row.action is Action.REPLACE, "what moves under a field replaces the container"


def test_not_created_fields_say_why() -> None:
    assert set(NOT_CREATED) <= {row.key for row in FIELDS if row.read is not None and row.create is None}
    assert all(NOT_CREATED.values())


def test_in_place_order_is_total() -> None:
    orders = [row.update.order for row in IN_PLACE if row.update is not None]
    assert len(set(orders)) == len(orders)
    assert {row.key for row in IN_PLACE} == {row.key for row in FIELDS if row.action is Action.UPDATE}


# --- the walkers produce exactly the rows -----------------------------------------------------------------------


def test_canonical_spec_has_one_key_per_row() -> None:
    spec = desired_of({}).spec
    assert list(spec) == [row.key for row in FIELDS if row.normalize is not None]


def test_observed_spec_has_one_key_per_engine_state_row() -> None:
    info = {"Id": "c" * 64, "Config": {}, "HostConfig": {}, "State": {}, "NetworkSettings": {}}
    assert list(observed_spec(info)) == [row.key for row in FIELDS if row.read is not None]


def test_hash_covers_exactly_the_replace_fields() -> None:
    hashed = set(hashed_spec(desired_of({}).spec))
    replace = {row.key for row in FIELDS if row.action is Action.REPLACE and row.normalize is not None}
    added = {row.key for row in FIELDS if row.hashed_when_set}
    assert hashed == replace - added, "a run option left undeclared is not hashed"
    everything = {key: value for sample in SAMPLES.values() for key, value in sample[1].items()}
    everything.pop("metadata.labels")
    everything.pop("networks")  # not with networkMode
    assert set(hashed_spec(desired_of(everything).spec)) == replace, "a declared one is"


def test_a_manifest_without_run_options_hashes_as_before() -> None:
    """The run options were added to the table after containers were created: none of those is recreated (the
    hash main computed for this manifest before they existed)."""
    spec = {"image": IMAGE, "command": "sleep 1", "resources": {"memory": "64m"}}
    assert desired_of(spec).spec_hash == "v1-b26704e9406e618fadc92920a4e2ef0b"


# --- each row's columns say what the code does, checked on its samples ------------------------------------------


@pytest.mark.parametrize("row", FIELDS, ids=lambda row: row.key)
def test_samples_differ_in_the_field(row: Field) -> None:
    a, b = (desired_of(s) for s in SAMPLES[row.key])
    if row.normalize is not None:
        assert a.spec[row.key] != b.spec[row.key]
    else:
        assert a.resource.labels != b.resource.labels


@pytest.mark.parametrize("row", FIELDS, ids=lambda row: row.key)
def test_only_replace_fields_change_the_hash(row: Field) -> None:
    a, b = (desired_of(s) for s in SAMPLES[row.key])
    assert (a.spec_hash != b.spec_hash) == (row.action is Action.REPLACE)


@pytest.mark.parametrize("row", FIELDS, ids=lambda row: row.key)
def test_create_call_carries_exactly_the_created_fields(row: Field) -> None:
    api = BuilderApi()
    a, b = (desired_of(s) for s in SAMPLES[row.key])
    created = create_config(api, a, a.resource.labels) != create_config(api, b, b.resource.labels)
    assert created == (row.create is not None)


@pytest.mark.parametrize("row", IN_PLACE, ids=lambda row: row.key)
def test_in_place_fields_say_how(row: Field) -> None:
    a, b = (desired_of(s) for s in SAMPLES[row.key])
    assert row.update is not None
    fields = [FieldChange(row.key, a.spec[row.key], b.spec[row.key], Action.UPDATE)]
    if row.key in ("resources", "networks"):  # compared per limit / per network
        fields = [FieldChange(f"{row.key}.x", None, 1, Action.UPDATE)]
    assert row.update.steps(fields, b), "an in-place change shows its steps in the plan"
    if row.update.body is not None:
        subkeys = [f.path.partition(".")[2] for f in fields if "." in f.path]
        if row.key == "resources":
            subkeys = ["memory"]
        assert in_place_body(b.spec, {row.key: subkeys}), "its part of the update call"


@pytest.mark.parametrize("row", FIELDS, ids=lambda row: row.key)
def test_a_change_of_the_field_is_named_by_it_with_its_action(row: Field) -> None:
    """A container made from the first sample, as the engine would report it, against the second one."""
    a, b = (desired_of(s) for s in SAMPLES[row.key])
    facts = ContainerFacts("c" * 64, "web", "sha256:a", "sha256:a", ImageDefaults())
    running = expected_spec(a, {}, facts)
    observed = Observed("Container", "web", "c" * 64, {LABEL_SPEC_HASH: a.spec_hash}, running, raw=facts)
    change = diff_container(b, observed)
    if row.action is Action.NONE:
        assert change.action is Action.NONE and not change.fields
        return
    assert change.fields, f"a change of {row.key} is found"
    for f in change.fields:
        assert f.path == row.key or f.path.startswith(row.key + ".")
        assert f.action is row.action
    assert change.action is row.action
