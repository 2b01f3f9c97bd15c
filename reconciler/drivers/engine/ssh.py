"""`ssh://` engines through the system ssh client: a clear first contact, and connections that are kept.

docker-py's transport for the system ssh client (`use_ssh_client=True`) runs `ssh HOST docker system dial-stdio`
per connection and speaks HTTP over the process's pipes. As shipped (docker-py 7) it keeps none of them: its
adapter makes a new pool for every request, and a response closing its file closes the process's stdout, so a
connection could not have served a second request anyway. Every request paid an ssh handshake and left an ssh
process to the garbage collector, whose close never waited for it. `patch_transport` and `keep_connections`
make a connection serve request after request, and reap what ends. All of a Host's ssh processes share one
connection to it (sshmux). This transport serves the Hosts whose engine socket cannot be forwarded (sshforward).
"""

from __future__ import annotations

import contextlib
import re
import signal
import socket
import subprocess
import time
import urllib.parse
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from reconciler.drivers.engine import lazy, sshmux
from reconciler.errors import EngineUnavailable, PermanentError

POOL = 4  # connections kept per engine; each is an ssh process here and a session of its one connection
IDLE_SECONDS = 30.0  # a kept connection idle longer than this is closed rather than used (see _kept_pool_class)
_ONE_POOL = "http+docker://localhost"


_API_VERSION = re.compile(r"[0-9]+\.[0-9]+")


@dataclass(frozen=True)
class FirstContact:
    """What the first contact learnt: the engine's API version and where the Host's docker CLI connects (its
    `docker context inspect` endpoint, e.g. unix:///var/run/docker.sock), each None when the Host did not say."""

    version: str | None
    endpoint: str | None


# The first contact's command, run by the Host's login shell (`;` and '' mean the same to sh, bash, zsh, fish and
# csh): the endpoint of a docker CLI with `context` (19.03 and later; it honours DOCKER_HOST and the current context
# as `dial-stdio` would), then the version, whose exit status is the command's.
_FIRST_CONTACT = (
    "docker context inspect --format '{{.Endpoints.docker.Host}}' 2>/dev/null; "
    "docker version --format '{{.Server.APIVersion}}'"
)


def destination(url: str) -> list[str]:
    """ssh's arguments naming the Host of `url` (port, user, `--`, host name), last on its command line."""
    try:
        parsed = urllib.parse.urlsplit(url)
        port = parsed.port
    except ValueError as exc:  # a port out of range, an unclosed IPv6 bracket
        raise PermanentError(f"invalid engine address {url!r}: {exc}") from None
    if not parsed.hostname:
        raise PermanentError(f"invalid engine address {url!r}: no host")
    args = ["-p", str(port)] if port else []
    if parsed.username:
        args += ["-l", parsed.username]
    return [*args, "--", parsed.hostname]


def preflight(url: str, timeout: float) -> FirstContact:
    """One non-interactive ssh to the Host first, so a refused key, an unknown host key or a missing docker CLI
    there is one clear line (docker-py's ssh transport only sees a closed pipe) and nothing ever waits for a
    password prompt. It asks the Host's docker CLI for the engine's API version, so that no connection of its
    own is needed to ask, and for the endpoint it connects to, which sshforward forwards."""
    host = destination(url)
    # the first ssh to the Host: it becomes the master whose connection every later one shares (sshmux)
    command = ["ssh", *sshmux.options(), "-o", "BatchMode=yes", "-o", f"ConnectTimeout={timeout:g}"]
    command += [*host, _FIRST_CONTACT]
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=timeout * 3, stdin=subprocess.DEVNULL, check=False
        )
    except FileNotFoundError:
        raise PermanentError(f"cannot reach the Docker engine at {url}: no ssh client on this machine") from None
    except subprocess.TimeoutExpired:
        raise EngineUnavailable(
            f"cannot reach the Docker engine at {url}: ssh: no answer within {timeout * 3:g} s"
        ) from None
    if done.returncode != 0:
        lines = [line.strip() for line in done.stderr.splitlines() if line.strip()]
        said = lines[-1] if lines else f"ssh exited with {done.returncode}"
        raise EngineUnavailable(f"cannot reach the Docker engine at {url}: ssh: {ssh_reason(done.stderr, said)}")
    return first_contact(done.stdout)


