"""Retries of transient engine failures, per request, inside a pass.

An engine answers 5xx now and then (a busy containerd, a daemon restarting) and connections drop; one such
failure must not fail a whole `apply`. Every request the drivers make goes through `RetryingAPIClient.send`,
which repeats a failed request a bounded number of times with exponential backoff and jitter (4 attempts:
after ~0.2 s, ~0.4 s, ~0.8 s; each delay jittered to 50-100 % of its nominal value, capped at 2 s: the numbers
are `ENGINE_REQUEST` in reconciler/delays.py; a read that was sent and failed, 8 attempts, since one read failing
four times in a row ended a whole `apply` at 30 % faults), **but only when repeating it cannot do harm**:

What is repeated after a 5xx answer or a lost connection, and why that is safe:

- `GET`, `HEAD`: reads change nothing.
- `POST /containers/{id}/start`, `/stop`, `/wait`, `/update`: the engine answers 304 to a start of a started or
  a stop of a stopped container; `update` sets absolute values; `wait` only waits.
- `POST /volumes/create`: creating an existing local volume returns it.
- `POST /images/create` (pull), `POST /images/{name}/tag`: the same image ends up under the same name.
- `DELETE` (container, network, volume, image); a 404 to a repeat counts as done: the object is gone, as
  asked (the first attempt removed it before its answer was lost).
- `POST /containers/create?name=N`, `POST /networks/create` with `CheckDuplicate`: a name is unique on the
  engine, so a repeat cannot make a second object. A 409 to a repeat means the first attempt may have made it:
  it becomes a temporary error (503) and the next pass re-plans with what is there.
- everything else (`rename`, `kill`, `restart`, network `connect`/`disconnect`, `build`, `push`, exec, ...):
  only when the connection could not be opened at all (nothing was sent). Repeating could do it twice (two
  renames; a second connect fails after the first worked): the failure surfaces as a temporary error and the
  next pass re-plans from what it observes.

Each repeat is logged at debug level (`engine.request_retried`): an engine that cannot be reached is one error
line, not the retries before it.

Requests whose body is a stream (a build context) are never repeated: it was consumed by the first attempt.
A read timeout is not repeated either (the engine is slow, not failing; the client's timeout already waited),
nor a 503 saying "This node is not a swarm manager" (a swarm worker's or a lone engine's answer to a swarm
listing: it will not change, and the swarm drivers understand it).

urllib3's `Retry` (mounted through requests' HTTPAdapter) cannot express this table: its allow-list is by
method only, so it cannot tell a repeatable `POST .../start` from a `POST .../rename`, nor turn a repeated
`DELETE`'s 404 into success; hence this small wrapper of docker-py's `send` (the engine client's class in
`client.py` calls `send_with_retries`). requests is imported on first use (`lazy`): `validate` never loads it.
"""

from __future__ import annotations

import enum
import json
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import structlog

from reconciler.delays import ENGINE_READ_ATTEMPTS, ENGINE_REQUEST, ENGINE_REQUEST_ATTEMPTS, Exponential
from reconciler.drivers.engine import lazy

log = structlog.get_logger()

RETRY_STATUSES = frozenset({500, 502, 503, 504})


class Safety(enum.Enum):
    NEVER = "never"  # repeated only when nothing was sent
    REPEATABLE = "repeatable"  # doing it twice is doing it once
    DELETE = "delete"  # repeatable; a 404 to a repeat means the first attempt did it
    NAMED_CREATE = "named-create"  # a repeat cannot duplicate (unique name); a 409 to a repeat is temporary


_VERSION = re.compile(r"^/v[0-9.]+(?=/)")
_REPEATABLE_POSTS = re.compile(
    r"^/(containers/[^/]+/(start|stop|wait|update)|volumes/create|images/create|images/.+/tag)$"
)


def _path_and_query(request: Any) -> tuple[str, str]:
    url = request.path_url
    path, _, query = url.partition("?")
    return _VERSION.sub("", path), query


def safety_of(request: Any) -> Safety:
    """How safe it is to send `request` again after a failure (see the module's table)."""
    method = (request.method or "").upper()
    path, query = _path_and_query(request)
    if method in ("GET", "HEAD"):
        return Safety.REPEATABLE
    if method == "DELETE":
        return Safety.DELETE
    if method != "POST":
        return Safety.NEVER
    if _REPEATABLE_POSTS.match(path):
        return Safety.REPEATABLE
    if path == "/containers/create" and re.search(r"(^|&)name=[^&]", query):
        return Safety.NAMED_CREATE
    if path == "/networks/create" and _body_json(request).get("CheckDuplicate") is True:
        return Safety.NAMED_CREATE
    return Safety.NEVER


def _body_json(request: Any) -> dict[str, Any]:
    body = request.body
    if isinstance(body, bytes):
        body = body.decode(errors="replace")
    if not isinstance(body, str):
        return {}
    try:
        value = json.loads(body)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _replayable(request: Any) -> bool:
    return request.body is None or isinstance(request.body, bytes | str)


def never_sent(exc: BaseException) -> bool:
    """Whether a transport error happened before the request left (the socket could not be opened)."""
    seen: set[int] = set()
    stack: list[BaseException] = [exc]
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, ConnectionRefusedError | FileNotFoundError):
            return True
        if type(current).__name__ in ("NewConnectionError", "NameResolutionError"):
            return True
        stack.extend(a for a in getattr(current, "args", ()) if isinstance(a, BaseException))
        for linked in (current.__cause__, current.__context__, getattr(current, "reason", None)):
            if isinstance(linked, BaseException):
                stack.append(linked)
    return False


