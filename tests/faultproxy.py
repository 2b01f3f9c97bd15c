"""A fault-injecting proxy in front of an engine's unix socket, for tests (pure stdlib, threaded).

    with FaultProxy("/run/reconciler-test/docker.sock", seed=7, error=0.05, reset=0.05) as proxy:
        env["DOCKER_HOST"] = proxy.url      # unix:///tmp/fp-xxxx/docker.sock

Every client connection carries one request: the proxy reads the request head (and its body: Content-Length
or chunked), decides with its seeded random generator whether this request meets a fault, forwards it with
`Connection: close` to the engine and relays the answer until the engine closes. Faults, each with its own
probability per request:

- `error`: answer `500 {"message": "faultproxy: injected error"}` without forwarding (the engine never sees it);
- `reset`: drop the client connection without forwarding (the client reads an end of stream, or a reset);
- `reset_after`: forward, let the engine act, then drop the connection instead of relaying the answer (the
  request took effect but the client cannot know: the hard case for retries);
- `stall`: wait `stall_seconds` before forwarding;
- `slow`: relay the answer in small pieces with pauses (at most `slow_seconds` in all).

Only requests that `eligible(method, path)` accepts meet faults (default: all). Every request is counted and
recorded in `requests` ((method, path, fault) tuples, in arrival order). `fail(method, path, count, skip)`
answers 500 to `count` requests matching a method and a path pattern (after letting `skip` of them through),
whatever the rates: enough in a row to exhaust the client's retries, to make one step fail for sure.
`arm_kill(pid, n, ...)` sends SIGKILL
to `pid` at the n-th request matching a method and a path pattern, before it is forwarded (`before=True`) or
after the engine answered and before the answer is relayed: the crash points of the crash-consistency tests.
"""

from __future__ import annotations

import contextlib
import os
import random
import re
import select
import shutil
import signal
import socket
import struct
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

FAULTS = ("error", "reset", "reset_after", "stall", "slow")
HEAD_LIMIT = 1 << 20
ERROR_BODY = b'{"message":"faultproxy: injected error"}'


@dataclass
class FailRule:
    method: str | None
    path: re.Pattern[str] | None
    count: int  # how many matching requests fail
    skip: int = 0  # matching requests let through first
    seen: int = 0
    failed: int = 0

    def take(self, method: str, path: str) -> bool:
        if (self.method is not None and self.method != method) or (
            self.path is not None and not self.path.search(path)
        ):
            return False
        self.seen += 1
        if self.seen <= self.skip or self.failed >= self.count:
            return False
        self.failed += 1
        return True


@dataclass
class KillRule:
    pid: int
    n: int  # the n-th matching request (1-based)
    method: str | None = None
    path: re.Pattern[str] | None = None
    before: bool = True  # True: before forwarding; False: after the engine answered, before relaying
    seen: int = 0
    fired: bool = False
    fired_at: tuple[str, str] | None = None

    def matches(self, method: str, path: str) -> bool:
        return (self.method is None or self.method == method) and (self.path is None or bool(self.path.search(path)))


class _Dropped(Exception):
    """The client went away while its request was read."""


