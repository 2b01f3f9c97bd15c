"""Notifications of the watch (issue 22, item 5): `--notify URL` (repeatable) through apprise, which speaks to 100+
services (Slack, Matrix, Discord, ntfy, e-mail, a generic JSON webhook: `json://host:port/path`).

Events: a new revision applied (with its plan summary), an apply that failed or rolled back (the object, the error
and the failing container's last log lines, secret values masked), an object held as a permanent failure, drift
repaired, the engine unreachable longer than a threshold (and reachable again), a commit refused, an image update
available (issue 23; once per new version, see watch/updates.py).

What a notifier must never do is hold up reconciling, so:
- the controller's calls only format a message and put it on a bounded queue (a full queue drops the message and
  says so once); one daemon thread sends, with apprise's own connect and read timeouts (`?cto=`/`?rto=` in a URL);
- a failing notifier is logged once (and once again when it recovers), never raised;
- messages are deduplicated: one per object and cause until the cause changes (a new error text, a new commit) or
  the object is `resolved()`; drift repaired on the same object is told at most once per DRIFT_REPEAT seconds;
- and rate-limited: at most BURST messages at once and RATE_PER_MINUTE after; what is held back is counted and the
  next message says how many.

Secret values never leave: every text is masked with the values the caller passes (the values of env entries
marked sensitive: `Desired.sensitive`, as `status` and the plan hide them) before it is queued.

`Notifier` takes the events; `NotifyObserver` derives them from the controller's passes (it is a PassObserver).

Layer: watch. Imports apprise lazily (only when `--notify` is given) and no engine library.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import structlog

from reconciler.errors import PermanentError
from reconciler.gitsource import Rejection, Revision
from reconciler.model import Action, ErrorClass, Outcome, Plan, Result, mask
from reconciler.output.render import summary
from reconciler.updates import ImageUpdate

log = structlog.get_logger()

LOG_LINES = 20  # the failing container's last lines in a message
LINE_LIMIT = 400  # characters of one log line
ERROR_LIMIT = 2000  # characters of an error
QUEUE_SIZE = 64
BURST = 10
RATE_PER_MINUTE = 10.0
DRIFT_REPEAT = 3600.0
ENGINE_DOWN_AFTER = 120.0
# how a failed replace says it put the old object back (container/apply.py, swarm/apply.py)
ROLLED_BACK = ("old container was restored", "rolled back")


@dataclass(frozen=True)
class Message:
    """One notification: apprise's title, body and type (info, success, warning, failure)."""

    title: str
    body: str
    level: str = "info"


Sender = Callable[[Message], bool]


def apprise_sender(urls: Sequence[str]) -> Sender:
    """A sender through apprise to every URL; an URL apprise does not understand is a PermanentError that names
    its scheme only (URLs carry tokens)."""
    import apprise  # lazily: a second of imports nobody without --notify should pay

    targets = apprise.Apprise()
    for i, url in enumerate(urls, 1):
        if not targets.add(url):
            scheme = url.partition("://")[0] if "://" in url else "?"
            raise PermanentError(
                f"--notify #{i} ({scheme}://…): not a notification URL apprise understands "
                "(see https://github.com/caronc/apprise/wiki for the services and their URLs)"
            )
    # apprise logs every failed delivery, with the service's answer; the notifier logs a failure once itself
    logging.getLogger("apprise").setLevel(logging.CRITICAL)

    def send(message: Message) -> bool:
        return bool(targets.notify(body=message.body, title=message.title, notify_type=message.level))

    return send


