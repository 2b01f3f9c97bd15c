"""The drivers' `inputs` hook: which files besides the manifest a document is read from (what watch watches)."""

from __future__ import annotations

from pathlib import Path

from reconciler.contract import BaseDriver, DriverContext
from reconciler.drivers.container.driver import ContainerDriver
from reconciler.drivers.image.driver import ImageDriver
from reconciler.model import Resource, Source


def resource(kind: str, spec: dict, tmp_path: Path) -> Resource:
    return Resource(kind, "x", spec, {}, Source("app/x.yaml", 1, tmp_path / "app" / "x.yaml"))


def ctx(tmp_path: Path) -> DriverContext:
    return DriverContext("p", tmp_path)


def test_container_inputs_are_env_files_and_read_only_bind_sources(tmp_path: Path) -> None:
    spec = {
        "image": "busybox",
        "envFiles": ["./web.env", "/etc/app/common.env", "../shared/x.env"],
        "mounts": [
            {"type": "bind", "source": "./conf", "target": "/etc/app", "readOnly": True},
            {"type": "bind", "source": "/srv/data", "target": "/data"},  # writable data: not watched
            {"type": "volume", "source": "v", "target": "/v", "readOnly": True},
        ],
    }
    found = list(ContainerDriver(ctx(tmp_path)).inputs(resource("Container", spec, tmp_path)))
    assert found == [
        tmp_path / "app" / "web.env",
        Path("/etc/app/common.env"),
        tmp_path / "shared" / "x.env",
        tmp_path / "app" / "conf",
    ]


def test_image_inputs_are_the_build_context_and_an_outside_dockerfile(tmp_path: Path) -> None:
    driver = ImageDriver(ctx(tmp_path))
    built = resource("Image", {"reference": "r/a:1", "build": {"context": "./web"}}, tmp_path)
    assert list(driver.inputs(built)) == [tmp_path / "app" / "web"]
    outside = resource(
        "Image", {"reference": "r/a:1", "build": {"context": "./web", "dockerfile": "../Dockerfile.web"}}, tmp_path
    )
    assert list(driver.inputs(outside)) == [tmp_path / "app" / "web", tmp_path / "app" / "Dockerfile.web"]
    assert list(driver.inputs(resource("Image", {"reference": "r/a:1"}, tmp_path))) == []


def test_inputs_default_to_none(tmp_path: Path) -> None:
    assert list(BaseDriver(ctx(tmp_path)).inputs(resource("Volume", {}, tmp_path))) == []


def test_swarm_inputs_are_secret_files_and_service_env_files(tmp_path: Path) -> None:
    from reconciler.drivers.swarm.driver import ConfigDriver, SecretDriver, ServiceDriver

    for driver in (SecretDriver(ctx(tmp_path)), ConfigDriver(ctx(tmp_path))):
        found = list(driver.inputs(resource(driver.kind, {"file": "./secrets/db.txt"}, tmp_path)))
        assert found == [tmp_path / "app" / "secrets" / "db.txt"]
    service = resource("Service", {"image": "busybox", "envFiles": ["web.env"]}, tmp_path)
    assert list(ServiceDriver(ctx(tmp_path)).inputs(service)) == [tmp_path / "app" / "web.env"]