def first_contact(stdout: str) -> FirstContact:
    """The version and endpoint lines of the first contact's output (a login shell may print more around them)."""
    lines = [line.strip() for line in stdout.splitlines() if line.strip()]
    version = next((line for line in lines if _API_VERSION.fullmatch(line)), None)
    endpoint = next((line for line in reversed(lines) if "://" in line), None)
    return FirstContact(version, endpoint)


# What ssh (and the remote shell) say, as sentences; the line ssh printed follows in parentheses.
_SSH_REASONS = (
    ("permission denied while trying to connect to the Docker daemon", "this user may not use the Host's engine"),
    ("Cannot connect to the Docker daemon", "the Host's Docker engine is not running"),
    ("REMOTE HOST IDENTIFICATION HAS CHANGED", "the Host's host key changed (a new machine, or someone between)"),
    ("Host key verification failed", "the Host's host key is unknown or changed; add it to known_hosts"),
    ("No matching host key type", "the Host offers no host key type this client accepts"),
    ("Permission denied", "the Host refused the login (key not authorized for this user)"),
    ("Too many authentication failures", "the Host refused the login (too many keys tried)"),
    ("Connection timed out", "timed out connecting to the Host"),
    ("Operation timed out", "timed out connecting to the Host"),
    ("Connection refused", "nothing listens on the Host's ssh port"),
    ("Could not resolve hostname", "unknown host name"),
    ("No route to host", "no route to the Host"),
    ("Connection closed by", "the Host closed the connection"),
    ("command not found", "no docker CLI on the Host"),
)


def ssh_reason(stderr: str, last: str) -> str:
    """One sentence for ssh's failure: a known one, else its last line (at most 200 characters)."""
    for marker, said in _SSH_REASONS:  # first match wins: the remote docker's words before ssh's own
        if marker.lower() in stderr.lower():
            return f"{said} ({last[:120]})"
    return last[:200]


# The reads http.client makes of a response's file (and the flush of its close): once the pipe is closed they
# raise ValueError ("I/O operation on closed file"), which no layer above takes for a connection error; a read
# raises ConnectionAbortedError instead, a flush does nothing.
_READS = frozenset({"read", "read1", "readinto", "readinto1", "readline", "readlines", "peek", "flush"})


class _KeptPipe:
    """The ssh process's stdout as an HTTP response's file: everything but `close` goes to the pipe, so the end
    of one response leaves the connection able to read the next (a socket's `makefile` is a new file each time;
    docker-py's ssh socket handed out the pipe itself)."""

    def __init__(self, pipe: Any, channel: Any) -> None:
        self._pipe = pipe
        self.channel = channel  # docker-py finds the socket of an attach stream through this

    def __getattr__(self, name: str) -> Any:
        found = getattr(self._pipe, name)
        if name not in _READS:
            return found
        if name == "flush":  # a response closing over a closed pipe: nothing is left to flush
            return lambda: None if self._pipe.closed else found()

        def read(*args: Any, **kwargs: Any) -> Any:
            try:
                return found(*args, **kwargs)
            except ValueError:  # the pipe was closed under the response: the ssh process ended (the engine went)
                raise ConnectionAbortedError("the ssh connection to the engine was closed") from None

        return read

    def close(self) -> None:
        pass  # the connection closes the pipe (SSHSocket.close)


