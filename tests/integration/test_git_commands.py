"""`plan --git`, `apply --git`, `watch --git` and `status` of a git source's directory, against the test engine:
the manifests come from a repository served over file:// (the transports themselves are tested in
test_gitsource.py), the containers are real, and so are the ssh signatures."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.gitrepo import GIT_ENV, Upstream
from tests.helpers import doc, sleeper, wait_for

Run = Callable[..., subprocess.CompletedProcess[str]]


def manifests(project: str, image: str, level: str) -> str:
    spec = sleeper(image, env={"LEVEL": level})
    return yaml.safe_dump(doc("Container", f"{project}-app", spec), sort_keys=False)


def env_of(api: Any, name: str) -> list[str]:
    return api.inspect_container(name)["Config"]["Env"]


@pytest.fixture
def upstream(tmp_path: Path) -> Upstream:
    return Upstream(tmp_path / "upstream")


@pytest.fixture
def signer(tmp_path: Path) -> tuple[Path, Path]:
    """An ssh key made here and an allowed-signers file that trusts it."""
    key = tmp_path / "signing-key"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "dev", "-f", str(key)], check=True, env=GIT_ENV
    )
    allowed = tmp_path / "allowed_signers"
    allowed.write_text(f"dev@example.org {key.with_suffix('.pub').read_text().strip()}\n")
    return key, allowed


def test_apply_from_git_runs_the_newest_commit_and_status_names_it(
    api: Any, reconcile: Run, project_name: str, base_image: str, upstream: Upstream, tmp_path: Path
) -> None:
    first = upstream.commit({"hosts/web/app.yaml": manifests(project_name, base_image, "one")}, "web: level one")
    state = tmp_path / "state"
    git = ["--git", upstream.url, "--ref", "main", "--path", "hosts/web"]
    plan = reconcile("plan", state, *git)
    assert plan.returncode == 2, plan.stderr  # changes pending: the container is to be created
    assert f"+ Container/{project_name}-app" in plan.stdout
    applied = reconcile("apply", state, *git)
    assert applied.returncode == 0, applied.stderr
    assert "LEVEL=one" in env_of(api, f"{project_name}-app")
    status = reconcile("status", state, "-o", "json")
    assert status.returncode == 0, status.stdout + status.stderr
    revision = json.loads(status.stdout)["revision"]
    assert revision["commit"] == first and revision["ref"] == "main" and revision["message"] == "web: level one"
    assert revision["author"] and revision["appliedAt"] and revision["rejected"] is None
    text = reconcile("status", state)
    assert text.stdout.startswith(f"revision  {first[:12]} of main: web: level one  (applied ")

    second = upstream.commit({"hosts/web/app.yaml": manifests(project_name, base_image, "two")}, "web: level two")
    assert reconcile("apply", state, *git).returncode == 0
    assert "LEVEL=two" in env_of(api, f"{project_name}-app")
    assert json.loads(reconcile("status", state, "-o", "json").stdout)["revision"]["commit"] == second


def test_an_unsigned_commit_is_refused_and_changes_nothing(
    api: Any,
    reconcile: Run,
    project_name: str,
    base_image: str,
    upstream: Upstream,
    signer: tuple[Path, Path],
    tmp_path: Path,
) -> None:
    key, allowed = signer
    signed = upstream.commit({"app.yaml": manifests(project_name, base_image, "one")}, "signed", key=key)
    state = tmp_path / "state"
    git = ["--git", upstream.url, "--verify-signatures", allowed]
    assert reconcile("apply", state, *git).returncode == 0
    unsigned = upstream.commit({"app.yaml": manifests(project_name, base_image, "two")}, "not signed")
    for command in ("plan", "apply"):
        run = reconcile(command, state, *git)
        assert run.returncode == 1, run.stdout + run.stderr
        assert f"commit {unsigned[:12]} is refused" in run.stderr and "nothing was changed" in run.stderr
    assert "LEVEL=one" in env_of(api, f"{project_name}-app")
    revision = json.loads(reconcile("status", state, "-o", "json").stdout)["revision"]
    assert revision["commit"] == signed and revision["rejected"]["commit"] == unsigned


def test_watch_follows_new_commits_and_keeps_the_last_verified_one(
    api: Any,
    reconcile: Run,
    watch: Callable[..., Any],
    project_name: str,
    base_image: str,
    upstream: Upstream,
    signer: tuple[Path, Path],
    tmp_path: Path,
    lock_env: dict[str, str],
) -> None:
    key, allowed = signer
    name = f"{project_name}-app"
    upstream.commit({"app.yaml": manifests(project_name, base_image, "one")}, "one", key=key)
    state = tmp_path / "state"
    w = watch(state, "--git", upstream.url, "--verify-signatures", str(allowed), "--poll", "0.5")
    wait_for(lambda: api.containers(filters={"name": f"^{name}$"}), 60, "the first commit to be applied")
    wait_for(lambda: "LEVEL=one" in env_of(api, name), 30, "level one")

    def revision() -> dict[str, Any]:
        status = reconcile("status", state, "-o", "json", env=lock_env)
        return json.loads(status.stdout)["revision"]

    second = upstream.commit({"app.yaml": manifests(project_name, base_image, "two")}, "two", key=key)
    wait_for(lambda: "LEVEL=two" in env_of(api, name), 60, "the pushed commit to reach the container")
    # applied in full once the pass that replaced the container is over (its settle window included)
    wait_for(lambda: revision()["commit"] == second and revision()["appliedAt"], 60, "commit two applied", 0.5)

    passes = w.passes_done()
    unsigned = upstream.commit({"app.yaml": manifests(project_name, base_image, "three")}, "three, unsigned")
    w.wait_log("git.commit_refused", timeout=30)
    assert w.passes_done() == passes  # a refused commit asks for no pass
    assert "LEVEL=two" in env_of(api, name)  # the last verified commit stays in force
    found = revision()
    assert found["commit"] == second and found["rejected"]["commit"] == unsigned and found["appliedAt"]
    assert w.stop() == 0
