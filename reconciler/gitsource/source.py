"""The git source: which commit of a remote branch or tag is in force on this host, kept on local disk so that a
restart knows it without asking the network.

Layout of the state directory (DIR, created if missing, 0700):

    DIR/.lock                      flock'd while a GitSource uses DIR (one user at a time)
    DIR/repo.git/                  a bare, shallow repository: only what fetches brought
    DIR/checkouts/<commit>.<key>/  one per commit and path: `tree/` (the files at --path) and `revision.json`
    DIR/current -> checkouts/…     the checkout in force

Why it is built this way:
- **A commit in force changes only by one rename(2).** A new commit is checked out into a hidden temporary
  directory, completed, then renamed to its final name; `current` is a symbolic link replaced with rename(2). A
  fetch or a checkout that fails, times out or is killed (SIGKILL, power loss before the rename) leaves `current`
  and what it points to untouched; leftovers (temporary checkouts, git's `tmp_pack_*`, `*.lock` files of a killed
  git) are removed when the next GitSource opens DIR. A restart reads the commit in force from `current`.
- **Shallow and bounded.** Every fetch is `--depth 1` of one ref. Time: every git run has a deadline and is killed
  with its helpers when it passes (`fetch_timeout`). Size: the pack a fetch writes is measured every 0.2 s while
  it downloads and the fetch is killed once the repository's objects pass `max_repo_bytes` (git has no client-side
  cap on a fetched pack; `receive.maxInputSize` is for pushes only), so the overshoot is at most what arrives in
  0.2 s; the repository is measured again afterwards. The files of a commit are counted before checkout
  (`max_tree_bytes`, `max_tree_files`), since a small pack can expand into huge blobs.
- **Refused is not failed.** An unsigned or wrongly signed newest commit (with `verify_signatures`), or one
  without the directory at `path`, is *refused*: `sync()` reports the reason and the commit in force stays. A
  vanished directory must never read as "the user deleted every manifest".
- **Old checkouts go**, except the one in force and the one before it (a reader that resolved the old path a
  moment ago still finds its files).

Signatures are checked by `git verify-commit`: ssh signatures against an allowed-signers file (the format of
`ssh-keygen -Y verify`, with `gpg.format=ssh`), GPG signatures against an OpenPGP public keyring when that is what
`verify_signatures` names (openpgp.py; a GnuPG home of the source's own, never the user's). X.509 is not
supported: its program is set to `false`, so such a commit is refused. The signature checked is the commit's own;
a signed annotated tag is not checked.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import posixpath
import re
import secrets
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from reconciler.errors import LockHeld
from reconciler.gitsource import credentials
from reconciler.gitsource.errors import FetchFailed, SourceInvalid
from reconciler.gitsource.gitcmd import GitResult, first_error_line, git_environment, redact, run_git
from reconciler.gitsource.openpgp import Keyring, is_keyring, refusal

FETCHED_REF = "refs/reconciler/fetched"
IN_FORCE_REF = "refs/reconciler/in-force"
TMP_PREFIX = ".tmp-"
REVISION_FILE = "revision.json"
MESSAGE_LIMIT = 200
GC_PACK_COUNT = 4  # collect garbage once this many packs piled up (each fetch brings one)

# `user@host:path` (git's scp-like syntax); `transport::address` (`ext::` runs a command) is not one.
SCP_LIKE = re.compile(r"^(?:[^@/:\s]+@)?(?P<host>\[[^\]\s]+\]|[^/:\s]+):(?!//)(?!:)")


@dataclass(frozen=True)
class Revision:
    """A commit checked out by the source. `ref` is the ref as given (or the remote's default branch, short), `path`
    the directory inside the commit, `message` the first line of the commit message, `committed_at` ISO 8601."""

    commit: str
    ref: str
    path: str
    message: str
    author: str
    committed_at: str

    def to_json(self) -> dict[str, str]:
        """The contract's spelling (`status -o json`'s `revision`; `appliedAt` is the controller's to add)."""
        return {
            "commit": self.commit,
            "ref": self.ref,
            "path": self.path,
            "message": self.message,
            "author": self.author,
            "committedAt": self.committed_at,
        }


@dataclass(frozen=True)
class Rejection:
    """The newest commit, refused: it does not run, the commit in force does."""

    commit: str
    reason: str

    def to_json(self) -> dict[str, str]:
        return {"commit": self.commit, "reason": self.reason}


@dataclass(frozen=True)
class SyncResult:
    """What one `sync()` found: the revision in force afterwards and its files (None while nothing was ever
    checked out), whether it changed, and the newest commit's refusal if it was refused."""

    in_force: Revision | None
    tree: Path | None
    changed: bool
    newest: str
    rejected: Rejection | None = None


@dataclass(frozen=True)
class GitAuth:
    """How to authenticate: `ssh_key` (deploy key) and `known_hosts` for ssh; `credentials_file` (a token or
    `user:token`) for https, or else the user's git credential helpers when `user_helpers`."""

    ssh_key: Path | None = None
    known_hosts: Path | None = None
    credentials_file: Path | None = None
    user_helpers: bool = True


@dataclass(frozen=True)
class Limits:
    """Bounds of one source. `max_repo_bytes` covers the repository's objects *during* a fetch, when the commit in
    force and the new one are both there: leave room for two commits' packs."""

    fetch_timeout: float = 300.0  # seconds for one git run (a fetch, a checkout, a verification)
    max_repo_bytes: int = 512 * 1024 * 1024  # the objects of the local repository, checked while fetching
    max_tree_bytes: int = 256 * 1024 * 1024  # the files at `path` of one commit, checked before checkout
    max_tree_files: int = 50_000


@dataclass
class _Remote:
    url: str
    scheme: str  # https, http, ssh, file
    host: str  # host[:port] for http(s), "" otherwise
    config: list[tuple[str, str]] = field(default_factory=list)
    ssh_command: str | None = None


def normalize_path(path: str) -> str:
    """`--path` as a clean relative directory ("" for the top); refuses absolute paths and `..`."""
    text = path.strip().replace("\\", "/")
    if text.startswith("/"):
        raise SourceInvalid(f"--path {path!r} must be relative to the repository's top")
    clean = posixpath.normpath(text) if text else "."
    if clean == ".":
        return ""
    if clean == ".." or clean.startswith("../") or "\0" in clean:
        raise SourceInvalid(f"--path {path!r} leaves the repository")
    return clean


def parse_remote(url: str, auth: GitAuth) -> _Remote:
    """Check the URL and decide the transport's settings (see reconciler.gitsource.credentials)."""
    if not url or url.startswith("-") or any(c in url for c in "\0\n\r"):
        raise SourceInvalid(f"git URL {redact(url)!r} is not a URL")
    if "://" not in url:
        if not SCP_LIKE.match(url):
            raise SourceInvalid(f"git URL {url!r}: use https://, ssh://, user@host:path or file://")
        scheme, host = "ssh", ""
    else:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in ("https", "http", "ssh", "file"):
            raise SourceInvalid(f"git URL {redact(url)!r}: the scheme must be https, ssh or file")
        if parts.password is not None:
            raise SourceInvalid(
                f"git URL {redact(url)!r} holds a password: put the token in --git-credentials-file (a URL is"
                " visible to every user in the process list)"
            )
        host = (parts.netloc.rpartition("@")[2]).lower()
    remote = _Remote(url=url, scheme=scheme, host=host)
    if scheme in ("ssh",):
        for name, given in (("--git-ssh-key", auth.ssh_key), ("known_hosts", auth.known_hosts)):
            if given is not None and not os.access(given, os.R_OK):
                raise SourceInvalid(f"{given}: cannot read the {name} file")
        remote.ssh_command = credentials.ssh_command(auth.ssh_key, auth.known_hosts)
    elif auth.ssh_key is not None:
        raise SourceInvalid("--git-ssh-key applies to ssh:// and user@host:path URLs only")
    if scheme in ("https", "http"):
        hostname = urlsplit(url).hostname or ""
        if auth.credentials_file is not None:
            if scheme == "http" and not credentials.is_loopback(hostname):
                raise SourceInvalid(f"git URL {url!r}: a token is sent over https only")
            credentials.read_credentials(auth.credentials_file)  # refuse a bad file now, not at the first fetch
            remote.config = credentials.helper_config(
                f"{scheme}://{host}", scheme, host, auth.credentials_file.resolve()
            )
        elif auth.user_helpers:
            remote.config = [*credentials.user_helper_config(), ("credential.interactive", "false")]
    elif auth.credentials_file is not None:
        raise SourceInvalid("--git-credentials-file applies to https:// URLs only")
    return remote


def _pack_bytes(git_dir: Path) -> int:
    total = 0
    for sub in ("objects/pack", "objects"):
        with contextlib.suppress(FileNotFoundError):
            for entry in os.scandir(git_dir / sub):
                with contextlib.suppress(FileNotFoundError):
                    if entry.is_file(follow_symlinks=False):
                        total += entry.stat(follow_symlinks=False).st_size
                    elif sub == "objects" and len(entry.name) == 2 and entry.is_dir(follow_symlinks=False):
                        for loose in os.scandir(entry.path):
                            with contextlib.suppress(FileNotFoundError):
                                total += loose.stat(follow_symlinks=False).st_size
    return total


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class GitSource:
    """One remote ref checked out under a state directory. Not thread-safe: one controller thread calls `sync()`.

    Use as a context manager, or call `close()`: the state directory stays locked (flock, released by the kernel if
    the process dies) while the object lives, so two controllers never share it."""

    def __init__(
        self,
        url: str,
        directory: Path | str,
        *,
        ref: str | None = None,
        path: str = "",
        verify_signatures: Path | None = None,
        auth: GitAuth | None = None,
        limits: Limits | None = None,
    ) -> None:
        self.url = url
        self.directory = Path(directory)
        self.ref = ref.strip() if ref else None
        if self.ref is not None and (not self.ref or self.ref.startswith("-") or ":" in self.ref):
            raise SourceInvalid(f"--ref {ref!r} is not a branch or tag name")
        self.path = normalize_path(path)
        self.limits = limits or Limits()
        self.verify_signatures = verify_signatures
        if verify_signatures is not None and not os.access(verify_signatures, os.R_OK):
            raise SourceInvalid(f"{verify_signatures}: cannot read the allowed signers file")
        self._remote = parse_remote(url, auth or GitAuth())
        self._git_dir = self.directory / "repo.git"
        self._checkouts = self.directory / "checkouts"
        self._current = self.directory / "current"
        self._lock_fd: int | None = None
        self._open()
        self._keyring: Keyring | None = None
        if verify_signatures is not None and is_keyring(verify_signatures):
            try:
                self._keyring = Keyring(verify_signatures, self.directory / "gnupg")
            except BaseException:
                self.close()
                raise

    # -- life cycle ---------------------------------------------------------------------------------------------

    def _open(self) -> None:
        try:
            self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            self._checkouts.mkdir(mode=0o700, exist_ok=True)
        except OSError as exc:
            raise SourceInvalid(f"{self.directory}: cannot create the git state directory: {exc.strerror}") from exc
        fd = os.open(self.directory / ".lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise LockHeld(f"{self.directory}: another reconcile uses this git state directory") from None
        self._lock_fd = fd
        try:
            self._clean_leftovers()
            if not (self._git_dir / "HEAD").exists():
                self._git("init", "--bare", "--quiet", "--template=", str(self._git_dir), git_dir=False)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        if self._lock_fd is not None:
            os.close(self._lock_fd)
            self._lock_fd = None

    def __enter__(self) -> GitSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _clean_leftovers(self) -> None:
        """What a killed run left: temporary checkouts, git's temporary packs and lock files (nothing else can be
        using them: we hold DIR's lock)."""
        for entry in self._checkouts.iterdir():
            if entry.name.startswith(TMP_PREFIX):
                shutil.rmtree(entry, ignore_errors=True)
        with contextlib.suppress(FileNotFoundError):
            (self.directory / ".current.tmp").unlink()
        if self._git_dir.is_dir():
            self._clean_leftovers_of_fetch()

    # -- reading what is in force ---------------------------------------------------------------------------------

    def _current_name(self) -> str | None:
        try:
            target = os.readlink(self._current)
        except (FileNotFoundError, OSError):
            return None
        name = Path(target).name
        if Path(target).parent.name != "checkouts" or not (self._checkouts / name / REVISION_FILE).is_file():
            return None
        return name

    def in_force(self) -> Revision | None:
        """The revision in force, from disk (what a restart finds), or None when none was ever checked out."""
        name = self._current_name()
        if name is None:
            return None
        try:
            data = json.loads((self._checkouts / name / REVISION_FILE).read_text(encoding="utf-8"))
            return Revision(**{k: str(data[k]) for k in Revision.__dataclass_fields__})
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def tree(self) -> Path | None:
        """The files of the revision in force (a path that does not change while that revision stays in force)."""
        name = self._current_name()
        return None if name is None else self._checkouts / name / "tree"

    # -- one poll -----------------------------------------------------------------------------------------------

    def sync(self) -> SyncResult:
        """Fetch the newest commit of the ref; check it out and put it in force unless it is refused or already in
        force. Raises FetchFailed (temporary) when the fetch or checkout does not complete; the revision in force is
        then untouched."""
        if self._lock_fd is None:
            raise SourceInvalid(f"{self.directory}: the git source is closed")
        ref_name, remote_ref = self._resolve_ref()
        newest = self._fetch(remote_ref)
        current = self.in_force()
        if current is not None and current.commit == newest and current.path == self.path:
            return SyncResult(current, self.tree(), changed=False, newest=newest)
        self._collect_garbage()  # refused commits bring packs too
        reason = self._refusal(newest)
        if reason is not None:
            return SyncResult(current, self.tree(), changed=False, newest=newest, rejected=Rejection(newest, reason))
        revision = self._describe(newest, ref_name)
        try:
            self._switch(revision)
        except OSError as exc:  # a full disk, a read-only DIR: the commit in force stays, a later poll may work
            raise FetchFailed(f"{self.directory}: cannot check out {newest[:12]}: {exc.strerror or exc}") from exc
        return SyncResult(revision, self.tree(), changed=True, newest=newest)

    def _resolve_ref(self) -> tuple[str, str]:
        """(name to report, refspec source to fetch). Without a ref, the remote's default branch (its HEAD)."""
        if self.ref is not None:
            return self.ref, self.ref
        result = self._git("ls-remote", "--symref", "--", self._remote.url, "HEAD")
        self._check(result, "cannot list the remote's refs")
        for line in result.stdout.splitlines():
            if line.startswith("ref: ") and line.endswith("\tHEAD"):
                full = line[len("ref: ") : -len("\tHEAD")]
                return full.removeprefix("refs/heads/"), full
        raise FetchFailed(f"{redact(self._remote.url)}: the remote has no default branch (HEAD); give --ref")

    def _fetch(self, remote_ref: str) -> str:
        cap = self.limits.max_repo_bytes

        def watchdog() -> str | None:
            size = _pack_bytes(self._git_dir)
            return None if size <= cap else f"the fetch passed the size cap of {cap} bytes; stopped"

        try:
            result = self._git(
                "fetch",
                "--depth",
                "1",
                "--no-tags",
                "--no-write-fetch-head",
                "--no-recurse-submodules",
                "--no-auto-gc",
                "--quiet",
                "--",
                self._remote.url,
                f"+{remote_ref}:{FETCHED_REF}",
                watchdog=watchdog,
            )
        except FetchFailed:
            self._clean_leftovers_of_fetch()
            if _pack_bytes(self._git_dir) > cap:  # killed after a whole pack landed: drop it, no ref holds it
                self._collect_garbage(force=True)
            raise
        if result.returncode != 0:
            self._clean_leftovers_of_fetch()
            self._check(result, f"cannot fetch {remote_ref}")
        if _pack_bytes(self._git_dir) > cap:
            # Forget what came, or every later fetch would start over the cap (the commit in force keeps its ref).
            self._git("update-ref", "-d", FETCHED_REF)
            self._collect_garbage(force=True)
            raise FetchFailed(f"the repository passed the size cap of {cap} bytes after fetching {remote_ref}")
        peeled = self._git("rev-parse", "--verify", "--quiet", f"{FETCHED_REF}^{{commit}}")
        self._check(peeled, f"{remote_ref} does not name a commit")
        return peeled.stdout.strip()

    def _clean_leftovers_of_fetch(self) -> None:
        """What a failed or killed git left in the repository: temporary packs and lock files (`shallow.lock`,
        ref locks). Nothing else can be using them: DIR is ours, and run_git waited for git's process group."""
        for leftover in (*self._git_dir.glob("objects/pack/tmp_*"), *self._git_dir.glob("objects/incoming-*")):
            if leftover.is_dir():
                shutil.rmtree(leftover, ignore_errors=True)
            else:
                leftover.unlink(missing_ok=True)
        for lock in self._git_dir.rglob("*.lock"):
            lock.unlink(missing_ok=True)

    def _refusal(self, commit: str) -> str | None:
        if self.verify_signatures is not None:
            reason = self._signature_problem(commit)
            if reason is not None:
                return reason
        spec = f"{commit}:{self.path}" if self.path else f"{commit}^{{tree}}"
        kind = self._git("cat-file", "-t", spec)
        if kind.returncode != 0 or kind.stdout.strip() != "tree":
            return f"commit {commit[:12]} has no directory {self.path!r}"
        listing = self._git("ls-tree", "-r", "-l", "-z", spec)
        self._check(listing, f"cannot list the files of {commit[:12]}")
        files = total = 0
        for entry in listing.stdout.split("\0"):
            if not entry:
                continue
            meta = entry.split("\t", 1)[0].split()
            files += 1
            if len(meta) == 4 and meta[3].isdigit():
                total += int(meta[3])
        where = self.path or "/"
        if files > self.limits.max_tree_files:
            return f"commit {commit[:12]} has {files} files under {where} (limit {self.limits.max_tree_files})"
        if total > self.limits.max_tree_bytes:
            return f"commit {commit[:12]} holds {total} bytes under {where} (limit {self.limits.max_tree_bytes})"
        return None

    def _signature_problem(self, commit: str) -> str | None:
        raw = self._git("cat-file", "commit", commit)
        self._check(raw, f"cannot read commit {commit[:12]}")
        headers = raw.stdout.split("\n\n", 1)[0]
        if "\ngpgsig " not in f"\n{headers}" and "\ngpgsig-sha256 " not in f"\n{headers}":
            return f"commit {commit[:12]} is not signed"
        if "BEGIN PGP SIGNATURE" in headers:
            return self._gpg_signature_problem(commit)
        if "BEGIN SSH SIGNATURE" not in headers:
            return f"commit {commit[:12]} has an X.509 signature; only ssh and GPG signatures are verified"
        if self._keyring is not None:
            return f"commit {commit[:12]} has an ssh signature; --verify-signatures names an OpenPGP keyring"
        result = self._git(
            "-c",
            "gpg.format=ssh",
            "-c",
            f"gpg.ssh.allowedSignersFile={self.verify_signatures}",
            "verify-commit",
            "--raw",
            commit,
        )
        if result.returncode == 0:
            return None
        detail = " ".join(line.strip() for line in result.stderr.splitlines() if line.strip())
        if "No principal matched" in detail or "No matching principal" in detail:
            why = "its key is not in the allowed signers file"
        elif detail:
            why = redact(detail)[:300]
        else:
            why = "the signature does not verify"
        return f"commit {commit[:12]} is not signed by an allowed key: {why}"

    def _gpg_signature_problem(self, commit: str) -> str | None:
        if self._keyring is None:
            return f"commit {commit[:12]} has a GPG signature; --verify-signatures names an ssh allowed-signers file"
        result = self._git(
            *self._keyring.config(), "verify-commit", "--raw", commit, extra_env=self._keyring.environment
        )
        if result.returncode == 0:
            return None
        return f"commit {commit[:12]} is not signed by an allowed key: {refusal(result.stderr)}"

    def _describe(self, commit: str, ref_name: str) -> Revision:
        result = self._git("show", "-s", "--no-show-signature", "--format=%an <%ae>%x00%cI%x00%B", commit)
        self._check(result, f"cannot read commit {commit[:12]}")
        author, committed_at, body = [*result.stdout.split("\0", 2), "", ""][:3]
        message = next((line.strip() for line in body.splitlines() if line.strip()), "")
        return Revision(
            commit=commit,
            ref=ref_name,
            path=self.path,
            message=message[:MESSAGE_LIMIT],
            author=author,
            committed_at=committed_at.strip(),
        )

    # -- checkout and switch ------------------------------------------------------------------------------------

    def _checkout_name(self, commit: str) -> str:
        return f"{commit}.{hashlib.sha256(self.path.encode()).hexdigest()[:8]}"

    def _switch(self, revision: Revision) -> None:
        """Check `revision` out beside the one in force, then put it in force with one rename(2)."""
        previous = self._current_name()
        name = self._checkout_name(revision.commit)
        final = self._checkouts / name
        if not (final / REVISION_FILE).is_file():
            if final.exists():  # not complete (cannot happen through rename; a hand-made directory)
                shutil.rmtree(final)
            self._checkout(revision, final)
        link = self.directory / ".current.tmp"
        link.unlink(missing_ok=True)
        os.symlink(f"checkouts/{name}", link)
        os.replace(link, self._current)
        _fsync_dir(self.directory)
        self._git("update-ref", IN_FORCE_REF, revision.commit)
        self._remove_old_checkouts(keep={name, previous})

    def _checkout(self, revision: Revision, final: Path) -> None:
        tmp = self._checkouts / f"{TMP_PREFIX}{revision.commit[:12]}-{secrets.token_hex(4)}"
        tree = tmp / "tree"
        tree.mkdir(parents=True, mode=0o700)
        try:
            spec = f"{revision.commit}:{self.path}" if self.path else f"{revision.commit}^{{tree}}"
            index = {"GIT_INDEX_FILE": str(tmp / "index")}
            result = self._git("read-tree", spec, extra_env=index)
            self._check(result, f"cannot read the tree of {revision.commit[:12]}")
            result = self._git("--work-tree", ".", "checkout-index", "--all", cwd=tree, extra_env=index)
            self._check(result, f"cannot check out {revision.commit[:12]}")
            (tmp / "index").unlink()
            (tmp / REVISION_FILE).write_text(json.dumps(asdict(revision), indent=2) + "\n", encoding="utf-8")
            _fsync_tree(tmp)
            os.rename(tmp, final)
            _fsync_dir(self._checkouts)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    def _remove_old_checkouts(self, keep: set[str | None]) -> None:
        for entry in self._checkouts.iterdir():
            if entry.name not in keep and not entry.name.startswith(TMP_PREFIX):
                shutil.rmtree(entry, ignore_errors=True)

    def _collect_garbage(self, force: bool = False) -> None:
        """Drop what older fetches brought once packs pile up (best effort: a failure only costs disk space). Only
        the fetched ref and the commit in force keep objects: there are no reflogs, branches or tags."""
        packs = list(self._git_dir.glob("objects/pack/*.pack"))
        if len(packs) < GC_PACK_COUNT and not force:
            return
        with contextlib.suppress(FetchFailed):
            self._git("gc", "--prune=now", "--quiet")

    # -- running git --------------------------------------------------------------------------------------------

    def environment(self, extra: dict[str, str] | None = None) -> dict[str, str]:
        """The environment of a git process that talks to this source's remote: its one transport, credentials
        and deploy key (reconciler.gitsource.propose pushes with it)."""
        return git_environment(
            allow_protocols=[self._remote.scheme],
            config=self._remote.config,
            ssh_command=self._remote.ssh_command,
            extra=extra,
        )

    def _git(
        self,
        *args: str,
        git_dir: bool = True,
        cwd: Path | None = None,
        extra_env: dict[str, str] | None = None,
        watchdog: Callable[[], str | None] | None = None,
    ) -> GitResult:
        env = self.environment(extra_env)
        argv = ["--git-dir", str(self._git_dir.resolve()), *args] if git_dir else list(args)
        return run_git(argv, env=env, timeout=self.limits.fetch_timeout, cwd=cwd or self.directory, watchdog=watchdog)

    def _check(self, result: GitResult, what: str) -> None:
        if result.returncode != 0:
            raise FetchFailed(f"{redact(self._remote.url)}: {what}: {first_error_line(result.stderr)}")


def _fsync_tree(root: Path) -> None:
    """Flush a finished checkout to disk before it is renamed into place, so a power loss cannot leave a complete
    name over incomplete files."""
    for dirpath, _dirnames, filenames in os.walk(root):
        for name in filenames:
            path = os.path.join(dirpath, name)
            if os.path.islink(path):
                continue
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        _fsync_dir(Path(dirpath))
