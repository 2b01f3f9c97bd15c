"""A container that crashes right after starting is rolled back, and what it printed is not lost with it: its last
output lines (secret values masked) come with the error in `apply`'s record, `status` and `status -o json`."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from tests.helpers import doc, sleeper, write

SECRET = "hunter2-never-shown"


def test_a_crashed_replacement_leaves_its_last_lines_in_status(
    api: Any, reconcile: Callable[..., Any], project_name: str, tmp_manifests: Any, base_image: str
) -> None:
    name = f"{project_name}-web"
    good = sleeper(base_image, env={"TOKEN": SECRET}, sensitiveEnv=["TOKEN"])
    directory = write(tmp_manifests, [doc("Container", name, good)])
    assert reconcile("apply", directory).returncode == 0
    old_id = api.inspect_container(name)["Id"]

    # one stream: the engine copies stdout and stderr apart, so their lines may interleave in either order
    script = 'exec 1>&2; for i in $(seq 1 30); do echo "line $i"; done; echo "boom: token is $TOKEN"; exit 3'
    crashing = {**good, "command": ["sh", "-c", script]}
    write(tmp_manifests, [doc("Container", name, crashing)])
    applied = reconcile("apply", directory)
    assert applied.returncode == 1, applied.stdout + applied.stderr
    assert api.inspect_container(name)["Id"] == old_id  # rolled back: the old container runs on

    status = reconcile("status", directory, "-o", "json")
    (row,) = [r for r in json.loads(status.stdout)["objects"] if r["name"] == name]
    tail = row["logTail"]
    assert len(tail) == 20 and tail[0] == "line 12" and tail[-1] == "boom: token is (sensitive)", tail
    text = reconcile("status", directory).stdout
    assert "| boom: token is (sensitive)" in text and SECRET not in text + status.stdout + applied.stdout
