"""The git source against real git servers: a repository over file:// and over smart HTTP (git http-backend behind
a small CGI server on 127.0.0.1, with and without a token), commits signed with ssh keys made here, a fetch killed
midway, a checkout switch interrupted at each step, and the size and time bounds. No Docker engine is needed.

Over ssh, an OpenSSH server of the test's own runs on a free port of 127.0.0.1 (as root, like the fleet test
environment's; skipped otherwise): a deploy key, a known_hosts file, an unknown host key and a key the server does
not know."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from reconciler.errors import LockHeld
from reconciler.gitsource import FetchFailed, GitAuth, GitSource, Limits, SourceInvalid
from tests.gitrepo import BACKEND, GitHTTP, GpgKey, Upstream, git
from tests.helpers import free_port

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(shutil.which("git") is None, reason="the git source runs git")


@pytest.fixture
def upstream(tmp_path: Path) -> Upstream:
    return Upstream(tmp_path / "served" / "hosts")


@pytest.fixture
def state(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "state"
    yield path
    # Nothing the source started may outlive the test (every git ran with its cwd in the state directory).
    assert wait_until(lambda: not processes_in(path), 10), f"processes left behind: {processes_in(path)}"


def processes_in(directory: Path) -> list[int]:
    found = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if os.readlink(proc / "cwd").startswith(str(directory)):
                    found.append(int(proc.name))
            except OSError:
                continue
    return found


def cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def wait_until(predicate, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.05)
    return bool(predicate())


def files_of(tree: Path | None) -> dict[str, str]:
    assert tree is not None
    return {str(p.relative_to(tree)): p.read_text(errors="replace") for p in sorted(tree.rglob("*")) if p.is_file()}


def checkouts(state: Path) -> list[str]:
    return sorted(p.name.split(".")[0] for p in (state / "checkouts").iterdir())


# ------------------------------------------------------------------------------------------------ smart HTTP server


@pytest.fixture
def http_server(upstream: Upstream) -> Iterator[GitHTTP]:
    if not BACKEND.exists():
        pytest.skip("git http-backend is not installed")
    server = GitHTTP(upstream.path.parent)
    yield server
    server.close()


# ------------------------------------------------------------------------------------------------------- file://


def test_follows_the_default_branch_and_keeps_the_commit_in_force_and_the_one_before(
    upstream: Upstream, state: Path
) -> None:
    """First sync checks out; an unchanged remote changes nothing; each new commit switches; two checkouts stay."""
    first = upstream.commit({"hosts/web/app.yaml": "v1\n", "README": "x\n"}, "first\n\nbody")
    with GitSource(upstream.url, state, path="hosts/web") as source:
        assert source.in_force() is None and source.tree() is None
        result = source.sync()
        assert result.changed and result.newest == first and result.rejected is None
        revision = result.in_force
        assert revision is not None
        assert (revision.commit, revision.ref, revision.path, revision.message) == (first, "main", "hosts/web", "first")
        assert revision.author == "Dev <dev@example.org>" and revision.committed_at
        assert files_of(result.tree) == {"app.yaml": "v1\n"}
        assert source.sync().changed is False
        second = upstream.commit({"hosts/web/app.yaml": "v2\n"}, "second")
        third = upstream.commit({"hosts/web/app.yaml": "v3\n", "hosts/web/db.yaml": "db\n"}, "third")
        result = source.sync()
        assert result.changed and result.in_force.commit == third
        assert files_of(result.tree) == {"app.yaml": "v3\n", "db.yaml": "db\n"}
        assert second not in checkouts(state)
        assert checkouts(state) == sorted([first, third])
        fourth = upstream.commit({"hosts/web/db.yaml": None}, "fourth")
        result = source.sync()
        assert files_of(result.tree) == {"app.yaml": "v3\n"}
        assert checkouts(state) == sorted([third, fourth])
        assert os.readlink(state / "current") == f"checkouts/{result.tree.parent.name}"


def test_a_restart_finds_the_commit_in_force_on_disk(upstream: Upstream, state: Path, tmp_path: Path) -> None:
    """A new GitSource knows the revision in force before (and without) any fetch; a second user is locked out."""
    commit = upstream.commit({"a.yaml": "a\n"}, "one")
    with GitSource(upstream.url, state) as source:
        source.sync()
        with pytest.raises(LockHeld):
            GitSource(upstream.url, state)
    shutil.move(upstream.path, tmp_path / "gone")  # the remote is unreachable now
    with GitSource(upstream.url, state) as source:
        assert source.in_force().commit == commit
        assert files_of(source.tree()) == {"a.yaml": "a\n"}
        with pytest.raises(FetchFailed):
            source.sync()
        assert source.in_force().commit == commit


def test_branches_and_annotated_tags(upstream: Upstream, state: Path) -> None:
    """--ref names a branch or a tag (an annotated tag resolves to its commit); a missing ref fails the fetch."""
    tagged = upstream.commit({"a.yaml": "tagged\n"}, "release")
    git(upstream.path, "tag", "-a", "v1.0", "-m", "v1.0")
    git(upstream.path, "checkout", "-q", "-b", "staging")
    staged = upstream.commit({"a.yaml": "staged\n"}, "staging work")
    git(upstream.path, "checkout", "-q", "main")
    upstream.commit({"a.yaml": "main\n"}, "main moves on")
    with GitSource(upstream.url, state, ref="v1.0") as source:
        result = source.sync()
        assert (result.in_force.commit, result.in_force.ref) == (tagged, "v1.0")
    with GitSource(upstream.url, state, ref="staging") as source:
        result = source.sync()
        assert result.in_force.commit == staged and files_of(result.tree) == {"a.yaml": "staged\n"}
    with GitSource(upstream.url, state, ref="nope") as source, pytest.raises(FetchFailed, match="nope"):
        source.sync()


def test_a_commit_without_the_directory_is_refused(upstream: Upstream, state: Path) -> None:
    """A push that removes --path does not read as "delete everything": refused, the commit in force stays."""
    first = upstream.commit({"hosts/web/app.yaml": "v1\n"}, "one")
    with GitSource(upstream.url, state, path="hosts/web") as source:
        source.sync()
        gone = upstream.commit({"hosts/web/app.yaml": None}, "remove web")
        result = source.sync()
        assert not result.changed and result.in_force.commit == first
        assert result.rejected is not None and result.rejected.commit == gone
        assert "has no directory 'hosts/web'" in result.rejected.reason
        assert files_of(result.tree) == {"app.yaml": "v1\n"}


def test_a_tree_too_big_to_check_out_is_refused(upstream: Upstream, state: Path) -> None:
    """Files are counted before checkout: a small pack cannot expand into a full disk."""
    upstream.commit({"a.yaml": "a\n"}, "small")
    with GitSource(upstream.url, state, limits=Limits(max_tree_bytes=1000)) as source:
        source.sync()
        upstream.commit({"big.bin": b"\0" * 5000}, "compresses well")
        result = source.sync()
        assert result.rejected is not None and "(limit 1000)" in result.rejected.reason


def test_the_size_cap_stops_a_fetch_and_keeps_the_commit_in_force(upstream: Upstream, state: Path) -> None:
    """A fetch that brings more than max_repo_bytes fails; no partial pack is left; the commit in force stays."""
    first = upstream.commit({"a.yaml": "a\n"}, "small")
    with GitSource(upstream.url, state, limits=Limits(max_repo_bytes=256 * 1024)) as source:
        source.sync()
        upstream.commit({"blob.bin": os.urandom(2 * 1024 * 1024)}, "incompressible")
        with pytest.raises(FetchFailed, match="size cap"):
            source.sync()
        assert source.in_force().commit == first
        assert not list((state / "repo.git" / "objects" / "pack").glob("tmp_*"))
        upstream.commit({"blob.bin": None}, "small again")
        assert source.sync().changed  # the cap is measured on what the repository holds, not what it once held


# ---------------------------------------------------------------------------------------------------- signatures


@pytest.fixture
def keys(tmp_path: Path) -> dict[str, Path]:
    """Two ssh signing keys made here; `allowed` lists only the first."""
    made = {}
    for name in ("trusted", "stranger"):
        key = tmp_path / "keys" / name
        key.parent.mkdir(exist_ok=True)
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(key)], check=True)
        made[name] = key
    public = (tmp_path / "keys" / "trusted.pub").read_text().split()
    allowed = tmp_path / "keys" / "allowed_signers"
    allowed.write_text(f'dev@example.org namespaces="git" {public[0]} {public[1]}\n')
    made["allowed"] = allowed
    return made


def test_only_commits_signed_by_an_allowed_key_run(upstream: Upstream, state: Path, keys: dict[str, Path]) -> None:
    """Signed by the allowed key: in force. Unsigned, or signed by another key: refused with the reason, the last
    verified commit stays. A good commit after them: in force again."""
    if shutil.which("ssh-keygen") is None:
        pytest.skip("ssh-keygen is needed to sign")
    good = upstream.commit({"a.yaml": "good\n"}, "signed", key=keys["trusted"])
    with GitSource(upstream.url, state, verify_signatures=keys["allowed"]) as source:
        assert source.sync().in_force.commit == good
        unsigned = upstream.commit({"a.yaml": "unsigned\n"}, "unsigned")
        result = source.sync()
        assert result.rejected is not None and result.rejected.commit == unsigned
        assert result.rejected.reason == f"commit {unsigned[:12]} is not signed"
        assert result.in_force.commit == good and files_of(result.tree) == {"a.yaml": "good\n"}
        foreign = upstream.commit({"a.yaml": "foreign\n"}, "signed by a stranger", key=keys["stranger"])
        result = source.sync()
        assert result.rejected is not None and result.rejected.commit == foreign
        assert "not signed by an allowed key" in result.rejected.reason
        assert result.in_force.commit == good
        better = upstream.commit({"a.yaml": "better\n"}, "signed again", key=keys["trusted"])
        result = source.sync()
        assert result.changed and result.rejected is None and result.in_force.commit == better
    with pytest.raises(SourceInvalid, match="allowed signers"):
        GitSource(upstream.url, state, verify_signatures=keys["allowed"].with_name("missing"))


@pytest.fixture
def gpg_keys(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """Two GPG signing keys made here; `keyring` holds only the first's public key."""
    made: dict[str, Any] = {"trusted": GpgKey.make("trusted"), "stranger": GpgKey.make("stranger")}
    made["keyring"] = made["trusted"].export(tmp_path / "trusted.asc")
    try:
        yield made
    finally:
        made["trusted"].remove()
        made["stranger"].remove()


