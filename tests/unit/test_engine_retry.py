"""Per-request retries of transient engine failures (reconciler.drivers.engine.retry): which requests are
repeated, how often, how long between attempts, and what a repeat's answer means."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import requests
import urllib3.exceptions
from structlog.testing import capture_logs

from reconciler.drivers.engine.errors import engine_errors
from reconciler.drivers.engine.retry import RetryPolicy, Safety, never_sent, safety_of, send_with_retries
from reconciler.errors import EngineFault, EngineUnavailable, PermanentError, TemporaryError


def prepared(method: str, path: str, body: object = None) -> requests.PreparedRequest:
    request = requests.Request(method, f"http+docker://localhost/v1.41{path}")
    if body is not None:
        request.data = json.dumps(body) if isinstance(body, dict) else body
    return request.prepare()


def response(status: int, body: bytes = b"{}") -> requests.Response:
    r = requests.Response()
    r.status_code = status
    r._content = body
    r._content_consumed = True
    return r


def dropped() -> requests.ConnectionError:
    cause = urllib3.exceptions.ProtocolError("Connection aborted.", ConnectionResetError(104, "reset by peer"))
    return requests.ConnectionError(cause)


def refused() -> requests.ConnectionError:
    cause = urllib3.exceptions.ProtocolError("Connection aborted.", ConnectionRefusedError(111, "refused"))
    return requests.ConnectionError(cause)


class Script:
    """A fake `send` answering from a list (responses or exceptions) and recording the calls."""

    def __init__(self, *answers: object) -> None:
        self.answers: Iterator[object] = iter(answers)
        self.calls = 0

    def __call__(self, request: requests.PreparedRequest, **kwargs: object) -> requests.Response:
        self.calls += 1
        answer = next(self.answers)
        if isinstance(answer, BaseException):
            raise answer
        assert isinstance(answer, requests.Response)
        return answer


def run(request: requests.PreparedRequest, *answers: object) -> tuple[requests.Response, Script, list[float]]:
    script = Script(*answers)
    sleeps: list[float] = []
    result = send_with_retries(script, request, {}, RetryPolicy(), sleep=sleeps.append)
    return result, script, sleeps


@pytest.mark.parametrize(
    ("method", "path", "body", "safety"),
    [
        ("GET", "/containers/json", None, Safety.REPEATABLE),
        ("HEAD", "/_ping", None, Safety.REPEATABLE),
        ("POST", "/containers/abc/start", None, Safety.REPEATABLE),
        ("POST", "/containers/abc/stop?t=10", None, Safety.REPEATABLE),
        ("POST", "/containers/abc/update", {"Memory": 1}, Safety.REPEATABLE),
        ("POST", "/volumes/create", {"Name": "v"}, Safety.REPEATABLE),
        ("POST", "/images/create?fromImage=busybox&tag=1", None, Safety.REPEATABLE),
        ("POST", "/images/127.0.0.1:5000/a/b:1/tag?repo=x", None, Safety.REPEATABLE),
        ("DELETE", "/containers/abc?v=False&force=True", None, Safety.DELETE),
        ("POST", "/containers/create?name=web", {"Image": "x"}, Safety.NAMED_CREATE),
        ("POST", "/networks/create", {"Name": "n", "CheckDuplicate": True}, Safety.NAMED_CREATE),
        ("POST", "/networks/create", {"Name": "n"}, Safety.NEVER),
        ("POST", "/containers/create", {"Image": "x"}, Safety.NEVER),
        ("POST", "/containers/abc/rename?name=web__reconciler_old", None, Safety.NEVER),
        ("POST", "/containers/abc/kill", None, Safety.NEVER),
        ("POST", "/containers/abc/restart", None, Safety.NEVER),
        ("POST", "/networks/n/connect", {"Container": "abc"}, Safety.NEVER),
        ("POST", "/build?t=x", None, Safety.NEVER),
        ("PUT", "/containers/abc/archive", None, Safety.NEVER),
    ],
)
def test_safety_table(method: str, path: str, body: object, safety: Safety) -> None:
    assert safety_of(prepared(method, path, body)) is safety


def test_a_read_is_retried_after_5xx_and_dropped_connections_then_succeeds() -> None:
    result, script, sleeps = run(prepared("GET", "/containers/json"), response(500), dropped(), response(200))
    assert result.status_code == 200 and script.calls == 3
    assert len(sleeps) == 2 and 0.1 <= sleeps[0] <= 0.2 and 0.2 <= sleeps[1] <= 0.4


def test_attempts_are_bounded_and_the_last_answer_is_returned() -> None:
    start = "/containers/x/start"
    result, script, sleeps = run(prepared("POST", start), *(response(503) for _ in range(4)))
    assert result.status_code == 503 and script.calls == 4 and len(sleeps) == 3
    with pytest.raises(requests.ConnectionError):
        run(prepared("POST", start), *(dropped() for _ in range(4)))


def test_a_read_that_was_sent_is_repeated_eight_times() -> None:
    """Issue 24, defect 9: at 30 % faults a read failing four times in a row ended the whole apply."""
    result, script, sleeps = run(prepared("GET", "/info"), *(response(503) for _ in range(8)))
    assert result.status_code == 503 and script.calls == 8 and len(sleeps) == 7
    with pytest.raises(requests.ConnectionError):
        run(prepared("GET", "/info"), *(dropped() for _ in range(8)))


def test_delays_double_are_jittered_and_capped() -> None:
    policy = RetryPolicy(attempts=10)  # the delays of reconciler.delays.ENGINE_REQUEST
    assert [policy.delay(n, rand=lambda: 1.0) for n in (1, 2, 3, 4, 5, 6)] == [0.2, 0.4, 0.8, 1.6, 2.0, 2.0]
    assert policy.delay(3, rand=lambda: 0.0) == 0.4


def test_each_repeat_is_a_debug_line() -> None:
    """Repeats are detail: an unreachable engine is one error line, not the retries before it."""
    with capture_logs() as logs, pytest.raises(requests.ConnectionError):
        run(prepared("GET", "/version"), *(refused() for _ in range(4)))
    retried = [e for e in logs if e["event"] == "engine.request_retried"]
    assert [e["attempt"] for e in retried] == [1, 2, 3] and {e["log_level"] for e in retried} == {"debug"}


def test_client_errors_are_not_retried() -> None:
    for status in (400, 404, 409):
        result, script, _ = run(prepared("GET", "/containers/x/json"), response(status))
        assert result.status_code == status and script.calls == 1


def test_a_rename_is_never_repeated_after_it_was_sent() -> None:
    result, script, _ = run(prepared("POST", "/containers/abc/rename?name=x"), response(500))
    assert result.status_code == 500 and script.calls == 1
    with pytest.raises(requests.ConnectionError):
        run(prepared("POST", "/containers/abc/rename?name=x"), dropped())


def test_any_request_is_repeated_when_nothing_was_sent() -> None:
    result, script, _ = run(prepared("POST", "/containers/abc/rename?name=x"), refused(), response(204))
    assert result.status_code == 204 and script.calls == 2


def test_a_repeated_delete_answered_404_is_done() -> None:
    result, script, _ = run(prepared("DELETE", "/volumes/v"), dropped(), response(404))
    assert result.status_code == 204 and script.calls == 2
    first, _, _ = run(prepared("DELETE", "/volumes/v"), response(404))
    assert first.status_code == 404  # a first answer is the truth


def test_a_repeated_named_create_answered_409_is_temporary() -> None:
    request = prepared("POST", "/containers/create?name=web", {"Image": "x"})
    result, script, _ = run(request, dropped(), response(409, b'{"message": "name in use"}'))
    assert result.status_code == 503 and script.calls == 2
    assert "re-planned" in result.json()["message"]
    result, _, _ = run(request, response(500), response(201, b'{"Id": "abc"}'))
    assert result.status_code == 201


def test_a_streamed_body_is_never_repeated() -> None:
    request = prepared("GET", "/info")
    request.body = iter([b"x"])  # type: ignore[assignment]
    result, script, _ = run(request, response(500))
    assert result.status_code == 500 and script.calls == 1


def test_read_timeouts_are_not_repeated() -> None:
    with pytest.raises(requests.exceptions.ReadTimeout):
        run(prepared("GET", "/info"), requests.exceptions.ReadTimeout("slow"))


def test_never_sent_tells_refused_from_dropped() -> None:
    assert never_sent(refused())
    assert never_sent(requests.ConnectionError(FileNotFoundError(2, "No such file or directory")))
    assert not never_sent(dropped())


def test_the_translator_tells_a_lost_connection_from_an_unreachable_engine() -> None:
    with (
        pytest.raises(TemporaryError, match="connection to the engine was lost"),
        engine_errors("container web: start"),
    ):
        raise dropped()
    with pytest.raises(EngineUnavailable, match="engine unreachable"), engine_errors("container web: start"):
        raise refused()


@pytest.mark.parametrize(
    "said",
    [
        "removal of container abc is already in progress",
        # `docker rm -f` kills first: the pass its die event starts may try to start the container being removed
        "container is marked for removal and cannot be started",
    ],
)
def test_a_removal_in_progress_is_temporary(said: str) -> None:
    """Seen under faults: an object removed by hand while its create was being applied answered 409 "removal of
    container … is already in progress"; as a permanent failure it was held until the resync."""
    from docker.errors import APIError

    fake = response(409)
    with pytest.raises(TemporaryError, match=said), engine_errors("container web: start"):
        raise APIError("409", response=fake, explanation=said)


