"""The plan and apply output users script against, on the shipped examples, against the real engine.

Each step's stdout is compared with a file under tests/golden/ (the project name written as PROJECT, apply
seconds as N.N). A refactoring that changes one character of what `plan`/`apply` print fails here.
To accept an intended change: `RECONCILER_GOLDEN_UPDATE=1 scripts/test tests/integration/test_golden_examples.py`,
then read the diff of tests/golden/ before committing it.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.helpers import remove_project_objects

pytestmark = [pytest.mark.engine, pytest.mark.netns]

REPO = Path(__file__).resolve().parents[2]
GOLDEN = REPO / "tests" / "golden"
UPDATE = os.environ.get("RECONCILER_GOLDEN_UPDATE") == "1"


def _masked(text: str, project: str) -> str:
    text = text.replace(project, "PROJECT")
    text = re.sub(r"\b(created|updated|replaced|deleted) in \d+\.\ds", r"\1 in N.Ns", text)
    return re.sub(r'"seconds": [0-9.]+', '"seconds": N.N', text)


def _check(name: str, text: str, project: str) -> None:
    path = GOLDEN / name
    got = _masked(text, project)
    if UPDATE:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(got, encoding="utf-8")
    expected = path.read_text(encoding="utf-8")
    assert got == expected, f"output of {name} changed:\n--- expected\n{expected}\n--- got\n{got}"


@pytest.fixture
def private_engine(fleet_env, project_name):
    """An engine of its own for the stack (engine a of the test fleet, in its network namespace): the example's
    fixed names, subnet and port never meet a demo left running on the main test engine."""
    yield fleet_env["a"].unix
    client = fleet_env.client("a", "unix")
    try:
        remove_project_objects(client, project_name)
    finally:
        client.close()


def test_stack_plan_and_apply_output(private_engine, project_name, reconcile, tmp_path):
    env = {"DOCKER_HOST": private_engine}

    def run(*args: object) -> subprocess.CompletedProcess[str]:
        return reconcile(*args, env=env)

    stack = tmp_path / "stack"
    shutil.copytree(REPO / "examples" / "stack", stack)
    empty = tmp_path / "empty"
    empty.mkdir()

    plan = run("plan", stack)
    assert plan.returncode == 2, plan.stderr
    _check("stack-plan-create.txt", plan.stdout, project_name)
    plan_json = run("plan", stack, "--output", "json")
    assert plan_json.returncode == 2, plan_json.stderr
    _check("stack-plan-create.json", plan_json.stdout, project_name)

    applied = run("apply", stack)
    assert applied.returncode == 0, applied.stderr
    _check("stack-apply-create.txt", applied.stdout, project_name)

    again = run("plan", stack)
    assert again.returncode == 0, again.stderr
    _check("stack-plan-in-sync.txt", again.stdout, project_name)

    web = stack / "web.yaml"
    web.write_text(web.read_text().replace("memory: 32m", "memory: 48m").replace("stopTimeout: 2", "stopTimeout: 3"))
    db_env = stack / "db.env"
    db_env.write_text(db_env.read_text() + "EXTRA_SETTING=1\n")
    edited = run("plan", stack)
    assert edited.returncode == 2, edited.stderr
    _check("stack-plan-edit.txt", edited.stdout, project_name)
    edited_json = run("plan", stack, "--output", "json")
    assert edited_json.returncode == 2, edited_json.stderr
    _check("stack-plan-edit.json", edited_json.stdout, project_name)
    applied_edit = run("apply", stack)
    assert applied_edit.returncode == 0, applied_edit.stderr
    _check("stack-apply-edit.txt", applied_edit.stdout, project_name)

    prune_plan = run("plan", empty, "--allow-empty")
    assert prune_plan.returncode == 2, prune_plan.stderr
    _check("stack-plan-prune.txt", prune_plan.stdout, project_name)
    pruned = run("apply", empty, "--allow-empty")
    assert pruned.returncode == 0, pruned.stderr
    _check("stack-apply-prune.txt", pruned.stdout, project_name)


def test_firewall_plan_and_apply_output(engine_host, project_name, reconcile, tmp_path):
    firewall = tmp_path / "firewall"
    shutil.copytree(REPO / "examples" / "firewall", firewall)
    empty = tmp_path / "empty"
    empty.mkdir()
    try:
        plan = reconcile("plan", firewall)
        assert plan.returncode == 2, plan.stderr
        _check("firewall-plan-create.txt", plan.stdout, project_name)
        plan_json = reconcile("plan", firewall, "--output", "json")
        assert plan_json.returncode == 2, plan_json.stderr
        _check("firewall-plan-create.json", plan_json.stdout, project_name)
        applied = reconcile("apply", firewall)
        assert applied.returncode == 0, applied.stderr
        _check("firewall-apply-create.txt", applied.stdout, project_name)
        again = reconcile("plan", firewall)
        assert again.returncode == 0, again.stderr
        _check("firewall-plan-in-sync.txt", again.stdout, project_name)
        office = firewall / "office.yaml"
        office.write_text(office.read_text().replace("198.51.100.0/24", "198.51.100.0/25"))
        edited = reconcile("plan", firewall)
        assert edited.returncode == 2, edited.stderr
        _check("firewall-plan-edit.txt", edited.stdout, project_name)
    finally:
        pruned = reconcile("apply", empty, "--allow-empty")
    assert pruned.returncode == 0, pruned.stderr
    _check("firewall-apply-prune.txt", pruned.stdout, project_name)
