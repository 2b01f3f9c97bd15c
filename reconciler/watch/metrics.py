"""Counters of the watch loop, rendered as Prometheus text, and a tiny loopback-only HTTP server for `/healthz`,
`/metrics` and the status page (`/` and `/status.json`) (http.server in a thread; no extra library).

The server is read-only, with one exception when the watch is given a webhook secret: `POST /hooks/git`, handed to
the `webhook` callback (reconciler.watch.webhooks.HookGate.handle), which checks the forge's signature itself.
Without the callback that path is 404 and every other POST is 405, as before."""

from __future__ import annotations

import ipaddress
import json
import socket
import threading
import time
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from reconciler.errors import PermanentError
from reconciler.watch.statuspage import StatusBoard, render_html

PASS_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
# /healthz turns 503 when the loop has not ticked (between passes, and after every change) for this long: a
# wedged loop, not merely a slow change such as a big image pull.
STALL_SECONDS = 600.0
# A request that has not arrived whole in this long is dropped (a slow sender must not hold a thread for ever).
REQUEST_TIMEOUT = 10.0
WEBHOOK_PATH = "/hooks/git"

# The webhook callback: (headers, Content-Length or None, read(n) of the body) -> (status code, one-line text).
Webhook = Callable[[Mapping[str, str], int | None, Callable[[int], bytes]], tuple[int, str]]


