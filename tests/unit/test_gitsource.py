"""The git source's pure parts: what URLs, paths and credentials files it accepts, the environment every git runs
in, the ssh command, and the credential helper's answers (the fetches themselves: tests/integration)."""

from __future__ import annotations

import io
import shlex
import sys
from pathlib import Path

import pytest

from reconciler.errors import PermanentError, TemporaryError
from reconciler.gitsource import FetchFailed, GitAuth, SourceInvalid
from reconciler.gitsource import credentials as creds
from reconciler.gitsource.gitcmd import first_error_line, git_environment, redact, run_git
from reconciler.gitsource.source import normalize_path, parse_remote


@pytest.mark.parametrize(
    ("given", "clean"),
    [("", ""), (".", ""), ("./", ""), ("hosts/web", "hosts/web"), ("hosts//web/", "hosts/web"), ("a/../b", "b")],
)
def test_path_is_normalized(given: str, clean: str) -> None:
    """--path becomes one clean relative spelling ("" for the top of the repository)."""
    assert normalize_path(given) == clean


@pytest.mark.parametrize("given", ["/etc", "..", "../x", "a/../../x"])
def test_path_may_not_leave_the_repository(given: str) -> None:
    """An absolute path or one that climbs out is a configuration error."""
    with pytest.raises(SourceInvalid):
        normalize_path(given)


def test_errors_follow_the_retry_taxonomy() -> None:
    """A failed fetch may work at the next poll; a misconfigured source never will."""
    assert issubclass(FetchFailed, TemporaryError)
    assert issubclass(SourceInvalid, PermanentError)


@pytest.mark.parametrize(
    ("url", "scheme"),
    [
        ("https://git.example.org/ops/hosts.git", "https"),
        ("http://127.0.0.1:8080/hosts.git", "http"),
        ("ssh://git@git.example.org:2222/ops/hosts.git", "ssh"),
        ("git@git.example.org:ops/hosts.git", "ssh"),
        ("git.example.org:/srv/git/hosts.git", "ssh"),
        ("file:///srv/git/hosts.git", "file"),
    ],
)
def test_supported_urls(url: str, scheme: str) -> None:
    """https, http, ssh (both spellings) and file URLs are accepted and name their one allowed transport."""
    assert parse_remote(url, GitAuth(user_helpers=False)).scheme == scheme


@pytest.mark.parametrize(
    "url", ["", "-uhack", "ext::sh -c touch% /tmp/x", "git://example.org/x.git", "/srv/git/hosts.git", "a\nb"]
)
def test_other_urls_are_refused(url: str) -> None:
    """Other transports (`ext::` runs commands), bare paths and option-like strings are refused."""
    with pytest.raises(SourceInvalid):
        parse_remote(url, GitAuth(user_helpers=False))


def test_a_password_in_the_url_is_refused_and_not_repeated() -> None:
    """A token in the URL would be in every process list: refused, and the message does not show it."""
    with pytest.raises(SourceInvalid) as caught:
        parse_remote("https://bot:s3cret-token@git.example.org/x.git", GitAuth(user_helpers=False))
    assert "s3cret-token" not in str(caught.value)
    assert "--git-credentials-file" in str(caught.value)


def test_a_token_goes_over_https_or_to_loopback_only(tmp_path: Path) -> None:
    """Plain http to another host with a credentials file is refused; to 127.0.0.1 it is allowed (tests)."""
    token = tmp_path / "token"
    token.write_text("abc\n")
    with pytest.raises(SourceInvalid, match="https only"):
        parse_remote("http://git.example.org/x.git", GitAuth(credentials_file=token))
    remote = parse_remote("http://127.0.0.1:9/x.git", GitAuth(credentials_file=token))
    assert ("credential.helper", "") in remote.config
    helper = dict(remote.config)["credential.http://127.0.0.1:9.helper"]
    assert "abc" not in helper and str(token.resolve()) in helper


def test_options_that_do_not_fit_the_transport_are_refused(tmp_path: Path) -> None:
    """A deploy key with an https URL, or a token file with ssh, is a mistake worth saying."""
    key = tmp_path / "key"
    key.write_text("k")
    with pytest.raises(SourceInvalid, match="ssh"):
        parse_remote("https://git.example.org/x.git", GitAuth(ssh_key=key))
    with pytest.raises(SourceInvalid, match="https"):
        parse_remote("git@git.example.org:x.git", GitAuth(credentials_file=key))
    with pytest.raises(SourceInvalid, match="cannot read"):
        parse_remote("git@git.example.org:x.git", GitAuth(ssh_key=tmp_path / "missing"))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("tok\n", ("x-access-token", "tok")),
        ("# a comment\n\n  deploy:tok  \n", ("deploy", "tok")),
        ("oauth2:glpat-123:x\n", ("oauth2", "glpat-123:x")),
    ],
)
def test_credentials_file_forms(tmp_path: Path, text: str, expected: tuple[str, str]) -> None:
    """A token alone, or user:token; comments and blank lines skipped."""
    path = tmp_path / "cred"
    path.write_text(text)
    assert creds.read_credentials(path) == expected


@pytest.mark.parametrize("text", ["", "# only a comment\n", ":tok\n", "user:\n"])
def test_credentials_file_without_a_token(tmp_path: Path, text: str) -> None:
    """An empty or malformed file is an error naming the file, never its content."""
    path = tmp_path / "cred"
    path.write_text(text)
    with pytest.raises(SourceInvalid, match="holds no token") as caught:
        creds.read_credentials(path)
    assert str(path) in str(caught.value)


