"""`plan --git`, `apply --git`, `watch --git` and `status` of a git source's directory, against the test engine:
the manifests come from a repository served over file:// (the transports themselves are tested in
test_gitsource.py), the containers are real, and so are the ssh signatures."""

from __future__ import annotations

import hashlib
import hmac
import json
import subprocess
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml
from docker.errors import NotFound

from tests.gitrepo import GIT_ENV, Upstream
from tests.helpers import doc, free_port, sleeper, wait_for
from tests.receiver import Receiver

Run = Callable[..., subprocess.CompletedProcess[str]]


def manifests(project: str, image: str, level: str) -> str:
    spec = sleeper(image, env={"LEVEL": level})
    return yaml.safe_dump(doc("Container", f"{project}-app", spec), sort_keys=False)


def env_of(api: Any, name: str) -> list[str]:
    """The container's environment; empty while it does not exist (a replace removes the old one first)."""
    try:
        return api.inspect_container(name)["Config"]["Env"]
    except NotFound:
        return []


def revision_label(api: Any, name: str) -> str | None:
    return api.inspect_container(name)["Config"]["Labels"].get("io.reconciler.revision")


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
    assert revision_label(api, f"{project_name}-app") == first
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
    assert revision_label(api, f"{project_name}-app") == second  # replaced by the second commit
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
        assert f"the newest commit is refused: commit {unsigned[:12]} is not signed" in run.stderr
        assert "nothing was changed" in run.stderr
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
    assert revision_label(api, name) == second

    passes = w.passes_done()
    unsigned = upstream.commit({"app.yaml": manifests(project_name, base_image, "three")}, "three, unsigned")
    w.wait_log("git.commit_refused", timeout=30)
    assert w.passes_done() == passes  # a refused commit asks for no pass
    assert "LEVEL=two" in env_of(api, name)  # the last verified commit stays in force
    found = revision()
    assert found["commit"] == second and found["rejected"]["commit"] == unsigned and found["appliedAt"]
    assert w.stop() == 0


def test_a_signed_webhook_fetches_at_once_and_the_revision_is_notified(
    api: Any,
    watch: Callable[..., Any],
    project_name: str,
    base_image: str,
    upstream: Upstream,
    tmp_path: Path,
) -> None:
    """A push told by a forge's webhook reaches the host long before the next poll (an hour away here); a hook
    with a wrong signature is refused and fetches nothing; each applied revision is sent to the --notify URL."""
    name = f"{project_name}-app"
    upstream.commit({"app.yaml": manifests(project_name, base_image, "one")}, "web: level one")
    secret = tmp_path / "hook-secret"
    secret.write_text("hook-secret-value\n")
    port = free_port()
    receiver = Receiver()
    try:
        w = watch(
            tmp_path / "state",
            "--git",
            upstream.url,
            "--poll",
            "3600",
            "--metrics-addr",
            f"127.0.0.1:{port}",
            "--webhook-secret-file",
            str(secret),
            "--notify",
            receiver.url,
        )
        wait_for(lambda: api.containers(filters={"name": f"^{name}$"}), 60, "the first commit to be applied")
        posts = receiver.wait_posts(1, timeout=30)
        assert "web: level one" in json.dumps(posts[0])

        second = upstream.commit({"app.yaml": manifests(project_name, base_image, "two")}, "web: level two")
        body = json.dumps({"ref": "refs/heads/main", "after": second}).encode()
        assert hook(port, body, b"not-the-secret") == 401
        assert hook(port, body, b"hook-secret-value") == 202
        wait_for(lambda: "LEVEL=two" in env_of(api, name), 30, "the hooked commit to reach the container")
        posts = receiver.wait_posts(2, timeout=30)
        assert "web: level two" in json.dumps(posts[1])
        assert w.stderr().count("git.revision ") == 2  # the bad hook fetched nothing
        assert w.stop() == 0
    finally:
        receiver.close()


def hook(port: int, body: bytes, secret: bytes) -> int:
    """POST /hooks/git signed as GitHub signs it."""
    digest = hmac.new(secret, body, hashlib.sha256).hexdigest()
    headers = {"X-GitHub-Event": "push", "X-Hub-Signature-256": f"sha256={digest}", "Content-Type": "application/json"}
    request = urllib.request.Request(f"http://127.0.0.1:{port}/hooks/git", data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status
    except urllib.error.HTTPError as exc:
        return exc.code