class FaultProxy:
    def __init__(
        self,
        upstream: str,
        *,
        seed: int = 0,
        error: float = 0.0,
        reset: float = 0.0,
        reset_after: float = 0.0,
        stall: float = 0.0,
        slow: float = 0.0,
        stall_seconds: float = 2.0,
        slow_seconds: float = 1.0,
        eligible: Callable[[str, str], bool] | None = None,
        listen: str | None = None,
    ) -> None:
        self.upstream = upstream.removeprefix("unix://")
        self._own_dir: str | None = None
        self._listen = listen
        self.path = listen or ""  # set by start() when not given
        self.random = random.Random(seed)
        self.rates: dict[str, float] = {}
        self.set_rates(error=error, reset=reset, reset_after=reset_after, stall=stall, slow=slow)
        self.stall_seconds = stall_seconds
        self.slow_seconds = slow_seconds
        self.eligible = eligible
        self.counts: Counter[tuple[str, str]] = Counter()
        self.faults: Counter[str] = Counter()
        self.requests: list[tuple[str, str, str | None]] = []
        self.kill: KillRule | None = None
        self.rules: list[FailRule] = []
        self._lock = threading.Lock()
        self._server: socket.socket | None = None
        self._threads: set[threading.Thread] = set()
        self._open: set[socket.socket] = set()
        self._stopping = threading.Event()
        self._acceptor: threading.Thread | None = None

    # --- control ----------------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"unix://{self.path}"

    def set_rates(self, **rates: float) -> None:
        """Change fault probabilities (names from FAULTS); the others keep theirs."""
        with getattr(self, "_lock", contextlib.nullcontext()):
            for name, rate in rates.items():
                if name not in FAULTS:
                    raise ValueError(f"unknown fault {name!r}")
                if not 0.0 <= rate <= 1.0:
                    raise ValueError(f"rate of {name} out of [0, 1]: {rate}")
                self.rates[name] = rate
            if sum(self.rates.values()) > 1.0:
                raise ValueError("fault rates add up to more than 1")

    def fail(self, method: str | None, path: str | None, count: int = 1, skip: int = 0) -> FailRule:
        """Answer 500 to `count` requests matching `method` and the regex `path`, after `skip` such requests."""
        rule = FailRule(method, re.compile(path) if path else None, count, skip)
        with self._lock:
            self.rules.append(rule)
        return rule

    def clear(self) -> None:
        """Drop the fail rules and the kill rule."""
        with self._lock:
            self.rules = []
            self.kill = None

    def arm_kill(
        self, pid: int, n: int, method: str | None = None, path: str | None = None, before: bool = True
    ) -> KillRule:
        """SIGKILL `pid` at the n-th request matching `method` and the regex `path` (searched in the path)."""
        rule = KillRule(pid, n, method, re.compile(path) if path else None, before)
        with self._lock:
            self.kill = rule
        return rule

    def start(self) -> FaultProxy:
        if self._listen is None and self._own_dir is None:
            self._own_dir = tempfile.mkdtemp(prefix="fp-", dir="/tmp")  # unix socket paths: 108 bytes at most
            self.path = os.path.join(self._own_dir, "docker.sock")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server.bind(self.path)
        os.chmod(self.path, 0o600)
        server.listen(64)
        server.settimeout(0.2)
        self._server = server
        self._acceptor = threading.Thread(target=self._accept, name="faultproxy", daemon=True)
        self._acceptor.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._acceptor is not None:
            self._acceptor.join(timeout=5)
        if self._server is not None:
            self._server.close()
            self._server = None
        with self._lock:
            sockets = list(self._open)
            threads = list(self._threads)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        for thread in threads:
            thread.join(timeout=5)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        if self._own_dir is not None:
            shutil.rmtree(self._own_dir, ignore_errors=True)
            self._own_dir = None

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- serving ----------------------------------------------------------------------------------------

    def _accept(self) -> None:
        assert self._server is not None
        while not self._stopping.is_set():
            try:
                client, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            thread = threading.Thread(target=self._serve, args=(client,), name="faultproxy-conn", daemon=True)
            with self._lock:
                self._threads.add(thread)
                self._open.add(client)
            thread.start()

    def _choose(self, method: str, path: str) -> str | None:
        with self._lock:
            self.counts[(method, path.split("?", 1)[0])] += 1
            fault = None
            if any(rule.take(method, path) for rule in self.rules):
                fault = "error"
            elif self.eligible is None or self.eligible(method, path):
                roll = self.random.random()
                for name in FAULTS:
                    rate = self.rates.get(name, 0.0)
                    if roll < rate:
                        fault = name
                        break
                    roll -= rate
            if fault is not None:
                self.faults[fault] += 1
            self.requests.append((method, path, fault))
            return fault

    def _kill_point(self, method: str, path: str) -> KillRule | None:
        with self._lock:
            rule = self.kill
            if rule is None or rule.fired or not rule.matches(method, path):
                return None
            rule.seen += 1
            if rule.seen < rule.n:
                return None
            rule.fired = True
            rule.fired_at = (method, path)
            return rule

    def _serve(self, client: socket.socket) -> None:
        upstream: socket.socket | None = None
        try:
            client.settimeout(60)
            try:
                head, body = _read_request(client)
            except (_Dropped, OSError, ValueError):
                return
            method, path = _request_line(head)
            fault = self._choose(method, path)
            rule = self._kill_point(method, path)
            if rule is not None and rule.before:
                _kill(rule.pid)
                return
            if fault == "error":
                client.sendall(
                    b"HTTP/1.1 500 Internal Server Error\r\nContent-Type: application/json\r\n"
                    + f"Content-Length: {len(ERROR_BODY)}\r\nConnection: close\r\n\r\n".encode()
                    + ERROR_BODY
                )
                return
            if fault == "reset":
                _reset(client)
                return
            if fault == "stall":
                self._stopping.wait(self.stall_seconds)
            upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            upstream.connect(self.upstream)
            with self._lock:
                self._open.add(upstream)
            upstream.sendall(_close_head(head) + body)
            if fault == "reset_after" or (rule is not None and not rule.before):
                _drain_response(upstream)
                if rule is not None:
                    _kill(rule.pid)
                _reset(client)
                return
            self._relay(upstream, client, slow=fault == "slow")
        except OSError:
            return
        finally:
            for sock in (client, upstream):
                if sock is not None:
                    with self._lock:
                        self._open.discard(sock)
                    with contextlib.suppress(OSError):
                        sock.close()
            with self._lock:
                self._threads.discard(threading.current_thread())

    def _relay(self, upstream: socket.socket, client: socket.socket, slow: bool) -> None:
        """Copy the engine's answer to the client until the engine closes; stop early when the client goes
        (a closed event stream)."""
        pause = 0.02
        paused = 0.0
        while not self._stopping.is_set():
            readable, _, _ = select.select([upstream, client], [], [], 0.5)
            if client in readable:
                with contextlib.suppress(OSError):
                    if not client.recv(4096, socket.MSG_PEEK):
                        return  # the client closed its end
            if upstream not in readable:
                continue
            data = upstream.recv(512 if slow else 65536)
            if not data:
                return
            if slow and paused < self.slow_seconds:
                time.sleep(pause)
                paused += pause
            client.sendall(data)