def test_with_a_keyring_only_commits_gpg_signed_by_its_keys_run(
    upstream: Upstream, state: Path, keys: dict[str, Path], gpg_keys: dict[str, Any]
) -> None:
    """`verify_signatures` naming an OpenPGP keyring: a commit GPG-signed by a key in it is in force; unsigned,
    signed by another GPG key, or ssh-signed: refused with the reason, the last verified commit stays."""
    good = upstream.commit({"a.yaml": "good\n"}, "gpg-signed", key=gpg_keys["trusted"])
    with GitSource(upstream.url, state, verify_signatures=gpg_keys["keyring"]) as source:
        assert source.sync().in_force.commit == good
        foreign = upstream.commit({"a.yaml": "foreign\n"}, "signed by a stranger", key=gpg_keys["stranger"])
        result = source.sync()
        assert result.rejected is not None and result.rejected.commit == foreign
        assert (
            result.rejected.reason
            == f"commit {foreign[:12]} is not signed by an allowed key: its key is not in the keyring"
        )
        assert result.in_force.commit == good and files_of(result.tree) == {"a.yaml": "good\n"}
        ssh_signed = upstream.commit({"a.yaml": "ssh\n"}, "ssh-signed", key=keys["trusted"])
        result = source.sync()
        assert result.rejected is not None and result.rejected.commit == ssh_signed
        assert "names an OpenPGP keyring" in result.rejected.reason
        unsigned = upstream.commit({"a.yaml": "unsigned\n"}, "unsigned")
        assert source.sync().rejected.reason == f"commit {unsigned[:12]} is not signed"
        better = upstream.commit({"a.yaml": "better\n"}, "gpg-signed again", key=gpg_keys["trusted"])
        result = source.sync()
        assert result.changed and result.rejected is None and result.in_force.commit == better


