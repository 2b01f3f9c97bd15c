"""A container inspect on a unix-socket engine goes through the connection pool under requests (half the CPU of a
1,000-container plan's inspects): it must answer, and fail, exactly as docker-py's own inspect does.

A fake engine on a unix socket: `ok` answers 200, `gone` 404 as the engine words it, `flaky` 500 once and then
200 (the usual way's retry takes over), and every request is counted.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import docker
import pytest
import requests

from reconciler.delays import ENGINE_READ_ATTEMPTS, Exponential
from reconciler.drivers.engine import client as client_module
from reconciler.drivers.engine.client import connect
from reconciler.drivers.engine.retry import RetryPolicy
from tests.fakeengine import FakeEngine, serving

OK = {"Id": "0" * 64, "Name": "/ok", "Config": {"Env": ["A=b"]}, "State": {"Running": True}}


class _Engine(FakeEngine):
    seen: Counter[str]
    lock: threading.Lock

    def answer(self, line: bytes) -> tuple[bytes, bytes]:
        path = line.split()[1].decode()
        key = path.split("/v1.", 1)[-1].partition("/")[2] or path  # the path after the API version
        with self.lock:
            self.seen[key] += 1
            count = self.seen[key]
        if key == "containers/ok/json" or (key == "containers/flaky/json" and count > 1):
            return b"200 OK", json.dumps(OK).encode()
        if key == "containers/gone/json":
            return b"404 Not Found", b'{"message":"No such container: gone"}'
        if key in ("containers/down/json", "containers/flaky/json"):
            return b"500 Internal Server Error", b'{"message":"busy"}'
        if key == "containers/bad/json":
            return b"400 Bad Request", b'{"message":"invalid name"}'
        return b"200 OK", json.dumps({"ApiVersion": "1.41"}).encode()


@pytest.fixture
def engine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, Counter[str]]]:
    monkeypatch.delenv("DOCKER_TLS_VERIFY", raising=False)
    monkeypatch.delenv("DOCKER_CERT_PATH", raising=False)
    path = str(tmp_path / "docker.sock")
    seen: Counter[str] = Counter()
    with serving(path, type("H", (_Engine,), {"seen": seen, "lock": threading.Lock()})):
        yield f"unix://{path}", seen


def test_a_found_container_is_the_engine_s_document_in_one_request(engine, monkeypatch):
    url, seen = engine
    client = connect(url)
    through_requests: list[str] = []
    send = requests.Session.send
    monkeypatch.setattr(requests.Session, "send", lambda s, r, **kw: through_requests.append(r.url) or send(s, r, **kw))
    assert client.inspect_container("ok") == OK
    assert seen["containers/ok/json"] == 1
    assert through_requests == []  # the pool underneath, not requests


def test_a_missing_container_raises_what_docker_py_raises_in_one_request(engine):
    url, seen = engine
    with pytest.raises(docker.errors.NotFound) as ours:
        connect(url).inspect_container("gone")
    assert seen["containers/gone/json"] == 1
    with pytest.raises(docker.errors.NotFound) as theirs:
        docker.APIClient(base_url=url, version="1.41").inspect_container("gone")
    assert ours.value.explanation == theirs.value.explanation == "No such container: gone"
    assert ours.value.status_code == 404


def test_any_other_answer_is_asked_again_the_usual_way(engine):
    url, seen = engine
    assert connect(url).inspect_container("flaky") == OK
    assert seen["containers/flaky/json"] == 2  # the fast try's 500, then the usual way's 200


def test_a_repeated_failure_is_attempted_as_often_as_the_usual_way_alone_would(engine, monkeypatch):
    """The fast try is the first of the read's attempts, not one more: a fault that outlasts every attempt of the
    retry policy must still fail (tests/integration/test_replace_faults.py injects exactly that many)."""
    url, seen = engine
    monkeypatch.setattr(client_module, "RETRY_POLICY", RetryPolicy(delays=Exponential(base=0.001, cap=0.001)))
    with pytest.raises(docker.errors.APIError) as failed:
        connect(url).inspect_container("down")
    assert failed.value.status_code == 500
    assert seen["containers/down/json"] == ENGINE_READ_ATTEMPTS


def test_an_answer_no_repeat_changes_is_raised_at_once(engine):
    url, seen = engine
    with pytest.raises(docker.errors.APIError) as failed:
        connect(url).inspect_container("bad")
    assert failed.value.status_code == 400 and failed.value.explanation == "invalid name"
    assert seen["containers/bad/json"] == 1
