"""Image updates as commits (reconciler.gitsource.propose) against served repositories: a bare repository over
file:// and over smart HTTP (git http-backend, pushes included), a user who pushes between reconcile's fetch and
its push, ssh signatures made and checked here. No Docker engine is needed (the round trip to a running container
is in test_image_commit_roundtrip.py)."""

from __future__ import annotations

import secrets
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from reconciler.gitsource import GitAuth, GitSource
from reconciler.gitsource.propose import commit_updates
from reconciler.updates import ImageUpdate
from reconciler.watch.run import GitWatch
from tests.gitrepo import BACKEND, GIT_ENV, GitHTTP, Served, git

OLD = "127.0.0.1:5000/team/api:1.2.0"
NEW = "127.0.0.1:5000/team/api:1.3.1"
IMAGES = (
    "# images of the web host\n"
    "apiVersion: reconciler/v1\n"
    "kind: Image\n"
    "metadata: {name: api}   # the API\n"
    "spec:\n"
    f"  reference: '{OLD}'  # bumped by reconcile\n"
    "  pullPolicy: IfNotPresent\n"
)
WEB = f'kind: Container\r\nmetadata: {{name: web}}\r\nspec:\r\n  image: "{OLD}"\r\n  command: [sleep, "3600"]\r\n'
OTHER = "kind: Container\nmetadata: {name: db}\nspec:\n  image: 127.0.0.1:5000/team/api:1.2.0-rc\n"


def update(old: str = OLD, new: str = NEW, image: str = "api", file: str = "images.yaml") -> ImageUpdate:
    return ImageUpdate(image, file, 6, "commit", old, new, old.rpartition(":")[2], new.rpartition(":")[2])


@pytest.fixture
def served(tmp_path: Path) -> Served:
    repo = Served(tmp_path / "forge")
    repo.push({"hosts/web/images.yaml": IMAGES, "hosts/web/apps/web.yaml": WEB, "hosts/web/db.yaml": OTHER}, "web")
    return repo


@pytest.fixture
def state(tmp_path: Path) -> Path:
    return tmp_path / "state"


def source_of(url: str, state: Path, **kwargs: object) -> GitSource:
    return GitSource(url, state, path="hosts/web", auth=GitAuth(user_helpers=False), **kwargs)  # type: ignore[arg-type]


def commit_of(served: Served, ref: str) -> dict[str, str]:
    """Parents, author and message of a commit on the server."""
    out = git(served.path, "show", "-s", "--format=%P%x00%an <%ae>%x00%B", ref)
    parents, author, body = out.split("\0")
    return {"parents": parents, "author": author, "body": body}


def test_round_trip_to_the_tracked_branch(served: Served, state: Path) -> None:
    """The update becomes one commit on the tracked branch whose only parent is the branch's head: the Image's
    reference and the Container's image change, every other byte of both files stays (quotes, comments, CRLF),
    the message names the Image, both versions, the references and each file:line; the git source then puts it
    in force. A second round finds the new reference there and commits nothing."""
    head = served.head()
    with source_of(served.url, state) as source:
        source.sync()
        with capture_logs() as logs:
            [result] = commit_updates(source, [update()])
        assert result.outcome == "pushed" and result.branch == "main", result
        assert served.head() == result.commit
        assert served.read("hosts/web/images.yaml").decode() == IMAGES.replace(OLD, NEW)
        assert served.read("hosts/web/apps/web.yaml").decode() == WEB.replace(OLD, NEW)
        assert served.read("hosts/web/db.yaml").decode() == OTHER  # only a prefix in common
        made = commit_of(served, "main")
        assert made["parents"] == head
        assert made["author"].startswith("reconcile <reconcile@")
        assert made["body"].splitlines() == [
            "Image api: 1.2.0 -> 1.3.1",
            "",
            f"{OLD} -> {NEW}",
            "",
            "Changed by reconcile (mode: commit):",
            "- hosts/web/apps/web.yaml:4 Container/web spec.image",
            "- hosts/web/images.yaml:6 Image/api spec.reference",
        ]
        assert [e["event"] for e in logs] == ["git.update_pushed"]
        synced = source.sync()
        assert synced.changed and synced.in_force is not None and synced.in_force.commit == result.commit
        [again] = commit_updates(source, [update()])
        assert again.outcome == "already" and served.head() == result.commit


