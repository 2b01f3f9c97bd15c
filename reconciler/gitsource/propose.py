"""Image updates as commits (issue 23, `mode: commit`): rewrite the reference in the manifests of the branch's
newest commit, commit, sign, push; the commit then reaches the host like any other, through the git source.

How, and why so:
- **A repository of its own**, `DIR/propose.git`, bare and made anew for every round: the checkout in force
  (`DIR/current`) is what runs, switched atomically and never written to; a fresh repository carries no state
  from an interrupted round (a half-made index, a stale base).
- **On the branch's newest commit, never a merge.** Each update fetches the branch (depth 1), reads the manifest
  files of `--path` from that commit, rewrites them in memory (reconciler.gitsource.rewrite: only the scalars
  that name the old reference change, byte for byte), writes the blobs, a tree and a commit whose only parent is
  that newest commit, and pushes it as a fast-forward. A push refused because the branch moved meanwhile starts
  over from the branch's new head (at most `attempts` times): the user's commit stays, ours goes on top of it.
- **The user's change wins.** When the Image's `spec.reference` in the newest commit no longer reads the old
  reference (changed by hand, moved to another file, removed), the update is skipped and logged; nothing is
  pushed for it. When it already reads the new one (pushed in an earlier round), nothing is committed either.
- **One commit per Image**, so each can be reviewed, reverted or cherry-picked alone; the subject names the Image
  and both versions (`Image api: 1.2.0 -> 1.3.1`), the body the references and each changed `file:line`.
- **The source's own transport**: the push runs with the environment of the git source (its one protocol, its
  credentials file or the user's credential helpers, its deploy key), and with `signing_key` the commit carries an
  ssh signature (`gpg.format=ssh`), so a host with `--verify-signatures` accepts it when that key is an allowed
  signer.
- `--update-branch NAME`: the commits go to NAME instead of the tracked branch, for review; NAME is created from
  the tracked ref when it does not exist, and later updates stack on its head until it is merged and deleted.
"""

from __future__ import annotations

import os
import posixpath
import re
import shutil
import socket
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from reconciler.gitsource.errors import FetchFailed, SourceInvalid
from reconciler.gitsource.gitcmd import first_error_line, redact, run_git
from reconciler.gitsource.rewrite import SUFFIXES, RewriteError, Site, rewrite_tree
from reconciler.gitsource.source import GitSource
from reconciler.updates import ImageUpdate

WORK_REPO = "propose.git"
BASE_REF = "refs/reconciler/propose-base"
DEFAULT_ATTEMPTS = 4
# `git push --porcelain` statuses that mean "the branch is not where it was when we fetched it"
MOVED = ("fetch first", "non-fast-forward", "stale info", "failed to update ref", "cannot lock ref", "failed to lock")
AUTHOR = re.compile(r"^\s*(?P<name>[^<>\n]+?)\s*<(?P<email>[^<>\s]+)>\s*$")


@dataclass(frozen=True)
class CommitResult:
    """What became of one update: `pushed` (a commit is on `branch`), `already` (the branch already holds the new
    reference), `skipped` (the user changed the reference since: `reason`), `failed` (`reason`; the next round
    tries again)."""

    update: ImageUpdate
    outcome: str
    branch: str
    commit: str | None = None
    reason: str = ""
    sites: tuple[Site, ...] = ()


def default_author() -> str:
    return f"reconcile <reconcile@{socket.gethostname() or 'localhost'}>"


def parse_author(text: str) -> tuple[str, str]:
    """`Name <email>` -> (name, email); SourceInvalid otherwise."""
    match = AUTHOR.match(text)
    if match is None:
        raise SourceInvalid(f"--git-author {text!r}: expected `Name <email>`")
    return match["name"], match["email"]


def check_branch_name(name: str) -> None:
    """Refuse what git would not take as a branch name (`--update-branch`), before anything is fetched."""
    valid = bool(name) and not name.startswith("-") and not name.startswith("refs/")
    if valid:
        env = {"PATH": os.environ.get("PATH", "")}
        result = run_git(["check-ref-format", f"refs/heads/{name}"], env=env, timeout=30)
        valid = result.returncode == 0
    if not valid:
        raise SourceInvalid(f"--update-branch {name!r} is not a valid branch name")


def message(update: ImageUpdate, sites: Sequence[Site], path: str) -> str:
    lines = [
        f"Image {update.image}: {update.old_version} -> {update.new_version}",
        "",
        f"{update.old_reference} -> {update.new_reference}",
        "",
        "Changed by reconcile (mode: commit):",
    ]
    for site in sites:
        lines.append(f"- {posixpath.join(path, site.file)}:{site.line} {site.subject} {site.field}")
    return "\n".join(lines) + "\n"


class _Moved(Exception):
    """The push was refused because the branch moved: start over from its new head."""


class _Refused(Exception):
    """The push was refused for another reason (a protected branch, a hook): not retried this round."""


