"""The registry digest lookup against a stub distribution API on loopback: auth flows and one-line errors."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from reconciler.drivers.engine.reference import parse_reference
from reconciler.drivers.image.registry import (
    AuthRefused,
    Credentials,
    ManifestNotFound,
    RegistryUnreachable,
    UnknownRegistryHost,
    credentials_for,
    is_insecure,
    remote_digest,
)

DIGEST = "sha256:" + "c" * 64
USER, SECRET = "alice", "s3cret-pw"
TOKEN = "tok-123"


class Stub(BaseHTTPRequestHandler):
    """A tiny registry: `mode` decides auth (none, basic, bearer); repo t/x has tag 1 only."""

    mode = "none"
    send_digest = True
    seen: list[tuple[str, str, str]] = []

    def log_message(self, *args: object) -> None:
        pass

    def _reply(self, status: int, body: dict | None = None, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body or {}).encode()
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _authorized(self) -> bool:
        auth = self.headers.get("Authorization", "")
        if self.mode == "basic":
            return auth == "Basic " + base64.b64encode(f"{USER}:{SECRET}".encode()).decode()
        if self.mode == "bearer":
            return auth == f"Bearer {TOKEN}"
        return True

    def do_GET(self) -> None:
        self.seen.append((self.command, self.path, self.headers.get("Accept", "")))
        if self.path.startswith("/token"):
            ok = self.headers.get("Authorization") == "Basic " + base64.b64encode(f"{USER}:{SECRET}".encode()).decode()
            self._reply(200, {"token": TOKEN}) if ok else self._reply(401, {})
            return
        if not self._authorized():
            port = self.server.server_address[1]
            challenge = (
                f'Bearer realm="http://127.0.0.1:{port}/token",service="stub",scope="repository:t/x:pull"'
                if self.mode == "bearer"
                else 'Basic realm="stub"'
            )
            self._reply(401, {"errors": [{"code": "UNAUTHORIZED"}]}, {"WWW-Authenticate": challenge})
            return
        if self.path == "/v2/t/x/manifests/1":
            headers = {"Docker-Content-Digest": DIGEST} if self.send_digest else {}
            self._reply(200, {"schemaVersion": 2}, headers)
        elif self.path.startswith("/v2/t/x/"):
            self._reply(404, {"errors": [{"code": "MANIFEST_UNKNOWN"}]})
        else:
            self._reply(404, {"errors": [{"code": "NAME_UNKNOWN"}]})

    do_HEAD = do_GET


@pytest.fixture
def stub() -> Iterator[type[Stub]]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Stub)
    Stub.mode, Stub.send_digest, Stub.seen = "none", True, []
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    Stub.port = server.server_address[1]  # type: ignore[attr-defined]
    yield Stub
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def ref(stub: type[Stub], path: str = "t/x:1"):
    return parse_reference(f"127.0.0.1:{stub.port}/{path}")  # type: ignore[attr-defined]


def test_head_returns_the_content_digest_with_manifest_accept_headers(stub: type[Stub]) -> None:
    """An anonymous registry answers a HEAD; lists and OCI indexes are accepted (no pull, no GET)."""
    assert remote_digest(ref(stub), insecure=True, creds=Credentials()) == DIGEST
    methods = [m for m, _, _ in stub.seen]
    assert methods == ["HEAD"]
    assert "manifest.list.v2+json" in stub.seen[0][2] and "oci.image.index" in stub.seen[0][2]


def test_digest_is_computed_when_the_registry_omits_it(stub: type[Stub]) -> None:
    """Without Docker-Content-Digest the manifest bytes are fetched and hashed."""
    stub.send_digest = False
    digest = remote_digest(ref(stub), insecure=True, creds=Credentials())
    assert digest.startswith("sha256:") and digest != DIGEST


def test_bearer_token_flow_uses_the_configured_credentials(stub: type[Stub]) -> None:
    """401 Bearer challenge -> token from the realm with the user's credentials -> authorized HEAD."""
    stub.mode = "bearer"
    assert remote_digest(ref(stub), insecure=True, creds=Credentials(USER, SECRET)) == DIGEST


def test_basic_auth_flow(stub: type[Stub]) -> None:
    """401 Basic challenge -> the request is repeated with basic credentials."""
    stub.mode = "basic"
    assert remote_digest(ref(stub), insecure=True, creds=Credentials(USER, SECRET)) == DIGEST


@pytest.mark.parametrize("creds", [Credentials(), Credentials(USER, "wrong")])
def test_auth_refused_is_one_line_without_secrets(stub: type[Stub], creds: Credentials) -> None:
    """Refused credentials (or none) give AuthRefused naming the registry, never the password."""
    stub.mode = "bearer"
    with pytest.raises(AuthRefused) as refused:
        remote_digest(ref(stub), insecure=True, creds=creds)
    message = str(refused.value)
    assert "refused access to t/x" in message and "\n" not in message
    assert "wrong" not in message and SECRET not in message


def test_missing_tag_and_repository(stub: type[Stub]) -> None:
    """A missing tag and an unknown repository are told apart."""
    with pytest.raises(ManifestNotFound, match="tag 'nope' not found in repository 't/x'"):
        remote_digest(ref(stub, "t/x:nope"), insecure=True, creds=Credentials())
    with pytest.raises(ManifestNotFound, match="repository 'other/y' not found"):
        remote_digest(ref(stub, "other/y:1"), insecure=True, creds=Credentials())


def test_unreachable_and_unknown_hosts() -> None:
    """Connection refused is a retryable RegistryUnreachable; a name that does not resolve is UnknownRegistryHost."""
    with pytest.raises(RegistryUnreachable, match="unreachable: connection refused") as down:
        remote_digest(parse_reference("127.0.0.1:1/t/x:1"), insecure=True, creds=Credentials())
    assert down.value.retryable
    with pytest.raises(UnknownRegistryHost, match=r"unknown registry host 'no-such-host\.invalid'"):
        remote_digest(parse_reference("no-such-host.invalid/t/x:1"), creds=Credentials())


def test_credentials_come_from_docker_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """DOCKER_CONFIG's config.json auths are found per registry; repr never shows the secret."""
    auth = base64.b64encode(f"{USER}:{SECRET}".encode()).decode()
    (tmp_path / "config.json").write_text(json.dumps({"auths": {"127.0.0.1:5999": {"auth": auth}}}))
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path))
    creds = credentials_for("127.0.0.1:5999")
    assert (creds.username, creds.password) == (USER, SECRET)
    assert SECRET not in repr(creds)
    assert not credentials_for("127.0.0.1:6000").present


def test_insecure_registries_follow_the_engine_config() -> None:
    """Loopback is insecure by the engine's default CIDR; IndexConfigs entries decide for named hosts."""
    cidrs = ["127.0.0.0/8"]
    assert is_insecure("127.0.0.1:5000", {}, cidrs)
    assert not is_insecure("192.0.2.1:5000", {}, cidrs)
    assert not is_insecure("docker.io", {"docker.io": {"Secure": True}}, cidrs)
    assert is_insecure("reg.example:5000", {"reg.example:5000": {"Secure": False}}, cidrs)
