"""Notifications (issue 22, item 5) through apprise's JSON notifier to a local HTTP receiver on 127.0.0.1: every
event, secrets masked, deduplicated and rate-limited, and a receiver that hangs or answers 500 never blocks the
caller nor raises."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import structlog

from reconciler.errors import PermanentError
from reconciler.gitsource import Rejection, Revision
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
    mask,
)
from reconciler.model import secret_values as sensitive_values
from reconciler.watch.notify import Message, Notifier, NotifyObserver
from tests.receiver import Receiver

REV = Revision("a" * 40, "main", "deploy", "web: 1.25", "Alice <a@example.org>", "2026-12-06T01:00:00Z")


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def test_every_event_reaches_the_receiver_through_apprise(receiver: Receiver) -> None:
    """Each event arrives through apprise's JSON notifier, titled with project and host, naming the commit in force."""
    n = Notifier.for_urls([receiver.url], "demo", host="edge-1", engine_down_after=0.0)
    try:
        n.revision_applied(REV, "2 to create, 1 to replace")
        n.apply_failed(
            "Container/web",
            "container exited (code 1) at start: rolled back",
            [f"line {i}" for i in range(30)],
            rolled_back=True,
        )
        n.held("Container/db", "image nosuch:1 not found")
        n.drift_repaired("Container/cache", ["spec.env.MODE", "state"])
        n.engine_state(False, "connection refused")
        n.engine_state(True)
        n.commit_refused(Rejection("b" * 40, "not signed by an allowed key"))
        posts = receiver.wait_posts(7)
    finally:
        n.close()
    titles = [str(p["title"]) for p in posts]
    assert all(t.startswith("reconcile demo@edge-1: ") for t in titles)
    assert [t.split(": ", 1)[1] for t in titles] == [
        "applied aaaaaaaaaaaa",
        "rolled back: Container/web",
        "held as a permanent failure: Container/db",
        "drift repaired: Container/cache",
        "engine unreachable",
        "engine reachable again",
        "commit refused: bbbbbbbbbbbb",
    ]
    assert "2 to create, 1 to replace" in str(posts[0]["message"]) and "web: 1.25" in str(posts[0]["message"])
    failed = str(posts[1]["message"])
    assert "last 20 log lines" in failed and "line 29" in failed and "line 9\n" not in failed
    assert "commit in force: aaaaaaaaaaaa" in failed
    assert posts[1]["type"] == "failure" and posts[0]["type"] == "success"
    assert "still in force: aaaaaaaaaaaa" in str(posts[6]["message"])


def test_secret_values_are_masked_in_the_error_and_the_log_lines(receiver: Receiver) -> None:
    """Sensitive env values are masked in the error and the log lines, also JSON-escaped; plain values stay."""
    n = Notifier.for_urls([receiver.url], "demo")
    spec = {"env": {"TOKEN": "hunter2-very-secret", "MODE": "prod", "QUOTED": 'a"b'}}
    secrets = sensitive_values(spec, {"env.TOKEN", "env.QUOTED"})
    try:
        n.apply_failed(
            "Container/web",
            "engine said: invalid TOKEN=hunter2-very-secret",
            ["starting with token hunter2-very-secret", '{"q": "a\\"b"}', "mode prod"],
            secrets,
        )
        (post,) = receiver.wait_posts(1)
    finally:
        n.close()
    text = json.dumps(post)
    assert "hunter2" not in text and 'a\\\\"b' not in text
    assert "(sensitive)" in str(post["message"]) and "mode prod" in str(post["message"])


def test_one_message_per_object_and_cause_until_it_changes(receiver: Receiver) -> None:
    """Repeats are dropped until the cause changes or the object is resolved."""
    n = Notifier.for_urls([receiver.url], "demo")
    try:
        for _ in range(5):
            n.apply_failed("Container/web", "exit 1")
        n.apply_failed("Container/web", "exit 2")  # the cause changed
        n.held("Container/web", "exit 2")  # another cause
        n.resolved("Container/web")
        n.apply_failed("Container/web", "exit 2")  # in sync in between: told again
        for _ in range(3):
            n.revision_applied(REV, "1 to create")
        n.close()
        posts = receiver.wait_posts(5, timeout=2)
    finally:
        n.close()
    assert len(posts) == 5
    assert [str(p["message"]).split("\n")[0] for p in posts[:4]] == ["exit 1", "exit 2", "exit 2", "exit 2"]