class _Work:
    """The bare repository of one round, and the git runs against the source's remote."""

    def __init__(self, source: GitSource, signing_key: Path | None, author: tuple[str, str]) -> None:
        self.source = source
        self.url = source.url
        self.path = source.directory / WORK_REPO
        self.signing_key = signing_key
        name, email = author
        self.identity = {
            "GIT_AUTHOR_NAME": name,
            "GIT_AUTHOR_EMAIL": email,
            "GIT_COMMITTER_NAME": name,
            "GIT_COMMITTER_EMAIL": email,
        }
        shutil.rmtree(self.path, ignore_errors=True)
        self.git("init", "--bare", "--quiet", "--template=", str(self.path), bare=False, what="create a repository")

    def close(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)

    def run(self, *args: str, bare: bool = True, data: bytes | None = None, env: dict[str, str] | None = None) -> Any:
        argv = ["--git-dir", str(self.path), *args] if bare else list(args)
        extra = {**self.identity, **(env or {})}
        return run_git(
            argv,
            env=self.source.environment(extra),
            timeout=self.source.limits.fetch_timeout,
            cwd=self.source.directory,
            input_bytes=data,
        )

    def git(self, *args: str, what: str, bare: bool = True, data: bytes | None = None, **env: str) -> str:
        result = self.run(*args, bare=bare, data=data, env=env or None)
        if result.returncode != 0:
            raise FetchFailed(f"{redact(self.url)}: cannot {what}: {first_error_line(result.stderr)}")
        return str(result.stdout)

    # -- the remote's refs --------------------------------------------------------------------------------------

    def tracked(self) -> tuple[str, str]:
        """(short name, full ref) the source follows: its --ref, else the remote's default branch."""
        ref = self.source.ref
        if ref is None:
            out = self.git("ls-remote", "--symref", "--", self.url, "HEAD", bare=False, what="list the remote's refs")
            for line in out.splitlines():
                if line.startswith("ref: ") and line.endswith("\tHEAD"):
                    full = line[len("ref: ") : -len("\tHEAD")]
                    return full.removeprefix("refs/heads/"), full
            raise FetchFailed(f"{redact(self.url)}: the remote has no default branch (HEAD)")
        if ref.startswith("refs/"):
            return ref.removeprefix("refs/heads/"), ref
        if self.head(f"refs/heads/{ref}") is not None:
            return ref, f"refs/heads/{ref}"
        return ref, f"refs/tags/{ref}"

    def head(self, full_ref: str) -> str | None:
        out = self.git("ls-remote", "--", self.url, full_ref, bare=False, what="list the remote's refs")
        for line in out.splitlines():
            commit, _, name = line.partition("\t")
            if name == full_ref:
                return commit
        return None

    def fetch(self, full_ref: str) -> str:
        self.git(
            "fetch",
            "--depth",
            "1",
            "--no-tags",
            "--no-write-fetch-head",
            "--no-recurse-submodules",
            "--quiet",
            "--",
            self.url,
            f"+{full_ref}:{BASE_REF}",
            what=f"fetch {full_ref}",
        )
        return self.git("rev-parse", "--verify", f"{BASE_REF}^{{commit}}", what=f"read {full_ref}").strip()

    # -- reading and writing trees ------------------------------------------------------------------------------

    def manifests(self, commit: str) -> tuple[dict[str, str], dict[str, str]]:
        """(path -> text, path -> mode) of the manifest files under --path in `commit`, named as the tree's
        manifests are (relative to --path; hidden entries skipped, as reconcile skips them)."""
        path = self.source.path
        spec = f"{commit}:{path}" if path else f"{commit}^{{tree}}"
        listing = self.run("ls-tree", "-r", "-z", spec)
        if listing.returncode != 0:
            return {}, {}  # no directory there: the update is skipped (its file is gone)
        wanted: dict[str, tuple[str, str]] = {}
        for entry in str(listing.stdout).split("\0"):
            meta, _, name = entry.partition("\t")
            parts = meta.split()
            if len(parts) != 3 or parts[1] != "blob" or parts[0] not in ("100644", "100755"):
                continue
            if not name.endswith(SUFFIXES) or any(part.startswith(".") for part in name.split("/")):
                continue
            wanted[name] = (parts[2], parts[0])
        texts: dict[str, str] = {}
        total = 0
        for name, (oid, _mode) in wanted.items():
            blob = self.run("cat-file", "blob", oid)
            if blob.returncode != 0:
                raise FetchFailed(f"{redact(self.url)}: cannot read {name} of {commit[:12]}")
            total += len(blob.stdout)
            if total > self.source.limits.max_tree_bytes:
                raise FetchFailed(f"{redact(self.url)}: the manifests of {commit[:12]} are larger than the tree limit")
            if "\ufffd" not in blob.stdout:  # not UTF-8 (git's output was decoded with replacement): not ours to write
                texts[name] = blob.stdout
        return texts, {name: mode for name, (_oid, mode) in wanted.items()}

    def commit(self, base: str, changed: dict[str, str], modes: dict[str, str], text: str) -> str:
        index = str(self.path / "propose-index")
        self.git("read-tree", base, what="read the base tree", GIT_INDEX_FILE=index)
        for name, content in changed.items():
            oid = self.git("hash-object", "-w", "--stdin", data=content.encode("utf-8"), what="write a blob").strip()
            where = posixpath.join(self.source.path, name)
            self.git("update-index", "--cacheinfo", f"{modes[name]},{oid},{where}", what="stage", GIT_INDEX_FILE=index)
        tree = self.git("write-tree", what="write the tree", GIT_INDEX_FILE=index).strip()
        os.unlink(index)
        sign: list[str] = []
        if self.signing_key is not None:
            sign = ["-c", "gpg.format=ssh", "-c", f"user.signingkey={self.signing_key}"]
        args = [*sign, "commit-tree", tree, "-p", base, *(["-S"] if sign else []), "-F", "-"]
        return self.git(*args, data=text.encode("utf-8"), what="make the commit").strip()

    def push(self, commit: str, branch: str) -> None:
        target = f"refs/heads/{branch}"
        result = self.run("push", "--porcelain", "--no-verify", "--", self.url, f"{commit}:{target}")
        if result.returncode == 0:
            return
        status = next(
            (
                line.split("\t")[2]
                for line in str(result.stdout).splitlines()
                if line.startswith("!") and line.count("\t") >= 2 and line.split("\t")[1].endswith(f":{target}")
            ),
            "",
        )
        said = f"{status} {result.stderr}"
        if any(word in said for word in MOVED):
            raise _Moved(status or first_error_line(str(result.stderr)))
        raise _Refused(f"push to {branch} refused: {status or first_error_line(str(result.stderr))}")


