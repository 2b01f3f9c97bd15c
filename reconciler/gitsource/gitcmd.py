"""Running the git command line for the git source: one place decides the environment and the bounds of every git
process reconcile starts.

Why the git CLI and not a library: the CLI is what users debug with, it speaks every transport (smart HTTP with
the user's proxies and CA store, ssh through OpenSSH and its known_hosts), verifies ssh signatures exactly as
`git verify-commit` documents, and gets security fixes from the distribution.

Why the environment is built from scratch rather than inherited as is:
- A controller must never wait for a human: `GIT_TERMINAL_PROMPT=0`, an empty `GIT_ASKPASS` (git would otherwise
  fall back to `SSH_ASKPASS` and open a dialog), ssh in `BatchMode`.
- The user's and the system's git configuration (`~/.gitconfig`, `/etc/gitconfig`) may hold `url.*.insteadOf`
  rewrites, hooks paths, filters, `core.sshCommand` and signing programs that would change what is fetched or how
  it is checked. They are switched off (`GIT_CONFIG_NOSYSTEM=1`, `GIT_CONFIG_GLOBAL=/dev/null`); every setting
  reconcile relies on is passed explicitly. `HOME` is kept: OpenSSH reads `~/.ssh/known_hosts` there and
  credential helpers such as `store` read `~/.git-credentials`.
- Inherited `GIT_*` variables (`GIT_DIR`, `GIT_INDEX_FILE`, `GIT_SSH_COMMAND` of a surrounding hook) would point
  git at another repository; all are dropped.
- Settings go through `GIT_CONFIG_COUNT`/`GIT_CONFIG_KEY_n`/`GIT_CONFIG_VALUE_n`, not `-c`: a process's argv is
  visible to every user in `ps`, its environment only to its owner and root.
- Only the transport the URL names is allowed (`GIT_ALLOW_PROTOCOL`), so a submodule or a redirect cannot switch to
  `ext::` or another scheme.

Why every run has a deadline and its own process group: git starts helpers (`git-remote-https`, `ssh`,
`index-pack`) that outlive a killed `git`; killing the whole group on timeout is what makes "bounded in time" true.
And why git dies with reconcile (Linux's parent-death signal): a reconcile killed during a fetch must not leave a
git behind that finishes the fetch later, writing into the repository while the next reconcile uses it; git's own
helpers then see their pipes close and exit too.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import signal
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from reconciler.gitsource.errors import FetchFailed

GIT = "git"

# Settings every git process of the source runs with (see the module docstring for why they are not `-c`).
BASE_CONFIG: tuple[tuple[str, str], ...] = (
    ("core.hooksPath", os.devnull),  # the clone is ours: no hook ever runs, whatever a template put there
    ("core.logAllRefUpdates", "false"),  # no reflog keeps old fetches' objects alive
    ("core.fsmonitor", "false"),
    ("gc.auto", "0"),  # the source collects garbage itself, after a switch, inside its deadline
    ("maintenance.auto", "false"),
    ("fetch.unpackLimit", "1"),  # every fetch stays one pack file: its size is what the size cap measures
    ("transfer.unpackLimit", "1"),
    ("fetch.fsckObjects", "true"),  # malformed or hostile objects (`.git` or `..` paths in trees) are refused
    ("transfer.fsckObjects", "true"),
    ("fetch.recurseSubmodules", "false"),
    ("submodule.recurse", "false"),
    ("protocol.version", "2"),
    ("http.lowSpeedLimit", "1000"),  # a stalled transfer ends well before the overall deadline
    ("http.lowSpeedTime", "30"),
    # GPG and X.509 signatures are not supported: never let them verify through a keyring found in $HOME.
    ("gpg.program", "false"),
    ("gpg.openpgp.program", "false"),
    ("gpg.x509.program", "false"),
)


PR_SET_PDEATHSIG = 1


def _libc_with_prctl() -> ctypes.CDLL | None:
    """Linux only: elsewhere git just outlives a killed reconcile."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl  # noqa: B018
    except (OSError, AttributeError):
        return None
    return libc


_LIBC = _libc_with_prctl()


def _die_with_parent() -> None:
    """Runs in the forked child before exec: async-signal-safe (one system call, nothing allocated)."""
    if _LIBC is not None:
        _LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)


@dataclass(frozen=True)
class GitResult:
    args: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str


def redact(text: str) -> str:
    """`text` with the password of any URL in it replaced (`https://user:***@host`): git's own messages may echo
    the URL it was given."""
    return re.sub(r"(\b[a-z][a-z0-9+.-]*://[^/@\s:]*):[^/@\s]*@", r"\1:***@", text)


