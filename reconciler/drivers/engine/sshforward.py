"""`ssh://` engines through one forwarded unix socket: the Host's engine socket, forwarded by its ssh master.

Each connection of docker-py's ssh transport (ssh.py) is an `ssh HOST docker system dial-stdio`: a session on the
Host and a docker CLI started there, ~0.4 s each, up to `ssh.POOL` of them per command and Host. When the Host's
docker CLI connects to a unix socket (the first contact asks it where: `ssh.preflight`), the master of the Host's
one ssh connection (sshmux) is asked to forward a socket of sshmux's directory to that one (`ssh -O forward -L
LOCAL:REMOTE`), and docker-py uses the local socket as it would a local engine's: a connection is a
channel of the master, a few milliseconds, and no process on either side.

The dial-stdio transport stays for the rest: an endpoint that is not unix:// (tcp, an ssh context, a Windows
pipe), a docker CLI without `context` (before 19.03), or a Host that refuses the forward (sshd's
`AllowStreamLocalForwarding no` or `DisableForwarding yes`: the master accepts the forward and the Host refuses
each channel, which the first `/_ping` through it shows).

A master ends `sshmux.PERSIST_SECONDS` after its last channel closed (a forward alone does not keep it), and one
whose network went ends too. A connection that then finds the local socket gone or refused makes master and
forward again, once, and goes on; if that fails too, the connection fails as it would have.

Masters outlive a command for that spell (sshmux), and their forwards with them: the next command to the Host
finds the Host's endpoint recorded beside the forward (`kept`) and, when the engine answers through it, needs
neither the first contact nor a new forward: no ssh process at all.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import socket
import subprocess
import threading
import time
from functools import lru_cache
from pathlib import Path
from typing import Any

from reconciler.drivers.engine import lazy, sshmux

# An absolute path that ssh's `-L LOCAL:REMOTE` can carry: no `:` (its separator), no `[ ]` (an address's
# brackets), no `%` (a token), no white space
_UNIX_ENDPOINT = re.compile(r"unix://(/[^\s:%\[\]]+)")
# A failed remaking of a master is not tried again for this long: with the Host unreachable, each new connection
# would otherwise wait out an ssh connect timeout of its own
_REOPEN_PAUSE = 10.0


def remote_socket(endpoint: str | None) -> str | None:
    """The Host's engine socket when its docker CLI connects to one (`unix:///PATH`), else None: dial-stdio."""
    if endpoint is None:
        return None
    found = _UNIX_ENDPOINT.fullmatch(endpoint.strip())
    return found.group(1) if found else None


class Forward:
    """The local socket forwarded to the Host's engine socket by the Host's ssh master, and its remaking."""

    def __init__(self, url: str, destination: list[str], remote: str, timeout: float) -> None:
        self.url = url
        self.destination = destination
        self.remote = remote
        self.timeout = timeout
        name = hashlib.sha256(f"{url}\n{remote}".encode()).hexdigest()[:24]
        forwards = sshmux.directory() / "forwards"  # not a socket: sshmux.close_all leaves it to rmtree
        forwards.mkdir(mode=0o700, exist_ok=True)
        self.local = forwards / name
        self.generation = 0  # how many times the forward was made again
        self._lock = threading.Lock()
        self._failed_at: float | None = None

    @property
    def base_url(self) -> str:
        return f"unix://{self.local}"

    def establish(self) -> bool:
        """Forward the local socket (unless it answers already) and check that a `/_ping` through it answers."""
        if answers(self.local, self.timeout):
            return True
        with contextlib.suppress(FileNotFoundError):
            self.local.unlink()  # a socket left by a master that ended: its bind would fail
        done = self._ssh("-O", "forward", "-L", f"{self.local}:{self.remote}")
        return done and answers(self.local, self.timeout)

    def cancel(self) -> None:
        """Take the forward back (the Host refused it): the master keeps serving the dial-stdio sessions."""
        self._ssh("-O", "cancel", "-L", f"{self.local}:{self.remote}")
        with contextlib.suppress(FileNotFoundError):
            self.local.unlink()

    def reopen(self, seen: int) -> bool:
        """Make master and forward again after a connection found the socket gone or refused; `seen` is the
        generation the connection tried, so that of many connections failing at once one remakes it."""
        with self._lock:
            if self.generation != seen:
                return True  # another connection did it meanwhile
            if self._failed_at is not None and time.monotonic() - self._failed_at < _REOPEN_PAUSE:
                return False
            # `true`: a session that starts nothing, whose ssh becomes the master again (sshmux's options)
            made = self._ssh("-o", "BatchMode=yes", "-o", f"ConnectTimeout={self.timeout:g}", command="true")
            if made and self.establish():
                self.generation += 1
                self._failed_at = None
                return True
            self._failed_at = time.monotonic()
            return False

    def attach(self, client: Any) -> None:
        """Every new connection of `client` (a unix-socket client of `base_url`) remakes the forward once when
        the socket is gone or refused."""
        adapter = client._custom_adapter
        original = adapter.get_connection
        connection_class = _connection_class()
        forward = self

        def get_connection(url: str, proxies: Any = None) -> Any:
            pool = original(url, proxies)
            if not getattr(pool, "forwarded", False):

                def new_conn() -> Any:
                    return connection_class(forward, pool.base_url, pool.socket_path, pool.timeout)

                pool._new_conn = new_conn
                pool.forwarded = True
            return pool

        adapter.get_connection = get_connection

    def _ssh(self, *args: str, command: str | None = None) -> bool:
        """ssh ARGS to the Host's master (sshmux's options; `command` run there when given); True if it succeeded."""
        line = ["ssh", *sshmux.options(), *args, *self.destination, *([command] if command else [])]
        try:
            done = subprocess.run(
                line,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                timeout=self.timeout * 3,
                env=sshmux.environment(),
                check=False,
            )
        except (OSError, subprocess.SubprocessError):
            return False
        return done.returncode == 0