def test_a_gpg_signed_commit_is_refused_by_an_allowed_signers_file(
    upstream: Upstream, state: Path, keys: dict[str, Path], gpg_keys: dict[str, Any]
) -> None:
    """An ssh allowed-signers file never lets a GPG signature through (nor the user's own ~/.gnupg)."""
    signed = upstream.commit({"a.yaml": "x\n"}, "gpg-signed", key=gpg_keys["trusted"])
    with GitSource(upstream.url, state, verify_signatures=keys["allowed"]) as source:
        result = source.sync()
        assert result.rejected is not None and result.rejected.commit == signed
        assert "names an ssh allowed-signers file" in result.rejected.reason


def test_a_file_that_looks_like_a_keyring_but_holds_no_key_is_refused(
    upstream: Upstream, state: Path, tmp_path: Path
) -> None:
    bogus = tmp_path / "bogus.asc"
    bogus.write_text("-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nnot a key\n-----END PGP PUBLIC KEY BLOCK-----\n")
    upstream.commit({"a.yaml": "x\n"}, "first")
    with pytest.raises(SourceInvalid, match="not a usable OpenPGP keyring"):
        GitSource(upstream.url, state, verify_signatures=bogus)
    with GitSource(upstream.url, state) as source:  # the failed attempt let go of the state directory
        assert source.sync().in_force is not None