def test_credentials_file_must_be_a_regular_file(tmp_path: Path) -> None:
    """A directory (or FIFO, device) is refused rather than read."""
    with pytest.raises(SourceInvalid, match="not a regular file"):
        creds.read_credentials(tmp_path)


def _helper(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], args: list[str], asked: str) -> str:
    monkeypatch.setattr(sys, "stdin", io.StringIO(asked))
    assert creds._helper_main(args) == 0
    return capsys.readouterr().out


def test_helper_answers_its_own_host_only(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The source's host gets the token; another host (a redirect) and another protocol get nothing."""
    path = tmp_path / "cred"
    path.write_text("bot:tok\n")
    args = ["https", "git.example.org", str(path), "get"]
    out = _helper(monkeypatch, capsys, args, "protocol=https\nhost=git.example.org\npath=x.git\n\n")
    assert "username=bot\npassword=tok\n" in out
    assert _helper(monkeypatch, capsys, args, "protocol=https\nhost=evil.example.org\n\n") == ""
    assert _helper(monkeypatch, capsys, args, "protocol=http\nhost=git.example.org\n\n") == ""
    store = ["https", "git.example.org", str(path), "store"]
    assert _helper(monkeypatch, capsys, store, "protocol=https\nhost=git.example.org\n\n") == ""


def test_environment_isolates_git_from_the_user_and_the_caller() -> None:
    """Inherited GIT_* variables and askpass programs go; prompts, system and global config are off."""
    base = {"PATH": "/usr/bin", "HOME": "/home/u", "GIT_DIR": "/elsewhere", "SSH_ASKPASS": "/usr/bin/ksshaskpass"}
    env = git_environment(allow_protocols=["https"], base=base, config=[("credential.helper", "")])
    assert env["HOME"] == "/home/u" and env["PATH"] == "/usr/bin"
    assert "GIT_DIR" not in env and "SSH_ASKPASS" not in env
    assert env["GIT_TERMINAL_PROMPT"] == "0" and env["GIT_ASKPASS"] == ""
    assert env["GIT_CONFIG_NOSYSTEM"] == "1" and env["GIT_CONFIG_GLOBAL"] == "/dev/null"
    assert env["GIT_ALLOW_PROTOCOL"] == "https"
    count = int(env["GIT_CONFIG_COUNT"])
    pairs = [(env[f"GIT_CONFIG_KEY_{i}"], env[f"GIT_CONFIG_VALUE_{i}"]) for i in range(count)]
    assert pairs[-1] == ("credential.helper", "")
    assert ("core.hooksPath", "/dev/null") in pairs and ("fetch.fsckObjects", "true") in pairs


def test_ssh_command_checks_host_keys_and_quotes_paths() -> None:
    """The deploy key only, known hosts never auto-accepted, no prompt; a path with a space stays one word."""
    command = creds.ssh_command(Path("/keys/deploy key"), Path("/etc/reconcile/known hosts"))
    words = shlex.split(command)
    assert words[0] == "ssh"
    for option in ("BatchMode=yes", "StrictHostKeyChecking=yes", "IdentitiesOnly=yes"):
        assert option in words
    assert words[words.index("-i") + 1] == "/keys/deploy key"
    assert "UserKnownHostsFile=/etc/reconcile/known hosts" in words


def test_redact_hides_url_passwords() -> None:
    """git may echo the URL it was given; a password in it never reaches a message."""
    text = "fatal: unable to access 'https://bot:tok@git.example.org/x.git/': 403"
    assert redact(text) == "fatal: unable to access 'https://bot:***@git.example.org/x.git/': 403"
    assert redact("ssh://git@host/x.git") == "ssh://git@host/x.git"


def test_first_error_line_keeps_what_ssh_said() -> None:
    """The reason is git's fatal line, without the prefix, after what ssh printed (git's advice dropped)."""
    assert first_error_line("warning: x\nfatal: repository not found\n") == "repository not found"
    ssh = (
        "Host key verification failed.\nfatal: Could not read from remote repository.\n\n"
        "Please make sure you have the correct access rights\nand the repository exists.\n"
    )
    assert first_error_line(ssh) == "Host key verification failed.; Could not read from remote repository."
    assert first_error_line("") == "no message"


def test_run_git_kills_the_process_group_on_timeout(tmp_path: Path) -> None:
    """A git that does not finish in time is killed (with its children) and reported as a failed fetch."""
    fake = tmp_path / "git"
    fake.write_text("#!/bin/sh\nsleep 30 &\nsleep 30\n")
    fake.chmod(0o755)
    env = {"PATH": f"{tmp_path}:/usr/bin:/bin"}
    with pytest.raises(FetchFailed, match=r"did not finish within 0\.5 s"):
        run_git(["fetch"], env=env, timeout=0.5)


def test_run_git_stops_when_the_watchdog_says_so() -> None:
    """The size cap's watchdog ends a run with its own reason."""
    env = git_environment(allow_protocols=["file"])
    with pytest.raises(FetchFailed, match="too big"):
        run_git(["-c", "alias.zz=!sleep 30", "zz"], env=env, timeout=30, watchdog=lambda: "too big")
