"""Container checks beyond the schema: sensitive binds, opt-ins, bind sources, static IPs, host ports, references."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from reconciler.contract import BaseDriver, DriverContext
from reconciler.core.catalog import build_catalog
from reconciler.drivers.container.driver import ContainerDriver
from reconciler.drivers.engine.session import DockerEngine, EngineOptions
from reconciler.drivers.network.driver import NetworkDriver
from reconciler.drivers.volume.driver import VolumeDriver
from reconciler.model import Resource, Source

IMAGE = "127.0.0.1:5000/reconciler/busybox:1.35"


def res(kind: str, name: str, spec: dict, directory: Path) -> Resource:
    return Resource(kind, name, spec, {}, Source(f"{name}.yaml", 1, directory / f"{name}.yaml"), {"spec": 4})


def problems(resources: list[Resource], docker_host: str | None = None) -> list[str]:
    engine = DockerEngine(EngineOptions(docker_host=docker_host)) if docker_host else None
    ctx = DriverContext("p", Path("."), engine_handle=engine)
    drivers = {"Container": ContainerDriver(ctx), "Network": NetworkDriver(ctx), "Volume": VolumeDriver(ctx)}
    _, found = build_catalog(resources, drivers)
    return [f"{p.subject}: {p.field}: {p.message}" for p in found]


def bind(source: str, **extra: object) -> dict:
    return {"image": IMAGE, "mounts": [{"type": "bind", "source": source, "target": "/x", **extra}]}


@pytest.mark.parametrize("source", ["/", "/etc", "/etc/ssl", "/proc", "/var", "/var/lib/docker/volumes", "/root"])
def test_sensitive_bind_needs_opt_in(tmp_path: Path, source: str) -> None:
    """Binding a sensitive host path (or a parent of one) is refused without allowSensitive, allowed with it."""
    found = problems([res("Container", "web", bind(source), tmp_path)])
    assert any("sensitive host path" in p and "allowSensitive" in p for p in found), found
    assert not any(
        "sensitive" in p for p in problems([res("Container", "web", bind(source, allowSensitive=True), tmp_path)])
    )


def test_symlink_to_sensitive_path_is_refused(tmp_path: Path) -> None:
    """A harmless-looking bind source that resolves into /etc is sensitive too."""
    os.symlink("/etc", tmp_path / "innocent")
    found = problems([res("Container", "web", bind("./innocent"), tmp_path)])
    assert any("/etc" in p for p in found), found


def test_engine_socket_of_the_managed_engine_is_sensitive(tmp_path: Path) -> None:
    """The socket named by DOCKER_HOST is as sensitive as the default one."""
    sock = tmp_path / "engine.sock"
    sock.write_text("")
    found = problems([res("Container", "web", bind(str(sock)), tmp_path)], docker_host=f"unix://{sock}")
    assert any("sensitive" in p for p in found), found


def test_missing_bind_source_is_an_error(tmp_path: Path) -> None:
    """A bind source that does not exist is reported, never created."""
    found = problems([res("Container", "web", bind("./absent"), tmp_path)])
    assert any("does not exist" in p for p in found), found
    assert not (tmp_path / "absent").exists()


def test_privileged_needs_opt_in(tmp_path: Path) -> None:
    """privileged: true without allowPrivileged is refused."""
    found = problems([res("Container", "web", {"image": IMAGE, "privileged": True}, tmp_path)])
    assert any("spec.privileged" in p for p in found), found
    ok = {"image": IMAGE, "privileged": True, "allowPrivileged": True}
    assert problems([res("Container", "web", ok, tmp_path)]) == []


def test_npipe_mount_is_refused(tmp_path: Path) -> None:
    """npipe mounts are a clear error on Linux."""
    spec = {"image": IMAGE, "mounts": [{"type": "npipe", "source": r"\\.\pipe\x", "target": "/x"}]}
    found = problems([res("Container", "web", spec, tmp_path)])
    assert any("npipe" in p for p in found), found


def test_undeclared_references_are_errors(tmp_path: Path) -> None:
    """Undeclared networks, volumes and dependsOn containers are named."""
    spec = {
        "image": IMAGE,
        "networks": [{"name": "backend"}],
        "mounts": [{"type": "volume", "source": "data", "target": "/d"}],
        "dependsOn": [{"name": "db"}],
    }
    found = problems([res("Container", "web", spec, tmp_path)])
    assert sorted(found) == [
        "Container/web: spec.dependsOn[0].name: refers to undeclared Container 'db'",
        "Container/web: spec.mounts[0].source: refers to undeclared Volume 'data'",
        "Container/web: spec.networks[0].name: refers to undeclared Network 'backend'",
    ]


def test_static_ip_must_be_inside_the_subnet(tmp_path: Path) -> None:
    """A static address outside the network's subnet, or on a network without one, is refused."""
    net = res("Network", "backend", {"ipam": {"config": [{"subnet": "10.10.0.0/24"}]}}, tmp_path)
    bare = res("Network", "plain", {}, tmp_path)
    outside = {"image": IMAGE, "networks": [{"name": "backend", "ipv4Address": "10.10.1.5"}]}
    nosubnet = {"image": IMAGE, "networks": [{"name": "plain", "ipv4Address": "10.10.0.5"}]}
    inside = {"image": IMAGE, "networks": [{"name": "backend", "ipv4Address": "10.10.0.5"}]}
    found = problems([net, bare, res("Container", "a1", outside, tmp_path), res("Container", "a2", nosubnet, tmp_path)])
    assert any("a1" in p and "outside the subnets" in p for p in found), found
    assert any("a2" in p and "needs a subnet" in p for p in found), found
    assert problems([net, res("Container", "a3", inside, tmp_path)]) == []


