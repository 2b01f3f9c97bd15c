"""The status board of watch: statuses through a pass, history, sensitive values, and the read-only server."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from reconciler.model import (
    Action,
    Change,
    Desired,
    ErrorClass,
    FieldChange,
    Outcome,
    Plan,
    Resource,
    Result,
    Source,
)
from reconciler.watch.metrics import Metrics, serve
from reconciler.watch.statuspage import StatusBoard, render_html
from tests.helpers import free_port

SECRET = "hunter2-do-not-show"


def desired(kind: str, name: str) -> Desired:
    return Desired(Resource(kind, name, {}, {}, Source(f"{name}.yaml", 1, Path("/x"))), {}, "h")


def drifted_web() -> Change:
    fields = (
        FieldChange("state", "stopped", "running", Action.UPDATE),
        FieldChange("env.TOKEN", "old", SECRET, Action.REPLACE, sensitive=True),
    )
    return Change("Container", "web", Action.REPLACE, fields, desired("Container", "web"), steps=("start web",))


def board_after_plan() -> tuple[StatusBoard, Plan]:
    board = StatusBoard("demo", "unix:///run/docker.sock")
    plan = Plan(
        "demo",
        (
            drifted_web(),
            Change("Volume", "data", Action.NONE, desired=desired("Volume", "data")),
            Change("Network", "lan", Action.CREATE, desired=desired("Network", "lan"), blocked="overlaps eth0"),
            Change("Container", "db", Action.CREATE, desired=desired("Container", "db")),
        ),
    )
    board.pass_started(1, ["startup"])
    board.planned(plan)
    return board, plan


def statuses(board: StatusBoard) -> dict[str, str]:
    return {f"{o['kind']}/{o['name']}": o["status"] for o in board.snapshot()["objects"]}


def test_statuses_follow_the_plan_then_the_results() -> None:
    """Planned: drifted, in sync, blocked, missing; then applied -> in sync, failed -> failing with its class."""
    board, plan = board_after_plan()
    assert statuses(board) == {
        "Container/web": "drifted",
        "Volume/data": "in sync",
        "Network/lan": "blocked",
        "Container/db": "missing",
    }
    results = [
        Result(plan.changes[0], Outcome.APPLIED, seconds=0.4),
        Result(plan.changes[1], Outcome.UNCHANGED),
        Result(plan.changes[2], Outcome.BLOCKED, "overlaps eth0"),
        Result(plan.changes[3], Outcome.FAILED, "port taken", error_class=ErrorClass.TEMPORARY),
    ]
    for result in results:
        board.result(result)
    board.pass_done(
        results,
        {
            "Container/db": {
                "status": "failing",
                "error": "port taken",
                "errorClass": "temporary",
                "nextRetry": "2026-01-01T00:00:01+00:00",
            }
        },
    )
    snap = board.snapshot()
    assert statuses(board)["Container/web"] == "in sync"
    [db] = [o for o in snap["objects"] if o["name"] == "db"]
    assert (db["status"], db["lastError"], db["errorClass"], db["nextRetry"]) == (
        "failing",
        "port taken",
        "temporary",
        "2026-01-01T00:00:01+00:00",
    )
    [lan] = [o for o in snap["objects"] if o["name"] == "lan"]
    assert lan["blocked"] == "overlaps eth0"
    assert [(h["name"], h["outcome"]) for h in snap["history"]] == [("db", "failed"), ("web", "applied")]
    assert snap["lastPass"]["number"] == 1 and snap["lastPass"]["finished"]
    assert "~" not in snap["lastPass"]["planText"] or "Container/web" in snap["lastPass"]["planText"]


def test_no_secret_in_the_json_or_the_page() -> None:
    """Sensitive field values are `(sensitive)` in the JSON and the HTML, as on the CLI."""
    board, plan = board_after_plan()
    board.result(Result(plan.changes[0], Outcome.APPLIED))
    board.pass_done([Result(plan.changes[0], Outcome.APPLIED)], {})
    snap = board.snapshot()
    text = json.dumps(snap) + render_html(snap)
    assert SECRET not in text and "(sensitive)" in text


def test_page_escapes_what_it_shows() -> None:
    """Errors and names are HTML-escaped (an engine message may hold anything)."""
    board, plan = board_after_plan()
    board.result(Result(plan.changes[3], Outcome.FAILED, "<script>alert(1)</script>", error_class=ErrorClass.PERMANENT))
    page = render_html(board.snapshot())
    assert "<script>" not in page and "&lt;script&gt;" in page


def _request(url: str, method: str = "GET") -> tuple[int, str, dict[str, str]]:
    request = urllib.request.Request(url, method=method, data=b"x" if method in ("POST", "PUT") else None)
    try:
        with urllib.request.urlopen(request, timeout=5) as resp:
            return resp.status, resp.read().decode(), dict(resp.headers)
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.read().decode(), dict(exc.headers)


def test_server_serves_the_page_and_json_read_only() -> None:
    """GET / is HTML, GET /status.json the same data; HEAD works; POST, PUT, DELETE are 405."""
    board, _ = board_after_plan()
    server = serve(f"127.0.0.1:{free_port()}", Metrics(), board)
    base = f"http://127.0.0.1:{server.port}"
    try:
        code, body, headers = _request(f"{base}/")
        assert code == 200 and headers["Content-Type"].startswith("text/html") and "Container/web" in body
        assert 'http-equiv="refresh"' in body
        code, body, _ = _request(f"{base}/status.json")
        assert code == 200 and json.loads(body)["project"] == "demo"
        assert _request(f"{base}/", "HEAD")[0] == 200
        for method in ("POST", "PUT", "DELETE"):
            code, _, headers = _request(f"{base}/", method)
            assert code == 405 and headers["Allow"] == "GET, HEAD"
        assert _request(f"{base}/metrics")[0] == 200
    finally:
        server.close()


def test_without_a_board_there_is_no_page() -> None:
    """Serving metrics alone (no board) keeps / a 404, as before."""
    server = serve(f"127.0.0.1:{free_port()}", Metrics())
    try:
        assert _request(f"http://127.0.0.1:{server.port}/")[0] == 404
    finally:
        server.close()


@pytest.mark.parametrize("status", ["in sync", "drifted", "failing", "blocked", "missing"])
def test_every_status_has_a_badge(status: str) -> None:
    """Each status gets its own CSS class on the page."""
    assert f".s-{status.replace(' ', '-')}" in render_html(StatusBoard("p", "e").snapshot())