def commit_updates(
    source: GitSource,
    updates: Sequence[ImageUpdate],
    *,
    branch: str | None = None,
    signing_key: Path | None = None,
    author: str | None = None,
    log: Any = None,
    attempts: int = DEFAULT_ATTEMPTS,
) -> list[CommitResult]:
    """Commit and push each `mode: commit` update of `updates` (others are left out of the result), one commit
    per Image, to `branch` (the `--update-branch`) or else to the branch the source tracks. Never raises for a
    remote that is down or refuses: each update's result says what happened, and a later round tries again."""
    log = log if log is not None else structlog.get_logger()
    wanted = [update for update in updates if update.mode == "commit"]
    if not wanted:
        return []
    results: list[CommitResult] = []
    work: _Work | None = None
    target = branch or ""
    try:
        work = _Work(source, signing_key, parse_author(author or default_author()))
        tracked_name, tracked_ref = work.tracked()
        if branch is None:
            if not tracked_ref.startswith("refs/heads/"):
                raise _Refused(f"the source follows {tracked_name}, which is not a branch: give --update-branch")
            target = tracked_name
        for index, update in enumerate(wanted):
            try:
                results.append(_one(work, update, target, tracked_ref, log, attempts))
            except (FetchFailed, _Refused) as exc:  # the remote is down or refuses: so for the rest too
                results.extend(_failed(u, target, str(exc), log) for u in wanted[index:])
                break
    except (FetchFailed, _Refused) as exc:
        results = [_failed(u, target, str(exc), log) for u in wanted]
    finally:
        if work is not None:
            work.close()
    return results


def _failed(update: ImageUpdate, branch: str, reason: str, log: Any) -> CommitResult:
    log.warning("git.update_failed", image=update.image, branch=branch, reason=reason, hint="tried again next round")
    return CommitResult(update, "failed", branch, reason=reason)


def _one(work: _Work, update: ImageUpdate, branch: str, tracked_ref: str, log: Any, attempts: int) -> CommitResult:
    for attempt in range(1, attempts + 1):
        full = f"refs/heads/{branch}"
        exists = work.head(full) is not None
        base = work.fetch(full if exists else tracked_ref)
        files, modes = work.manifests(base)
        try:
            rewrite = rewrite_tree(files, update)
        except RewriteError as exc:
            rewrite_skip = f"{update.file}: {exc}"
            log.warning("git.update_skipped", image=update.image, branch=branch, reason=rewrite_skip)
            return CommitResult(update, "skipped", branch, reason=rewrite_skip)
        if rewrite.skipped is not None:
            log.warning("git.update_skipped", image=update.image, branch=branch, reason=rewrite.skipped)
            return CommitResult(update, "skipped", branch, reason=rewrite.skipped)
        if rewrite.already or not rewrite.files:
            log.debug("git.update_already", image=update.image, branch=branch, reference=update.new_reference)
            return CommitResult(update, "already", branch)
        text = message(update, rewrite.sites, work.source.path)
        commit = work.commit(base, dict(rewrite.files), modes, text)
        try:
            work.push(commit, branch)
        except _Moved as exc:
            log.info("git.update_retry", image=update.image, branch=branch, attempt=attempt, reason=str(exc))
            continue
        log.info(
            "git.update_pushed",
            image=update.image,
            branch=branch,
            commit=commit[:12],
            old=update.old_reference,
            new=update.new_reference,
            files=sorted({site.file for site in rewrite.sites}),
        )
        return CommitResult(update, "pushed", branch, commit=commit, sites=rewrite.sites)
    return _failed(update, branch, f"{branch} kept moving: {attempts} pushes refused", log)
