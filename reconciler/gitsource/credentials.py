"""How the git source authenticates without putting a secret where others can read it.

- `--git-credentials-file FILE` (https): FILE holds a token, or `user:token`. git asks for it through a credential
  helper that is this module run as a program (`python -m reconciler.gitsource.credentials …`): its command line
  names only the file, the host and the protocol; the secret travels from FILE to git over a pipe. It never
  appears in an argv (visible to every user in `ps`), in the environment, or in the clone's config on disk. The
  helper answers only for the protocol and host of the source's URL, so a redirect to another host gets nothing,
  and it ignores git's `store`/`erase` requests. The helper is configured for the source's URL only, and a token
  is refused over plain http except to the loopback interface (tests use it there).
- Without a file, an https source uses the user's own credential helpers: the `credential.*` settings of the
  system and global git configuration are copied into the (otherwise isolated) environment of the fetch, in their
  order. Nothing else of that configuration is, so `url.*.insteadOf` and friends cannot redirect the source.
- ssh (`ssh://` and `user@host:path`): OpenSSH with the deploy key only (`-i KEY -o IdentitiesOnly=yes`), host
  keys checked against known_hosts (`StrictHostKeyChecking=yes`: an unknown or changed host key fails the fetch,
  it is never added), no prompt (`BatchMode=yes`).
"""

from __future__ import annotations

import ipaddress
import os
import shlex
import stat
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from reconciler.gitsource.errors import SourceInvalid

CREDENTIALS_LIMIT = 64 * 1024
DEFAULT_USERNAME = "x-access-token"  # GitHub's name for a token user; GitLab and Gitea accept any name
SSH_CONNECT_TIMEOUT = 15


def read_credentials(path: Path) -> tuple[str, str]:
    """(username, token) from a credentials file: its first line that is neither empty nor a `#` comment, either
    `token` or `user:token`. Raises SourceInvalid naming the file (never its content)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise SourceInvalid(f"{path}: cannot read the git credentials file: {exc.strerror}") from exc
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise SourceInvalid(f"{path}: the git credentials file is not a regular file")
        data = os.read(fd, CREDENTIALS_LIMIT + 1)
    finally:
        os.close(fd)
    if len(data) > CREDENTIALS_LIMIT:
        raise SourceInvalid(f"{path}: the git credentials file is larger than {CREDENTIALS_LIMIT // 1024} KiB")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise SourceInvalid(f"{path}: the git credentials file is not UTF-8 text") from None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        user, sep, token = line.partition(":")
        if not sep:
            user, token = DEFAULT_USERNAME, line
        if not user or not token or any(c in line for c in "\0\n\r"):
            break
        return user, token
    raise SourceInvalid(f"{path}: the git credentials file holds no token (expected `token` or `user:token`)")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def helper_config(url_prefix: str, protocol: str, host: str, path: Path) -> list[tuple[str, str]]:
    """Config entries that make git ask this module for the credentials of `url_prefix` (and nobody else: the
    empty value clears any helper list before ours)."""
    command = " ".join(
        shlex.quote(part)
        for part in (sys.executable, "-m", "reconciler.gitsource.credentials", protocol, host, str(path))
    )
    return [
        ("credential.helper", ""),
        (f"credential.{url_prefix}.helper", ""),
        (f"credential.{url_prefix}.helper", f"!{command}"),
        ("credential.interactive", "false"),
    ]


def user_helper_config(run: Sequence[str] = ("git",)) -> list[tuple[str, str]]:
    """The `credential.*` settings of the user's system and global git configuration, in order (see the module
    docstring). An unreadable configuration gives none: the fetch then fails with git's authentication error."""
    entries: list[tuple[str, str]] = []
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    env["LC_ALL"] = "C"
    for scope in ("--system", "--global"):
        try:
            result = subprocess.run(
                [*run, "config", scope, "--includes", "-z", "--get-regexp", r"^credential\."],
                capture_output=True,
                env=env,
                timeout=10,
                check=False,
                stdin=subprocess.DEVNULL,
            )
        except (OSError, subprocess.TimeoutExpired):
            continue
        for item in result.stdout.decode("utf-8", "replace").split("\0"):
            if item:
                key, _, value = item.partition("\n")
                entries.append((key, value))
    return entries


def ssh_command(key: Path | None, known_hosts: Path | None) -> str:
    """GIT_SSH_COMMAND (git runs it through the shell: every path is quoted)."""
    parts = [
        "ssh",
        "-o",
        "BatchMode=yes",
        "-o",
        "StrictHostKeyChecking=yes",
        "-o",
        f"ConnectTimeout={SSH_CONNECT_TIMEOUT}",
        "-o",
        "ServerAliveInterval=15",
        "-o",
        "ServerAliveCountMax=2",
    ]
    if key is not None:
        parts += ["-i", str(key), "-o", "IdentitiesOnly=yes"]
    if known_hosts is not None:
        parts += ["-o", f"UserKnownHostsFile={known_hosts}", "-o", "GlobalKnownHostsFile=/dev/null"]
    return " ".join(shlex.quote(part) for part in parts)


def _helper_main(argv: list[str]) -> int:
    """The credential helper: `credentials PROTOCOL HOST FILE get|store|erase` (git's helper protocol)."""
    if len(argv) != 4:
        return 2
    protocol, host, path, action = argv
    if action != "get":
        return 0
    asked: dict[str, str] = {}
    for line in sys.stdin.read(CREDENTIALS_LIMIT).splitlines():
        if not line:
            break
        key, _, value = line.partition("=")
        asked[key] = value
    if asked.get("protocol") != protocol or asked.get("host", "").lower() != host.lower():
        return 0
    try:
        user, token = read_credentials(Path(path))
    except SourceInvalid as exc:
        print(f"reconcile credential helper: {exc}", file=sys.stderr)
        return 0
    sys.stdout.write(f"username={user}\npassword={token}\nquit=1\n")
    return 0


if __name__ == "__main__":
    sys.exit(_helper_main(sys.argv[1:]))
