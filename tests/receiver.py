"""A local HTTP receiver of the JSON posts apprise sends (`json://127.0.0.1:PORT/hook`), for notification tests."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Receiver:
    """An HTTP server collecting the JSON posts apprise sends; `mode` is ok, hang or fail (500)."""

    def __init__(self, mode: str = "ok") -> None:
        self.mode = mode
        self.posts: list[dict[str, object]] = []
        self.hits = 0
        self.release = threading.Event()
        self.got = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver.got:
                    receiver.hits += 1
                    receiver.got.notify_all()
                if receiver.mode == "hang":
                    receiver.release.wait(30)
                    return
                if receiver.mode == "fail":
                    self.send_response(500)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                with receiver.got:
                    receiver.posts.append(json.loads(body))
                    receiver.got.notify_all()
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"json://127.0.0.1:{self.server.server_address[1]}/hook"

    def wait_posts(self, n: int, timeout: float = 10.0) -> list[dict[str, object]]:
        with self.got:
            self.got.wait_for(lambda: len(self.posts) >= n, timeout)
            return list(self.posts)

    def wait_hits(self, n: int, timeout: float = 10.0) -> int:
        with self.got:
            self.got.wait_for(lambda: self.hits >= n, timeout)
            return self.hits

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()
