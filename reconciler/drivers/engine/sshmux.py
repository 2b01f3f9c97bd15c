"""One ssh connection per Host, shared by every ssh process reconcile starts to it (OpenSSH connection sharing).

A request to an `ssh://` engine goes through the Host's engine socket forwarded by the master (sshforward), or
else an `ssh HOST docker system dial-stdio` process (ssh.py keeps up to `ssh.POOL` of them), and the first contact
is one more ssh (`ssh.preflight`). Each of those ssh processes was its own TCP
connection, key exchange and login on the Host: a fleet of ssh Hosts paid several handshakes per Host and command,
and a Host counted that many logins. With the options below, the first ssh to a Host (the preflight) becomes the
master of a control socket and every later one runs as a session over its connection, whatever the user's ssh
config says (options given on the command line win over it; their other settings, keys and jump hosts still apply).

The sockets live in the user's own directory (`$XDG_RUNTIME_DIR/reconciler-ssh`, else `<tmp>/reconciler-ssh-<uid>`:
0700, owned by the user, checked before every use), so the reconcile commands a user runs one after the other
share a Host's master, as Ansible's kept connections do: a `plan` right after an `apply` logs in nowhere again.
`ControlPersist` keeps a master for `PERSIST_SECONDS` after its last session or forwarded connection (a forward
alone does not keep it: sshforward makes it again when needed), as ssh.py's kept connections are closed after the
same quiet spell, so a long `watch` does not hold logins open while it idles, and a command's masters outlive it
by that spell at most. When that directory is not safely the user's alone (another owner, other permissions, a
symbolic link), the process makes a private one instead; then, at exit, every master is told to end and the
directory is removed.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import stat
import subprocess
import tempfile
import threading
from pathlib import Path

PERSIST_SECONDS = 30  # as ssh.IDLE_SECONDS: a master outlives its last session by that much, no more
# A master's connection that the network dropped silently would hang every session started over it: ssh
# notices within interval x count and ends, and the next ssh becomes a new master.
ALIVE_INTERVAL = 10
ALIVE_COUNT = 3
_MAX_PARENT = 40  # + "/rcssh-XXXXXXXX/" + 40 hex digits stays under 104 bytes
_lock = threading.Lock()
_directory: Path | None = None
_private = False  # the directory is this process's own: its masters end at exit


def options() -> list[str]:
    """The ssh options that make every ssh of this process to one Host share one connection."""
    return [
        "-o",
        "ControlMaster=auto",
        "-o",
        f"ControlPath={directory()}/%C",
        "-o",
        f"ControlPersist={PERSIST_SECONDS}",
        "-o",
        f"ServerAliveInterval={ALIVE_INTERVAL}",
        "-o",
        f"ServerAliveCountMax={ALIVE_COUNT}",
    ]


def environment() -> dict[str, str]:
    """The environment of an ssh this process starts: its own, minus what a bundled Python set for itself."""
    return {k: v for k, v in os.environ.items() if k not in ("LD_LIBRARY_PATH", "SSL_CERT_FILE")}


def directory() -> Path:
    """The user's directory (0700) of control sockets and of sshforward's forwarded sockets, or, when that is not
    safely the user's alone, one of this process's own (made on first use)."""
    global _directory, _private
    with _lock:
        if _directory is None:
            # a unix socket's path has at most 104-108 bytes, and %C adds 41: a long TMPDIR (macOS's) gives way
            parent = tempfile.gettempdir()
            if len(parent) > _MAX_PARENT and os.path.isdir("/tmp"):
                parent = "/tmp"
            _directory = _users_own(parent)
            if _directory is None:
                _directory = Path(tempfile.mkdtemp(prefix="rcssh-", dir=parent))  # mode 0700
                _private = True
                atexit.register(close_all)
        return _directory


def shared() -> bool:
    """Whether masters (and forwards) outlive this process for the user's next command."""
    directory()
    return not _private


def _users_own(parent: str) -> Path | None:
    """`$XDG_RUNTIME_DIR/reconciler-ssh` or `<parent>/reconciler-ssh-<uid>`, made if missing; None unless it is a
    directory (not a link) owned by this user that nobody else may enter."""
    runtime = os.environ.get("XDG_RUNTIME_DIR", "")
    if runtime.startswith("/") and len(runtime) <= _MAX_PARENT:
        path = Path(runtime) / "reconciler-ssh"
    else:
        path = Path(parent) / f"reconciler-ssh-{os.geteuid()}"
    try:
        path.mkdir(mode=0o700, exist_ok=True)
        found = os.lstat(path)
    except OSError:
        return None
    if not stat.S_ISDIR(found.st_mode) or found.st_uid != os.geteuid() or found.st_mode & 0o077:
        return None
    return path


def close_all() -> None:
    """A private directory (see `directory`): end every master this process started and remove the directory (at
    exit; safe to call twice). The user's own directory is left as it is: its masters end on their own."""
    global _directory, _private
    with _lock:
        directory, _directory = _directory, None
        private, _private = _private, False
    if directory is None or not private:
        return
    end_masters(directory)
    shutil.rmtree(directory, ignore_errors=True)


def end_masters(directory: Path) -> None:
    """Tell the master of every control socket in `directory` to end (a missing directory has none)."""
    with contextlib.suppress(OSError):
        for socket_path in directory.iterdir():
            if socket_path.is_dir():
                continue  # sshforward's forwarded sockets: not control sockets, they go with their masters
            # the host name is not used to reach anything with -O: the socket is named exactly
            with contextlib.suppress(OSError, subprocess.SubprocessError):
                subprocess.run(
                    ["ssh", "-o", f"ControlPath={socket_path}", "-O", "exit", "reconcile-control"],
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    timeout=10,
                    check=False,
                    env=environment(),
                )