class Metrics:
    """Thread-safe counters; the controller writes, the HTTP thread reads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.passes: dict[str, int] = {}
        self.changes: dict[tuple[str, str], int] = {}
        self.failures: dict[str, int] = {}
        self.buckets = [0] * len(PASS_BUCKETS)
        self.duration_sum = 0.0
        self.duration_count = 0
        self.last_success = 0.0
        self.failing = 0
        self.problems = 0
        self.engine_up = 0
        self.last_tick = time.monotonic()
        self.webhooks: dict[int, int] = {}  # answers to POST /hooks/git by status code (issue 22)
        # with --notify: the notifier's counts by outcome (delivered, failed, dropped, suppressed)
        self.notifications: Callable[[], Mapping[str, int]] | None = None

    def pass_done(self, result: str, seconds: float, when: float | None = None) -> None:
        with self._lock:
            self.passes[result] = self.passes.get(result, 0) + 1
            self.duration_sum += seconds
            self.duration_count += 1
            for i, bound in enumerate(PASS_BUCKETS):
                if seconds <= bound:
                    self.buckets[i] += 1
            if result == "ok":
                self.last_success = when if when is not None else time.time()

    def change_applied(self, kind: str, action: str) -> None:
        with self._lock:
            self.changes[(kind, action)] = self.changes.get((kind, action), 0) + 1

    def change_failed(self, kind: str) -> None:
        with self._lock:
            self.failures[kind] = self.failures.get(kind, 0) + 1

    def set_gauges(
        self, failing: int | None = None, problems: int | None = None, engine_up: bool | None = None
    ) -> None:
        with self._lock:
            if failing is not None:
                self.failing = failing
            if problems is not None:
                self.problems = problems
            if engine_up is not None:
                self.engine_up = int(engine_up)

    def webhook_answered(self, code: int) -> None:
        with self._lock:
            self.webhooks[code] = self.webhooks.get(code, 0) + 1

    def tick(self) -> None:
        with self._lock:
            self.last_tick = time.monotonic()

    def healthy(self) -> bool:
        with self._lock:
            return time.monotonic() - self.last_tick < STALL_SECONDS

    def health(self) -> dict[str, object]:
        with self._lock:
            return {
                "status": "ok" if time.monotonic() - self.last_tick < STALL_SECONDS else "stalled",
                "engineUp": bool(self.engine_up),
                "failingObjects": self.failing,
                "manifestProblems": self.problems,
                "lastSuccessfulPass": self.last_success or None,
            }

    def render(self) -> str:
        """The Prometheus text exposition (version 0.0.4)."""
        with self._lock:
            out: list[str] = []

            def head(name: str, kind: str, text: str) -> None:
                out.append(f"# HELP {name} {text}")
                out.append(f"# TYPE {name} {kind}")

            head("reconcile_passes_total", "counter", "Reconciliation passes by result.")
            for result in sorted(set(self.passes) | {"ok", "failed", "error"}):
                out.append(f'reconcile_passes_total{{result="{result}"}} {self.passes.get(result, 0)}')
            head("reconcile_changes_applied_total", "counter", "Changes applied, by kind and action.")
            for (kind, action), n in sorted(self.changes.items()):
                out.append(f'reconcile_changes_applied_total{{kind="{kind}",action="{action}"}} {n}')
            head("reconcile_change_failures_total", "counter", "Changes that failed, by kind.")
            for kind, n in sorted(self.failures.items()):
                out.append(f'reconcile_change_failures_total{{kind="{kind}"}} {n}')
            head("reconcile_last_successful_pass_timestamp_seconds", "gauge", "Unix time of the last clean pass.")
            out.append(f"reconcile_last_successful_pass_timestamp_seconds {self.last_success:.3f}")
            head("reconcile_pass_duration_seconds", "histogram", "Duration of reconciliation passes.")
            for bound, n in zip(PASS_BUCKETS, self.buckets, strict=True):
                out.append(f'reconcile_pass_duration_seconds_bucket{{le="{bound}"}} {n}')
            out.append(f'reconcile_pass_duration_seconds_bucket{{le="+Inf"}} {self.duration_count}')
            out.append(f"reconcile_pass_duration_seconds_sum {self.duration_sum:.6f}")
            out.append(f"reconcile_pass_duration_seconds_count {self.duration_count}")
            head("reconcile_objects_failing", "gauge", "Objects waiting for a retry after a failure.")
            out.append(f"reconcile_objects_failing {self.failing}")
            head("reconcile_manifest_problems", "gauge", "Problems in the manifest directory (last valid kept).")
            out.append(f"reconcile_manifest_problems {self.problems}")
            head("reconcile_engine_up", "gauge", "1 when the last engine call succeeded.")
            out.append(f"reconcile_engine_up {self.engine_up}")
            if self.webhooks:
                head("reconcile_webhook_requests_total", "counter", "Answers to POST /hooks/git, by status code.")
                for code, n in sorted(self.webhooks.items()):
                    out.append(f'reconcile_webhook_requests_total{{code="{code}"}} {n}')
            if self.notifications is not None:
                head("reconcile_notifications_total", "counter", "Notifications, by what became of them.")
                for outcome, n in sorted(self.notifications().items()):
                    out.append(f'reconcile_notifications_total{{outcome="{outcome}"}} {n}')
            return "\n".join(out) + "\n"


def parse_addr(addr: str) -> tuple[str, int]:
    """`127.0.0.1:9469`, `[::1]:9469` or `localhost:9469` -> (host, port); anything not loopback is refused,
    because the endpoints have no authentication."""
    host, sep, port_text = addr.rpartition(":")
    if not sep or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise PermanentError(f"--metrics-addr {addr!r}: expected HOST:PORT, e.g. 127.0.0.1:9469")
    host = host.strip("[]")
    if host == "localhost":
        host = "127.0.0.1"
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise PermanentError(
            f"--metrics-addr {addr!r}: only loopback addresses are served (the endpoints have no authentication); "
            "put a reverse proxy in front to expose them"
        )
    return host, int(port_text)


def _handler(metrics: Metrics, board: StatusBoard | None, webhook: Webhook | None) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        timeout = REQUEST_TIMEOUT

        def _route(self) -> tuple[int, str, str]:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                return 200, "text/plain; version=0.0.4; charset=utf-8", metrics.render()
            if path == "/healthz":
                code = 200 if metrics.healthy() else 503
                return code, "application/json", json.dumps(metrics.health()) + "\n"
            if board is not None and path in ("/", "/index.html"):
                return 200, "text/html; charset=utf-8", render_html(board.snapshot())
            if board is not None and path == "/status.json":
                return 200, "application/json", json.dumps(board.snapshot(), indent=2, default=str) + "\n"
            return 404, "text/plain", "not found\n"

        def do_GET(self) -> None:
            self._send(*self._route())

        def do_HEAD(self) -> None:
            code, ctype, body = self._route()
            self._send(code, ctype, body, with_body=False)

        def _refuse(self) -> None:
            """The server is read-only: every method that could change something is 405."""
            self._send(405, "text/plain", "method not allowed: this server is read-only\n", allow="GET, HEAD")

        def do_POST(self) -> None:
            if self.path.split("?", 1)[0] != WEBHOOK_PATH:
                self._refuse()
                return
            if webhook is None:
                self.close_connection = True  # the body is left unread
                self._send(404, "text/plain", "not found\n")
                return
            text = self.headers.get("Content-Length")
            length = int(text) if text is not None and text.strip().isdigit() else None
            code, message = webhook(dict(self.headers.items()), length, self.rfile.read)
            metrics.webhook_answered(code)
            self.close_connection = True  # a refused body may be left unread
            self._send(code, "text/plain", message + "\n")

        do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_TRACE = do_CONNECT = _refuse

        def _send(self, code: int, ctype: str, body: str, with_body: bool = True, allow: str | None = None) -> None:
            data = body.encode()
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Cache-Control", "no-store")
            if allow is not None:
                self.send_header("Allow", allow)
            self.end_headers()
            if with_body:
                self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:
            pass  # scrapes every few seconds would flood the log

    return Handler


class _Server6(ThreadingHTTPServer):
    address_family = socket.AF_INET6


class MetricsServer:
    """Serves `metrics` on a loopback address from a daemon thread until `close()`."""

    def __init__(
        self, addr: str, metrics: Metrics, board: StatusBoard | None = None, webhook: Webhook | None = None
    ) -> None:
        host, port = parse_addr(addr)
        server_class = _Server6 if ":" in host else ThreadingHTTPServer
        self.server = server_class((host, port), _handler(metrics, board, webhook))
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, name="metrics", daemon=True)

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def start(self) -> MetricsServer:
        self.thread.start()
        return self

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def serve(
    addr: str, metrics: Metrics, board: StatusBoard | None = None, webhook: Webhook | None = None
) -> MetricsServer:
    """Start serving (the status page too, given the `board`; `POST /hooks/git` too, given the `webhook`); an address
    in use is a PermanentError naming it."""
    try:
        return MetricsServer(addr, metrics, board, webhook).start()
    except OSError as exc:
        raise PermanentError(f"--metrics-addr {addr}: {exc.strerror or exc}") from None
