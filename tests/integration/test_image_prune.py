"""An image and the containers using it, all pruned together, go in one apply."""

from __future__ import annotations

import pytest
from docker.errors import ImageNotFound

pytestmark = pytest.mark.engine


def test_image_and_its_container_are_pruned_in_one_apply(api, project_name, reconcile, tmp_manifests, base_image):
    """The image kept for a container is removed in the same apply that removes the container; then in sync."""
    ref = f"127.0.0.1:5000/{project_name}/app:1"
    tmp_manifests("ctx/Dockerfile", f"FROM {base_image}\nLABEL purpose=prune-test\n")
    tmp_manifests(
        "m.yaml",
        f"""
        apiVersion: reconciler/v1
        kind: Image
        metadata: {{name: app}}
        spec:
          reference: {ref}
          build: {{context: ./ctx}}
        ---
        apiVersion: reconciler/v1
        kind: Container
        metadata: {{name: {project_name}-c}}
        spec: {{image: "{ref}", command: [sleep, "300"], networkMode: none, stopTimeout: 0}}
        """,
    )
    d = str(tmp_manifests.dir)
    assert reconcile("apply", d).returncode == 0
    assert api.inspect_image(ref)
    (tmp_manifests.dir / "m.yaml").unlink()
    plan = reconcile("plan", "--allow-empty", d)
    assert plan.returncode == 2 and "- Image/app" in plan.stdout and f"- Container/{project_name}-c" in plan.stdout
    proc = reconcile("apply", "--allow-empty", d)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    with pytest.raises(ImageNotFound):
        api.inspect_image(ref)
    assert reconcile("plan", "--allow-empty", d).returncode == 0
