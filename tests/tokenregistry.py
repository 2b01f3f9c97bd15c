"""A registry that requires bearer tokens, cheaply: a small HTTP front on a free loopback port that answers
`/v2/...` only with a token from its own `/token` endpoint (issued for basic credentials, as Docker Hub's and
Harbor's token services do) and passes the request on to the real loopback registry behind it. The distribution
API answers (tags, pages, manifests, digests) are the real registry's; only the auth flow is this server's."""

from __future__ import annotations

import base64
import json
import secrets
import threading
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

USER = "robot"
PASSWORD = "t0ken-service-pw"
PASSED_ON = ("Content-Type", "Docker-Content-Digest", "Link", "Docker-Distribution-Api-Version")


class TokenRegistry:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream  # host:port of the real registry (plain HTTP)
        self.token = secrets.token_hex(16)
        self.issued = 0
        front = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: object) -> None:
                pass

            def _reply(self, status: int, body: bytes, headers: dict[str, str]) -> None:
                self.send_response(status)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(body)

            def _token(self) -> None:
                expected = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
                if self.headers.get("Authorization") != expected:
                    self._reply(401, b'{"details": "bad credentials"}', {"Content-Type": "application/json"})
                    return
                front.issued += 1
                self._reply(200, json.dumps({"token": front.token}).encode(), {"Content-Type": "application/json"})

            def _api(self) -> None:
                if self.headers.get("Authorization") != f"Bearer {front.token}":
                    host = self.headers["Host"]
                    challenge = f'Bearer realm="http://{host}/token",service="front"'
                    self._reply(401, b'{"errors": [{"code": "UNAUTHORIZED"}]}', {"WWW-Authenticate": challenge})
                    return
                request = urllib.request.Request(f"http://{front.upstream}{self.path}", method=self.command)
                if self.headers.get("Accept"):
                    request.add_header("Accept", self.headers["Accept"])
                try:
                    with urllib.request.urlopen(request, timeout=10) as answer:
                        status, body, headers = answer.status, answer.read(), answer.headers
                except urllib.error.HTTPError as exc:
                    status, body, headers = exc.code, exc.read(), exc.headers
                self._reply(status, body, {k: headers[k] for k in PASSED_ON if headers.get(k)})

            def do_GET(self) -> None:
                if self.path.startswith("/token"):
                    self._token()
                else:
                    self._api()

            def do_HEAD(self) -> None:
                self._api()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.address = f"127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def docker_config(self, directory: Path) -> Path:
        """A Docker client config directory (for DOCKER_CONFIG) with the token service's credentials."""
        directory.mkdir(parents=True, exist_ok=True)
        auth = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        (directory / "config.json").write_text(json.dumps({"auths": {self.address: {"auth": auth}}}))
        return directory

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