class Notifier:
    """The watch's notifications. Every event method returns at once; `close()` sends what is queued (bounded)."""

    def __init__(
        self,
        send: Sender,
        project: str,
        *,
        host: str | None = None,
        engine_down_after: float = ENGINE_DOWN_AFTER,
        queue_size: int = QUEUE_SIZE,
        burst: int = BURST,
        rate_per_minute: float = RATE_PER_MINUTE,
        drift_repeat: float = DRIFT_REPEAT,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._send = send
        self.project = project
        self.host = host
        self.engine_down_after = engine_down_after
        self.drift_repeat = drift_repeat
        self._clock = clock
        self._lock = threading.Lock()
        self._queue: queue.Queue[Message | None] = queue.Queue(maxsize=queue_size)
        self._sent: dict[tuple[str, str], tuple[str, float]] = {}  # (object, cause) -> (fingerprint, when)
        self._burst = float(burst)
        self._rate = rate_per_minute / 60.0
        self._tokens = float(burst)
        self._stamp = clock()
        self.suppressed = 0  # held back by the rate limit since the last message
        self.suppressed_total = 0
        self.dropped = 0  # lost to a full queue
        self.failures = 0
        self.delivered = 0
        self._failing = False
        self._revision: Revision | None = None
        self._engine_down_since: float | None = None
        self._engine_told = False
        self._thread = threading.Thread(target=self._run, name="notify", daemon=True)
        self._thread.start()

    @classmethod
    def for_urls(cls, urls: Sequence[str], project: str, **kwargs: Any) -> Notifier:
        """The notifier of `--notify URL...` (checked now: a bad URL stops the watch before it starts)."""
        return cls(apprise_sender(urls), project, **kwargs)

    def counts(self) -> dict[str, int]:
        """What became of the notifications so far (`/metrics`)."""
        return {
            "delivered": self.delivered,
            "failed": self.failures,
            "dropped": self.dropped,
            "suppressed": self.suppressed_total,
        }

    # -- events ----------------------------------------------------------------------------------------------
    def revision_applied(self, revision: Revision, summary: str) -> None:
        """A new commit is in force; `summary` is the plan's summary line (reconciler.output.render.summary)."""
        self._revision = revision
        body = f"{revision.message}\nby {revision.author}, ref {revision.ref}"
        if revision.path:
            body += f", path {revision.path}"
        self._emit(
            "",
            "revision",
            revision.commit,
            Message(f"applied {revision.commit[:12]}", f"{body}\n\n{summary}", "success"),
        )

    def apply_failed(
        self,
        obj: str,
        error: str,
        log_lines: Sequence[str] = (),
        secrets: Iterable[str] = (),
        *,
        rolled_back: bool = False,
    ) -> None:
        """`obj` (e.g. "Container/web") failed to apply (and was rolled back); `log_lines` are the failing
        container's last lines (the last LOG_LINES are kept), `secrets` the values to mask."""
        secrets = list(secrets)
        error = mask(_clip(error, ERROR_LIMIT), secrets)
        what = "rolled back" if rolled_back else "apply failed"
        body = error
        lines = [mask(_clip(line.rstrip("\n"), LINE_LIMIT), secrets) for line in list(log_lines)[-LOG_LINES:]]
        if lines:
            body += f"\n\nlast {len(lines)} log lines:\n" + "\n".join(lines)
        self._emit(obj, "failed", error, Message(f"{what}: {obj}", body, "failure"))

    def held(self, obj: str, error: str, secrets: Iterable[str] = ()) -> None:
        """`obj` is held as a permanent failure: not retried until its manifest changes."""
        error = mask(_clip(error, ERROR_LIMIT), secrets)
        body = f"{error}\n\nnot retried until its manifest changes"
        self._emit(obj, "held", error, Message(f"held as a permanent failure: {obj}", body, "failure"))

    def drift_repaired(self, obj: str, fields: Sequence[str] = ()) -> None:
        """`obj` had drifted from its manifest and was converged back (`fields`: the dotted paths that differed)."""
        detail = ", ".join(fields) if fields else "the object"
        self._emit(
            obj, "drift", detail, Message(f"drift repaired: {obj}", f"changed outside reconcile: {detail}", "warning")
        )

    def update_available(self, update: ImageUpdate) -> None:
        """An Image's update policy found a newer version (`mode: report`); told once per new reference."""
        obj = f"Image/{update.image}"
        where = f"{update.file}:{update.line}"
        body = f"{update.summary}\n{update.old_reference} -> {update.new_reference}\ndeclared in {where}"
        self._emit(obj, "update", update.new_reference, Message(f"{update.summary}: {obj}", body, "info"))

    def commit_refused(self, rejection: Rejection) -> None:
        """The newest commit was refused (unsigned, wrongly signed, invalid); the commit in force stays."""
        body = rejection.reason
        if self._revision is not None:
            body += f"\n\nstill in force: {self._revision.commit[:12]} {self._revision.message}"
        self._emit(
            "", "refused", rejection.commit, Message(f"commit refused: {rejection.commit[:12]}", body, "failure")
        )

    def engine_state(self, up: bool, error: str = "") -> None:
        """Call on every engine call's outcome (or each pass): tells once when the engine has been unreachable for
        `engine_down_after` seconds, and once when it is back after that."""
        now = self._clock()
        with self._lock:
            if up:
                down_since, told = self._engine_down_since, self._engine_told
                self._engine_down_since, self._engine_told = None, False
                if not told or down_since is None:
                    return
                message = Message("engine reachable again", f"after {now - down_since:.0f} s", "success")
            else:
                if self._engine_down_since is None:
                    self._engine_down_since = now
                if self._engine_told or now - self._engine_down_since < self.engine_down_after:
                    return
                self._engine_told = True
                body = f"unreachable for {now - self._engine_down_since:.0f} s"
                message = Message(
                    "engine unreachable", body + (f": {_clip(error, ERROR_LIMIT)}" if error else ""), "failure"
                )
        self._emit("", "engine", str(up), message, dedup=False)

    def resolved(self, obj: str) -> None:
        """`obj` is in sync again: its next failure (even the same one) is told anew."""
        with self._lock:
            for key in [k for k in self._sent if k[0] == obj]:
                del self._sent[key]

    # -- queueing --------------------------------------------------------------------------------------------
    def _emit(self, obj: str, cause: str, fingerprint: str, message: Message, dedup: bool = True) -> None:
        now = self._clock()
        with self._lock:
            if dedup:
                last = self._sent.get((obj, cause))
                if last is not None and last[0] == fingerprint:
                    if cause != "drift" or now - last[1] < self.drift_repeat:
                        return
            self._tokens = min(self._burst, self._tokens + (now - self._stamp) * self._rate)
            self._stamp = now
            if self._tokens < 1.0:
                self.suppressed += 1  # not remembered as told: the same event later is told then
                self.suppressed_total += 1
                return
            self._tokens -= 1.0
            if dedup:
                self._sent[(obj, cause)] = (fingerprint, now)
            suppressed, self.suppressed = self.suppressed, 0
        body = message.body
        if self._revision is not None and cause not in ("revision", "refused"):
            body += f"\n\ncommit in force: {self._revision.commit[:12]} {self._revision.message}"
        if suppressed:
            body += (
                f"\n\n({suppressed} earlier notification{'s' if suppressed != 1 else ''} held back by the rate limit)"
            )
        where = f"{self.project}@{self.host}" if self.host else self.project
        self._put(Message(f"reconcile {where}: {message.title}", body, message.level))

    def _put(self, message: Message | None) -> None:
        try:
            self._queue.put_nowait(message)
        except queue.Full:
            with self._lock:
                self.dropped += 1
                first = self.dropped == 1
            if first:
                log.warning("notify.queue_full", size=self._queue.maxsize, detail="notifications are being dropped")

    def _run(self) -> None:
        while True:
            message = self._queue.get()
            if message is None:
                return
            try:
                ok = self._send(message)
                error = "" if ok else "the service did not accept it"
            except Exception as exc:  # a notifier must never break the watch
                ok, error = False, str(exc)[:200]
            if ok:
                self.delivered += 1
                if self._failing:
                    self._failing = False
                    log.info("notify.recovered", **self._who())
            else:
                self.failures += 1
                if not self._failing:
                    self._failing = True
                    log.warning(
                        "notify.failed",
                        error=error,
                        detail="logged once until a notification is delivered",
                        **self._who(),
                    )

    def _who(self) -> dict[str, str]:
        return {"project": self.project, **({"host": self.host} if self.host else {})}

    def close(self, timeout: float = 5.0) -> None:
        """Send what is queued, waiting at most `timeout` seconds (a hanging service is left to its daemon
        thread)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                self._queue.put(None, timeout=max(0.0, deadline - time.monotonic()))
                break
            except queue.Full:
                return
        self._thread.join(max(0.0, deadline - time.monotonic()))


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


class NotifyObserver:
    """A PassObserver of the controller (reconciler.watch.controller) that tells `notifier` what the passes did:
    a new revision once a pass that read it ends with nothing failing (with that pass's plan summary), failures
    and roll-backs, permanent failures (held), drift repaired, the engine unreachable (given `engine_up`).

    Drift is a pending change to a spec this observer saw applied or in sync before: something on the host undid
    it. `log_lines(result)` may give a failed change's last log lines (masked here like the error)."""

    def __init__(
        self,
        notifier: Notifier,
        in_force: Callable[[], Revision | None] | None = None,
        engine_up: Callable[[], bool] | None = None,
        log_lines: Callable[[Result], Sequence[str]] | None = None,
        applied_commit: str | None = None,
    ) -> None:
        self.notifier = notifier
        self.in_force = in_force
        self.engine_up = engine_up
        self.log_lines = log_lines
        self._told_commit = applied_commit  # the commit already applied when watch started: not told again
        self._revision: Revision | None = None
        self._summary = ""
        self._converged: dict[tuple[str, str], str] = {}  # key -> spec hash last applied or seen in sync
        self._drifted: set[tuple[str, str]] = set()

    def pass_started(self, number: int, reasons: list[str]) -> None:
        self._revision = self.in_force() if self.in_force is not None else None
        self._summary = ""
        self._drifted = set()

    def planned(self, plan: Plan) -> None:
        self._summary = summary(plan)
        for change in plan.pending:
            if change.action is Action.DELETE or change.desired is None:
                continue
            if self._converged.get(change.key) == change.desired.spec_hash:
                self._drifted.add(change.key)

    def result(self, result: Result) -> None:
        change = result.change
        subject = change.subject
        if result.outcome in (Outcome.APPLIED, Outcome.UNCHANGED):
            if change.desired is not None:
                self._converged[change.key] = change.desired.spec_hash
            else:
                self._converged.pop(change.key, None)
            if result.outcome is Outcome.APPLIED and change.key in self._drifted:
                self.notifier.drift_repaired(subject, [f.path for f in change.fields])
            self.notifier.resolved(subject)
            return
        if result.outcome is not Outcome.FAILED or result.error_class is ErrorClass.UNAVAILABLE:
            return  # skipped and blocked changes are told by the failure that caused them; the engine by pass_failed
        secrets = change.desired.secret_values() if change.desired else []
        error = result.error or "failed"
        if result.error_class is ErrorClass.PERMANENT:
            self.notifier.held(subject, error, secrets)
            return
        lines: Sequence[str] = ()
        if self.log_lines is not None:
            try:
                lines = self.log_lines(result)
            except Exception as exc:  # the log lines are a courtesy: the failure is told without them
                log.debug("notify.log_lines_unavailable", subject=subject, error=str(exc)[:200])
        rolled_back = any(marker in error for marker in ROLLED_BACK)
        self.notifier.apply_failed(subject, error, lines, secrets, rolled_back=rolled_back)

    def pass_done(self, results: list[Result], failures: dict[str, dict[str, Any]]) -> None:
        self.notifier.engine_state(True)
        revision = self._revision
        if revision is None or failures or revision.commit == self._told_commit:
            return
        self._told_commit = revision.commit
        self.notifier.revision_applied(revision, self._summary)

    def pass_failed(self, error: str) -> None:
        if self.engine_up is not None and not self.engine_up():
            self.notifier.engine_state(False, error)