def patch_transport() -> None:
    """Load docker-py's ssh transport and make its socket reusable and its close complete (once per process)."""
    lazy.ssh_transport()
    from docker.transport import sshconn

    if getattr(sshconn.SSHSocket.close, "_reaps", False):
        return

    def makefile(self: Any, mode: str) -> _KeptPipe:
        if not self.proc:
            self.connect()
        return _KeptPipe(self.proc.stdout, self)

    def close(self: Any) -> None:
        # docker-py terminated the ssh process but never waited for it nor closed its pipes: a long `watch`
        # collected one zombie per connection
        proc, self.proc = self.proc, None
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
            for pipe in (proc.stdin, proc.stdout):
                with contextlib.suppress(OSError, ValueError):
                    pipe.close()
        socket.socket.close(self)

    def write(self: Any, data: bytes) -> int:
        # docker-py raised a bare Exception for a connection already closed, and ValueError came from a pipe closed
        # meanwhile: both are a lost connection (OSError), which urllib3 and requests report as one
        proc = self.proc
        if proc is None or proc.stdin is None or proc.stdin.closed:
            raise BrokenPipeError("the ssh connection to the engine is closed")
        try:
            written = int(proc.stdin.write(data))
            proc.stdin.flush()
        except ValueError:
            raise BrokenPipeError("the ssh connection to the engine is closed") from None
        return written

    def connect(self: Any, **_: Any) -> None:
        # docker-py's, with the process's stderr to /dev/null: when the engine goes, every connection's
        # `docker system dial-stdio` printed "failed to open the raw stream connection: ..." on reconcile's
        # stderr; the failure is reported once per object instead (preflight words ssh's own refusals)
        args = ["ssh", *sshmux.options()]  # a session over the Host's one connection (sshmux)
        if self.user:
            args += ["-l", self.user]
        if self.port:
            args += ["-p", self.port]
        args += ["--", self.host, "docker system dial-stdio"]
        self.proc = subprocess.Popen(
            args,
            stdout=subprocess.PIPE,
            stdin=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=sshmux.environment(),
            preexec_fn=_ignore_sigint,
        )

    close._reaps = True  # type: ignore[attr-defined]
    sshconn.SSHSocket.makefile = makefile  # type: ignore[method-assign]  # patched on purpose (see the module's text)
    sshconn.SSHSocket.close = close  # type: ignore[method-assign]
    sshconn.SSHSocket._write = write  # type: ignore[attr-defined]
    sshconn.SSHSocket.connect = connect  # type: ignore[method-assign]


def _ignore_sigint() -> None:
    """In the ssh child: a Ctrl-C at the terminal is reconcile's to handle (it finishes the change in flight)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def keep_connections(client: Any) -> None:
    """Every request of the client through one pool whose connections are kept (see the module's text)."""
    adapter = getattr(client, "_custom_adapter", None)
    if adapter is None or getattr(adapter, "ssh_client", None) is not None or not hasattr(adapter, "pools"):
        return  # paramiko's transport keeps its pools already
    pool_class = _kept_pool_class()

    def get_connection(url: str, proxies: Any = None) -> Any:
        with adapter.pools.lock:
            pool = adapter.pools.get(_ONE_POOL)
            if pool is None:  # kept in the adapter's own container, so the client's close closes it
                pool = pool_class(timeout=adapter.timeout, maxsize=adapter.max_pool_size, host=adapter.ssh_host)
                adapter.pools[_ONE_POOL] = pool
            return pool

    adapter.get_connection = get_connection


@lru_cache(maxsize=1)
def _kept_pool_class() -> type:
    """docker-py's ssh pool, minus connections that sat idle too long or whose ssh process has ended.

    A connection's ssh process is read through a pipe, which no socket timeout covers, and urllib3 cannot look
    whether a pipe was dropped: a session that a firewall dropped silently while `watch` was quiet would hang the
    next request. So a connection serves the requests of a pass and of its neighbours, and a quiet spell starts
    afresh."""
    from docker.transport.sshconn import SSHConnectionPool

    class KeptSSHPool(SSHConnectionPool):
        def _get_conn(self, timeout: float | None = None) -> Any:
            conn = super()._get_conn(timeout)
            proc = getattr(getattr(conn, "sock", None), "proc", None)
            idle = time.monotonic() - getattr(conn, "released_at", time.monotonic())
            if idle > IDLE_SECONDS or (proc is not None and proc.poll() is not None):
                conn.close()
                return self._new_conn()
            return conn

        def _put_conn(self, conn: Any) -> None:
            if conn is not None:
                conn.released_at = time.monotonic()
            super()._put_conn(conn)

    return KeptSSHPool
