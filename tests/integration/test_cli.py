"""The command line as users run it: exit codes, validate without an engine, structured logs."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

VOLUME = """
apiVersion: reconciler/v1
kind: Volume
metadata: {name: NAME}
spec: {reclaimPolicy: Delete}
"""


def run_cli(*args: str, docker_host: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DOCKER_HOST": docker_host}
    return subprocess.run(
        [sys.executable, "-m", "reconciler.cli", *args], capture_output=True, text=True, timeout=120, env=env
    )


def test_validate_touches_no_engine(tmp_manifests):
    """validate succeeds with no engine reachable, and fails with exit 1 on a bad manifest."""
    tmp_manifests("v.yaml", VOLUME.replace("NAME", "data"))
    ok = run_cli("validate", str(tmp_manifests.dir), docker_host="unix:///nonexistent.sock")
    assert ok.returncode == 0 and "1 objects" in ok.stdout
    tmp_manifests("bad.yaml", "apiVersion: reconciler/v1\nkind: Volume\nmetadata: {name: xy}\nspec: []\n")
    bad = run_cli("validate", str(tmp_manifests.dir), docker_host="unix:///nonexistent.sock")
    assert bad.returncode == 1
    assert bad.stderr.splitlines()[0].startswith("bad.yaml:4: Volume/xy: spec: ")


@pytest.mark.engine
def test_plan_exit_codes_and_json_logs(engine_host, project_name, tmp_manifests):
    """plan exits 2 with changes pending and 0 in sync; --log-format json writes one JSON object per line."""
    tmp_manifests("v.yaml", VOLUME.replace("NAME", f"{project_name}-v"))
    d = str(tmp_manifests.dir)
    assert run_cli("--project", project_name, "plan", d, docker_host=engine_host).returncode == 2
    applied = run_cli("--project", project_name, "--log-format", "json", "apply", d, docker_host=engine_host)
    assert applied.returncode == 0, applied.stderr
    events = [json.loads(line) for line in applied.stderr.splitlines() if line.strip()]
    assert {"change.applied", "volume.created"} <= {e["event"] for e in events}
    assert all("timestamp" in e and "level" in e for e in events)
    assert run_cli("--project", project_name, "plan", d, docker_host=engine_host).returncode == 0
    again = run_cli("--project", project_name, "apply", "--output", "json", d, docker_host=engine_host)
    doc = json.loads(again.stdout)
    assert again.returncode == 0 and doc["converged"] is True and doc["summary"]["unchanged"] == 1
    assert doc["results"][0]["kind"] == "Volume" and doc["results"][0]["outcome"] == "unchanged"
    status = run_cli("--project", project_name, "status", "--output", "json", d, docker_host=engine_host)
    assert status.returncode == 0
    assert json.loads(status.stdout)["objects"][0]["status"] == "in sync"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["plan", "--bogus", "."], "unrecognized arguments: --bogus"),
        (["--project", "", "plan", "."], "invalid project name ''"),
        (["--docker-host", "http://[::1", "plan", "."], "invalid engine address"),
    ],
)
def test_usage_errors_exit_1(tmp_manifests, args, message):
    """Usage errors, an empty project name and a malformed engine URL exit 1 (2 means 'changes pending')."""
    tmp_manifests("v.yaml", VOLUME.replace("NAME", "data"))
    args = [a if a != "." else str(tmp_manifests.dir) for a in args]
    proc = run_cli(*args, docker_host="unix:///nonexistent.sock")
    assert proc.returncode == 1 and message in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.engine
def test_status_shows_what_the_last_apply_failed(engine_host, project_name, tmp_manifests):
    """After an apply that failed, status reports the object as failing with the error."""
    tmp_manifests(
        "n.yaml",
        f"apiVersion: reconciler/v1\nkind: Network\nmetadata: {{name: {project_name}-n}}\n"
        "spec: {driver: macvlan, options: {parent: rcn-no-such-link}}\n",
    )
    d = str(tmp_manifests.dir)
    assert run_cli("--project", project_name, "apply", d, docker_host=engine_host).returncode == 1
    status = run_cli("--project", project_name, "status", "--output", "json", d, docker_host=engine_host)
    assert status.returncode == 2
    [row] = json.loads(status.stdout)["objects"]
    assert row["status"] == "failing" and "rcn-no-such-link" in row["lastError"]


def test_status_of_an_object_held_by_a_failing_dependency_names_why(
    engine_host, project_name, tmp_manifests, base_image
):
    """A container skipped because its network failed is blocked, and `blocked` says by what."""
    tmp_manifests(
        "n.yaml",
        f"apiVersion: reconciler/v1\nkind: Network\nmetadata: {{name: {project_name}-n}}\n"
        "spec: {driver: macvlan, options: {parent: rcn-no-such-link}}\n"
        "---\n"
        f"apiVersion: reconciler/v1\nkind: Container\nmetadata: {{name: {project_name}-c}}\n"
        f"spec: {{image: {base_image}, networks: [{{name: {project_name}-n}}]}}\n",
    )
    d = str(tmp_manifests.dir)
    assert run_cli("--project", project_name, "apply", d, docker_host=engine_host).returncode == 1
    status = run_cli("--project", project_name, "status", "--output", "json", d, docker_host=engine_host)
    rows = {r["kind"]: r for r in json.loads(status.stdout)["objects"]}
    assert rows["Container"]["status"] == "blocked"
    assert rows["Container"]["blocked"] and f"{project_name}-n" in rows["Container"]["blocked"]
