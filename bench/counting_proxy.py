"""A tiny unix-socket proxy in front of the Docker engine that counts the HTTP requests passing through it.

Shared by the benchmarks (bench/compose_peer.py) and the tests that bound the number of engine requests
(tests/integration/test_engine_requests.py): point DOCKER_HOST at `proxy.url` and read `proxy.requests`.

Each request is recorded as (method, normalized path): the API version prefix and the query string are dropped,
and an object's ID or name is replaced by `{}`, so `GET /containers/{}/json` is one inspect of one container and
`GET /containers/json` one listing. `per_object()` are the requests that name an object.

The client-to-engine stream is parsed only as far as HTTP/1.1 framing needs (headers, Content-Length or chunked
body); the engine's answers are copied back unparsed, so streamed answers (events, logs, pulls) work. An upgraded
connection (attach, exec) is copied both ways unparsed once its request is counted.

In-process:   with CountingProxy(upstream_url) as proxy: ... proxy.requests
Standalone:   python bench/counting_proxy.py --upstream unix:///run/x.sock --listen /tmp/p.sock --log /tmp/p.log
              (one `METHOD PATH` line per request, flushed as it arrives)
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import signal
import socket
import tempfile
import threading
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import IO

_VERSION = re.compile(r"^/v\d+\.\d+(?=/)")
_BY_ID = ("containers", "networks", "volumes", "exec", "plugins", "services", "tasks", "nodes", "secrets", "configs")
_IMAGE_ACTIONS = ("json", "history", "push", "tag", "get")
_COLLECTION_VERBS = {"json", "create", "prune", "load", "search", "get", "build"}


def normalize(path: str) -> str:
    """`/v1.41/containers/3f2a…/json?size=0` -> `/containers/{}/json`; listings keep their path."""
    path = _VERSION.sub("", path.split("?", 1)[0])
    parts = path.split("/")  # ['', 'containers', '<id>', 'json']
    if len(parts) >= 3 and parts[1] in _BY_ID and parts[2] not in _COLLECTION_VERBS:
        return "/".join(["", parts[1], "{}", *parts[3:]])
    if len(parts) >= 3 and parts[1] == "images" and parts[2] not in _COLLECTION_VERBS:
        # an image name may hold slashes (registry:5000/repo/name:tag): the action is the last part, if any
        if parts[-1] in _IMAGE_ACTIONS and len(parts) > 3:
            return f"/images/{{}}/{parts[-1]}"
        return "/images/{}"
    return path


def is_per_object(entry: tuple[str, str]) -> bool:
    return "{}" in entry[1]


def unix_path(url: str) -> str:
    if url.startswith("unix://"):
        return url[len("unix://") :]
    if url.startswith("/"):
        return url
    raise ValueError(f"the counting proxy needs a unix:// engine address, not {url!r}")


class CountingProxy:
    """Listen on a fresh unix socket, forward to `upstream` (unix://…), count every request."""

    def __init__(self, upstream: str, listen: str | None = None, on_request: Callable[[str, str], None] | None = None):
        self.upstream = unix_path(upstream)
        self._dir: str | None = None
        if listen is None:
            self._dir = tempfile.mkdtemp(prefix="count-proxy-")
            listen = os.path.join(self._dir, "engine.sock")
        self.path = listen
        self.url = f"unix://{listen}"
        self.requests: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        self._on_request = on_request
        self._server: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._closing = False
        self._conns: set[socket.socket] = set()

    # -- reading the count -----------------------------------------------------------------------------------
    def mark(self) -> int:
        with self._lock:
            return len(self.requests)

    def since(self, mark: int = 0) -> list[tuple[str, str]]:
        with self._lock:
            return list(self.requests[mark:])

    @staticmethod
    def summary(entries: Iterable[tuple[str, str]]) -> Counter[str]:
        return Counter(f"{method} {path}" for method, path in entries)

    # -- life cycle ------------------------------------------------------------------------------------------
    def start(self) -> CountingProxy:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        server.bind(self.path)
        server.listen(128)
        self._server = server
        self._thread = threading.Thread(target=self._accept, name="count-proxy", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._closing = True
        if self._server is not None:
            with contextlib.suppress(OSError):
                self._server.shutdown(socket.SHUT_RDWR)
            self._server.close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        with self._lock:
            conns = list(self._conns)
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        if self._dir is not None:
            with contextlib.suppress(OSError):
                os.rmdir(self._dir)

    def __enter__(self) -> CountingProxy:
        return self.start()

    def __exit__(self, *_: object) -> None:
        self.stop()

    # -- the proxy -------------------------------------------------------------------------------------------
    def _accept(self) -> None:
        assert self._server is not None
        while not self._closing:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), name="count-proxy-conn", daemon=True).start()

    def _record(self, method: str, target: str) -> None:
        path = normalize(target)
        with self._lock:
            self.requests.append((method, path))
        if self._on_request is not None:
            self._on_request(method, path)

    def _serve(self, client: socket.socket) -> None:
        upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            upstream.connect(self.upstream)
        except OSError:
            client.close()
            upstream.close()
            return
        with self._lock:
            self._conns.update((client, upstream))
        back = threading.Thread(target=_pump, args=(upstream, client), name="count-proxy-back", daemon=True)
        back.start()
        try:
            self._forward_requests(client.makefile("rb", buffering=65536), upstream)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                upstream.shutdown(socket.SHUT_WR)
            back.join(timeout=600)
            for s in (client, upstream):
                with self._lock:
                    self._conns.discard(s)
                s.close()

    def _forward_requests(self, reader: IO[bytes], upstream: socket.socket) -> None:
        while True:
            head = _read_head(reader)
            if head is None:
                return
            lines = head.decode("latin-1").split("\r\n")
            method, target = [*lines[0].split(" "), "", ""][:2]
            headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
            self._record(method, target)  # before the engine sees it: counted by the time its answer arrives
            upstream.sendall(head)
            if "upgrade" in headers.get("connection", "").lower():
                _pump_file(reader, upstream)  # hijacked: raw both ways from here on
                return
            if headers.get("transfer-encoding", "").lower() == "chunked":
                _copy_chunked(reader, upstream)
            else:
                _copy_exactly(reader, upstream, int(headers.get("content-length") or 0))