# ---------------------------------------------------------------------------------------------------- smart HTTP


def test_smart_http_anonymous(upstream: Upstream, state: Path, http_server: GitHTTP) -> None:
    """A repository served by git http-backend is followed over http, no credentials sent."""
    commit = upstream.commit({"a.yaml": "a\n"}, "one")
    with GitSource(f"{http_server.base}/hosts", state, auth=GitAuth(user_helpers=False)) as source:
        assert source.sync().in_force.commit == commit
    assert http_server.authorizations and not any(http_server.authorizations)


def test_smart_http_with_a_token_file(upstream: Upstream, state: Path, tmp_path: Path) -> None:
    """Without credentials the fetch fails at once (no prompt); with the token file it works, and the token is
    written nowhere under the state directory."""
    token = "tok-" + secrets.token_hex(16)
    server = GitHTTP(upstream.path.parent, token=token)
    try:
        commit = upstream.commit({"a.yaml": "a\n"}, "one")
        url = f"{server.base}/hosts"
        with GitSource(url, state, auth=GitAuth(user_helpers=False)) as source:
            started = time.monotonic()
            with pytest.raises(FetchFailed):
                source.sync()
            assert time.monotonic() - started < 20
        for content in (token, f"deploy:{token}"):
            cred = tmp_path / "cred"
            cred.write_text(f"# the deploy token\n{content}\n")
            cred.chmod(0o600)
            shutil.rmtree(state)
            with GitSource(url, state, auth=GitAuth(credentials_file=cred)) as source:
                assert source.sync().in_force.commit == commit
            for path in state.rglob("*"):
                if path.is_file() and not path.is_symlink():
                    assert token.encode() not in path.read_bytes(), path
        assert any(a and a.startswith("Basic ") for a in server.authorizations)
    finally:
        server.close()


