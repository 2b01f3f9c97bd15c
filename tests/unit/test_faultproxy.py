"""The fault-injecting proxy of the test environment (tests/faultproxy.py), against a small HTTP server on a
unix socket: it relays faithfully, injects each fault, is reproducible by seed, counts, and kills on cue."""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from tests.faultproxy import FaultProxy


class _UnixHTTPServer(ThreadingHTTPServer):
    address_family = socket.AF_UNIX
    daemon_threads = True

    def server_bind(self) -> None:
        self.socket.bind(self.server_address)

    def get_request(self):  # type: ignore[no-untyped-def]
        request, _ = self.socket.accept()
        return request, ("local", 0)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    seen: list[tuple[str, str, bytes]] = []

    def log_message(self, *args: object) -> None:
        pass

    def _body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or ""):
            data = b""
            while True:
                size = int(self.rfile.readline().strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    return data
                data += self.rfile.read(size)
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _answer(self) -> None:
        body = self._body()
        _Handler.seen.append((self.command, self.path, body))
        if self.path.startswith("/stream"):
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for i in range(5):
                piece = f"piece {i}\n".encode()
                self.wfile.write(f"{len(piece):x}\r\n".encode() + piece + b"\r\n")
            self.wfile.write(b"0\r\n\r\n")
            return
        payload = json.dumps({"method": self.command, "path": self.path, "body": body.decode()}).encode() * (
            200 if self.path.startswith("/big") else 1
        )
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_DELETE = _answer


@pytest.fixture
def upstream() -> Iterator[str]:
    directory = tempfile.mkdtemp(prefix="fpu-", dir="/tmp")
    path = os.path.join(directory, "engine.sock")
    server = _UnixHTTPServer(path, _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Handler.seen = []
    yield path
    server.shutdown()
    server.server_close()
    os.unlink(path)
    os.rmdir(directory)


class _UnixConnection(http.client.HTTPConnection):
    def __init__(self, path: str, timeout: float = 10) -> None:
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self.unix_path)


def request(proxy: FaultProxy, method: str, path: str, body: bytes | None = None, **kw) -> tuple[int, bytes]:
    conn = _UnixConnection(proxy.path, **kw)
    try:
        conn.request(method, path, body=body)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def test_relays_requests_and_answers_unchanged(upstream: str) -> None:
    with FaultProxy(upstream) as proxy:
        status, data = request(proxy, "POST", "/v1.41/containers/create?name=x", b'{"Image": "busybox"}')
        assert status == 200
        assert json.loads(data) == {
            "method": "POST",
            "path": "/v1.41/containers/create?name=x",
            "body": '{"Image": "busybox"}',
        }
        status, data = request(proxy, "GET", "/stream")
        assert (status, data) == (200, b"".join(f"piece {i}\n".encode() for i in range(5)))
        conn = _UnixConnection(proxy.path)
        conn.request("POST", "/build", body=iter([b"abc", b"defg"]), encode_chunked=True)  # a chunked upload
        assert json.loads(conn.getresponse().read())["body"] == "abcdefg"
        conn.close()
    assert proxy.counts[("POST", "/containers/create")] == 1  # counted without the API version and query
    assert [r[:2] for r in proxy.requests][1:] == [("GET", "/stream"), ("POST", "/build")]
    assert not os.path.exists(proxy.path)


def test_error_fault_answers_500_without_forwarding(upstream: str) -> None:
    with FaultProxy(upstream, error=1.0) as proxy:
        status, data = request(proxy, "POST", "/containers/x/start")
    assert status == 500 and b"injected" in data
    assert _Handler.seen == []
    assert proxy.faults["error"] == 1


def test_reset_fault_drops_the_connection_before_forwarding(upstream: str) -> None:
    with FaultProxy(upstream, reset=1.0) as proxy, pytest.raises((http.client.HTTPException, ConnectionError)):
        request(proxy, "GET", "/containers/json")
    assert _Handler.seen == []


def test_reset_after_fault_forwards_then_drops_the_answer(upstream: str) -> None:
    with FaultProxy(upstream, reset_after=1.0) as proxy, pytest.raises((http.client.HTTPException, ConnectionError)):
        request(proxy, "POST", "/volumes/create", b"{}")
    assert [s[:2] for s in _Handler.seen] == [("POST", "/volumes/create")]  # it took effect


def test_stall_and_slow_delay_but_do_not_change_the_answer(upstream: str) -> None:
    with FaultProxy(upstream, stall=1.0, stall_seconds=0.5) as proxy:
        started = time.monotonic()
        status, _ = request(proxy, "GET", "/info")
        assert status == 200 and time.monotonic() - started >= 0.5
    with FaultProxy(upstream, slow=1.0, slow_seconds=0.3) as proxy:
        started = time.monotonic()
        status, data = request(proxy, "GET", "/big")
        assert status == 200 and len(data) > 4096 and time.monotonic() - started >= 0.1
        assert data.count(b'"path": "/big"') == 200


def test_faults_follow_rates_and_the_seed(upstream: str) -> None:
    def run(seed: int) -> list[str | None]:
        with FaultProxy(upstream, seed=seed, error=0.3) as proxy:
            for _ in range(60):
                request(proxy, "GET", "/info")
        return [r[2] for r in proxy.requests]

    first, again, other = run(1), run(1), run(2)
    assert first == again != other
    assert 8 <= first.count("error") <= 30


def test_eligible_limits_which_requests_meet_faults(upstream: str) -> None:
    with FaultProxy(upstream, error=1.0, eligible=lambda method, path: method == "GET") as proxy:
        assert request(proxy, "POST", "/x", b"")[0] == 200
        assert request(proxy, "GET", "/x")[0] == 500


def test_rates_are_checked(upstream: str) -> None:
    with pytest.raises(ValueError):
        FaultProxy(upstream, error=0.7, reset=0.7)
    with pytest.raises(ValueError):
        FaultProxy(upstream).set_rates(bogus=0.1)


@pytest.mark.parametrize("before", [True, False])
def test_kills_a_process_at_the_nth_matching_request(upstream: str, before: bool) -> None:
    victim = subprocess.Popen(["sleep", "60"])
    try:
        with FaultProxy(upstream) as proxy:
            rule = proxy.arm_kill(victim.pid, 2, method="POST", path=r"^/containers/[^/]+/start", before=before)
            request(proxy, "POST", "/containers/a/start")
            request(proxy, "GET", "/containers/b/start")  # another method: not counted
            assert victim.poll() is None
            with pytest.raises((http.client.HTTPException, ConnectionError)):
                request(proxy, "POST", "/v1.41/containers/b/start")
            assert victim.wait(timeout=5) == -9
            assert rule.fired_at == ("POST", "/containers/b/start")
        forwarded = [s[1] for s in _Handler.seen]
        assert ("/v1.41/containers/b/start" in forwarded) is (not before)
    finally:
        if victim.poll() is None:
            victim.kill()
            victim.wait()


def test_a_closed_stream_client_ends_the_relay(upstream: str, tmp_path: Path) -> None:
    with FaultProxy(upstream) as proxy:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(proxy.path)
        sock.sendall(b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n")
        assert sock.recv(10)
        sock.close()
        time.sleep(0.2)
    assert not proxy._threads  # stop() found nothing left running


def test_fail_rules_fail_a_given_request_a_number_of_times(upstream: str) -> None:
    with FaultProxy(upstream) as proxy:
        proxy.fail("POST", r"/rename", count=2, skip=1)
        assert request(proxy, "POST", "/containers/a/rename?name=b")[0] == 200  # skipped
        assert request(proxy, "GET", "/containers/a/rename")[0] == 200  # another method
        assert request(proxy, "POST", "/containers/a/rename?name=b")[0] == 500
        assert request(proxy, "POST", "/containers/a/rename?name=b")[0] == 500
        assert request(proxy, "POST", "/containers/a/rename?name=b")[0] == 200  # count used up
        proxy.fail(None, r"^/info", count=5)
        proxy.clear()
        assert request(proxy, "GET", "/info")[0] == 200
