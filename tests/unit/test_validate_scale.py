"""Validation stays linear and light: no per-object scan of the catalog (counted, not timed), and `validate`
imports no engine library."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from reconciler.core.catalog import Catalog
from reconciler.core.project import ProjectRunner

IMAGE = "127.0.0.1:5000/reconciler/busybox"
NETWORKS = 20
IMAGES = 20
CONTAINERS = 1960  # 2,000 objects with the networks and images


def write_tree(root: Path) -> None:
    """Networks with subnets, Images, and Containers that each publish a port, join a network with a static
    address and use one of the Images: every cross-object check has work to do."""
    docs = []
    for n in range(NETWORKS):
        docs.append(
            f"apiVersion: reconciler/v1\nkind: Network\nmetadata: {{name: net{n}}}\n"
            f"spec:\n  ipam:\n    config:\n      - {{subnet: 10.{n}.0.0/16}}\n"
        )
    for i in range(IMAGES):
        docs.append(
            f"apiVersion: reconciler/v1\nkind: Image\nmetadata: {{name: img{i}}}\nspec: {{reference: {IMAGE}:{i}}}\n"
        )
    (root / "base.yaml").write_text("---\n".join(docs))
    for c in range(CONTAINERS):
        n = c % NETWORKS
        (root / f"c{c}.yaml").write_text(
            f"apiVersion: reconciler/v1\nkind: Container\nmetadata: {{name: c{c}}}\nspec:\n"
            f"  image: {IMAGE}:{c % IMAGES}\n"
            f"  env: {{INDEX: '{c}'}}\n"
            f"  ports: [{{containerPort: 80, hostPort: {10000 + c}}}]\n"
            f"  networks: [{{name: net{n}, ipv4Address: 10.{n}.{c // 250}.{c % 250 + 2}}}]\n"
            f"  resources: {{memory: 64m}}\n"
            f"  restartPolicy: {{name: unless-stopped}}\n"
        )


def test_validating_2000_objects_scans_the_catalog_a_constant_number_of_times(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The objects handed out by `Catalog.of_kind` over a whole validation are a small multiple of the number of
    objects: a check that scans every container for every container (published ports), every image for every
    container (image dependencies) or every network for every network (subnet overlaps) would hand out millions."""
    write_tree(tmp_path)
    handed_out = [0, 0]
    original = Catalog.of_kind

    def counting(self: Catalog, kind: str) -> list:
        found = original(self, kind)
        handed_out[0] += len(found)
        handed_out[1] += 1
        return found

    monkeypatch.setattr(Catalog, "of_kind", counting)
    loaded = ProjectRunner(project="scale", manifest_dir=tmp_path).load()
    total = NETWORKS + IMAGES + CONTAINERS
    assert loaded.problems == []
    assert len(loaded.resources) == total
    assert handed_out[0] <= 3 * total, handed_out


def test_the_cross_object_checks_still_find_clashes(tmp_path: Path) -> None:
    """The indexes find what the scans found: a host port published twice, overlapping subnets, one image
    reference declared twice."""
    write_tree(tmp_path)
    (tmp_path / "dup.yaml").write_text(
        "apiVersion: reconciler/v1\nkind: Container\nmetadata: {name: dup}\nspec:\n"
        f"  image: {IMAGE}:1\n  ports: [{{containerPort: 80, hostPort: 10007, hostIP: 127.0.0.1}}]\n"
        "---\napiVersion: reconciler/v1\nkind: Network\nmetadata: {name: wide}\n"
        "spec:\n  ipam:\n    config:\n      - {subnet: 10.0.0.0/8}\n"
        f"---\napiVersion: reconciler/v1\nkind: Image\nmetadata: {{name: again}}\nspec: {{reference: {IMAGE}:3}}\n"
    )
    problems = [str(p) for p in ProjectRunner(project="scale", manifest_dir=tmp_path).load().problems]
    assert (
        "dup.yaml:6: Container/dup: spec.ports[0].hostPort: host port 127.0.0.1:10007/tcp is also published by "
        "Container/c7 (c7.yaml, spec.ports[0])" in problems
    )
    assert (
        "c7.yaml:7: Container/c7: spec.ports[0].hostPort: host port 0.0.0.0:10007/tcp is also published by "
        "Container/dup (dup.yaml, spec.ports[0])" in problems
    )
    twice = [p.split(": ", 1)[1] for p in problems if "is also declared by" in p]
    assert twice == [
        f"Image/img3: spec.reference: {IMAGE}:3 is also declared by Image/again",
        f"Image/again: spec.reference: {IMAGE}:3 is also declared by Image/img3",
    ]
    wide = [p for p in problems if p.startswith("dup.yaml:") and "Network/wide" in p]
    assert len(wide) == NETWORKS and "overlaps 10.0.0.0/16 of Network/net0" in wide[0]
    assert sum("overlaps 10.0.0.0/8 of Network/wide" in p for p in problems) == NETWORKS


def test_validate_imports_no_engine_library(tmp_path: Path) -> None:
    """`reconcile validate` touches no engine: it must not import the Docker SDK, requests, iptables or
    netlink bindings (they are imported on first use by the drivers that talk to the engine)."""
    write_tree(tmp_path)
    (tmp_path / "fw.yaml").write_text(
        "apiVersion: reconciler/v1\nkind: FirewallAllowList\nmetadata: {name: office}\n"
        "spec: {interfaces: [eth0], sources: [192.168.1.0/24]}\n"
        "---\napiVersion: reconciler/v1\nkind: Volume\nmetadata: {name: data}\n"
    )
    code = (
        "import json, sys\n"
        "from reconciler.cli.main import main\n"
        f"rc = main(['validate', {str(tmp_path)!r}])\n"
        "print(json.dumps([rc, sorted({m.split('.')[0] for m in sys.modules})]))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    rc, modules = json.loads(proc.stdout.splitlines()[-1])
    assert rc == 0, proc.stderr
    assert not {"docker", "requests", "urllib3", "iptc", "pyroute2", "paramiko"} & set(modules)


def test_the_engine_client_leaves_ssh_and_pretty_tracebacks_out_until_needed() -> None:
    """A client of a unix engine imports neither paramiko (docker-py's ssh transport) nor rich (structlog's pretty
    tracebacks); an ssh engine's client still gets the transport."""
    code = (
        "import json, sys\n"
        "import reconciler.cli.main\n"
        "from reconciler.drivers.engine import lazy\n"
        "lazy.docker.APIClient(base_url='unix:///nonexistent.sock', version='1.41')\n"
        "before = sorted({m.split('.')[0] for m in sys.modules})\n"
        "lazy.ssh_transport()\n"
        "client = lazy.docker.APIClient(base_url='ssh://nobody@192.0.2.1', use_ssh_client=True, version='1.41')\n"
        "import rich.console\n"
        "print(json.dumps([before, type(client._custom_adapter).__name__]))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    before, adapter = json.loads(proc.stdout.splitlines()[-1])
    assert "docker" in before and not {"paramiko", "rich"} & set(before)
    assert adapter == "SSHHTTPAdapter"