def test_update_branch_is_made_from_the_tracked_branch_and_stacks(served: Served, state: Path) -> None:
    """With --update-branch the tracked branch is untouched; the branch is created from it, and a later update
    of another Image goes on top of the first. A report-mode update is not committed at all; the watch's options
    (`--update-branch`, `--git-author`) reach the commits."""
    head = served.head()
    served.push({"hosts/web/cache.yaml": "kind: Image\nmetadata: {name: cache}\nspec: {reference: redis:7.2.1}\n"}, "+")
    head = served.head()
    report = ImageUpdate("api", "images.yaml", 6, "report", OLD, NEW, "1.2.0", "1.3.1")
    with source_of(served.url, state) as source:
        watching = GitWatch(source, update_branch="reconcile/images", author="Bot <bot@ex.org>")  # as watch calls it
        results = watching.commit_updates([report, update()])
        assert [r.outcome for r in results] == ["pushed"] and results[0].branch == "reconcile/images"
        assert served.head() == head
        assert commit_of(served, "reconcile/images")["parents"] == head
        assert commit_of(served, "reconcile/images")["author"] == "Bot <bot@ex.org>"
        cache = update("redis:7.2.1", "redis:7.4.0", image="cache", file="cache.yaml")
        [second] = commit_updates(source, [cache], branch="reconcile/images")
        assert second.outcome == "pushed"
        assert commit_of(served, "reconcile/images")["parents"] == results[0].commit
        assert served.subjects("reconcile/images")[:2] == ["Image cache: 7.2.1 -> 7.4.0", "Image api: 1.2.0 -> 1.3.1"]
        assert served.read("hosts/web/images.yaml", "reconcile/images").decode() == IMAGES.replace(OLD, NEW)
        assert served.read("hosts/web/images.yaml").decode() == IMAGES


def test_several_updates_make_one_commit_per_image(served: Served, state: Path) -> None:
    """Two Images updated in one round: two commits, each naming its Image."""
    served.push({"hosts/web/cache.yaml": "kind: Image\nmetadata: {name: cache}\nspec: {reference: redis:7.2.1}\n"}, "+")
    cache = update("redis:7.2.1", "redis:7.4.0", image="cache", file="cache.yaml")
    with source_of(served.url, state) as source:
        results = commit_updates(source, [update(), cache])
    assert [r.outcome for r in results] == ["pushed", "pushed"]
    assert served.subjects()[:2] == ["Image cache: 7.2.1 -> 7.4.0", "Image api: 1.2.0 -> 1.3.1"]
    assert served.read("hosts/web/cache.yaml").decode().endswith("{reference: redis:7.4.0}\n")


def test_a_reference_the_user_changed_is_never_overwritten(served: Served, state: Path) -> None:
    """The user set the reference by hand since the checker looked: skipped with a log line, nothing pushed."""
    served.push({"hosts/web/images.yaml": lambda t: t.replace(OLD, OLD.replace("1.2.0", "1.2.5"))}, "pin 1.2.5")
    head = served.head()
    with source_of(served.url, state) as source, capture_logs() as logs:
        [result] = commit_updates(source, [update()])
    assert result.outcome == "skipped" and "changed since; not overwritten" in result.reason
    assert "images.yaml:6 Image/api spec.reference is now '127.0.0.1:5000/team/api:1.2.5'" in result.reason
    assert served.head() == head
    assert [(e["event"], e["log_level"]) for e in logs] == [("git.update_skipped", "warning")]


def keygen(path: Path) -> Path:
    command = ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "bot", "-f", str(path)]
    subprocess.run(command, check=True, env=GIT_ENV)
    return path