@pytest.mark.parametrize(
    ("ip_a", "ip_b", "conflict"),
    [("0.0.0.0", "127.0.0.1", True), ("127.0.0.1", "127.0.0.1", True), ("127.0.0.1", "127.0.0.2", False)],
)
def test_duplicate_host_port_is_reported_on_both(tmp_path: Path, ip_a: str, ip_b: str, conflict: bool) -> None:
    """Two containers publishing the same host address+port+protocol (0.0.0.0 meets every address) both fail."""
    a = {"image": IMAGE, "ports": [{"containerPort": 80, "hostPort": 8080, "hostIP": ip_a}]}
    b = {"image": IMAGE, "ports": [{"containerPort": 81, "hostPort": 8080, "hostIP": ip_b}]}
    found = problems([res("Container", "aa", a, tmp_path), res("Container", "bb", b, tmp_path)])
    named = {p.split(":")[0] for p in found if "also published" in p}
    assert named == ({"Container/aa", "Container/bb"} if conflict else set())


def test_ports_with_host_network_are_refused(tmp_path: Path) -> None:
    """Publishing ports makes no sense with networkMode host."""
    spec = {"image": IMAGE, "networkMode": "host", "ports": [{"containerPort": 80, "hostPort": 80}]}
    found = problems([res("Container", "web", spec, tmp_path)])
    assert any("networkMode: host" in p for p in found), found


def test_image_manifest_is_a_dependency(tmp_path: Path) -> None:
    """A declared Image whose reference is the container's image becomes a (non-required) dependency."""
    ctx = DriverContext("p", Path("."))
    driver = ContainerDriver(ctx)

    class ImageStub(BaseDriver):
        kind, rank = "Image", 0

        def normalize(self, r: Resource):  # type: ignore[no-untyped-def]
            from reconciler.model import Desired

            return Desired(r, dict(r.spec), "h")

        def references(self, d):  # type: ignore[no-untyped-def]
            return ()

        def check(self, d, c):  # type: ignore[no-untyped-def]
            return ()

    image = res("Image", "base", {"reference": "127.0.0.1:5000/reconciler/busybox:1.35"}, tmp_path)
    web = res("Container", "web", {"image": IMAGE}, tmp_path)
    catalog, found = build_catalog([image, web], {"Container": driver, "Image": ImageStub(ctx)})
    assert found == []
    assert catalog.dependencies(("Container", "web")) == {("Image", "base")}


