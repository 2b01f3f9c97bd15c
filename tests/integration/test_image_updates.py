"""Image update policies against real registries (issue 23): tags pushed during the test to the loopback registry
(a repository of the test's own), a moved digest, a registry of the test's own that requires basic auth, and one
that is down; what plan, status, `images outdated` and watch's notification say, and `mode: commit` refused
without the git source."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from docker.errors import NotFound

from tests.authregistry import PASSWORD, USER, AuthRegistry
from tests.gitrepo import Served
from tests.helpers import cli, doc, free_port, image_manifest, sleeper, wait_for
from tests.receiver import Receiver
from tests.tokenregistry import TokenRegistry

pytestmark = pytest.mark.engine
LABEL_PROJECT = "io.reconciler.project"
REGISTRY = "127.0.0.1:5000"


def push_tags(api: Any, image: str, repository: str, tags: list[str], auth: dict[str, str] | None = None) -> None:
    """`image` pushed as `repository:tag` for each tag; the local tags are removed again."""
    for tag in tags:
        api.tag(image, repository, tag)
        try:
            for item in api.push(repository, tag=tag, stream=True, decode=True, auth_config=auth):
                assert "error" not in item, item
        finally:
            api.remove_image(f"{repository}:{tag}")


def build_scratch(api: Any, tmp_path: Path, reference: str, content: str, project: str) -> tuple[str, str]:
    """A FROM-scratch image of one file tagged `reference` (labelled with the project, so the cleanup removes it)
    and pushed: (image ID, the registry's digest)."""
    ctx = tmp_path / f"scratch-{secrets.token_hex(4)}"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text("FROM scratch\nCOPY data /data\n")
    (ctx / "data").write_text(content + "\n")
    image_id = None
    for item in api.build(path=str(ctx), tag=reference, labels={LABEL_PROJECT: project}, rm=True, decode=True):
        assert "error" not in item, item
        image_id = (item.get("aux") or {}).get("ID") or image_id
    repo, _, tag = reference.rpartition(":")
    digest = None
    for item in api.push(repo, tag=tag, stream=True, decode=True):
        assert "error" not in item, item
        digest = (item.get("aux") or {}).get("Digest") or digest
    assert digest is not None and image_id is not None
    return str(image_id), str(digest)


def updating(name: str, reference: str, update: str, policy: str = "IfNotPresent") -> str:
    return image_manifest(name, reference, policy, extra=f"update: {update}")


def outdated(run: Any, directory: Path) -> tuple[int, dict[str, Any], str]:
    proc = run("images", "outdated", directory, "-o", "json")
    return proc.returncode, json.loads(proc.stdout or "{}"), proc.stderr


@pytest.fixture
def repository(project_name: str) -> str:
    return f"{REGISTRY}/{project_name}/app"


def test_semver_range_offers_the_newest_tag_in_range_in_plan_status_and_outdated(
    api, base_image, tmp_manifests, tmp_path, reconcile, repository, local_refs
):
    """Pushed: 1.2.0 (declared), 1.3.1 (in range), 2.0.0 (out of range), 1.4.0-rc.1 (a pre-release), latest and
    1.3-alpine (no versions). `^1.2` offers 1.3.1; the plan stays in sync (exit 0) with a note."""
    push_tags(api, base_image, repository, ["1.2.0", "1.3.1", "2.0.0", "1.4.0-rc.1", "latest", "1.3-alpine"])
    local_refs.append(f"{repository}:1.2.0")
    tmp_manifests("img.yaml", updating("app", f"{repository}:1.2.0", '{semver: "^1.2"}'))
    run = cli(reconcile, tmp_path)
    applied = run("apply", tmp_manifests.dir)
    assert applied.returncode == 0, applied.stderr

    plan = run("plan", tmp_manifests.dir)
    assert plan.returncode == 0, plan.stderr
    assert plan.stdout.splitlines()[1:] == [
        "  No changes: everything is in sync.",
        "  note: Image/app: update available: 1.2.0 -> 1.3.1  (img.yaml:5)",
        "Plan: 0 to create, 0 to update, 0 to replace, 0 to delete, 0 blocked.",
    ]
    status = run("status", tmp_manifests.dir, "-o", "json")
    assert status.returncode == 0, status.stderr
    [row] = json.loads(status.stdout)["objects"]
    assert (row["status"], row["updateAvailable"]) == (
        "in sync",
        {"from": "1.2.0", "to": "1.3.1", "reference": f"{repository}:1.3.1"},
    )
    assert "update available: 1.2.0 -> 1.3.1" in run("status", tmp_manifests.dir).stdout

    code, found, _ = outdated(run, tmp_manifests.dir)
    assert code == 2
    assert found["outdated"] == [
        {
            "image": "app",
            "file": "img.yaml",
            "line": 5,
            "mode": "report",
            "from": "1.2.0",
            "to": "1.3.1",
            "oldReference": f"{repository}:1.2.0",
            "newReference": f"{repository}:1.3.1",
        }
    ]

    tmp_manifests("img.yaml", updating("app", f"{repository}:1.2.0", '{semver: ">=1.4.0-rc.0 <2"}'))
    code, found, _ = outdated(run, tmp_manifests.dir)
    assert (code, [u["to"] for u in found["outdated"]]) == (2, ["1.4.0-rc.1"])  # the range names a pre-release

    tmp_manifests("img.yaml", updating("app", f"{repository}:1.2.0", '{semver: "^3"}'))
    code, found, _ = outdated(run, tmp_manifests.dir)
    assert (code, found["outdated"], found["unchecked"]) == (0, [], [])  # nothing in range
    assert run("plan", tmp_manifests.dir).stdout.count("note:") == 0


def test_digest_policy_offers_a_new_digest_pushed_under_the_same_tag(
    api, tmp_manifests, tmp_path, reconcile, repository, project_name, local_refs
):
    reference = f"{repository}:stable"
    first_id, first = build_scratch(api, tmp_path, reference, "one", project_name)
    local_refs.append(reference)
    tmp_manifests("img.yaml", updating("app", reference, "{digest: true}", policy="Always"))
    run = cli(reconcile, tmp_path)
    assert run("apply", tmp_manifests.dir).returncode == 0
    code, found, _ = outdated(run, tmp_manifests.dir)
    assert (code, found["outdated"]) == (0, [])  # the engine runs what the tag names

    _, second = build_scratch(api, tmp_path, reference, "two", project_name)
    assert second != first
    api.tag(first_id, repository, "stable")  # the engine keeps running the first: the tag moved in the registry only
    code, found, _ = outdated(run, tmp_manifests.dir)
    assert code == 2
    [update] = found["outdated"]
    assert update["newReference"] == f"{reference}@{second}"
    assert (update["from"], update["to"]) == (first[:15], second[:15])

    tmp_manifests("img.yaml", updating("app", f"{reference}@{first}", "{digest: true}"))  # pinned: same answer
    code, found, _ = outdated(run, tmp_manifests.dir)
    assert (code, [u["newReference"] for u in found["outdated"]]) == (2, [f"{reference}@{second}"])


@pytest.fixture
def auth_registry(tmp_path: Path) -> Iterator[AuthRegistry]:
    registry = AuthRegistry(tmp_path / "auth-registry")
    registry.start()
    yield registry
    registry.stop()


def test_a_registry_that_requires_basic_auth_is_asked_with_the_docker_config_credentials(
    api, base_image, tmp_manifests, tmp_path, reconcile, auth_registry, project_name
):
    repository = f"{auth_registry.address}/{project_name}/app"
    push_tags(api, base_image, repository, ["1.0.0", "1.1.0"], auth={"username": USER, "password": PASSWORD})
    tmp_manifests("img.yaml", updating("app", f"{repository}:1.0.0", '{semver: "^1.0"}'))
    anonymous = cli(reconcile, tmp_path)
    code, found, err = outdated(anonymous, tmp_manifests.dir)
    assert code == 1 and found["outdated"] == []
    [unchecked] = found["unchecked"]
    assert "cannot check for updates" in unchecked["error"] and "refused access" in unchecked["error"]
    assert PASSWORD not in err

    config = auth_registry.docker_config(tmp_path / "docker-config")
    env = {"RECONCILER_STATE_DIR": str(tmp_path / "state"), "DOCKER_CONFIG": str(config)}
    proc = reconcile("images", "outdated", tmp_manifests.dir, "-o", "json", env=env)
    assert proc.returncode == 2, proc.stderr
    assert [u["newReference"] for u in json.loads(proc.stdout)["outdated"]] == [f"{repository}:1.1.0"]
    assert PASSWORD not in proc.stdout + proc.stderr


@pytest.fixture
def token_registry() -> Iterator[TokenRegistry]:
    front = TokenRegistry(REGISTRY)
    yield front
    front.close()


def test_a_registry_that_requires_bearer_tokens_gets_one_from_its_token_service(
    api, base_image, tmp_manifests, tmp_path, reconcile, token_registry, repository
):
    """The tags are the loopback registry's, reached through a front that wants a token from its `/token`."""
    push_tags(api, base_image, repository, ["2.0.0", "2.1.0", "3.0.0"])
    path = repository.split("/", 1)[1]
    tmp_manifests("img.yaml", updating("app", f"{token_registry.address}/{path}:2.0.0", '{semver: "^2"}'))
    code, found, _ = outdated(cli(reconcile, tmp_path), tmp_manifests.dir)
    assert code == 1 and "refused access" in found["unchecked"][0]["error"]  # no credentials for the token service
    assert token_registry.issued == 0

    config = token_registry.docker_config(tmp_path / "docker-config")
    env = {"RECONCILER_STATE_DIR": str(tmp_path / "state"), "DOCKER_CONFIG": str(config)}
    proc = reconcile("images", "outdated", tmp_manifests.dir, "-o", "json", env=env)
    assert proc.returncode == 2, proc.stderr
    assert [u["newReference"] for u in json.loads(proc.stdout)["outdated"]] == [
        f"{token_registry.address}/{path}:2.1.0"
    ]
    assert token_registry.issued >= 1


def test_a_registry_that_is_down_is_a_warning_and_changes_no_exit_code(
    api, base_image, tmp_manifests, tmp_path, reconcile, project_name, local_refs
):
    reference = f"127.0.0.1:{free_port()}/{project_name}/app:1.0.0"  # nothing listens there
    repo, _, tag = reference.rpartition(":")
    api.tag(base_image, repo, tag)  # present on the engine: the plan itself needs no registry
    local_refs.append(reference)
    tmp_manifests("img.yaml", updating("app", reference, '{semver: "^1"}'))
    run = cli(reconcile, tmp_path)
    plan = run("plan", tmp_manifests.dir)
    assert plan.returncode == 0, plan.stderr  # in sync, as without a policy
    assert "cannot check for updates: registry 127.0.0.1:" in plan.stderr and "connection refused" in plan.stderr
    assert plan.stdout.splitlines()[1] == "  No changes: everything is in sync." and "note:" not in plan.stdout
    status = run("status", tmp_manifests.dir, "-o", "json")
    assert status.returncode == 0 and json.loads(status.stdout)["objects"][0]["updateAvailable"] is None
    applied = run("apply", tmp_manifests.dir)
    assert applied.returncode == 0, applied.stderr
    code, found, _ = outdated(run, tmp_manifests.dir)
    assert code == 1 and found["outdated"] == [] and len(found["unchecked"]) == 1


def test_commit_mode_without_the_git_source_is_refused_by_apply_and_watch(
    api, base_image, tmp_manifests, tmp_path, reconcile
):
    tmp_manifests("img.yaml", updating("app", base_image, '{semver: "^1", mode: commit}'))
    run = cli(reconcile, tmp_path)
    for command in ("apply", "watch"):
        proc = run(command, tmp_manifests.dir)
        assert proc.returncode == 1
        assert "img.yaml:7: Image/app: spec.update.mode: `commit` needs the git source (--git)" in proc.stderr
    assert run("validate", tmp_manifests.dir).returncode == 0  # plan and validate may show it


def test_watch_announces_each_new_version_once_across_restarts(
    api, base_image, tmp_manifests, tmp_path, repository, local_refs, watch, monkeypatch
):
    """Checks every second: the new version is told once, not again after a restart; a newer one is told."""
    monkeypatch.setenv("RECONCILER_STATE_DIR", str(tmp_path / "state"))  # the announcements are remembered there
    push_tags(api, base_image, repository, ["1.0.0", "1.0.1"])
    local_refs.append(f"{repository}:1.0.0")
    tmp_manifests("img.yaml", updating("app", f"{repository}:1.0.0", '{semver: "~1.0"}'))
    receiver = Receiver()
    args = ("--update-interval", "1", "--notify", receiver.url)

    def announced() -> list[str]:
        return [str(p.get("title")).split(": ", 1)[1] for p in receiver.posts if "update available" in str(p)]

    try:
        first = watch(tmp_manifests.dir, *args)
        wait_for(lambda: first.stderr().count("updates.checked") >= 3, 90, "three update checks")
        assert first.stop() == 0
        assert announced() == ["update available: 1.0.0 -> 1.0.1: Image/app"]

        second = watch(tmp_manifests.dir, *args)
        wait_for(lambda: second.stderr().count("updates.checked") >= 2, 90, "two update checks after a restart")
        push_tags(api, base_image, repository, ["1.0.2"])
        wait_for(lambda: len(announced()) >= 2, 90, "the announcement of 1.0.2")
        checks = second.stderr().count("updates.checked")
        wait_for(lambda: second.stderr().count("updates.checked") >= checks + 2, 90, "two more checks")
        assert second.stop() == 0
        assert announced() == [
            "update available: 1.0.0 -> 1.0.1: Image/app",
            "update available: 1.0.0 -> 1.0.2: Image/app",
        ]
    finally:
        receiver.close()


def test_watch_commits_a_commit_mode_update_and_the_container_follows(
    api, watch, project_name, base_image, tmp_path, local_refs
):
    """`watch --git` with `mode: commit`: the update check itself commits the new tag into both manifests (the
    Image and the Container naming the same reference), pushes, fetches at once, and the container is replaced by
    one running the new image."""
    repository = f"{REGISTRY}/{project_name}/api"
    old, new = f"{repository}:1.0.0", f"{repository}:1.1.0"
    local_refs.extend([old, new])
    push_tags(api, base_image, repository, ["1.0.0"])
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(f"FROM {base_image}\nLABEL version=1.1.0\n")
    for item in api.build(path=str(ctx), tag=new, labels={LABEL_PROJECT: project_name}, rm=True, decode=True):
        assert "error" not in item, item
    push_tags(api, new, repository, ["1.1.0"])  # pushed, and the local tag gone: the host has to pull it
    name = f"{project_name}-api"
    image = "# bumped by reconcile\n" + yaml.safe_dump(
        doc("Image", "api", {"reference": old, "update": {"semver": "^1.0", "mode": "commit"}}), sort_keys=False
    )
    container = yaml.safe_dump(doc("Container", name, sleeper(old)), sort_keys=False)
    served = Served(tmp_path / "forge")
    served.push({"hosts/web/images.yaml": image, "hosts/web/api.yaml": container}, "web: api 1.0.0")

    w = watch(tmp_path / "state", "--git", served.url, "--path", "hosts/web", "--poll", "30", "--update-interval", "1")

    def running_image() -> str:
        try:
            return str(api.inspect_container(name)["Config"]["Image"])
        except NotFound:  # absent for a moment while it is replaced
            return ""

    wait_for(lambda: running_image() in (old, new), 120, "the container")
    wait_for(lambda: running_image() == new, 180, "the container on the committed new image")
    assert served.read("hosts/web/images.yaml").decode() == image.replace(old, new)
    assert served.read("hosts/web/api.yaml").decode() == container.replace(old, new)
    assert "git.update_pushed" in w.stderr()
    assert api.inspect_container(name)["State"]["Running"]
    assert w.stop() == 0