def test_a_signed_commit_passes_the_sources_signature_check(served: Served, state: Path, tmp_path: Path) -> None:
    """With a signing key, the pushed commit carries an ssh signature that the source's --verify-signatures
    accepts when the key is an allowed signer; without it the same source refuses the commit."""
    key = keygen(tmp_path / "signing")
    allowed = tmp_path / "allowed_signers"
    allowed.write_text(f"reconcile@host {key.with_suffix('.pub').read_text().strip()}\n")
    with source_of(served.url, state / "a") as source:
        [signed] = commit_updates(source, [update()], signing_key=key)
    assert signed.outcome == "pushed"
    with source_of(served.url, state / "b", verify_signatures=allowed) as verifying:
        result = verifying.sync()
        assert result.rejected is None and result.in_force is not None and result.in_force.commit == signed.commit
    served.push({"hosts/web/images.yaml": lambda t: t.replace(NEW, OLD)}, "back", key=key)
    with source_of(served.url, state / "a") as source:
        [unsigned] = commit_updates(source, [update()])
    with source_of(served.url, state / "b", verify_signatures=allowed) as verifying:
        refused = verifying.sync().rejected
    assert refused is not None and refused.commit == unsigned.commit and "not signed" in refused.reason


@pytest.fixture
def http(served: Served) -> Iterator[GitHTTP]:
    if not BACKEND.exists():
        pytest.fail("git http-backend is missing (Debian's git package installs it)")
    server = GitHTTP(served.path.parent)
    yield server
    server.close()


def test_a_user_push_between_fetch_and_push_is_kept_and_the_update_lands_on_top(
    served: Served, state: Path, http: GitHTTP
) -> None:
    """Over smart HTTP, the user pushes a commit while reconcile's fetch is on its way: reconcile's push is refused,
    it fetches again, redoes the rewrite on the user's commit (no merge) and pushes on top of it."""
    user_commits: list[str] = []

    def user_pushes() -> None:
        if not user_commits:
            user_commits.append(served.push({"hosts/web/notes.yaml": "# a note\n"}, "user: a note"))

    with source_of(f"{http.base}/ops.git", state) as source:
        http.after_fetch = user_pushes
        with capture_logs() as logs:
            [result] = commit_updates(source, [update()])
    assert result.outcome == "pushed", result
    assert [e["event"] for e in logs] == ["git.update_retry", "git.update_pushed"]
    assert commit_of(served, "main")["parents"] == user_commits[0]
    assert served.subjects()[:2] == ["Image api: 1.2.0 -> 1.3.1", "user: a note"]
    assert served.read("hosts/web/notes.yaml") == b"# a note\n"
    assert served.read("hosts/web/images.yaml").decode() == IMAGES.replace(OLD, NEW)


def test_a_user_who_changes_the_same_reference_meanwhile_wins(served: Served, state: Path, http: GitHTTP) -> None:
    """The user's push between fetch and push changes the very reference: the retry finds it changed and skips
    the update; the branch keeps the user's commit."""
    user_commits: list[str] = []

    def user_pushes() -> None:
        if not user_commits:
            edit = {"hosts/web/images.yaml": lambda t: t.replace(OLD, OLD.replace("1.2.0", "2.0.0"))}
            user_commits.append(served.push(edit, "user: api 2.0.0"))

    with source_of(f"{http.base}/ops.git", state) as source:
        http.after_fetch = user_pushes
        [result] = commit_updates(source, [update()])
    assert result.outcome == "skipped" and "not overwritten" in result.reason
    assert served.head() == user_commits[0]
    assert "api:2.0.0" in served.read("hosts/web/images.yaml").decode()


def test_a_push_the_server_refuses_is_reported_not_retried(served: Served, state: Path, http: GitHTTP) -> None:
    """A protected branch (a pre-receive hook that says no) fails the update with the server's reason and is not
    retried in a loop; the next round tries again."""
    hook = served.path / "hooks" / "pre-receive"
    hook.parent.mkdir(exist_ok=True)
    hook.write_text("#!/bin/sh\necho 'main is protected' >&2\nexit 1\n")
    hook.chmod(0o755)
    head = served.head()
    with source_of(f"{http.base}/ops.git", state) as source, capture_logs() as logs:
        [result] = commit_updates(source, [update()])
    assert result.outcome == "failed" and "refused" in result.reason, result
    assert [e["event"] for e in logs] == ["git.update_failed"]
    assert served.head() == head