@pytest.mark.parametrize("tag", [":1.35", ""])
def test_a_digest_pinned_image_links_to_its_image(tmp_path: Path, tag: str) -> None:
    """`repo:tag@sha256:...` on both sides (the real Image driver): the Image spelled it `repo@sha256:...` and the
    Container kept the tag, so the container did not depend on its Image (issue 21)."""
    from reconciler.drivers.image.driver import ImageDriver

    ctx = DriverContext("p", Path("."))
    pinned = f"127.0.0.1:5000/reconciler/busybox{tag}@sha256:" + "a" * 64
    image = res("Image", "base", {"reference": pinned}, tmp_path)
    web = res("Container", "web", {"image": pinned}, tmp_path)
    catalog, found = build_catalog([image, web], {"Container": ContainerDriver(ctx), "Image": ImageDriver(ctx)})
    assert found == []
    assert catalog.dependencies(("Container", "web")) == {("Image", "base")}


def test_npipe_mount_is_refused_with_a_clear_message(tmp_path: Path) -> None:
    """An npipe mount fails schema validation saying npipe is Windows-only (not a bare enum listing)."""
    from reconciler.core.manifests import load_directory

    (tmp_path / "c.yaml").write_text(
        "apiVersion: reconciler/v1\nkind: Container\nmetadata: {name: np}\nspec:\n  image: busybox\n"
        "  mounts:\n    - {type: npipe, source: '//./pipe/docker_engine', target: '//./pipe/docker_engine'}\n"
    )
    resources, problems = load_directory(tmp_path)
    assert resources == []
    assert [str(p) for p in problems] == [
        "c.yaml:7: Container/np: spec.mounts[0].type: invalid value: npipe mounts exist only on Windows engines; "
        "this is a Linux engine (use a bind mount of a unix socket instead)"
    ]


@pytest.mark.parametrize("key", ["ipc", "pid"])
def test_a_shared_ipc_or_pid_namespace_is_a_reference(tmp_path: Path, key: str) -> None:
    """`container:NAME` orders the sharer after NAME; an undeclared NAME or the container itself is refused;
    no allowPrivileged is asked (a container of the project is not the host)."""
    db = res("Container", "db", {"image": IMAGE, "ipc": "shareable"}, tmp_path)
    web = res("Container", "web", {"image": IMAGE, key: "container:db"}, tmp_path)
    ctx = DriverContext("p", Path("."))
    catalog, found = build_catalog([db, web], {"Container": ContainerDriver(ctx)})
    assert found == []
    assert ("Container", "db") in catalog.dependencies(("Container", "web"))
    dangling = problems([res("Container", "web", {"image": IMAGE, key: "container:gone"}, tmp_path)])
    assert dangling == [f"Container/web: spec.{key}: refers to undeclared Container 'gone'"]
    own = problems([res("Container", "web", {"image": IMAGE, key: "container:web"}, tmp_path)])
    assert f"Container/web: spec.{key}: a container cannot share its own {key.upper()} namespace" in own, own


@pytest.mark.parametrize("mode", [None, "private", "none"])
def test_joining_an_ipc_namespace_needs_a_shareable_one(tmp_path: Path, mode: str | None) -> None:
    """The engine refuses to join a non-shareable IPC namespace: refused at validation, naming the field."""
    db = res("Container", "db", {"image": IMAGE, **({"ipc": mode} if mode else {})}, tmp_path)
    found = problems([db, res("Container", "web", {"image": IMAGE, "ipc": "container:db"}, tmp_path)])
    assert len(found) == 1 and found[0].startswith("Container/web: spec.ipc: container db does not share"), found
    assert "ipc: shareable" in found[0]
