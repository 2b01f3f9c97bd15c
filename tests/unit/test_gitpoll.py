"""watch's git trigger and the revision record `status` reads, with a stand-in for the git source (the source
itself is tested against real git servers in tests/integration/test_gitsource.py)."""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

import structlog

from reconciler.gitsource import FetchFailed, Limits, Rejection, Revision, SyncResult
from reconciler.gitsource.applied import AppliedRecord, is_source_dir, revision_status, stable_tree
from reconciler.watch.gitpoll import GitPoller, RevisionObserver


def revision(commit: str) -> Revision:
    return Revision(commit * 40, "main", "", f"commit {commit}", "Dev <dev@example.org>", "2026-12-06T00:00:00Z")


@dataclass
class FakeSource:
    directory: Path
    answers: list[SyncResult | Exception] = field(default_factory=list)
    url: str = "file:///srv/hosts.git"
    limits: Limits = field(default_factory=Limits)

    def sync(self) -> SyncResult:
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


def in_force(directory: Path, rev: Revision) -> None:
    """What GitSource leaves on disk for the revision in force."""
    checkout = directory / "checkouts" / f"{rev.commit}.x"
    (checkout / "tree").mkdir(parents=True)
    (checkout / "revision.json").write_text(json.dumps(dataclasses.asdict(rev)))
    link = directory / "current"
    link.unlink(missing_ok=True)
    link.symlink_to(f"checkouts/{checkout.name}")


def test_a_new_commit_asks_for_a_pass_and_a_refusal_is_said_once(tmp_path: Path) -> None:
    refusal = Rejection("c" * 40, "commit cccc is not signed")
    source = FakeSource(
        tmp_path,
        [
            SyncResult(revision("a"), tmp_path, changed=False, newest="a" * 40),
            SyncResult(revision("b"), tmp_path, changed=True, newest="b" * 40),
            SyncResult(revision("b"), tmp_path, changed=False, newest="c" * 40, rejected=refusal),
            SyncResult(revision("b"), tmp_path, changed=False, newest="c" * 40, rejected=refusal),
        ],
    )
    asked: list[str] = []
    poller = GitPoller(source, 60, asked.append)  # type: ignore[arg-type]
    with structlog.testing.capture_logs() as logs:
        assert [poller.poll() for _ in range(4)] == [False, True, False, False]
    assert asked == ["git"]
    assert [e["event"] for e in logs] == ["git.revision", "git.commit_refused"]
    assert AppliedRecord(tmp_path).rejected() == refusal


def test_a_fetch_failure_is_logged_once_per_outage(tmp_path: Path) -> None:
    ok = SyncResult(revision("a"), tmp_path, changed=False, newest="a" * 40)
    source = FakeSource(tmp_path, [FetchFailed("down"), FetchFailed("down"), ok, FetchFailed("down")])
    poller = GitPoller(source, 60, lambda reason: None)  # type: ignore[arg-type]
    with structlog.testing.capture_logs() as logs:
        for _ in range(4):
            assert poller.poll() is False
    assert [e["event"] for e in logs] == ["git.fetch_failed", "git.fetch_recovered", "git.fetch_failed"]


def test_a_revision_is_applied_once_a_pass_that_read_it_ends_with_nothing_failing(tmp_path: Path) -> None:
    (tmp_path / "checkouts").mkdir()
    rev = revision("a")
    in_force(tmp_path, rev)
    assert is_source_dir(tmp_path) and stable_tree(tmp_path) == tmp_path / "current" / "tree"
    assert revision_status(tmp_path) == {**rev.to_json(), "appliedAt": None, "rejected": None}
    observer = RevisionObserver(tmp_path, lambda: rev)
    observer.pass_started(1, ["git"])
    observer.pass_done([], {"Container/web": {"error": "boom"}})
    assert revision_status(tmp_path)["appliedAt"] is None  # type: ignore[index]
    observer.pass_started(2, ["retry"])
    observer.pass_done([], {})
    applied = revision_status(tmp_path)
    assert applied is not None and applied["appliedAt"] and applied["commit"] == rev.commit

    newer = revision("b")
    in_force(tmp_path, newer)
    assert revision_status(tmp_path)["appliedAt"] is None  # type: ignore[index]  # b is not applied yet


def test_a_manifest_directory_is_not_a_source_directory(tmp_path: Path) -> None:
    (tmp_path / "app.yaml").write_text("")
    assert not is_source_dir(tmp_path) and revision_status(tmp_path) is None