def test_a_flood_is_rate_limited_and_the_next_message_counts_what_was_held_back(receiver: Receiver) -> None:
    """Beyond the burst messages are held back, and the next one sent says how many."""
    clock = [0.0]
    n = Notifier.for_urls([receiver.url], "demo", burst=3, rate_per_minute=6, clock=lambda: clock[0])
    try:
        for i in range(10):
            n.apply_failed(f"Container/c{i}", "boom")
        clock[0] = 10.0  # one token back (6 a minute)
        n.held("Container/x", "boom")
        posts = receiver.wait_posts(4)
    finally:
        n.close()
    assert len(posts) == 4
    assert "(7 earlier notifications held back by the rate limit)" in str(posts[3]["message"])


def test_engine_unreachable_is_told_once_after_the_threshold() -> None:
    """Engine down: told once after the threshold, once when back; a short outage is never told."""
    sent: list[Message] = []
    clock = [0.0]
    n = Notifier(lambda m: sent.append(m) or True, "demo", engine_down_after=60, clock=lambda: clock[0])
    for t in (0, 30, 59):
        clock[0] = t
        n.engine_state(False)
    clock[0] = 61
    n.engine_state(False)
    clock[0] = 300
    n.engine_state(False)
    n.engine_state(True)
    n.engine_state(True)
    clock[0] = 310
    n.engine_state(False)
    n.engine_state(True)  # down for 0 s: never told, so no "again" either
    n.close()
    assert [m.title for m in sent] == ["reconcile demo: engine unreachable", "reconcile demo: engine reachable again"]


def test_a_hanging_receiver_blocks_nothing() -> None:
    """A receiver that never answers: the caller never waits, a full queue drops, close() is bounded."""
    hang = Receiver("hang")
    try:
        n = Notifier.for_urls([hang.url + "?rto=30&cto=2"], "demo", queue_size=4)
        start = time.monotonic()
        for i in range(50):
            n.apply_failed(f"Container/c{i}", "boom")
        assert time.monotonic() - start < 1.0, "the caller never waits for the service"
        assert hang.wait_hits(1) == 1
        assert n.dropped > 0
        start = time.monotonic()
        n.close(timeout=1.0)
        assert time.monotonic() - start < 2.0
    finally:
        hang.close()


def test_a_failing_receiver_is_logged_once_and_never_raises() -> None:
    """A receiver answering 500: every message is tried, the failure logged once, nothing raised."""
    fail = Receiver("fail")
    try:
        with structlog.testing.capture_logs() as logs:
            n = Notifier.for_urls([fail.url], "demo-failing")
            for i in range(4):
                n.held(f"Container/c{i}", "boom")
            n.close(timeout=10)
        assert fail.hits == 4 and n.failures == 4 and n.delivered == 0
        # another test's notifier may still be failing on its own thread: only this one's lines count
        ours = [e["event"] for e in logs if e["event"].startswith("notify.") and e.get("project") == "demo-failing"]
        assert ours == ["notify.failed"]
    finally:
        fail.close()


def test_a_raising_sender_is_survived_and_recovery_logged() -> None:
    """A sender that raises is survived; the first delivery after is logged as recovered."""
    calls = [0]

    def flaky(_m: Message) -> bool:
        calls[0] += 1
        if calls[0] <= 2:
            raise ConnectionError("down")
        return True

    with structlog.testing.capture_logs() as logs:
        n = Notifier(flaky, "demo")
        for i in range(3):
            n.held(f"Container/c{i}", "boom")
        n.close()
    assert n.delivered == 1
    assert [e["event"] for e in logs if e["event"].startswith("notify.")] == ["notify.failed", "notify.recovered"]


def test_a_bad_url_is_a_permanent_error_naming_only_its_scheme() -> None:
    """A URL apprise does not know stops the watch, naming its position and scheme, not its token."""
    with pytest.raises(PermanentError, match=r"--notify #2 \(nosuchscheme://…\)") as exc:
        Notifier.for_urls(["json://127.0.0.1:1/x", "nosuchscheme://user:tok3n@host"], "demo")
    assert "tok3n" not in str(exc.value)


