"""Push webhooks from a forge (issue 22, item 4): `POST /hooks/git` on the loopback status/metrics server starts a
fetch of the git source within a second instead of at the next poll.

A hook is trusted only when it proves it knows the secret in `--webhook-secret-file`, as each forge proves it:

- GitHub (and Gitea, Forgejo, which send it too): `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the body>`;
- Gitea, Forgejo, Gogs: `X-Gitea-Signature` / `X-Forgejo-Signature` / `X-Gogs-Signature: <hex HMAC-SHA256>`;
- GitLab: `X-Gitlab-Token: <the secret itself>`.

Every comparison is `hmac.compare_digest` (constant time). What the hook says is never believed: a valid one only
asks for a fetch, and the git source decides what changed (a push that changes nothing under `--path` applies
nothing). So the body is read only to check its signature, bounded by MAX_BODY (413 beyond, unread).

A flood cannot keep the controller busy: requests beyond a token bucket are 429 before their body is read, and
accepted hooks are coalesced so `trigger` runs at most once per `min_interval` (a hook inside the interval is
answered 202 and folded into one trigger at its end, so the last push is never lost).

Layer: watch. Knows no engine and no git: `trigger` is the controller's (e.g. wake the source's poll).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import threading
import time
from collections.abc import Callable, Mapping
from typing import NamedTuple

import structlog

from reconciler.errors import PermanentError

log = structlog.get_logger()

MAX_BODY = 4 * 1024 * 1024  # GitHub caps payloads at 25 MB, but a push event is kilobytes; the body is only hashed
SECRET_LIMIT = 4096
MIN_INTERVAL = 1.0  # at most one trigger a second
BURST = 20  # requests checked at once before 429 ...
REFILL_PER_SECOND = 10.0  # ... and the steady rate after it

# (header, how its value is checked) in the order tried; the first header present decides.
HMAC_HEADERS = ("x-hub-signature-256", "x-gitea-signature", "x-forgejo-signature", "x-gogs-signature")
TOKEN_HEADER = "x-gitlab-token"


def load_secret(path: str | os.PathLike[str]) -> bytes:
    """The secret in `path` (one line; a trailing newline is not part of it). Missing, unreadable, empty or
    oversized files are a PermanentError naming the file."""
    try:
        with open(path, "rb") as f:
            data = f.read(SECRET_LIMIT + 1)
    except OSError as exc:
        raise PermanentError(f"--webhook-secret-file {path}: {exc.strerror or exc}") from None
    if len(data) > SECRET_LIMIT:
        raise PermanentError(f"--webhook-secret-file {path}: longer than {SECRET_LIMIT} bytes, not a secret")
    secret = data.rstrip(b"\r\n")
    if not secret.strip():
        raise PermanentError(f"--webhook-secret-file {path}: empty")
    return secret


class Answer(NamedTuple):
    """What the server answers: the status code and a one-line text (never naming the secret)."""

    code: int
    text: str


def verify(secret: bytes, headers: Mapping[str, str], body: bytes) -> str | None:
    """The forge whose proof in `headers` holds for `body`, or None. Header names are matched case-insensitively."""
    lower = {k.lower(): v for k, v in headers.items()}
    for name in HMAC_HEADERS:
        value = lower.get(name)
        if value is None:
            continue
        given = value.strip()
        if name == "x-hub-signature-256":
            if not given.startswith("sha256="):
                return None
            given = given[len("sha256=") :]
        expected = hmac.new(secret, body, hashlib.sha256).hexdigest()
        ok = hmac.compare_digest(given.lower().encode("ascii", "replace"), expected.encode())
        return ("github" if name == "x-hub-signature-256" else name[2:].split("-")[0]) if ok else None
    token = lower.get(TOKEN_HEADER)
    if token is not None and hmac.compare_digest(token.encode("utf-8", "replace"), secret):
        return "gitlab"
    return None


class _Bucket:
    """A token bucket: `take()` is False when more than `burst` requests came faster than `rate` a second."""

    def __init__(self, burst: int, rate: float, clock: Callable[[], float]) -> None:
        self.burst, self.rate, self.clock = burst, rate, clock
        self.tokens = float(burst)
        self.stamp = clock()

    def take(self) -> bool:
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        return True


class HookGate:
    """Checks `POST /hooks/git` requests and calls `trigger(forge)` for valid ones, coalesced to at most one call per
    `min_interval` seconds. Thread-safe (the HTTP server runs each request on its own thread); `trigger` runs on a
    request thread or a timer thread and must be quick (e.g. `WorkQueue.add` or setting an Event)."""

    def __init__(
        self,
        secret: bytes,
        trigger: Callable[[str], None],
        *,
        min_interval: float = MIN_INTERVAL,
        max_body: int = MAX_BODY,
        burst: int = BURST,
        refill_per_second: float = REFILL_PER_SECOND,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not secret:
            raise ValueError("an empty webhook secret")
        self._secret = secret
        self._trigger = trigger
        self.min_interval = min_interval
        self.max_body = max_body
        self._clock = clock
        self._lock = threading.Lock()
        self._bucket = _Bucket(burst, refill_per_second, clock)
        self._last_fired = float("-inf")
        self._pending: str | None = None  # the forge of a hook folded into the next trigger
        self._timer: threading.Timer | None = None

    def handle(self, headers: Mapping[str, str], length: int | None, read: Callable[[int], bytes]) -> Answer:
        """The answer to one request: `length` is its Content-Length (None when absent), `read(n)` reads n bytes
        of its body. 429 and 413 are decided before the body is read; 401 changes nothing."""
        with self._lock:
            allowed = self._bucket.take()
        if not allowed:
            return self._refuse(429, "too many requests")
        if length is None:
            return self._refuse(411, "Content-Length required")
        if length < 0 or length > self.max_body:
            return self._refuse(413, f"body larger than {self.max_body} bytes")
        try:
            body = read(length) if length else b""
        except OSError:
            return self._refuse(400, "body not received")
        if len(body) != length:
            return self._refuse(400, "body shorter than Content-Length")
        forge = verify(self._secret, headers, body)
        if forge is None:
            log.warning("webhook.refused", reason="signature or token does not match")
            return self._refuse(401, "signature or token does not match")
        event = {k.lower(): v for k, v in headers.items()}.get("x-github-event")
        if event == "ping":
            return Answer(200, "pong")
        self._accept(forge)
        return Answer(202, "fetch scheduled")

    def _refuse(self, code: int, text: str) -> Answer:
        return Answer(code, text)  # counted by the server (reconcile_webhook_requests_total)

    def _accept(self, forge: str) -> None:
        fire = False
        with self._lock:
            now = self._clock()
            wait = self._last_fired + self.min_interval - now
            if wait <= 0 and self._timer is None:
                self._last_fired = now
                fire = True
            else:
                self._pending = forge
                if self._timer is None:
                    self._timer = threading.Timer(max(wait, 0.0), self._fire_pending)
                    self._timer.daemon = True
                    self._timer.start()
        if fire:
            self._fire(forge)

    def _fire_pending(self) -> None:
        with self._lock:
            forge, self._pending, self._timer = self._pending, None, None
            self._last_fired = self._clock()
        if forge is not None:
            self._fire(forge)

    def _fire(self, forge: str) -> None:
        log.info("webhook.accepted", forge=forge)
        try:
            self._trigger(forge)
        except Exception as exc:  # the HTTP thread must answer; the controller's own loop reports its failures
            log.error("webhook.trigger_failed", error=str(exc))

    def close(self) -> None:
        """Cancel a pending coalesced trigger (on shutdown)."""
        with self._lock:
            timer, self._timer, self._pending = self._timer, None, None
        if timer is not None:
            timer.cancel()
