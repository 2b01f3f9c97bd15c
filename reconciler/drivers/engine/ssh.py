"""`ssh://` engines through the system ssh client: a clear first contact, and connections that are kept.

docker-py's transport for the system ssh client (`use_ssh_client=True`) runs `ssh HOST docker system dial-stdio`
per connection and speaks HTTP over the process's pipes. As shipped (docker-py 7) it keeps none of them: its
adapter makes a new pool for every request, and a response closing its file closes the process's stdout, so a
connection could not have served a second request anyway. Every request paid an ssh handshake and left an ssh
process to the garbage collector, whose close never waited for it. `patch_transport` and `keep_connections`
make a connection serve request after request, and reap what ends.
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import time
import urllib.parse
from functools import lru_cache
from typing import Any

from reconciler.drivers.engine import lazy
from reconciler.errors import EngineUnavailable, PermanentError

POOL = 4  # connections kept per engine; each is an ssh process here and a session on the Host
IDLE_SECONDS = 30.0  # a kept connection idle longer than this is closed rather than used (see _kept_pool_class)
_ONE_POOL = "http+docker://localhost"


def preflight(url: str, timeout: float) -> None:
    """One non-interactive ssh to the Host first, so a refused key, an unknown host key or a missing docker CLI
    there is one clear line (docker-py's ssh transport only sees a closed pipe) and nothing ever waits for a
    password prompt."""
    try:
        parsed = urllib.parse.urlsplit(url)
        port = parsed.port
    except ValueError as exc:  # a port out of range, an unclosed IPv6 bracket
        raise PermanentError(f"invalid engine address {url!r}: {exc}") from None
    if not parsed.hostname:
        raise PermanentError(f"invalid engine address {url!r}: no host")
    command = ["ssh", "-o", "BatchMode=yes", "-o", f"ConnectTimeout={timeout:g}"]
    if port:
        command += ["-p", str(port)]
    if parsed.username:
        command += ["-l", parsed.username]
    command += ["--", parsed.hostname, "docker", "version", "--format", "{{.Server.APIVersion}}"]
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=timeout * 3, stdin=subprocess.DEVNULL, check=False
        )
    except FileNotFoundError:
        raise PermanentError(f"cannot reach the Docker engine at {url}: no ssh client on this machine") from None
    except subprocess.TimeoutExpired:
        raise EngineUnavailable(f"cannot reach the Docker engine at {url}: ssh timed out") from None
    if done.returncode != 0:
        lines = [line.strip() for line in done.stderr.splitlines() if line.strip()]
        said = lines[-1] if lines else f"ssh exited with {done.returncode}"
        raise EngineUnavailable(f"cannot reach the Docker engine at {url}: ssh: {said[:200]}")


class _KeptPipe:
    """The ssh process's stdout as an HTTP response's file: everything but `close` goes to the pipe, so the end
    of one response leaves the connection able to read the next (a socket's `makefile` is a new file each time;
    docker-py's ssh socket handed out the pipe itself)."""

    def __init__(self, pipe: Any, channel: Any) -> None:
        self._pipe = pipe
        self.channel = channel  # docker-py finds the socket of an attach stream through this

    def __getattr__(self, name: str) -> Any:
        return getattr(self._pipe, name)

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

    close._reaps = True  # type: ignore[attr-defined]
    sshconn.SSHSocket.makefile = makefile  # type: ignore[method-assign]  # patched on purpose (see the module's text)
    sshconn.SSHSocket.close = close  # type: ignore[method-assign]


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
