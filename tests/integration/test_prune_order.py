"""Pruning a whole stack goes in reverse dependency order: dependents are removed before what they needed."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.engine


def container(name: str, image: str, depends: str | None = None) -> str:
    dep = f"\n  dependsOn: [{{name: {depends}}}]" if depends else ""
    return f"""
apiVersion: reconciler/v1
kind: Container
metadata: {{name: {name}}}
spec:
  image: {image}
  command: [sleep, "300"]
  networkMode: none
  stopTimeout: 0{dep}
"""


def test_prune_removes_dependents_first(api, project_name, reconcile, tmp_manifests, base_image):
    """With --parallel high enough to run all at once, c (needs b, needs a) still goes first and a last."""
    a, b, c = (f"{project_name}-{x}" for x in "abc")
    tmp_manifests("a.yaml", container(a, base_image))
    tmp_manifests("b.yaml", container(b, base_image, a))
    tmp_manifests("c.yaml", container(c, base_image, b))
    assert reconcile("apply", str(tmp_manifests.dir)).returncode == 0
    assert api.inspect_container(b)["Config"]["Labels"]["io.reconciler.depends-on"] == a
    for f in ("a.yaml", "b.yaml", "c.yaml"):
        (tmp_manifests.dir / f).unlink()
    proc = reconcile("--log-format", "json", "apply", "--allow-empty", "--parallel", "8", str(tmp_manifests.dir))
    assert proc.returncode == 0, proc.stderr
    events = [json.loads(line) for line in proc.stderr.splitlines() if line.startswith("{")]
    removed = [e["name"] for e in events if e["event"] == "container.removed"]
    assert removed == [c, b, a]