NUL_IN_ENV = (
    "failed to create shim task: OCI runtime create failed: runc create failed: unable to start container process: "
    'error during container init: environment variable value can\'t contain null(\\x00): "T=a\\x00b": unknown'
)
NO_PARENT = "invalid subinterface vlan name rcn-no-such-link, example formatting is eth0.10"


@pytest.mark.parametrize("said", [NUL_IN_ENV, NO_PARENT])
def test_an_engine_500_refusing_the_spec_is_said_at_once(said: str) -> None:
    """The engine answers these with a 500 (Docker 20.10, seen in the suite): repeated as engine faults, a failing
    apply said what was wrong only after 4 attempts per request and 6 re-planned rounds (~25 s)."""
    from docker.errors import APIError

    body = json.dumps({"message": said}).encode()
    result, script, sleeps = run(prepared("POST", "/containers/abc/start"), response(500, body))
    assert result.status_code == 500 and script.calls == 1 and sleeps == []
    with pytest.raises(PermanentError, match="container web: start: "), engine_errors("container web: start"):
        raise APIError("500", response=response(500, body), explanation=said)


@pytest.mark.parametrize(
    "said",
    [
        "faultproxy: injected error",
        "error during container init: open /proc/self/fd: resource temporarily unavailable",
        "OCI runtime create failed: context deadline exceeded",
    ],
)
def test_other_engine_500s_stay_faults(said: str) -> None:
    from docker.errors import APIError

    body = json.dumps({"message": said}).encode()
    _, script, _ = run(prepared("POST", "/containers/abc/start"), *(response(500, body) for _ in range(4)))
    assert script.calls == 4
    with pytest.raises(EngineFault), engine_errors("container web: start"):
        raise APIError("500", response=response(500, body), explanation=said)