# --- HTTP bits --------------------------------------------------------------------------------------------


def _read_request(sock: socket.socket) -> tuple[bytes, bytes]:
    """The request head (up to the blank line) and its whole body, as bytes."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            raise _Dropped
        data += chunk
        if len(data) > HEAD_LIMIT:
            raise ValueError("request head too large")
    head, rest = data.split(b"\r\n\r\n", 1)
    head += b"\r\n\r\n"
    headers = _headers(head)
    if "chunked" in headers.get("transfer-encoding", "").lower():
        body = rest
        while not _chunked_complete(body):
            chunk = sock.recv(65536)
            if not chunk:
                raise _Dropped
            body += chunk
        return head, body
    length = int(headers.get("content-length", "0") or 0)
    body = rest
    while len(body) < length:
        chunk = sock.recv(min(65536, length - len(body)))
        if not chunk:
            raise _Dropped
        body += chunk
    return head, body


def _headers(head: bytes) -> dict[str, str]:
    lines = head.decode("latin-1").split("\r\n")[1:]
    found: dict[str, str] = {}
    for line in lines:
        name, sep, value = line.partition(":")
        if sep:
            found[name.strip().lower()] = value.strip()
    return found


def _request_line(head: bytes) -> tuple[str, str]:
    first = head.split(b"\r\n", 1)[0].decode("latin-1").split(" ")
    if len(first) < 2:
        raise ValueError("bad request line")
    path = first[1]
    path = re.sub(r"^/v[0-9.]+/", "/", path)  # the API version prefix says nothing about the request
    return first[0], path


def _chunked_complete(body: bytes) -> bool:
    """Whether a chunked body has reached its last (zero-length) chunk and trailer."""
    pos = 0
    while True:
        end = body.find(b"\r\n", pos)
        if end < 0:
            return False
        size = int(body[pos:end].split(b";", 1)[0] or b"0", 16)
        if size == 0:
            return body.find(b"\r\n\r\n", end) >= 0 or body.endswith(b"\r\n", end + 2)
        pos = end + 2 + size + 2
        if pos > len(body):
            return False


def _close_head(head: bytes) -> bytes:
    """The head with `Connection: close` (one request per connection: the proxy never parses answers)."""
    lines = head.rstrip(b"\r\n").split(b"\r\n")
    kept = [line for line in lines if not line.lower().startswith((b"connection:", b"keep-alive:"))]
    return b"\r\n".join([*kept, b"Connection: close"]) + b"\r\n\r\n"


def _drain_response(upstream: socket.socket) -> None:
    """Read the engine's answer to the end, so the request surely took effect before the client is dropped."""
    upstream.settimeout(60)
    with contextlib.suppress(OSError):
        while upstream.recv(65536):
            pass


def _reset(sock: socket.socket) -> None:
    """Close with an immediate reset (the peer's read fails) rather than an orderly end of stream."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        sock.close()


def _kill(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
