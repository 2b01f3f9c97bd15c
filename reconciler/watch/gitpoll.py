"""The git source as one of watch's triggers: fetch on a timer (and when asked, say by a webhook), and ask every
controller for a pass when a new commit is in force. Only this thread calls `GitSource.sync()`.

A fetch that fails is logged and retried at the next poll: the commit in force stays, so a network outage never
stops watch from repairing drift. A refused commit (unsigned, wrongly signed, no `--path` in it) is logged once,
and recorded for `status`."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import structlog

from reconciler.errors import ReconcileError
from reconciler.gitsource import GitSource, Rejection, Revision
from reconciler.gitsource.applied import AppliedRecord
from reconciler.model import Plan, Result

log = structlog.get_logger()


class GitPoller:
    """Polls `source` every `interval` seconds; `request(reason)` is called when a new commit is in force."""

    def __init__(
        self,
        source: GitSource,
        interval: float,
        request: Callable[[str], None],
        on_refused: Callable[[Rejection], None] | None = None,
    ) -> None:
        self.source = source
        self.interval = interval
        self.request = request
        self.on_refused = on_refused  # told once per refused commit (notifications)
        self.record = AppliedRecord(source.directory)
        self._stop = threading.Event()
        self._kick = threading.Event()
        self._thread = threading.Thread(target=self._run, name="git-poll", daemon=True)
        self._rejected: Rejection | None = self.record.rejected()  # said already, at start-up or by an earlier run
        self._failing = False

    def start(self) -> GitPoller:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._kick.set()
        self._thread.join(timeout=self.source.limits.fetch_timeout + 5)

    def kick(self) -> None:
        """Fetch now instead of at the next poll."""
        self._kick.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._kick.wait(self.interval)
            self._kick.clear()
            if self._stop.is_set():
                return
            self.poll()

    def poll(self) -> bool:
        """One fetch; True when a new commit went into force."""
        try:
            result = self.source.sync()
        except ReconcileError as exc:  # FetchFailed mostly: the network, the remote, a full disk
            if not self._failing:  # once per outage: a poll every minute would fill the log
                log.warning("git.fetch_failed", url=self.source.url, error=str(exc))
            self._failing = True
            return False
        if self._failing:
            log.info("git.fetch_recovered", url=self.source.url)
            self._failing = False
        if result.rejected != self._rejected:
            if result.rejected is not None:
                log.error("git.commit_refused", commit=result.rejected.commit[:12], reason=result.rejected.reason)
                if self.on_refused is not None:
                    self.on_refused(result.rejected)
            self._rejected = result.rejected
            self.record.refused(result.rejected)
        if result.changed and result.in_force is not None:
            log_revision("git.revision", result.in_force)
            self.request("git")
            return True
        return False


def log_revision(event: str, revision: Revision) -> None:
    log.info(event, commit=revision.commit[:12], ref=revision.ref, message=revision.message, author=revision.author)


class RevisionObserver:
    """Records a revision as applied once a pass that read its manifests ends with nothing failed: that is when the
    host is what the commit says (`appliedAt` in `status`)."""

    def __init__(self, directory: Path, in_force: Callable[[], Revision | None]) -> None:
        self.record = AppliedRecord(directory)
        self.in_force = in_force
        self._pass_revision: Revision | None = None

    def pass_started(self, number: int, reasons: list[str]) -> None:
        self._pass_revision = self.in_force()

    def planned(self, plan: Plan) -> None:
        pass

    def result(self, result: Result) -> None:
        pass

    def pass_done(self, results: list[Result], failures: dict[str, dict[str, Any]]) -> None:
        revision = self._pass_revision
        if revision is None or failures:
            return
        if self.record.read().get("commit") != revision.commit:
            self.record.applied(revision)
            log_revision("git.revision_applied", revision)

    def pass_failed(self, error: str) -> None:
        pass
