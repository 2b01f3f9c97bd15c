"""Connecting to an engine: an API too old is one clear line (served by a fake engine on a unix socket)."""

from __future__ import annotations

import gc
import json
import socketserver
import threading
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import pytest

from reconciler.drivers.engine.client import connect
from reconciler.errors import EngineUnavailable, PermanentError


class _UnixHTTPServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = False  # server_close() joins the handlers, so no socket outlives the test


def _serve(path: Path, version: str) -> _UnixHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = json.dumps({"ApiVersion": version, "Version": "x"}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: object) -> None:
            pass

        def address_string(self) -> str:  # a unix socket has no host/port pair
            return "unix"

    server = _UnixHTTPServer(str(path), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def test_an_engine_speaking_an_old_api_is_refused_with_one_line(tmp_path: Path) -> None:
    server = _serve(tmp_path / "old.sock", "1.30")
    try:
        with pytest.raises(PermanentError) as exc:
            connect(f"unix://{tmp_path / 'old.sock'}")
    finally:
        server.shutdown()
        server.server_close()
    message = str(exc.value)
    assert "speaks API 1.30; reconcile needs 1.40 (Docker 19.03) or newer" in message and "\n" not in message


def test_a_new_enough_engine_is_used_at_the_lower_of_both_versions(tmp_path: Path) -> None:
    server = _serve(tmp_path / "new.sock", "1.41")
    try:
        client = connect(f"unix://{tmp_path / 'new.sock'}")
        assert client.api_version == "1.41" and client.trust_env is False
        client.close()
    finally:
        server.shutdown()
        server.server_close()


# docker-py's unix transport leaves the socket of a failed connect to the garbage collector (a ResourceWarning,
# not a leak: it is closed when collected)
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_nothing_listening_is_engine_unavailable(tmp_path: Path) -> None:
    with pytest.raises(EngineUnavailable, match="no such file or directory"):
        connect(f"unix://{tmp_path / 'none.sock'}")
    gc.collect()  # now, under this test's filter, not in a later test


def test_requests_are_bounded_but_waiting_stops_take_no_slot(tmp_path: Path) -> None:
    """With a bound of 1, concurrent inspects reach the engine one at a time; a stop (the engine answers it only
    when the stop timeout is over) runs beside them."""
    import threading as th
    import time

    active = {"now": 0, "most": 0, "stop_overlapped": False}
    lock = th.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.0"

        def _answer(self, body: bytes) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            if self.path.endswith("/version"):
                self._answer(json.dumps({"ApiVersion": "1.41"}).encode())
                return
            with lock:
                active["now"] += 1
                active["most"] = max(active["most"], active["now"])
            time.sleep(0.2)
            with lock:
                active["now"] -= 1
            self._answer(b"{}")

        def do_POST(self) -> None:
            with lock:
                active["stop_overlapped"] = active["now"] > 0
            self._answer(b"")

        def log_message(self, *_: object) -> None:
            pass

        def address_string(self) -> str:
            return "unix"

    server = _UnixHTTPServer(str(tmp_path / "e.sock"), Handler)
    th.Thread(target=server.serve_forever, daemon=True).start()
    try:
        client = connect(f"unix://{tmp_path / 'e.sock'}", limit=th.BoundedSemaphore(1))
        inspects = [th.Thread(target=client.inspect_container, args=(f"c{i}",)) for i in range(3)]
        for t in inspects:
            t.start()
        deadline = time.monotonic() + 10
        while active["now"] == 0 and time.monotonic() < deadline:  # an inspect holds the one slot (a busy machine
            time.sleep(0.01)  # may take a while to get there)
        client.stop("c9", timeout=1)
        for t in inspects:
            t.join()
        client.close()
    finally:
        server.shutdown()
        server.server_close()
    assert active["most"] == 1
    assert active["stop_overlapped"]


@pytest.mark.parametrize("url", ["ssh://root@10.213.0.12:99999", "ssh://root@[::1", "tcp://h:99999"])
def test_a_malformed_engine_address_is_one_line_never_a_traceback(url: str) -> None:
    """Issue 24, defect 6: `plan -H ssh://root@10.213.0.12:99999` printed a traceback (`Port out of range`)."""
    with pytest.raises(PermanentError, match="invalid engine address"):
        connect(url)