def test_mask() -> None:
    """Longest secrets first, escaped forms too; sensitive_values reads only env.NAME paths."""
    assert mask("a=abc abcdef", ["abc", "abcdef", ""]) == "a=(sensitive) (sensitive)"
    assert mask('{"v": "x\\"y"}', ['x"y']) == '{"v": "(sensitive)"}'
    assert sensitive_values({"env": {"A": "1", "B": ""}}, {"env.A", "env.B", "labels.x"}) == ["1"]
    assert sensitive_values({}, {"env.A"}) == []


# --- the controller's observer -------------------------------------------------------------------------------


def _change(name: str, spec_hash: str, action: Action = Action.REPLACE, env: dict[str, str] | None = None) -> Change:
    resource = Resource("Container", name, {}, {}, Source("c.yaml", 1, Path("/m/c.yaml")))
    desired = Desired(resource, {"env": env or {}}, spec_hash, frozenset(f"env.{k}" for k in env or {}))
    fields = (FieldChange("env.MODE", "a", "b", action),)
    return Change("Container", name, action, fields, desired=desired)


class Recorder:
    def __init__(self) -> None:
        self.sent: list[Message] = []

    def __call__(self, message: Message) -> bool:
        self.sent.append(message)
        return True

    def titles(self) -> list[str]:
        return [m.title.removeprefix("reconcile demo: ") for m in self.sent]


def _pass(observer: NotifyObserver, changes: list[Change], results: list[Result], failures: dict | None = None):
    observer.pass_started(1, ["files"])
    observer.planned(Plan("demo", tuple(changes)))
    for result in results:
        observer.result(result)
    observer.pass_done(results, failures or {})


def test_the_observer_tells_a_revision_once_after_a_clean_pass() -> None:
    """A pass under a new commit that ends with nothing failing tells it once, with the plan's summary; a commit
    already applied when watch started is not told again."""
    rec = Recorder()
    n = Notifier(rec, "demo")
    revision = [REV]
    obs = NotifyObserver(n, in_force=lambda: revision[0], applied_commit="c" * 40)
    web = _change("web", "h1", Action.CREATE)
    _pass(obs, [web], [Result(web, Outcome.APPLIED)])
    _pass(obs, [], [])
    n.close()
    assert rec.titles() == ["applied aaaaaaaaaaaa"]
    assert "Plan: 1 to create, 0 to update, 0 to replace, 0 to delete, 0 blocked." in rec.sent[0].body


def test_the_observer_tells_failures_rollbacks_held_and_drift() -> None:
    """A failed replace that put the old container back is a roll-back with the log lines; a permanent failure
    is held; a change to a spec seen applied before is drift; the engine's absence is told by pass_failed."""
    rec = Recorder()
    n = Notifier(rec, "demo", engine_down_after=0)
    up = [True]
    lines = ["starting with TOKEN=s3cret-value", "crashed"]
    obs = NotifyObserver(n, engine_up=lambda: up[0], log_lines=lambda r: lines)
    web = _change("web", "h1", env={"TOKEN": "s3cret-value"})
    db = _change("db", "h2")
    _pass(obs, [web, db], [Result(web, Outcome.APPLIED), Result(db, Outcome.UNCHANGED)])
    failed = Result(
        web, Outcome.FAILED, "start: exited (1); the old container was restored", error_class=ErrorClass.TEMPORARY
    )
    held = Result(db, Outcome.FAILED, "image nosuch:1 not found", error_class=ErrorClass.PERMANENT)
    _pass(obs, [web, db], [failed, held], {"Container/web": {}, "Container/db": {}})
    _pass(obs, [web], [Result(web, Outcome.APPLIED)])  # web's hash h1 was applied before: drift repaired
    up[0] = False
    obs.pass_started(4, ["resync"])
    obs.pass_failed("engine unavailable: connection refused")
    n.close()
    assert rec.titles() == [
        "rolled back: Container/web",
        "held as a permanent failure: Container/db",
        "drift repaired: Container/web",
        "engine unreachable",
    ]
    assert "crashed" in rec.sent[0].body and "s3cret-value" not in rec.sent[0].body
    assert "env.MODE" in rec.sent[2].body
