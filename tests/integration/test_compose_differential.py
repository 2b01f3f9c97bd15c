"""The import against Compose itself: each stack of tests/compose_files/differential is brought up once by
docker-compose 1.29 (`up -d`) and once by `reconcile import compose` + `apply` (another project, other subnets),
and the engine's inspect documents of both are compared field by field (tests/composediff.py). A difference
fails the test unless composediff.ALLOWED says why it is there by design."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.composediff import (
    STACKS,
    Side,
    collect_compose,
    collect_reconcile,
    compare,
    compose,
    reconcile,
    stack_names,
    subnet_variables,
)


@pytest.mark.parametrize("name", stack_names())
def test_imported_stack_matches_what_compose_creates(
    name, api, engine_host, base_image, project_name, free_subnet, tmp_path: Path
):
    stack = Path(shutil.copytree(STACKS / name, tmp_path / name))  # both tools read this one directory
    variables = subnet_variables(stack)
    theirs = Side(f"c{project_name}", {v: free_subnet() for v in variables}, engine_host)
    ours = Side(project_name, {v: free_subnet() for v in variables}, engine_host)
    env = ours.env(base_image)
    try:
        up = compose(theirs, stack, base_image, "up", "-d")
        assert up.returncode == 0, up.stderr
        imported = reconcile(
            "import", "compose", "compose.yaml", "--out", "out", "-p", ours.project, cwd=stack, env=env
        )
        assert imported.returncode in (0, 2), imported.stderr  # 2: grants to review (devices, pid: host)
        applied = reconcile("--project", ours.project, "apply", "out", cwd=stack, env=env)
        assert applied.returncode == 0, applied.stdout + applied.stderr
        collect_compose(api, theirs)
        collect_reconcile(api, ours, sorted(theirs.containers), sorted(theirs.networks), sorted(theirs.volumes))
        found = compare(theirs, ours)
        assert not found, "\n".join(["differences from Compose:", *found, "import report:", imported.stderr])
    finally:
        # Compose's objects; ours go with the project_name fixture (every object labelled with the project)
        down = compose(theirs, stack, base_image, "down", "-v", "-t", "1")
    assert down.returncode == 0, down.stderr
