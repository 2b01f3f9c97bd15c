"""The pure translators from engine output to the observed spec, fed with JSON captured from the real test engine.

tests/fixtures/engine/ holds what `scripts/capture-fixtures` saved after applying tests/fixtures/engine/manifests
(listings and inspect documents, IDs and timestamps scrubbed). Every expected value here is derived from those
manifests (normalized by the kind's own `normalize`), from the Dockerfile the image was built from, or, where
the manifest leaves a field to the engine, from the image the container runs: never copied from the fixture the
translator reads. Regenerate the fixtures with `scripts/capture-fixtures` after changing the manifests.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Callable, Mapping
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from docker.errors import ImageNotFound, NotFound

from reconciler.contract import DriverContext
from reconciler.core.manifests import load_directory
from reconciler.drivers.container import runoptions
from reconciler.drivers.container.driver import ContainerDriver
from reconciler.drivers.container.observe import ContainerFacts, image_defaults, observed_spec
from reconciler.drivers.container.spec import normalize_container
from reconciler.drivers.engine.client import project_filter
from reconciler.drivers.engine.reference import parse_reference, repo_digest
from reconciler.drivers.engine.remembered import Remembered
from reconciler.drivers.image.diff import input_changes, label_changes
from reconciler.drivers.image.driver import BUILT, ImageDriver
from reconciler.drivers.image.spec import INPUT_FIELDS, normalize_image, stamped_inputs
from reconciler.drivers.network.driver import NetworkDriver
from reconciler.drivers.network.spec import normalize_network
from reconciler.drivers.volume.driver import VolumeDriver
from reconciler.drivers.volume.policy import DELETE, RETAIN
from reconciler.drivers.volume.spec import LABEL_RECLAIM, normalize_volume
from reconciler.model import LABEL_KIND, LABEL_NAME, LABEL_PREFIX, LABEL_PROJECT, Desired, Resource

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "engine"
MANIFESTS = FIXTURES / "manifests"
PROJECT = "capture"  # scripts/capture-fixtures writes this in place of its throw-away project's name
NORMALIZE: dict[str, Callable[[Resource], Desired]] = {
    "Container": normalize_container,
    "Network": normalize_network,
    "Volume": normalize_volume,
    "Image": normalize_image,
}


# --- the captured engine and the manifests that made it --------------------------------------------------------


@cache
def engine_json(name: str) -> Any:
    """One captured document, e.g. `container.rcfx-web` or `networks.list` (parsed afresh: callers may change it)."""
    return json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8"))


def doc(name: str) -> Any:
    return json.loads(json.dumps(engine_json(name)))


@cache
def resources() -> dict[tuple[str, str], Resource]:
    found, problems = load_directory(MANIFESTS)
    assert not problems, problems
    return {r.key: r for r in found}


def desired(kind: str, name: str) -> Desired:
    return NORMALIZE[kind](resources()[(kind, name)])


def names(kind: str) -> list[str]:
    return sorted(name for k, name in resources() if k == kind)


def image_of(info: Mapping[str, Any]) -> dict[str, Any]:
    """The captured inspect document of the image a container runs (by its ID)."""
    for path in sorted(FIXTURES.glob("image.*.json")):
        image = doc(path.stem)
        if image["Id"] == info["Image"]:
            return image
    raise AssertionError(f"no image fixture with ID {info['Image']}")


def user_labels(labels: Mapping[str, str] | None) -> dict[str, str]:
    return {k: v for k, v in (labels or {}).items() if not k.startswith(LABEL_PREFIX)}


def env_of(lines: list[str] | None) -> dict[str, str]:
    return dict(line.split("=", 1) for line in lines or [])


class FixtureEngine:
    """The engine API calls the drivers' `observe` makes, answered from the captured documents."""

    def __init__(self) -> None:
        self.remembered = Remembered()  # never connected, as in a one-shot command
        self.asked: list[str] = []

    @staticmethod
    def _matching(entries: list[dict[str, Any]], filters: Mapping[str, Any] | None) -> list[dict[str, Any]]:
        wanted = dict(item.split("=", 1) for item in (filters or {}).get("label", []))
        return [e for e in entries if wanted.items() <= (e.get("Labels") or {}).items()]

    @staticmethod
    def _inspect(prefix: str, ref: str, missing: type[Exception]) -> dict[str, Any]:
        for path in sorted(FIXTURES.glob(f"{prefix}.*.json")):
            found = doc(path.stem)
            if (
                ref == found.get("Id")
                or ref == str(found.get("Name") or "").lstrip("/")
                or ref in (found.get("RepoTags") or [])
            ):
                return found
        raise missing(f"no such object: {ref}")

    def containers(self, all: bool = False, filters: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        return self._matching(doc("containers.list"), filters)

    def inspect_container(self, ref: str) -> dict[str, Any]:
        self.asked.append(f"container {ref}")
        return self._inspect("container", ref, NotFound)

    def networks(self, filters: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        return self._matching(doc("networks.list"), filters)

    def inspect_network(self, ref: str) -> dict[str, Any]:
        return self._inspect("network", ref, NotFound)

    def volumes(self, filters: Mapping[str, Any] | None = None) -> dict[str, Any]:
        listing = doc("volumes.list")
        return {**listing, "Volumes": self._matching(listing["Volumes"], filters)}

    def inspect_volume(self, ref: str) -> dict[str, Any]:
        return self._inspect("volume", ref, NotFound)

    def images(self, filters: Mapping[str, Any] | None = None) -> list[dict[str, Any]]:
        return self._matching(doc("images.list"), filters)

    def inspect_image(self, ref: str) -> dict[str, Any]:
        self.asked.append(f"image {ref}")
        return self._inspect("image", ref, ImageNotFound)

    def info(self) -> dict[str, Any]:
        return {"ID": "fixture-engine", "RegistryConfig": {}}


@pytest.fixture
def ctx() -> DriverContext:
    engine = FixtureEngine()
    return DriverContext(PROJECT, MANIFESTS, engine_factory=lambda: engine)


def test_fixtures_are_of_the_manifests_project_and_names() -> None:
    """The captured objects are the manifests' objects, owned by the capture project (else nothing below holds)."""
    assert {c["Names"][0].lstrip("/") for c in doc("containers.list")} == set(names("Container"))
    assert {n["Name"] for n in doc("networks.list")} == set(names("Network"))
    assert {v["Name"] for v in doc("volumes.list")["Volumes"]} == set(names("Volume"))
    listed = [tag for image in doc("images.list") for tag in image["RepoTags"]]
    assert listed == [desired("Image", name).spec["reference"] for name in names("Image")]
    for kind, name in resources():
        captured = doc(f"{kind.lower()}.{name}")
        labels = captured["Config"]["Labels"] if kind in ("Container", "Image") else captured["Labels"]
        assert (labels[LABEL_PROJECT], labels[LABEL_KIND], labels[LABEL_NAME]) == (PROJECT, kind, name)


# --- containers --------------------------------------------------------------------------------------------------

# the run options: the fixtures declare none, so these check the engine's defaults read back as undeclared (each
# declared value is read back against the real engine in tests/integration/test_container_run_options.py)
RUN_OPTIONS = (
    "logging",
    "ulimits",
    "shmSize",
    "sysctls",
    "init",
    "securityOpt",
    "stopSignal",
    "extraHosts",
    "dns",
    "dnsSearch",
    "dnsOptions",
    "groupAdd",
    "oomScoreAdj",
    "tty",
    "stdinOpen",
    "ipc",
    "pid",
    "uts",
    "expose",
    "devices",
    "deviceCgroupRules",
    "gpus",
    "macAddress",
    "runtime",
    "cgroupParent",
)
CONTAINER_FIELDS = (
    "image",
    "command",
    "entrypoint",
    "env",
    "ports",
    "mounts",
    "networks",
    "networkMode",
    "restartPolicy",
    "state",
    "healthcheck",
    "resources",
    "user",
    "workingDir",
    "hostname",
    "capAdd",
    "capDrop",
    "privileged",
    "readOnlyRootfs",
    "stopTimeout",
    *RUN_OPTIONS,
    "labels",
)


def expected_container(field: str, want: Desired, info: Mapping[str, Any]) -> Any:
    """What the engine runs for `field`: the manifest's value, or where it says nothing what the engine takes
    from the image (read from the image's own captured document) or chooses itself."""
    spec = want.spec
    image = image_of(info)["Config"]
    if field == "env":
        return {**env_of(image.get("Env")), **spec["env"]}
    if field == "labels":
        return {**user_labels(image.get("Labels")), **want.resource.labels}
    if field == "mounts":
        return [{k: v for k, v in m.items() if k != "allowSensitive"} for m in spec["mounts"]]
    engine_defaults = {
        "command": image.get("Cmd") or [],
        "entrypoint": image.get("Entrypoint") or [],
        "user": image.get("User") or "",
        "workingDir": image.get("WorkingDir") or "",
        "hostname": info["Id"][:12],  # the engine names the host after the container's short ID
        "healthcheck": None,  # neither image has a healthcheck of its own
        "logging": {"driver": "json-file", "options": {}},  # the test daemon's default driver
        "shmSize": 64 * 1024**2,  # the engine's
        "ipc": "private",  # the test daemon's default-ipc-mode
        "runtime": "runc",  # the test daemon's default runtime
        "stopSignal": runoptions.stop_signal(image.get("StopSignal")),
        "expose": runoptions.exposed(
            [*(image.get("ExposedPorts") or {}), *(f"{p['containerPort']}/{p['protocol']}" for p in spec["ports"])]
        ),
    }
    return engine_defaults[field] if spec[field] is None and field in engine_defaults else spec[field]


@pytest.mark.parametrize("name", names("Container"))
def test_container_fields_read_back_as_the_manifest_said(name: str) -> None:
    """observed_spec turns the inspect document into the manifest's values, field by field."""
    info = doc(f"container.{name}")
    want = desired("Container", name)
    have = observed_spec(info)
    assert set(have) == set(CONTAINER_FIELDS), "a new observed field needs a fixture and a check here"
    wrong = {}
    for field in CONTAINER_FIELDS:
        if field == "networks":
            continue  # below: the engine adds aliases of its own
        expected = expected_container(field, want, info)
        if have[field] != expected:
            wrong[field] = (have[field], expected)
    assert wrong == {}, "observed != manifest (observed, expected)"

    short_id = info["Id"][:12]
    assert [(n["name"], n["ipv4Address"]) for n in have["networks"]] == [
        (n["name"], n["ipv4Address"]) for n in want.spec["networks"]
    ]
    for seen, declared in zip(have["networks"], want.spec["networks"], strict=True):
        assert short_id not in seen["aliases"], "the engine's short-ID alias is not the manifest's"
        assert set(declared["aliases"]) <= set(seen["aliases"]) <= {*declared["aliases"], have["hostname"]}
        assert seen["aliases"] == sorted(seen["aliases"])


def test_container_fixture_covers_the_fields_worth_reading() -> None:
    """The running fixture declares every field that has a non-default reading (so a mis-read shows above)."""
    declared = set(resources()[("Container", "rcfx-web")].spec)
    left = {"image", "entrypoint", "networkMode", "state", "privileged", "labels", *RUN_OPTIONS}
    assert declared >= set(CONTAINER_FIELDS) - left
    stopped = desired("Container", "rcfx-idle")
    assert stopped.spec["state"] == "stopped" and stopped.spec["command"] is None and stopped.spec["hostname"] is None


def test_a_never_started_container_keeps_its_configured_networks() -> None:
    """A stopped container has endpoint configs without IDs: still connected, as its manifest said."""
    info = doc("container.rcfx-idle")
    endpoints = info["NetworkSettings"]["Networks"]
    assert endpoints and not any(e["EndpointID"] for e in endpoints.values())
    want = desired("Container", "rcfx-idle").spec
    assert want["networks"] and observed_spec(info)["networks"] == want["networks"]
    # on a running container the same endpoint config without an EndpointID is a failed connect: not attached
    web = doc("container.rcfx-web")
    endpoints = web["NetworkSettings"]["Networks"]
    lost = sorted(endpoints)[0]
    endpoints[lost]["EndpointID"] = ""
    assert [n["name"] for n in observed_spec(web)["networks"]] == [n for n in sorted(endpoints) if n != lost]


def dockerfile(name: str) -> dict[str, Any]:
    """ENV, LABEL, WORKDIR, USER, ENTRYPOINT and CMD of an Image manifest's Dockerfile, with its build args."""
    want = desired("Image", name)
    args = want.spec["build"]["args"]
    found: dict[str, Any] = {"env": {}, "labels": {}}
    text = (Path(want.spec["build"]["context"]) / want.spec["build"]["dockerfile"]).read_text(encoding="utf-8")
    for line in text.splitlines():
        instruction, _, rest = line.partition(" ")
        for arg, value in args.items():
            rest = rest.replace(f"${arg}", value)
        if instruction in ("ENV", "LABEL"):
            pairs = dict(word.split("=", 1) for word in shlex.split(rest))
            found["env" if instruction == "ENV" else "labels"].update(pairs)
        elif instruction == "WORKDIR":
            found["workingDir"] = rest
        elif instruction == "USER":
            found["user"] = rest
        elif instruction in ("CMD", "ENTRYPOINT"):
            found["command" if instruction == "CMD" else "entrypoint"] = json.loads(rest)
    return found


def test_image_defaults_are_the_dockerfiles() -> None:
    """image_defaults reads what the built image gives every container that leaves a field out."""
    built = dockerfile("rcfx-app")
    defaults = image_defaults(doc("image.rcfx-app"))
    assert built["env"].items() <= defaults.env.items()
    assert set(defaults.env) - set(built["env"]) == {"PATH"}  # the base image's
    assert built["labels"].items() <= defaults.labels.items()
    assert defaults.command == tuple(built["command"])
    assert defaults.entrypoint == tuple(built["entrypoint"])
    assert defaults.working_dir == built["workingDir"]
    assert defaults.user == built["user"]
    assert defaults.healthcheck is None
    assert image_defaults(None) == image_defaults({})


def test_container_observe_finds_both_with_their_facts(ctx: DriverContext) -> None:
    """The driver's observe, from the filtered listing and the inspects, keyed by manifest name."""
    want = [desired("Container", n) for n in names("Container")]
    found = ContainerDriver(ctx).observe(want)
    assert sorted(found) == names("Container")
    for name, observed in found.items():
        info = doc(f"container.{name}")
        image = image_of(info)
        facts = observed.raw
        assert isinstance(facts, ContainerFacts)
        assert (observed.id, observed.labels) == (info["Id"], info["Config"]["Labels"])
        assert observed.spec == observed_spec(info)
        assert (facts.id, facts.engine_name, facts.aside, facts.renamed) == (info["Id"], name, False, False)
        # the reference the manifest names resolves to the very image the container runs
        assert facts.image_id == facts.current_image_id == image["Id"]
        assert facts.defaults == image_defaults(image)
        assert observed.spec["image"] == desired("Container", name).spec["image"]


def test_while_events_flow_observe_inspects_again_only_what_an_event_named(ctx: DriverContext) -> None:
    """The real engine's listing agrees with its inspect answers, so a watch's next pass asks nothing again; an
    event about one container makes it ask about that one (and no image)."""
    engine = ctx.engine
    engine.remembered.connected()
    want = [desired("Container", n) for n in names("Container")]
    first = ContainerDriver(ctx).observe(want)
    assert engine.asked
    engine.asked.clear()
    assert ContainerDriver(ctx).observe(want) == first
    assert engine.asked == []
    named = doc(f"container.{names('Container')[0]}")["Id"]
    engine.remembered.saw({"Type": "container", "Action": "update", "Actor": {"ID": named}})
    assert ContainerDriver(ctx).observe(want) == first
    assert engine.asked == [f"container {named}"]
    engine.asked.clear()
    engine.remembered.disconnected()  # the stream is gone: everything is asked again
    ContainerDriver(ctx).observe(want)
    assert sum(a.startswith("container ") for a in engine.asked) == len(want)


# --- networks ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("source", ["inspect", "listing"])
@pytest.mark.parametrize("name", names("Network"))
def test_network_fields_read_back_as_the_manifest_said(name: str, source: str, ctx: DriverContext) -> None:
    """From the inspect document and from the filtered listing alike (observe builds owned networks from it)."""
    want = desired("Network", name)
    driver = NetworkDriver(ctx)
    if source == "inspect":
        info = doc(f"network.{name}")
        observed = driver._observed(info)
    else:
        observed = driver.observe([want])[name]
        info = next(n for n in doc("networks.list") if n["Name"] == name)
    assert (observed.name, observed.id, observed.labels) == (name, info["Id"], info["Labels"])
    have = observed.spec
    assert set(have) == {*want.spec, "labels"}
    for field in ("driver", "internal", "attachable", "enableIPv6", "options"):
        assert have[field] == want.spec[field], field
    assert have["labels"] == want.resource.labels
    assert have["ipam"]["driver"] == want.spec["ipam"]["driver"]
    pools = {p["subnet"]: p for p in have["ipam"]["config"]}
    assert sorted(pools) == sorted(p["subnet"] for p in want.spec["ipam"]["config"])
    for pool in want.spec["ipam"]["config"]:
        got = pools[pool["subnet"]]
        assert pool.items() <= got.items()
        assert set(got) - set(pool) <= {"gateway"}  # the engine may report the gateway it chose


def test_network_fixtures_cover_a_full_pool_and_an_internal_network() -> None:
    specs = [desired("Network", n).spec for n in names("Network")]
    assert any(s["internal"] for s in specs)
    assert any(set(p) == {"subnet", "gateway", "ipRange"} for s in specs for p in s["ipam"]["config"])
    assert any(s["options"] for s in specs)


# --- volumes -----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("source", ["inspect", "listing"])
@pytest.mark.parametrize("name", names("Volume"))
def test_volume_fields_read_back_as_the_manifest_said(name: str, source: str, ctx: DriverContext) -> None:
    want = desired("Volume", name)
    driver = VolumeDriver(ctx)
    if source == "inspect":
        info = doc(f"volume.{name}")
        observed = driver._observed(info)
    else:
        observed = driver.observe([want])[name]
        info = next(v for v in doc("volumes.list")["Volumes"] if v["Name"] == name)
    assert (observed.name, observed.id, observed.labels) == (name, name, info["Labels"])
    assert set(observed.spec) == {"driver", "driverOpts", "labels", "reclaimPolicy"}
    assert observed.spec["driver"] == want.spec["driver"]
    assert observed.spec["driverOpts"] == want.spec["driverOpts"]
    assert observed.spec["labels"] == want.resource.labels
    # the label the volume was created with records the manifest's policy; unrecorded, a Delete counts as Retain
    assert info["Labels"][LABEL_RECLAIM] == want.spec["reclaimPolicy"] == DELETE
    assert observed.spec["reclaimPolicy"] == RETAIN


def test_volume_reclaim_policy_is_the_record_of_this_very_volume(ctx: DriverContext) -> None:
    """A recorded policy applies only while the volume's creation time matches the record's."""
    name = names("Volume")[0]
    info = doc(f"volume.{name}")
    driver = VolumeDriver(ctx)
    driver._records = {name: {"policy": DELETE, "createdAt": info["CreatedAt"]}}
    assert driver._observed(info).spec["reclaimPolicy"] == DELETE
    driver._records = {name: {"policy": DELETE, "createdAt": "1999-01-01T00:00:00Z"}}
    assert driver._observed(info).spec["reclaimPolicy"] == RETAIN


# --- images ------------------------------------------------------------------------------------------------------


def test_built_image_is_observed_as_ours_and_up_to_date(ctx: DriverContext) -> None:
    """The built image's labels read back as this project's build of these very inputs and labels."""
    name = names("Image")[0]
    want = desired("Image", name)
    image = doc(f"image.{name}")
    observed = ImageDriver(ctx).observe([want])[name]
    assert (observed.name, observed.id) == (name, image["Id"])
    assert observed.spec == {
        "reference": want.spec["reference"],
        "owner": BUILT,
        "localDigest": None,  # built here and never pushed
        "remoteDigest": None,
        "registryError": None,
        "previous": {},
    }
    labels = image["Config"]["Labels"]
    assert observed.labels == labels and observed.raw["imageLabels"] == labels
    assert label_changes(want, labels) == []
    stamped = stamped_inputs(labels)
    assert stamped is not None and set(stamped) == set(INPUT_FIELDS)
    inputs = want.spec["build"]["inputs"]
    # the context's hash covers permission bits, which follow the umask of the checkout: compare the rest
    assert {k: stamped[k] for k in ("dockerfile", "args", "target")} == {
        k: inputs[k] for k in ("dockerfile", "args", "target")
    }
    assert {c.path for c in input_changes(want, labels)} <= {"build.context"}


def test_an_image_whose_manifest_is_gone_is_found_by_its_labels(ctx: DriverContext) -> None:
    """From the filtered image listing alone: the tag this project built, under its manifest's name."""
    name = names("Image")[0]
    want = desired("Image", name)
    observed = ImageDriver(ctx).observe([])[name]
    image = doc(f"image.{name}")
    reference = want.spec["reference"]
    assert observed.spec == {"references": {reference: BUILT}, "ids": {reference: image["Id"]}}
    assert observed.id == image["Id"]


def test_repo_digest_is_the_one_of_the_references_repository() -> None:
    """The pulled base image's digest is found by its repository (the built image has none: never pushed)."""
    base = desired("Container", "rcfx-idle").spec["image"]
    image = doc("image.busybox-1.35")
    ref = parse_reference(base)
    digests = [d.partition("@")[2] for d in image["RepoDigests"] if d.partition("@")[0] == ref.repository]
    assert len(digests) == 1
    assert repo_digest(image, ref) == digests[0]
    assert repo_digest(image, parse_reference("127.0.0.1:5000/elsewhere/busybox:1.35")) is None
    assert repo_digest(doc("image.rcfx-app"), parse_reference(desired("Image", "rcfx-app").spec["reference"])) is None


def test_the_listing_filters_are_the_drivers() -> None:
    """The fake engine answers the label filter the drivers send, and nothing of another project."""
    engine = FixtureEngine()
    assert len(engine.containers(all=True, filters=project_filter(PROJECT, "Container"))) == len(names("Container"))
    assert engine.containers(all=True, filters=project_filter("someone-else", "Container")) == []
