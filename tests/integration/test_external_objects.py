"""External volumes and networks (`external: true`) on the real engine: used by the project's containers, never
created, changed, labelled or removed (not even when their manifests go); a missing one stops the plan and the
apply with one line naming file:line, and nothing is created."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import pytest
from docker.errors import NotFound

from tests.helpers import SLEEPER, apply_ok, doc, in_sync, write

pytestmark = pytest.mark.engine


@pytest.fixture
def outside(api: Any, project_name: str) -> Iterator[tuple[str, str]]:
    """A volume and a network made outside any project (labelled only `made-by: hand`); removed afterwards."""
    volume, network = f"{project_name}-ext-vol", f"{project_name}-ext-net"
    api.create_volume(volume, labels={"made-by": "hand"})
    api.create_network(network, labels={"made-by": "hand"})
    yield volume, network
    for remove, name in ((api.remove_volume, volume), (api.remove_network, network)):
        with contextlib.suppress(NotFound):
            remove(name)


def manifests(p: str, volume: str, network: str, image: str) -> list[dict[str, Any]]:
    return [
        doc("Volume", volume, {"external": True}),
        doc("Network", network, {"external": True}),
        doc(
            "Container",
            f"{p}-app",
            {
                "image": image,
                "command": ["sh", "-c", SLEEPER],
                "stopTimeout": 1,
                "mounts": [{"type": "volume", "source": volume, "target": "/data"}],
                "networks": [{"name": network, "aliases": ["app"]}],
            },
        ),
    ]


def test_external_objects_are_used_and_never_touched(
    reconcile: Any, tmp_manifests: Any, project_name: str, base_image: str, api: Any, outside: tuple[str, str]
) -> None:
    volume, network = outside
    p = project_name
    before = (api.inspect_volume(volume), api.inspect_network(network))
    directory = write(tmp_manifests, manifests(p, volume, network, base_image))
    apply_ok(reconcile, directory)
    in_sync(reconcile, directory)

    info = api.inspect_container(f"{p}-app")
    assert [m["Name"] for m in info["Mounts"] if m["Type"] == "volume"] == [volume]
    assert "app" in info["NetworkSettings"]["Networks"][network]["Aliases"]
    assert api.inspect_volume(volume)["Labels"] == {"made-by": "hand"}, "never labelled (adopted)"
    assert api.inspect_network(network)["Id"] == before[1]["Id"]
    assert api.inspect_network(network)["Labels"] == {"made-by": "hand"}

    # the manifests gone: the container is pruned, the external objects stay as they were
    write(tmp_manifests, [doc("Container", f"{p}-other", {"image": base_image, "state": "stopped"})])
    apply_ok(reconcile, directory)
    assert api.inspect_volume(volume)["Labels"] == {"made-by": "hand"}
    assert api.inspect_network(network)["Id"] == before[1]["Id"]


def test_a_missing_external_object_stops_the_plan_and_the_apply(
    reconcile: Any, tmp_manifests: Any, project_name: str, base_image: str, api: Any
) -> None:
    p = project_name
    volume, network = f"{p}-nowhere-vol", f"{p}-nowhere-net"
    directory = write(tmp_manifests, manifests(p, volume, network, base_image))
    for command in ("plan", "apply"):
        proc = reconcile(command, directory)
        out = proc.stdout + proc.stderr
        assert proc.returncode == 1, out
        # the first missing one found stops the plan (networks are diffed before volumes)
        assert f"m.yaml:8: Network/{network}: spec.external: external network '{network}' does not exist" in out, out
    assert not api.containers(all=True, filters={"name": f"^/{p}-app$"}), "nothing is created"
    assert not api.networks(names=[network]) and not api.volumes(filters={"name": volume}).get("Volumes")


def test_external_takes_no_other_field(reconcile: Any, tmp_manifests: Any) -> None:
    docs = [
        doc("Volume", "ext-vol", {"external": True, "driver": "local"}),
        {**doc("Network", "ext-net", {"external": True}), "metadata": {"name": "ext-net", "labels": {"a": "b"}}},
    ]
    proc = reconcile("validate", write(tmp_manifests, docs))
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1
    assert "Volume/ext-vol: spec.driver: an external volume is not reconcile's to configure" in out, out
    assert "Network/ext-net: metadata.labels: an external network is never labelled by reconcile" in out, out
