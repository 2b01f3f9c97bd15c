"""Listing a repository's tags (`/v2/<name>/tags/list`) against a small distribution-API server on loopback: pages
followed through the `Link` header, bearer-token auth kept across pages, garbage and loops refused in one line,
and the retries of an unreachable registry."""

from __future__ import annotations

import json
import socket
import threading
import urllib.parse
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from reconciler.drivers.engine.reference import parse_reference
from reconciler.drivers.image.registry import (
    AuthRefused,
    Credentials,
    ManifestNotFound,
    RegistryProtocolError,
    RegistryUnreachable,
    list_tags,
    with_retries,
)

TAGS = [f"1.{i}.0" for i in range(23)]
TOKEN = "tag-token"


class Tags(BaseHTTPRequestHandler):
    """Repo t/x holds TAGS; pages of `n` after `last`, the next one named in a `Link` header (as distribution
    does). `auth`: none or bearer; `garbage`: answer HTML; `loop`: every page links to the first."""

    auth = "none"
    garbage = False
    loop = False
    requests: list[tuple[str, dict[str, str], str]] = []

    def log_message(self, *args: object) -> None:
        pass

    def _send(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        query = dict(urllib.parse.parse_qsl(url.query))
        Tags.requests.append((url.path, query, self.headers.get("Authorization", "")))
        host = self.headers["Host"]
        if url.path == "/token":
            self._send(200, json.dumps({"token": TOKEN}).encode(), {"Content-Type": "application/json"})
            return
        if self.auth == "bearer" and self.headers.get("Authorization") != f"Bearer {TOKEN}":
            challenge = f'Bearer realm="http://{host}/token",service="stub",scope="repository:t/x:pull"'
            self._send(401, b"{}", {"WWW-Authenticate": challenge})
            return
        if url.path != "/v2/t/x/tags/list":
            self._send(404, json.dumps({"errors": [{"code": "NAME_UNKNOWN"}]}).encode(), {})
            return
        if self.garbage:
            self._send(200, b"<html>proxy login</html>", {"Content-Type": "text/html"})
            return
        n = int(query.get("n", "1000"))
        start = TAGS.index(query["last"]) + 1 if "last" in query else 0
        page = TAGS[start : start + n]
        headers = {"Content-Type": "application/json"}
        if start + n < len(TAGS) or self.loop:
            last = TAGS[0] if self.loop else page[-1]
            headers["Link"] = f'</v2/t/x/tags/list?n={n}&last={last}>; rel="next"'
        self._send(200, json.dumps({"name": "t/x", "tags": page}).encode(), headers)


@pytest.fixture
def stub() -> Iterator[tuple[type[Tags], str]]:
    Tags.auth, Tags.garbage, Tags.loop, Tags.requests = "none", False, False, []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Tags)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield Tags, f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_every_page_is_followed_in_order(stub: tuple[type[Tags], str]) -> None:
    handler, host = stub
    assert list_tags(parse_reference(f"{host}/t/x:1"), insecure=True, creds=Credentials(), page_size=5) == TAGS
    pages = [q for path, q, _ in handler.requests if path.endswith("/tags/list")]
    assert len(pages) == 5 and pages[0] == {"n": "5"} and pages[1] == {"n": "5", "last": "1.4.0"}


def test_a_bearer_token_is_fetched_once_and_kept_for_the_following_pages(stub: tuple[type[Tags], str]) -> None:
    handler, host = stub
    handler.auth = "bearer"
    assert list_tags(parse_reference(f"{host}/t/x:1"), insecure=True, creds=Credentials(), page_size=10) == TAGS
    assert [path for path, _, _ in handler.requests].count("/token") == 1
    assert [auth for path, _, auth in handler.requests if path.endswith("/tags/list")][1:] == [f"Bearer {TOKEN}"] * 3


def test_garbage_a_loop_and_an_unknown_repository_are_one_line_errors(stub: tuple[type[Tags], str]) -> None:
    handler, host = stub
    handler.garbage = True
    with pytest.raises(RegistryProtocolError, match="answered garbage listing the tags of t/x"):
        list_tags(parse_reference(f"{host}/t/x:1"), insecure=True, creds=Credentials())
    handler.garbage, handler.loop = False, True
    with pytest.raises(RegistryProtocolError, match="more than 3 pages"):
        list_tags(parse_reference(f"{host}/t/x:1"), insecure=True, creds=Credentials(), page_size=5, max_pages=3)
    with pytest.raises(ManifestNotFound, match="repository 't/nope' not found"):
        list_tags(parse_reference(f"{host}/t/nope:1"), insecure=True, creds=Credentials())


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_an_unreachable_registry_is_retried_with_backoff_then_reported() -> None:
    ref = parse_reference(f"127.0.0.1:{_free_port()}/t/x:1")
    waits: list[float] = []
    with pytest.raises(RegistryUnreachable, match="is unreachable: connection refused"):
        with_retries(lambda: list_tags(ref, insecure=True, creds=Credentials()), attempts=3, sleep=waits.append)
    assert len(waits) == 2 and 0 < waits[0] <= waits[1] * 2


def test_a_permanent_answer_is_not_retried() -> None:
    calls: list[int] = []

    def refused() -> list[str]:
        calls.append(1)
        raise AuthRefused("registry x refused access")

    with pytest.raises(AuthRefused):
        with_retries(refused, attempts=3, sleep=lambda _: None)
    assert calls == [1]
