"""bench/counting_proxy.py, the request counter the engine-request tests and the benchmark rely on: it must count
each request of a keep-alive connection once, whatever its body framing, and name the object-addressed ones."""

from __future__ import annotations

import http.client
import socket
import socketserver
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.counting import counting_proxy


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/v1.41/containers/json?all=1&filters=%7B%7D", "/containers/json"),
        ("/v1.41/containers/3f2a9c/json", "/containers/{}/json"),
        ("/containers/web-1/start", "/containers/{}/start"),
        ("/v1.41/containers/create?name=x", "/containers/create"),
        ("/v1.41/networks", "/networks"),
        ("/v1.41/networks/net-a", "/networks/{}"),
        ("/v1.41/images/127.0.0.1:5000/reconciler/busybox:1.35/json", "/images/{}/json"),
        ("/v1.41/images/sha256:abc/json", "/images/{}/json"),
        ("/v1.41/images/json", "/images/json"),
        ("/v1.41/images/create?fromImage=busybox", "/images/create"),
        ("/v1.41/images/busybox", "/images/{}"),
        ("/v1.41/volumes/data", "/volumes/{}"),
        ("/_ping", "/_ping"),
    ],
)
def test_paths_are_normalized(path: str, expected: str) -> None:
    assert counting_proxy().normalize(path) == expected


class _Echo(socketserver.StreamRequestHandler):
    """A minimal HTTP/1.1 server: reads each request (Content-Length or chunked) and answers with its size."""

    def handle(self) -> None:
        while True:
            line = self.rfile.readline()
            if not line:
                return
            headers = {}
            while (h := self.rfile.readline()) not in (b"\r\n", b""):
                key, _, value = h.decode().partition(":")
                headers[key.strip().lower()] = value.strip()
            size = 0
            if headers.get("transfer-encoding") == "chunked":
                while (n := int(self.rfile.readline().strip(), 16)) > 0:
                    size += len(self.rfile.read(n))
                    self.rfile.readline()
                self.rfile.readline()
            else:
                size = len(self.rfile.read(int(headers.get("content-length", 0))))
            body = str(size).encode()
            self.wfile.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str) -> None:
        super().__init__("localhost")
        self.path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(self.path)


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[str]:
    path = str(tmp_path / "engine.sock")
    server = socketserver.ThreadingUnixStreamServer(path, _Echo)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"unix://{path}"
    server.shutdown()
    server.server_close()


def test_every_request_of_a_keep_alive_connection_is_counted_once(engine: str) -> None:
    with counting_proxy().CountingProxy(engine) as proxy:
        conn = _UnixConnection(proxy.path)
        try:
            answers = []
            for method, url, body, chunked in (
                ("GET", "/v1.41/containers/json", None, False),
                ("POST", "/v1.41/containers/create?name=a", b'{"Image": "busybox"}' * 100, False),
                ("POST", "/v1.41/build", iter([b"abc", b"defgh"]), True),
                ("GET", "/v1.41/containers/a/json", None, False),
            ):
                conn.request(method, url, body=body, encode_chunked=chunked)
                answers.append(conn.getresponse().read())
        finally:
            conn.close()
        assert answers == [b"0", b"2000", b"8", b"0"]
        assert proxy.since() == [
            ("GET", "/containers/json"),
            ("POST", "/containers/create"),
            ("POST", "/build"),
            ("GET", "/containers/{}/json"),
        ]
        assert [e for e in proxy.since(2) if counting_proxy().is_per_object(e)] == [("GET", "/containers/{}/json")]
