"""Webhooks (issue 22, item 4): `POST /hooks/git` on the real loopback server, signed as each forge signs it; wrong
signatures are 401 and trigger nothing; oversized bodies 413; a flood is 429 and triggers at most once a second."""

from __future__ import annotations

import hashlib
import hmac
import http.client
import itertools
import threading
import time
from pathlib import Path

import pytest

from reconciler.errors import PermanentError
from reconciler.watch.metrics import Metrics, serve
from reconciler.watch.webhooks import HookGate, load_secret, verify
from tests.helpers import free_port

SECRET = b"s3cr3t-webhook-value"
BODY = b'{"ref": "refs/heads/main", "after": "0123456789abcdef0123456789abcdef01234567"}'


def github_headers(body: bytes, secret: bytes = SECRET) -> dict[str, str]:
    digest = hmac.new(secret, body, hashlib.sha256).hexdigest()
    return {"X-GitHub-Event": "push", "X-Hub-Signature-256": f"sha256={digest}", "Content-Type": "application/json"}


def gitea_headers(body: bytes, secret: bytes = SECRET) -> dict[str, str]:
    # Gitea and Forgejo send the bare hex digest (and, since Gitea 1.20, X-Hub-Signature-256 too: not here)
    return {"X-Gitea-Event": "push", "X-Gitea-Signature": hmac.new(secret, body, hashlib.sha256).hexdigest()}


def forgejo_headers(body: bytes, secret: bytes = SECRET) -> dict[str, str]:
    return {"X-Forgejo-Event": "push", "X-Forgejo-Signature": hmac.new(secret, body, hashlib.sha256).hexdigest()}


def gitlab_headers(_body: bytes, secret: bytes = SECRET) -> dict[str, str]:
    return {"X-Gitlab-Event": "Push Hook", "X-Gitlab-Token": secret.decode()}


class Triggers:
    def __init__(self) -> None:
        self.calls: list[tuple[float, str]] = []
        self.event = threading.Event()

    def __call__(self, forge: str) -> None:
        self.calls.append((time.monotonic(), forge))
        self.event.set()


@pytest.fixture
def served():
    triggers = Triggers()
    gate = HookGate(SECRET, triggers)
    metrics = Metrics()
    server = serve(f"127.0.0.1:{free_port()}", metrics, webhook=gate.handle)
    try:
        yield server.port, gate, triggers, metrics
    finally:
        gate.close()
        server.close()


def post(port: int, body: bytes, headers: dict[str, str], path: str = "/hooks/git") -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("POST", path, body=body, headers=headers)
        resp = conn.getresponse()
        return resp.status, resp.read().decode()
    finally:
        conn.close()


@pytest.mark.parametrize("sign", [github_headers, gitea_headers, forgejo_headers, gitlab_headers])
def test_a_hook_signed_as_the_forge_signs_it_is_accepted_and_triggers_a_fetch(served, sign) -> None:
    """Signed as GitHub, Gitea, Forgejo and GitLab sign: 202, and the trigger runs within a second."""
    port, _gate, triggers, _metrics = served
    assert post(port, BODY, sign(BODY)) == (202, "fetch scheduled\n")
    assert triggers.event.wait(1.0), "a valid hook starts a fetch within a second"
    assert len(triggers.calls) == 1


@pytest.mark.parametrize("sign", [github_headers, gitea_headers, forgejo_headers, gitlab_headers])
def test_a_wrong_secret_is_401_and_triggers_nothing(served, sign) -> None:
    """Signed with another secret: 401, nothing triggered, the answer names no secret."""
    port, _gate, triggers, metrics = served
    code, text = post(port, BODY, sign(BODY, b"another secret"))
    assert code == 401 and SECRET.decode() not in text and b"another secret".decode() not in text
    time.sleep(0.2)
    assert triggers.calls == [] and metrics.webhooks == {401: 1}


def test_a_body_changed_after_signing_is_401(served) -> None:
    """A body altered after signing fails the HMAC: 401."""
    port, _gate, triggers, _metrics = served
    headers = github_headers(BODY)
    assert post(port, BODY.replace(b"main", b"evil"), headers)[0] == 401
    assert triggers.calls == []


def test_no_proof_or_a_malformed_one_is_401(served) -> None:
    """No header, GitHub's digest without its prefix, non-hex text or an empty token: 401."""
    port, _gate, triggers, _metrics = served
    assert post(port, BODY, {"Content-Type": "application/json"})[0] == 401
    digest = hmac.new(SECRET, BODY, hashlib.sha256).hexdigest()
    assert post(port, BODY, {"X-Hub-Signature-256": digest})[0] == 401  # GitHub's needs the sha256= prefix
    assert post(port, BODY, {"X-Hub-Signature-256": "sha256=zz\u00e9"})[0] == 401
    assert post(port, BODY, {"X-Gitlab-Token": ""})[0] == 401
    assert triggers.calls == []


