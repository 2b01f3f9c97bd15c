"""A plain engine's 503 to a swarm listing ("not a swarm manager") is its standing state: answered at once, not
repeated as a transient failure (a plan on a plain engine spent ~7 s repeating three of them)."""

from __future__ import annotations

import json

import requests

from reconciler.drivers.engine.retry import RetryPolicy, send_with_retries

NOT_A_MANAGER = (
    b'{"message":"This node is not a swarm manager. Use \\"docker swarm init\\" or \\"docker swarm join\\" to '
    b'connect this node to swarm and try again."}'
)


def answers(*bodies: tuple[int, bytes]) -> tuple[list[int], object]:
    sent: list[int] = []
    queue = list(bodies)

    def send(request: requests.PreparedRequest, **_: object) -> requests.Response:
        sent.append(1)
        status, body = queue.pop(0)
        r = requests.Response()
        r.status_code, r._content, r._content_consumed = status, body, True
        return r

    return sent, send


def get(path: str) -> requests.PreparedRequest:
    return requests.Request("GET", f"http+docker://localhost/v1.41{path}").prepare()


def test_not_a_swarm_manager_is_answered_at_once():
    sent, send = answers(*[(503, NOT_A_MANAGER)] * 8)
    sleeps: list[float] = []
    got = send_with_retries(send, get("/services"), {}, RetryPolicy(), sleep=sleeps.append)
    assert got.status_code == 503 and json.loads(got.content)["message"].startswith("This node is not a swarm")
    assert (len(sent), sleeps) == (1, [])


def test_another_503_is_still_repeated():
    sent, send = answers((503, b'{"message":"containerd is busy"}'), (200, b"[]"))
    got = send_with_retries(send, get("/services"), {}, RetryPolicy(), sleep=lambda _: None)
    assert got.status_code == 200 and len(sent) == 2