def git_environment(
    *,
    allow_protocols: Iterable[str],
    config: Sequence[tuple[str, str]] = (),
    ssh_command: str | None = None,
    extra: Mapping[str, str] | None = None,
    base: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The environment of one git process: the caller's minus every `GIT_*` and askpass variable, plus the
    settings above and `config` (later entries win, as with git's own multi-valued keys)."""
    inherited = os.environ if base is None else base
    env = {k: v for k, v in inherited.items() if not k.startswith("GIT_") and k not in ("SSH_ASKPASS", "DISPLAY")}
    env.update(
        {
            "LC_ALL": "C",  # messages parsed for reasons are in English
            "LANGUAGE": "",
            "GIT_TERMINAL_PROMPT": "0",
            "GIT_ASKPASS": "",
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": os.devnull,
            "GIT_ATTR_NOSYSTEM": "1",
            "GIT_PROTOCOL_FROM_USER": "0",
            "GIT_ALLOW_PROTOCOL": ":".join(sorted(set(allow_protocols))),
            "GIT_ADVICE": "0",
        }
    )
    if ssh_command is not None:
        env["GIT_SSH_COMMAND"] = ssh_command
        env["GIT_SSH_VARIANT"] = "ssh"
    entries = [*BASE_CONFIG, *config]
    env["GIT_CONFIG_COUNT"] = str(len(entries))
    for index, (key, value) in enumerate(entries):
        env[f"GIT_CONFIG_KEY_{index}"] = key
        env[f"GIT_CONFIG_VALUE_{index}"] = value
    if extra:
        env.update(extra)
    return env


def kill_group(process: subprocess.Popen[bytes], wait: float = 5.0) -> None:
    """End `process` and every helper it started (they share its process group), and wait (up to `wait` seconds)
    until the group is gone, so no helper writes into the repository after this returns."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.poll()  # reap the leader, so the group's end is not held up by our own zombie
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:
        try:
            os.killpg(process.pid, 0)
        except ProcessLookupError:
            return
        process.poll()
        time.sleep(0.01)


def run_git(
    args: Sequence[str],
    *,
    env: Mapping[str, str],
    timeout: float,
    cwd: Path | None = None,
    input_bytes: bytes | None = None,
    watchdog: Callable[[], str | None] | None = None,
    watchdog_interval: float = 0.2,
) -> GitResult:
    """Run `git ARGS` (never through a shell) and return what it printed, whatever its exit status.

    The whole process group is killed when `timeout` seconds have passed (FetchFailed) or when `watchdog`, called
    every `watchdog_interval` seconds while git runs, returns a reason (the reason becomes the exception; the size
    cap of a fetch uses it)."""
    argv = [GIT, *args]
    deadline = time.monotonic() + timeout
    try:
        process = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE if input_bytes is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=dict(env),
            cwd=cwd,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
    except OSError as exc:
        raise FetchFailed(f"cannot run git: {exc.strerror or exc}") from exc
    pending_input = input_bytes
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                kill_group(process)
                process.communicate()
                raise FetchFailed(f"git {args[0]} did not finish within {timeout:g} s")
            step = min(left, watchdog_interval) if watchdog is not None else left
            try:
                out, err = process.communicate(input=pending_input, timeout=step)
                break
            except subprocess.TimeoutExpired:
                pending_input = None  # communicate() keeps feeding what it was given first
                if watchdog is not None:
                    reason = watchdog()
                    if reason is not None:
                        kill_group(process)
                        process.communicate()
                        raise FetchFailed(reason) from None
    finally:
        if process.poll() is None:
            kill_group(process)
            process.wait()
    return GitResult(
        tuple(args),
        process.returncode,
        out.decode("utf-8", "replace"),
        err.decode("utf-8", "replace"),
    )


# git's advice after a failed connection: it says nothing the lines before it do not
BOILERPLATE = ("Please make sure you have the correct access rights", "and the repository exists.")


def first_error_line(stderr: str) -> str:
    """A one-line reason from git's stderr: its `fatal:`/`error:` line, preceded by the last two lines other
    programs printed (ssh's "Host key verification failed.", "Permission denied (publickey)."), redacted."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    fatal = next(
        (line.split(":", 1)[1].strip() for prefix in ("fatal:", "error:") for line in lines if line.startswith(prefix)),
        None,
    )
    others = [
        line
        for line in lines
        if not line.startswith(("fatal:", "error:", "warning:", "hint:")) and line not in BOILERPLATE
    ]
    parts = [*others[-2:], *([fatal] if fatal else [])]
    return redact("; ".join(parts)) if parts else "no message"
