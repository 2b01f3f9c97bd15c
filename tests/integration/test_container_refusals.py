"""Bad container inputs are refused by validate and apply (exit 1) and nothing at all changes on the host."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from tests.helpers import doc

pytestmark = pytest.mark.engine

SUBNET = "10.213.7.0/24"


def bad_specs(image: str, p: str) -> dict[str, tuple[list[dict[str, Any]], str]]:
    """case -> (container specs, a fragment the error message must contain)."""
    net = f"{p}-net"
    return {
        "sensitive-bind": (
            [{"image": image, "mounts": [{"type": "bind", "source": "/etc", "target": "/host-etc"}]}],
            "allowSensitive",
        ),
        "privileged": ([{"image": image, "privileged": True}], "allowPrivileged"),
        "missing-bind-source": (
            [{"image": image, "mounts": [{"type": "bind", "source": "./nowhere", "target": "/x"}]}],
            "does not exist",
        ),
        "undeclared-volume": (
            [{"image": image, "mounts": [{"type": "volume", "source": f"{p}-nope", "target": "/x"}]}],
            "undeclared Volume",
        ),
        "ip-outside-subnet": (
            [{"image": image, "networks": [{"name": net, "ipv4Address": "10.213.8.5"}]}],
            "outside the subnets",
        ),
        "duplicate-host-port": (
            [
                {"image": image, "ports": [{"containerPort": 80, "hostPort": 18080}]},
                {"image": image, "ports": [{"containerPort": 80, "hostPort": 18080, "hostIP": "127.0.0.1"}]},
            ],
            "also published by",
        ),
    }


@pytest.mark.parametrize(
    "case",
    [
        "sensitive-bind",
        "privileged",
        "missing-bind-source",
        "undeclared-volume",
        "ip-outside-subnet",
        "duplicate-host-port",
    ],
)
def test_bad_input_is_refused_and_changes_nothing(
    case: str, reconcile: Any, tmp_manifests: Any, project_name: str, base_image: str, api: Any
) -> None:
    """validate and apply exit 1 naming the problem; no container, network or volume of the project appears."""
    specs, fragment = bad_specs(base_image, project_name)[case]
    docs = [
        doc("Network", f"{project_name}-net", {"ipam": {"config": [{"subnet": SUBNET}]}}),
        doc("Volume", f"{project_name}-data", {}),
        *(doc("Container", f"{project_name}-c{i}", spec) for i, spec in enumerate(specs)),
    ]
    path = tmp_manifests("bad.yaml", yaml.safe_dump_all(docs, sort_keys=False))
    for command in ("validate", "apply"):
        proc = reconcile(command, path.parent)
        assert proc.returncode == 1, (command, proc.stdout, proc.stderr)
        assert fragment in proc.stderr, proc.stderr
        assert "bad.yaml:" in proc.stderr
    label = {"label": [f"io.reconciler.project={project_name}"]}
    assert api.containers(all=True, filters=label) == []
    assert api.networks(filters=label) == []
    assert (api.volumes(filters=label).get("Volumes") or []) == []
    assert not (path.parent / "nowhere").exists()