def test_an_oversized_body_is_413_unread(served) -> None:
    """A body over the limit is refused by its Content-Length, before it is read."""
    port, gate, triggers, _metrics = served
    gate.max_body = 1024
    big = b"x" * 4096
    assert post(port, big, github_headers(big))[0] == 413
    assert triggers.calls == []


def test_a_github_ping_is_answered_without_a_fetch(served) -> None:
    """GitHub's ping (sent when a hook is created) is answered 200 and fetches nothing."""
    port, _gate, triggers, _metrics = served
    headers = github_headers(BODY) | {"X-GitHub-Event": "ping"}
    assert post(port, BODY, headers) == (200, "pong\n")
    assert triggers.calls == []


def test_a_flood_is_limited_and_coalesced_to_one_trigger_a_second(served) -> None:
    """200 valid hooks at once: some are 429 (unread), the accepted ones become at most one trigger per second,
    and the last accepted one is not lost (a trailing trigger at the end of the interval)."""
    port, gate, triggers, _metrics = served
    start = time.monotonic()
    codes = [post(port, BODY, github_headers(BODY))[0] for _ in range(200)]
    elapsed = time.monotonic() - start
    assert set(codes) <= {202, 429} and codes.count(429) > 0 and codes.count(202) >= 10
    time.sleep(gate.min_interval + 0.5)
    stamps = [t for t, _ in triggers.calls]
    assert 2 <= len(stamps) <= 2 + int(elapsed / gate.min_interval), "the last hook folds into a trailing trigger"
    assert all(b - a >= gate.min_interval - 0.05 for a, b in itertools.pairwise(stamps))


def test_a_flood_of_bad_signatures_is_limited_too(served) -> None:
    """A flood of wrong signatures is 401 or 429, never a trigger."""
    port, _gate, triggers, metrics = served
    codes = [post(port, BODY, github_headers(BODY, b"wrong"))[0] for _ in range(100)]
    assert set(codes) == {401, 429}
    assert triggers.calls == [] and sum(metrics.webhooks.values()) == 100
    assert 'reconcile_webhook_requests_total{code="401"}' in metrics.render()


def test_other_posts_stay_405_and_the_hook_path_is_404_without_a_secret() -> None:
    """Without a webhook the hook path is 404; other POSTs stay 405 either way."""
    server = serve(f"127.0.0.1:{free_port()}", Metrics())
    try:
        assert post(server.port, BODY, github_headers(BODY))[0] == 404
        assert post(server.port, b"x", {}, path="/metrics")[0] == 405
    finally:
        server.close()
    gate = HookGate(SECRET, Triggers())
    server = serve(f"127.0.0.1:{free_port()}", Metrics(), webhook=gate.handle)
    try:
        assert post(server.port, b"x", {}, path="/")[0] == 405
    finally:
        server.close()


def test_a_failing_trigger_still_answers(served) -> None:
    """A trigger that raises is logged; the forge still gets its 202."""
    port, gate, _triggers, _metrics = served

    def boom(_forge: str) -> None:
        raise RuntimeError("controller gone")

    gate._trigger = boom
    assert post(port, BODY, gitlab_headers(BODY))[0] == 202


def test_verify_names_the_forge() -> None:
    """verify() names the forge whose proof holds; a mangled prefix is no proof."""
    assert verify(SECRET, github_headers(BODY), BODY) == "github"
    assert verify(SECRET, gitea_headers(BODY), BODY) == "gitea"
    assert verify(SECRET, forgejo_headers(BODY), BODY) == "forgejo"
    assert verify(SECRET, gitlab_headers(BODY), BODY) == "gitlab"
    assert verify(SECRET, {"x-hub-signature-256": github_headers(BODY)["X-Hub-Signature-256"].upper()}, BODY) is None


def test_load_secret(tmp_path: Path) -> None:
    """The secret file's trailing newline is not part of it; empty or missing files name the file."""
    f = tmp_path / "secret"
    f.write_bytes(SECRET + b"\n")
    assert load_secret(f) == SECRET
    f.write_text("\n")
    with pytest.raises(PermanentError, match=r"secret.*empty"):
        load_secret(f)
    with pytest.raises(PermanentError, match="missing"):
        load_secret(tmp_path / "missing")
