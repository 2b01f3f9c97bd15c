"""Every Container field round-trips through the real engine: created from the manifest, read back, and compared
field by field (as after a normalizer upgrade) without a single spurious change."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
import yaml

from reconciler.core.project import ProjectRunner
from reconciler.drivers.container.diff import diff_container
from reconciler.drivers.engine.client import connect
from reconciler.model import Action
from tests.helpers import SLEEPER, apply_ok, doc, free_port, in_sync

pytestmark = pytest.mark.engine


def every_field(p: str, image: str, port: int, subnet: str) -> list[dict[str, Any]]:
    net = f"{p}-net"
    prefix = subnet.rsplit(".", 1)[0]
    return [
        doc("Network", net, {"ipam": {"config": [{"subnet": subnet}]}}),
        doc("Volume", f"{p}-data", {}),
        doc(
            "Container",
            f"{p}-full",
            {
                "image": image.replace("127.0.0.1:5000/", "127.0.0.1:5000/"),
                "entrypoint": ["sh", "-c"],
                "command": [SLEEPER],
                "env": {"A": "1", "PATH": "/bin:/usr/bin"},
                "sensitiveEnv": ["A"],
                "ports": [
                    {"containerPort": 80, "hostPort": port, "hostIP": "127.0.0.1"},
                    {"containerPort": 53, "protocol": "udp"},
                ],
                "mounts": [
                    {"type": "volume", "source": f"{p}-data", "target": "/data", "readOnly": True},
                    {"type": "bind", "source": "./conf", "target": "/conf", "readOnly": True},
                    {"type": "tmpfs", "target": "/tmp", "size": "2m", "mode": "1770"},
                ],
                "networks": [{"name": net, "aliases": ["full", "everything"], "ipv4Address": f"{prefix}.20"}],
                "restartPolicy": {"name": "on-failure", "maximumRetryCount": 2},
                "healthcheck": {"test": "true", "interval": "2s", "timeout": "1s", "startPeriod": "1s", "retries": 2},
                "resources": {
                    "memory": "64m",
                    "memorySwap": "96m",
                    "memoryReservation": "32m",
                    "cpus": 0.5,
                    "cpuShares": 512,
                    "cpuset": "0",
                    "pidsLimit": 50,
                },
                "user": "65534:65534",
                "workingDir": "/data",
                "hostname": "full-host",
                "capAdd": ["net_admin", "CAP_SYS_TIME"],
                "capDrop": ["MKNOD"],
                "readOnlyRootfs": True,
                "stopTimeout": 1,
            },
        ),
        doc(
            "Container",
            f"{p}-hostnet",
            {"image": image, "command": ["sh", "-c", SLEEPER], "networkMode": "host", "stopTimeout": 1},
        ),
        doc(
            "Container",
            f"{p}-nonet",
            {"image": image, "command": ["sh", "-c", SLEEPER], "networkMode": "none", "stopTimeout": 1},
        ),
        doc(
            "Container",
            f"{p}-sidecar",
            {
                "image": image,
                "command": ["sh", "-c", SLEEPER],
                "networkMode": f"container:{p}-full",
                "healthcheck": {"disable": True},
                "state": "stopped",
                "stopTimeout": 1,
            },
        ),
    ]


def test_every_field_round_trips_without_spurious_changes(
    reconcile: Any, tmp_manifests: Any, project_name: str, base_image: str, engine_host: str, free_subnet: Any
) -> None:
    """Apply every field; the plan is in sync by hash, and a full field comparison also finds nothing."""
    tmp_manifests("conf/app.conf", "x=1\n")
    path = tmp_manifests(
        "all.yaml",
        yaml.safe_dump_all(every_field(project_name, base_image, free_port(), free_subnet()), sort_keys=False),
    )
    directory: Path = path.parent
    apply_ok(reconcile, directory)
    in_sync(reconcile, directory)

    runner = ProjectRunner(project_name, directory, engine_factory=lambda: connect(engine_host))
    loaded = runner.load_valid()
    driver = runner.drivers["Container"]
    containers = loaded.catalog.of_kind("Container")
    observed = driver.observe(containers)
    for desired in containers:
        older = dataclasses.replace(desired, spec_hash="v0-from-an-older-normalizer")
        change = diff_container(older, observed[desired.name])
        assert change.action is Action.NONE, (desired.name, change.fields)
