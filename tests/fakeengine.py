"""A fake Docker engine on a unix socket, for unit tests of the engine client: a handler answers each request
from its request line (`answer`), and `serving` runs it while a block runs."""

from __future__ import annotations

import socketserver
import threading
from collections.abc import Iterator
from contextlib import contextmanager


class FakeEngine(socketserver.StreamRequestHandler):
    """Answers request after request on one connection (a kept-alive client's); subclasses say what."""

    def handle(self) -> None:
        while True:
            line = self.rfile.readline()
            if not line:
                return
            while self.rfile.readline() not in (b"\r\n", b""):
                pass  # the headers: no fake needs them, and no request sent to one has a body
            status, body = self.answer(line)
            self.wfile.write(
                b"HTTP/1.1 %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                % (status, len(body), body)
            )

    def answer(self, line: bytes) -> tuple[bytes, bytes]:
        """The status (`200 OK`) and JSON body for the request whose request line is `line`."""
        raise NotImplementedError


@contextmanager
def serving(path: str, handler: type[FakeEngine], backlog: int = 5) -> Iterator[None]:
    """`handler` serving unix socket `path` while the block runs; `backlog` connects may wait at once (a full
    backlog is EAGAIN on unix, not a wait)."""
    server_type = type("Server", (socketserver.ThreadingUnixStreamServer,), {"request_queue_size": backlog})
    server = server_type(path, handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield
    finally:
        server.shutdown()
        server.server_close()