def open_forward(url: str, destination: list[str], endpoint: str | None, timeout: float) -> Forward | None:
    """The Host's engine socket forwarded over its ssh master, checked; None when dial-stdio must do (see above)."""
    remote = remote_socket(endpoint)
    if remote is None:
        return None
    forward = Forward(url, destination, remote, timeout)
    if forward.establish():
        _record(url, remote)
        return forward
    forward.cancel()
    return None


class EngineHung(Exception):
    """The Host's engine took a connection through a kept forward and did not answer."""


def kept(url: str, destination: list[str], timeout: float) -> Forward | None:
    """The forward an earlier command of the user's made to this Host, when its master still runs and the engine
    answers through it; None when there is none (the first contact then finds the endpoint again). Raises
    EngineHung when the master took the connection and the engine did not answer: the Host's engine is hung, and
    a first contact would wait for it again."""
    if not sshmux.shared():
        return None
    try:
        remote = _record_path(url).read_text(encoding="utf-8").strip()
    except OSError:
        return None
    if remote_socket(f"unix://{remote}") != remote:
        return None
    forward = Forward(url, destination, remote, timeout)
    answer = ping(forward.local, timeout)
    if answer is None:
        raise EngineHung(f"no answer through the forwarded engine socket within {timeout:g} s")
    return forward if answer else None


def _record_path(url: str) -> Path:
    name = hashlib.sha256(url.encode()).hexdigest()[:24]
    return sshmux.directory() / "forwards" / f"{name}.endpoint"


def _record(url: str, remote: str) -> None:
    """Where the Host's engine socket is, for the next command that finds the master running (see `kept`)."""
    if not sshmux.shared():
        return
    path = _record_path(url)
    with contextlib.suppress(OSError):
        partial = path.with_suffix(f".{threading.get_ident()}")
        partial.write_text(remote + "\n", encoding="utf-8")
        partial.replace(path)


_PING = b"GET /_ping HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n\r\n"


def answers(path: Path, timeout: float) -> bool:
    """Whether an engine answers `/_ping` on unix socket `path` (a forward the Host refuses is closed at once)."""
    return bool(ping(path, timeout))


def ping(path: Path, timeout: float) -> bool | None:
    """`/_ping` on unix socket `path`: True when an engine answers it; None when the socket took the connection and
    nothing answered within `timeout`; False otherwise (no socket, refused, closed at once, not an engine)."""
    head = b""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(str(path))
        except OSError:
            return False
        try:
            sock.sendall(_PING)
            while b"\r\n" not in head and len(head) < 4096:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                head += chunk
        except TimeoutError:
            return None
        except OSError:
            return False
    status = head.split(b"\r\n", 1)[0].split()
    return len(status) >= 2 and status[0].startswith(b"HTTP/1.") and status[1] == b"200"


@lru_cache(maxsize=1)
def _connection_class() -> type:
    """docker-py's unix-socket connection, remaking the forward once when its socket is gone or refused."""
    lazy.docker  # noqa: B018  # the SDK imported the lazy way (without paramiko) before its transport module
    from docker.transport.unixconn import UnixHTTPConnection

    class ForwardedConnection(UnixHTTPConnection):
        def __init__(self, forward: Forward, *args: Any) -> None:
            super().__init__(*args)
            self.forward = forward

        def connect(self) -> None:
            seen = self.forward.generation
            try:
                self.sock = self._open()
            except (ConnectionRefusedError, FileNotFoundError):
                if not self.forward.reopen(seen):
                    raise
                self.sock = self._open()

        def _open(self) -> socket.socket:
            # docker-py's connect, closing the socket of a failed attempt (its own left it to the collector)
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.settimeout(self.timeout)
                sock.connect(self.unix_socket)
            except BaseException:
                sock.close()
                raise
            return sock

    return ForwardedConnection