def _read_head(reader: IO[bytes]) -> bytes | None:
    lines = []
    while True:
        line = reader.readline(65536)
        if not line:
            return None  # the client closed the connection
        if not lines and line in (b"\r\n", b"\n"):
            continue
        lines.append(line)
        if line in (b"\r\n", b"\n"):
            return b"".join(lines)


def _copy_exactly(reader: IO[bytes], upstream: socket.socket, size: int) -> None:
    while size > 0:
        chunk = reader.read(min(size, 65536))
        if not chunk:
            raise OSError("client closed during a request body")
        upstream.sendall(chunk)
        size -= len(chunk)


def _copy_chunked(reader: IO[bytes], upstream: socket.socket) -> None:
    while True:
        line = reader.readline(65536)
        if not line:
            raise OSError("client closed during a chunked body")
        upstream.sendall(line)
        size = int(line.split(b";", 1)[0].strip() or b"0", 16)
        if size == 0:
            while True:  # trailers, then the empty line
                trailer = reader.readline(65536)
                upstream.sendall(trailer)
                if trailer in (b"\r\n", b"\n", b""):
                    return
        _copy_exactly(reader, upstream, size + 2)  # the chunk and its CRLF


def _pump(source: socket.socket, sink: socket.socket) -> None:
    try:
        while True:
            data = source.recv(65536)
            if not data:
                break
            sink.sendall(data)
    except OSError:
        pass
    with contextlib.suppress(OSError):
        sink.shutdown(socket.SHUT_WR)


def _pump_file(reader: IO[bytes], sink: socket.socket) -> None:
    while True:
        data = reader.read1(65536)  # type: ignore[attr-defined]
        if not data:
            return
        sink.sendall(data)


def main() -> int:
    parser = argparse.ArgumentParser(description="count the Docker engine requests passing through a unix socket")
    parser.add_argument("--upstream", required=True, help="the engine, unix:///path")
    parser.add_argument("--listen", required=True, help="the socket path to serve")
    parser.add_argument("--log", required=True, type=Path, help="one 'METHOD PATH' line per request")
    args = parser.parse_args()
    out = args.log.open("a", buffering=1)
    lock = threading.Lock()

    def write(method: str, path: str) -> None:
        with lock:
            out.write(f"{method} {path}\n")

    proxy = CountingProxy(args.upstream, args.listen, on_request=write).start()
    stopped = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopped.set())
    signal.signal(signal.SIGINT, lambda *_: stopped.set())
    print("ready", flush=True)
    stopped.wait()
    proxy.stop()
    out.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