@dataclass(frozen=True)
class RetryPolicy:
    """How often a request is sent at most, and the waits between (reconciler/delays.py)."""

    attempts: int = ENGINE_REQUEST_ATTEMPTS
    delays: Exponential = ENGINE_REQUEST
    read_attempts: int = ENGINE_READ_ATTEMPTS  # a GET/HEAD that was sent and failed (not a refused connection)

    def delay(self, attempt: int, rand: Callable[[], float] = random.random) -> float:
        """Seconds to wait after failed attempt number `attempt` (1-based)."""
        return self.delays.delay(attempt, rand)


def _synthetic(request: Any, status: int, reason: str, message: str | None) -> Any:
    response = lazy.requests.Response()
    response.status_code = status
    response.reason = reason
    response.request = request
    response.url = request.url or ""
    response.headers = lazy.requests.structures.CaseInsensitiveDict({"Content-Type": "application/json"})
    response._content = json.dumps({"message": message}).encode() if message else b""
    return response


def send_with_retries(
    send: Callable[..., Any],
    request: Any,
    kwargs: dict[str, Any],
    policy: RetryPolicy,
    sleep: Callable[[float], None] = time.sleep,
    made: int = 0,
) -> Any:
    """`send(request, **kwargs)`, repeated as the policy and the request's safety allow; `made` attempts of the
    same request were made already (another way, and failed as one that may be repeated)."""
    safety = safety_of(request) if _replayable(request) else Safety.NEVER
    read = (request.method or "").upper() in ("GET", "HEAD")
    attempt = made
    while True:
        attempt += 1
        last = attempt >= (policy.read_attempts if read else policy.attempts)
        try:
            response = send(request, **kwargs)
        except lazy.requests.exceptions.ReadTimeout:
            raise
        except lazy.requests.ConnectionError as exc:
            refused = never_sent(exc)  # nothing answers: an engine down is said after the usual attempts
            if (attempt >= policy.attempts if refused else last) or not (safety is not Safety.NEVER or refused):
                raise
            _note(request, attempt, f"connection: {_first_line(exc)}")
            sleep(policy.delay(attempt))
            continue
        if attempt > 1:
            if safety is Safety.DELETE and response.status_code == 404:
                response.close()
                return _synthetic(request, 204, "No Content", None)
            if safety is Safety.NAMED_CREATE and response.status_code == 409:
                response.close()
                return _synthetic(
                    request,
                    503,
                    "Service Unavailable",
                    "the engine may have done the create whose answer was lost (the name is taken now); "
                    "it is re-planned from what is there",
                )
        if repeatable_answer(response) and safety is not Safety.NEVER and not last:
            _note(request, attempt, f"HTTP {response.status_code}")
            response.close()
            sleep(policy.delay(attempt))
            continue
        return response


# What a swarm request gets from an engine that is no swarm manager (a plain engine, a worker): a 503 saying so.
# That is the engine's standing state, not a failure of the moment, and the swarm drivers take it for "no swarm
# here" (drivers/swarm/values.list_on_manager); repeating it cost every plan on a plain engine 7 repeats of each
# of the services, secrets and configs listings, ~7 s.
_NOT_A_MANAGER = b"not a swarm manager"


def repeatable_answer(response: Any) -> bool:
    """Whether an answer is one to repeat the request for (when the request may be repeated at all)."""
    return response.status_code in RETRY_STATUSES and not _standing(response)


def _standing(response: Any) -> bool:
    """A 503 (see _NOT_A_MANAGER) or a 500 (see spec_refusal) that repeating cannot change."""
    if response.status_code == 503:
        return _NOT_A_MANAGER in (response.content or b"").lower()
    if response.status_code == 500:
        return spec_refusal((response.content or b"").decode(errors="replace"))
    return False


# Refusals the engine answers with a 500 although no repeat can change them: the spec asks for something the
# runtime or a network driver cannot do (runc's container init refusing an env value with a NUL byte, a mount or a
# working directory; a macvlan parent link that is not there). As engine faults they were repeated 4 times per
# request and re-planned for 6 rounds: a failing apply said what was wrong only after ~25 s. What a loaded host
# says during the same steps (a busy device, no memory, a timeout) stays a fault.
_SPEC_REFUSALS = ("error during container init", "invalid subinterface", "parent interface was not found")
_MOMENTARY = ("temporarily unavailable", "cannot allocate memory", "resource busy", "too many", "timeout", "deadline")


def spec_refusal(message: str) -> bool:
    """Whether an engine 500 `message` refuses the spec itself (see above) rather than failing for the moment."""
    lowered = message.lower()
    return any(m in lowered for m in _SPEC_REFUSALS) and not any(m in lowered for m in _MOMENTARY)


def _note(request: Any, attempt: int, why: str) -> None:
    path, _ = _path_and_query(request)
    log.debug("engine.request_retried", method=request.method, path=path, attempt=attempt, reason=why)


def _first_line(exc: BaseException) -> str:
    text = str(exc)
    return text.splitlines()[0][:200] if text else type(exc).__name__


RETRY_POLICY = RetryPolicy()