def test_a_source_that_follows_a_tag_needs_an_update_branch(served: Served, state: Path) -> None:
    """A tag cannot be moved by a push: without --update-branch the update fails with a reason saying so; with
    it, the branch is made from the tag."""
    git(served.path, "tag", "v1", "main")
    with GitSource(served.url, state, ref="v1", path="hosts/web", auth=GitAuth(user_helpers=False)) as source:
        [failed] = commit_updates(source, [update()])
        assert failed.outcome == "failed" and "--update-branch" in failed.reason
        [pushed] = commit_updates(source, [update()], branch="bump")
        assert pushed.outcome == "pushed" and commit_of(served, "bump")["parents"] == served.head()


def test_an_unreachable_remote_fails_every_update_and_leaves_no_repository(served: Served, state: Path) -> None:
    """The forge is down: each update fails with the reason (tried again next round) and the round's working
    repository is gone."""
    with source_of(served.url, state) as source:
        source.sync()
        shutil.move(served.path, served.path.with_suffix(".away"))
        results = commit_updates(source, [update(), update(image="cache")])
    assert [r.outcome for r in results] == ["failed", "failed"]
    assert not (state / "propose.git").exists()


def test_the_push_uses_the_sources_credentials(served: Served, state: Path, tmp_path: Path) -> None:
    """Over https-like smart HTTP that wants a token for everything: the push authenticates with the source's
    --git-credentials-file (no prompt, no token on a command line); a source without it fails the update with
    git's reason and pushes nothing."""
    if not BACKEND.exists():
        pytest.fail("git http-backend is missing (Debian's git package installs it)")
    token = "tok-" + secrets.token_hex(8)
    cred = tmp_path / "token"
    cred.write_text(f"bot:{token}\n")
    server = GitHTTP(served.path.parent, token=token)
    head = served.head()
    try:
        url = f"{server.base}/ops.git"
        with GitSource(url, state / "anon", path="hosts/web", auth=GitAuth(user_helpers=False)) as anonymous:
            [refused] = commit_updates(anonymous, [update()])
        assert refused.outcome == "failed" and served.head() == head
        with GitSource(url, state / "bot", path="hosts/web", auth=GitAuth(credentials_file=cred)) as source:
            [pushed] = commit_updates(source, [update()])
        assert pushed.outcome == "pushed" and served.head() == pushed.commit
    finally:
        server.close()


def test_a_user_push_landing_during_reconciles_push_is_kept(served: Served, state: Path, http: GitHTTP) -> None:
    """Two pushes at once: the user's lands while the server is receiving reconcile's (a pre-receive hook pushes
    it), so the server cannot move the branch from the head reconcile built on. That refusal is a moved branch too:
    reconcile redoes the update on top of the user's commit."""
    user = served.user
    hook = served.path / "hooks" / "pre-receive"
    hook.parent.mkdir(exist_ok=True)
    hook.write_text(
        "#!/bin/sh\n"
        "cat >/dev/null\n"
        f"[ -e {served.path}/user-pushed ] && exit 0\n"
        f"touch {served.path}/user-pushed\n"
        "unset $(env | sed -n 's/^\\(GIT_[A-Z_]*\\)=.*/\\1/p')\n"
        "export GIT_CONFIG_NOSYSTEM=1 GIT_CONFIG_GLOBAL=/dev/null\n"
        f"cd {user} && git fetch -q origin && git checkout -q -B main origin/main\n"
        "echo '# the user was here' > hosts/web/notes.yaml && git add -A\n"
        "git -c user.name=Dev -c user.email=dev@example.org commit -q -m 'user: during the push'\n"
        "git push -q origin HEAD:refs/heads/main >&2\n"
    )
    hook.chmod(0o755)
    with source_of(f"{http.base}/ops.git", state) as source, capture_logs() as logs:
        [result] = commit_updates(source, [update()])
    assert result.outcome == "pushed", result
    retries = [e for e in logs if e["event"] == "git.update_retry"]
    assert len(retries) == 1, logs
    assert "failed to update ref" in retries[0]["reason"]  # not "fetch first": the branch moved mid-push
    assert served.subjects()[:2] == ["Image api: 1.2.0 -> 1.3.1", "user: during the push"]
    assert served.read("hosts/web/notes.yaml") == b"# the user was here\n"