def test_smart_http_through_the_users_credential_helper(
    upstream: Upstream, state: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without a credentials file, the user's own helper (here `store` in ~/.gitconfig) answers; nothing else of
    that configuration applies (an insteadOf rewrite to a wrong port is ignored)."""
    token = "tok-" + secrets.token_hex(16)
    server = GitHTTP(upstream.path.parent, token=token)
    try:
        home = tmp_path / "home"
        home.mkdir()
        store = home / "git-credentials"
        store.write_text(f"http://deploy:{token}@127.0.0.1:{server.server.server_address[1]}\n")
        (home / ".gitconfig").write_text(
            f'[credential]\n\thelper = "store --file={store}"\n'
            f'[url "http://127.0.0.1:9/"]\n\tinsteadOf = {server.base}/\n'
        )
        monkeypatch.setenv("HOME", str(home))
        commit = upstream.commit({"a.yaml": "a\n"}, "one")
        with GitSource(f"{server.base}/hosts", state) as source:
            assert source.sync().in_force.commit == commit
    finally:
        server.close()


# ------------------------------------------------------------------------------------------ interrupted fetches


def test_a_stalled_fetch_times_out_and_keeps_the_commit_in_force(
    upstream: Upstream, state: Path, http_server: GitHTTP
) -> None:
    """A server that stops sending mid-pack: the fetch ends at its deadline, with its helpers; nothing changes."""
    first = upstream.commit({"a.yaml": "a\n"}, "one")
    url = f"{http_server.base}/hosts"
    with GitSource(url, state, auth=GitAuth(user_helpers=False), limits=Limits(fetch_timeout=3)) as source:
        source.sync()
        upstream.commit({"a.yaml": "b\n", "blob.bin": os.urandom(512 * 1024)}, "two")
        http_server.stall_after = 64 * 1024
        started = time.monotonic()
        with pytest.raises(FetchFailed, match="did not finish within 3 s"):
            source.sync()
        assert time.monotonic() - started < 10
        assert source.in_force().commit == first
        assert wait_until(lambda: not processes_in(state), 5), "the fetch's helpers outlived its deadline"


def run_child(url: str, state: Path, stop_at: str = "") -> subprocess.Popen[bytes]:
    """A reconcile-like process syncing once; `stop_at` makes it SIGKILL itself at that step of a switch."""
    script = """
import os, signal, sys
from reconciler.gitsource import GitSource, GitAuth, source
def die(*args, **kwargs):
    os.kill(os.getpid(), signal.SIGKILL)
stop = sys.argv[3]
if stop == "checkout-written":  # every file checked out, the directory not yet renamed into place
    source._fsync_tree = die
elif stop == "link-made":  # the new checkout in place, `current` not yet replaced
    source.os.replace = die
elif stop == "switched":  # `current` replaced, old checkouts not yet removed
    source.GitSource._remove_old_checkouts = die
with GitSource(sys.argv[1], sys.argv[2], auth=GitAuth(user_helpers=False)) as src:
    src.sync()
"""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    return subprocess.Popen([sys.executable, "-c", script, url, str(state), stop_at], env=env, stderr=subprocess.PIPE)


def finish(child: subprocess.Popen[bytes]) -> int:
    """Wait for a child of run_child (its stderr shown when it failed other than by SIGKILL)."""
    _, err = child.communicate(timeout=30)
    assert child.returncode in (0, -signal.SIGKILL), err.decode(errors="replace")
    return child.returncode


def test_a_fetch_killed_midway_leaves_the_commit_in_force_and_the_next_start_catches_up(
    upstream: Upstream, state: Path, http_server: GitHTTP
) -> None:
    """SIGKILL while the pack is half transferred: git dies with its parent, the next start cleans up, still has
    the old commit in force, and then fetches and runs the newest one."""
    first = upstream.commit({"a.yaml": "a\n"}, "one")
    url = f"{http_server.base}/hosts"
    assert finish(run_child(url, state)) == 0
    newest = upstream.commit({"a.yaml": "b\n", "blob.bin": os.urandom(512 * 1024)}, "two")
    http_server.stall_after = 64 * 1024
    child = run_child(url, state)
    try:
        assert http_server.stalled.wait(30), "the fetch never reached the pack"
    finally:
        child.send_signal(signal.SIGKILL)
        finish(child)
    # The writer (git fetch: refs, shallow file) dies with its parent. Its transport helper only relays bytes and
    # ends when its connection does (here: when the server lets go; on a real network http.lowSpeedTime's 30 s).
    assert wait_until(lambda: not [p for p in processes_in(state) if b"fetch" in cmdline(p)], 5)
    http_server.stall_after = None
    http_server.release.set()
    assert wait_until(lambda: not processes_in(state), 10), [cmdline(p) for p in processes_in(state)]
    with GitSource(url, state, auth=GitAuth(user_helpers=False)) as source:
        assert source.in_force().commit == first
        assert not list((state / "repo.git" / "objects" / "pack").glob("tmp_*"))
        result = source.sync()
        assert result.in_force.commit == newest, (result, first, newest)
        assert files_of(result.tree)["a.yaml"] == "b\n"


@pytest.mark.parametrize(
    ("stop_at", "in_force_after"), [("checkout-written", "old"), ("link-made", "old"), ("switched", "new")]
)
def test_a_switch_interrupted_at_each_step_leaves_one_whole_commit_in_force(
    upstream: Upstream, state: Path, stop_at: str, in_force_after: str
) -> None:
    """Killed after the checkout, after the rename, after the link switch: the next start finds either the old or
    the new commit whole (never a mix), removes the leftovers, and its first sync runs the newest commit."""
    old = upstream.commit({"a.yaml": "old\n", "gone.yaml": "x\n"}, "old")
    assert finish(run_child(upstream.url, state)) == 0
    new = upstream.commit({"a.yaml": "new\n", "gone.yaml": None}, "new")
    assert finish(run_child(upstream.url, state, stop_at)) == -signal.SIGKILL
    expected = {"old": (old, {"a.yaml": "old\n", "gone.yaml": "x\n"}), "new": (new, {"a.yaml": "new\n"})}
    with GitSource(upstream.url, state) as source:
        commit, files = expected[in_force_after]
        assert source.in_force().commit == commit and files_of(source.tree()) == files
        assert not [p for p in (state / "checkouts").iterdir() if p.name.startswith(".tmp-")]
        assert not (state / ".current.tmp").exists()
        result = source.sync()
        assert result.in_force.commit == new and files_of(result.tree) == {"a.yaml": "new\n"}
        assert result.changed is (in_force_after == "old")


# ----------------------------------------------------------------------------------------------------------- ssh

SSHD = Path("/usr/sbin/sshd")
SSHD_PRIVSEP = Path("/run/sshd")


def keygen(path: Path) -> Path:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", path.name, "-f", str(path)], check=True)
    return path


@pytest.fixture
def sshd(tmp_path: Path) -> Iterator[dict[str, object]]:
    """An sshd on 127.0.0.1:PORT accepting the `deploy` key for root; `known_hosts` names its host key."""
    if os.geteuid() != 0 or not SSHD.exists() or shutil.which("ssh") is None:
        pytest.skip("needs root, /usr/sbin/sshd and ssh")
    run = tmp_path / "sshd"
    run.mkdir()
    host_key = keygen(run / "host_key")
    deploy = keygen(run / "deploy")
    (run / "authorized_keys").write_text((run / "deploy.pub").read_text())
    port = free_port()
    (run / "sshd_config").write_text(
        f"""ListenAddress 127.0.0.1:{port}
HostKey {host_key}
PidFile {run}/sshd.pid
AuthorizedKeysFile {run}/authorized_keys
StrictModes no
PermitRootLogin prohibit-password
AllowUsers root
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
PrintMotd no
"""
    )
    made_privsep = not SSHD_PRIVSEP.exists()
    if made_privsep:
        SSHD_PRIVSEP.mkdir(mode=0o755)
    log = (run / "sshd.log").open("wb")
    daemon = subprocess.Popen([str(SSHD), "-D", "-e", "-f", str(run / "sshd_config")], stderr=log)

    def listening() -> bool:
        with socket.socket() as probe:
            return probe.connect_ex(("127.0.0.1", port)) == 0

    try:
        assert wait_until(listening, 15), (run / "sshd.log").read_text()
        known = run / "known_hosts"
        algo, key = (run / "host_key.pub").read_text().split()[:2]
        known.write_text(f"[127.0.0.1]:{port} {algo} {key}\n")
        yield {"port": port, "deploy": deploy, "known_hosts": known, "run": run}
    finally:
        daemon.terminate()
        daemon.wait(10)
        log.close()
        # /run/sshd is only ours to remove if we made it and no other sshd started meanwhile
        others = [p for p in Path("/proc").iterdir() if p.name.isdigit() and cmdline(int(p.name)).startswith(b"sshd")]
        if made_privsep and not others:
            with contextlib.suppress(OSError):
                SSHD_PRIVSEP.rmdir()


def test_ssh_with_a_deploy_key_and_known_hosts(upstream: Upstream, state: Path, sshd: dict[str, object]) -> None:
    """ssh://: the deploy key only, the host key checked against the given known_hosts."""
    commit = upstream.commit({"a.yaml": "a\n"}, "one")
    url = f"ssh://root@127.0.0.1:{sshd['port']}{upstream.path}"
    auth = GitAuth(ssh_key=sshd["deploy"], known_hosts=sshd["known_hosts"])
    with GitSource(url, state, auth=auth) as source:
        result = source.sync()
        assert result.in_force.commit == commit and files_of(result.tree) == {"a.yaml": "a\n"}


def test_ssh_never_accepts_an_unknown_host_key(upstream: Upstream, state: Path, sshd: dict[str, object]) -> None:
    """A host key that is not in known_hosts fails the fetch at once and is not added to the file."""
    upstream.commit({"a.yaml": "a\n"}, "one")
    empty = sshd["run"] / "empty_known_hosts"
    empty.write_text("")
    url = f"ssh://root@127.0.0.1:{sshd['port']}{upstream.path}"
    with GitSource(url, state, auth=GitAuth(ssh_key=sshd["deploy"], known_hosts=empty)) as source:
        with pytest.raises(FetchFailed, match="Host key verification failed"):
            source.sync()
        assert source.in_force() is None
    assert empty.read_text() == ""


def test_ssh_with_a_key_the_server_does_not_know(upstream: Upstream, state: Path, sshd: dict[str, object]) -> None:
    """A deploy key that is not authorized fails without a prompt (BatchMode), and no other key is tried."""
    upstream.commit({"a.yaml": "a\n"}, "one")
    stranger = keygen(sshd["run"] / "stranger")
    url = f"ssh://root@127.0.0.1:{sshd['port']}{upstream.path}"
    with GitSource(url, state, auth=GitAuth(ssh_key=stranger, known_hosts=sshd["known_hosts"])) as source:
        started = time.monotonic()
        with pytest.raises(FetchFailed, match="Permission denied"):
            source.sync()
        assert time.monotonic() - started < 20
