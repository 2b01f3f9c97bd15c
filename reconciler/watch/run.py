"""Running `reconcile watch`: hold the project lock of every engine for life, start the triggers (the manifest
directory, each engine's event stream) and the status page, run one controller per engine until SIGINT/SIGTERM."""

from __future__ import annotations

import dataclasses
import functools
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from reconciler.core.lock import ProjectLock
from reconciler.core.project import ProjectRunner
from reconciler.errors import ReconcileError
from reconciler.gitsource import GitSource, Rejection
from reconciler.gitsource.applied import AppliedRecord, in_force, revision_status
from reconciler.gitsource.propose import CommitResult, commit_updates
from reconciler.output.liveview import WatchLiveView, wants_live
from reconciler.updates import ImageUpdate
from reconciler.watch.controller import Controller, PassObserver, WatchOptions
from reconciler.watch.gitpoll import GitPoller, RevisionObserver
from reconciler.watch.metrics import Metrics, MetricsServer, serve
from reconciler.watch.notify import Notifier, NotifyObserver
from reconciler.watch.statuspage import StatusBoard
from reconciler.watch.triggers import DirectoryWatcher, EventReader, absolute_dir
from reconciler.watch.updates import DEFAULT_INTERVAL, UpdateChecker, update_rows
from reconciler.watch.webhooks import HookGate, load_secret

log = structlog.get_logger()

EVENT_STREAM_WAIT = 5.0  # at start-up, at most this long for the event streams before the first pass
MIN_RESYNC = 0.5


@dataclass(frozen=True)
class GitWatch:
    """`watch --git`: the source (already synced once, its tree in force) and how often to fetch; where and how
    the updates of Images in `mode: commit` are pushed (`--update-branch`, `--git-signing-key`, `--git-author`)."""

    source: GitSource
    poll: float = 60.0
    update_branch: str | None = None  # None: the tracked branch
    signing_key: Path | None = None
    author: str | None = None  # `Name <email>`; None: reconcile <reconcile@HOSTNAME>

    def commit_updates(self, updates: Sequence[ImageUpdate]) -> list[CommitResult]:
        """Commit and push the `mode: commit` updates of one update check (one commit per Image; see
        reconciler.gitsource.propose). Runs git for a while (fetch, push, retries): call it off the pass."""
        return commit_updates(
            self.source, updates, branch=self.update_branch, signing_key=self.signing_key, author=self.author, log=log
        )


@dataclass(frozen=True)
class WatchRun:
    """How `reconcile watch` runs: each controller's options, and what is around the controllers."""

    options: WatchOptions = field(default_factory=WatchOptions)
    wait: bool = False  # wait for another writer's lock instead of failing
    metrics_addr: str | None = None  # serve the status page and metrics on this loopback HOST:PORT
    progress: str = "plain"  # the live view: auto, tty or plain (see output.liveview.wants_live)
    git: GitWatch | None = None  # the manifests come from a git source, fetched every `poll` seconds
    webhook_secret: Path | None = None  # `POST /hooks/git` signed with this secret fetches at once (with `git`)
    notify: tuple[str, ...] = ()  # apprise URLs told of new revisions, failures, held objects, drift, outages
    update_interval: float = DEFAULT_INTERVAL  # seconds between image update checks (watch/updates.py)


def install_signals(handler: Callable[..., None]) -> dict[int, Any]:
    previous: dict[int, Any] = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        previous[sig] = signal.signal(sig, handler)
    return previous


class _StopWaiting(Exception):
    pass


def _stop_waiting(*_: object) -> None:
    raise _StopWaiting


def _live_views(progress: str, runner: ProjectRunner) -> list[PassObserver]:
    """One live line per object for passes that change something, when stdout is a terminal (one engine only:
    a fleet's controllers run side by side and would draw over each other)."""
    if runner.host is not None or not wants_live(progress):
        return []
    view = WatchLiveView()
    runner.ctx.progress_sink = view.progress
    return [view]


def _await_event_streams(triggers: Sequence[Any], timeout: float = EVENT_STREAM_WAIT) -> None:
    """Let the engines' event streams connect before the first pass, so no change made after that pass observed
    an object goes untold until the resync. An engine that is down does not hold the first pass up for long:
    that pass then finds it down and backs off."""
    deadline = time.monotonic() + timeout
    for trigger in triggers:
        if isinstance(trigger, EventReader):
            trigger.connected.wait(max(0.0, deadline - time.monotonic()))


def _board(runner: ProjectRunner, run: WatchRun) -> StatusBoard:
    board = StatusBoard(runner.project, runner.ctx.engine_url or "")
    if run.git is not None:
        directory = run.git.source.directory
        board.revision = functools.partial(revision_status, directory)
    return board


def _revision_observers(run: WatchRun, runner: ProjectRunner) -> list[PassObserver]:
    """With a git source: the record of which commit was last applied in full (`appliedAt`), and each pass's
    commit on the objects it makes (`io.reconciler.revision`)."""
    if run.git is None:
        return []
    directory = run.git.source.directory

    def stamp(commit: str | None) -> None:
        runner.ctx.revision = commit

    return [RevisionObserver(directory, functools.partial(in_force, directory), stamp)]


def _poller(run: WatchRun, controllers: list[Controller], notifiers: list[Notifier]) -> GitPoller | None:
    """With a git source: the trigger that fetches and asks every controller for a pass on a new commit."""
    if run.git is None:
        return None

    def request_all(reason: str) -> None:
        for controller in controllers:
            controller.request(reason)

    def refused(rejection: Rejection) -> None:
        for notifier in notifiers:
            notifier.commit_refused(rejection)

    return GitPoller(run.git.source, run.git.poll, request_all, on_refused=refused)


def _notify_observer(notifier: Notifier, run: WatchRun, controllers: list[Controller], index: int) -> NotifyObserver:
    """Notifications of one controller's passes; `controllers[index]` is that controller once it is made."""
    directory = run.git.source.directory if run.git is not None else None
    return NotifyObserver(
        notifier,
        in_force=functools.partial(in_force, directory) if directory is not None else None,
        engine_up=lambda: controllers[index].engine_failures == 0,
        log_lines=lambda result: result.log_tail,
        applied_commit=AppliedRecord(directory).read().get("commit") if directory is not None else None,
    )


def update_checker(
    controller: Controller, notifier: Notifier | None, run: WatchRun, poller: GitPoller | None
) -> UpdateChecker:
    """The image update checks of one controller: every `run.update_interval` seconds on the manifests of its last
    pass; findings to its status page, `mode: report` ones to a notification once, `mode: commit` ones with a git
    source to `GitWatch.commit_updates` (then fetched at once, so the pushed commit is applied without waiting for
    the poll). Without a git source, commit mode never gets this far (a validation error)."""
    board = controller.board
    commit: Callable[[list[ImageUpdate]], None] | None = None
    git = run.git
    if git is not None:

        def commit(updates: list[ImageUpdate]) -> None:
            results = git.commit_updates(updates)
            if poller is not None and any(r.outcome == "pushed" for r in results):
                poller.kick()

    return UpdateChecker(
        controller.runner,
        lambda: controller.catalog,
        run.update_interval,
        board=(
            (lambda check: board.updates_found(update_rows(check.found), [key for key, _ in check.problems]))
            if board is not None
            else None
        ),
        announce=notifier.update_available if notifier is not None else None,
        commit=commit,
    )


def run_watch(runners: list[ProjectRunner], run: WatchRun) -> int:
    """The `watch` command: hold the project lock (of every Host, in a fleet) for life, start the triggers, loop
    until SIGINT/SIGTERM. A fleet runs one controller per Host, each with its own passes, backoff and state."""
    options = dataclasses.replace(run.options, resync=max(MIN_RESYNC, float(run.options.resync)))
    fleet = len(runners) > 1 or runners[0].host is not None
    if len(runners) > 1 and run.metrics_addr:
        raise ReconcileError(
            "--metrics-addr serves one engine's metrics; with several Hosts it is not supported yet (--host NAME)"
        )
    for runner in runners:
        # `watch .`: name DIR by its absolute path from now on, so a replaced DIR (or switched symlink) is followed
        runner.manifest_dir = runner.ctx.manifest_dir = absolute_dir(runner.manifest_dir)
    server: MetricsServer | None = None
    locks = [ProjectLock(r.project, r.ctx.engine_url or "", wait=run.wait) for r in runners]
    waiting = install_signals(_stop_waiting)  # SIGINT/SIGTERM while --wait waits: a clean exit 0 as well
    held: list[ProjectLock] = []
    try:
        for lock in locks:
            lock.acquire()
            held.append(lock)
    except _StopWaiting:
        for lock in held:
            lock.release()
        log.info("watch.stopped", project=runners[0].project, reason="stopped while waiting for the lock")
        return 0
    except BaseException:
        for lock in held:
            lock.release()
        raise
    finally:
        for sig, handler in waiting.items():
            signal.signal(sig, handler)
    notifiers = [Notifier.for_urls(run.notify, r.project, host=r.host) for r in runners] if run.notify else []
    controllers: list[Controller] = []
    for index, r in enumerate(runners):
        observers = [*_live_views(run.progress, r), *_revision_observers(run, r)]
        if notifiers:
            observers.append(_notify_observer(notifiers[index], run, controllers, index))
        controllers.append(
            Controller(
                r,
                r.ctx.engine_url or "",
                options,
                Metrics(),
                board=_board(r, run) if run.metrics_addr else None,
                observers=observers,
            )
        )
    poller = _poller(run, controllers, notifiers)
    if notifiers:
        controllers[0].metrics.notifications = notifiers[0].counts  # the metrics server serves one engine

    def stop_all(*_: object) -> None:
        for controller in controllers:
            controller.request_stop()

    previous = install_signals(stop_all)
    triggers: list[Any] = []
    closing: list[Callable[[], None]] = [n.close for n in notifiers]
    try:
        if run.metrics_addr:
            gate = None
            if run.webhook_secret is not None and poller is not None:
                gate = HookGate(load_secret(run.webhook_secret), lambda forge: poller.kick())
                closing.append(gate.close)
            webhook = gate.handle if gate is not None else None
            server = serve(run.metrics_addr, controllers[0].metrics, controllers[0].board, webhook=webhook)
            log.info("metrics.serving", addr=run.metrics_addr, webhook=webhook is not None)
        for runner, controller in zip(runners, controllers, strict=True):
            if runner.engine is None:
                raise ReconcileError("internal error: watch needs an engine")
            watcher = DirectoryWatcher(runner.manifest_dir, functools.partial(controller.request, "files"))
            controller.on_inputs = watcher.watch_inputs
            triggers.append(watcher)
            triggers.append(EventReader(runner.engine, controller.event_keys, controller.request, host=runner.host))
            log.info(
                "watch.started",
                project=runner.project,
                dir=str(runner.manifest_dir),
                resync=options.resync,
                **({"host": runner.host} if runner.host else {}),
            )
        for index, controller in enumerate(controllers):
            triggers.append(update_checker(controller, notifiers[index] if notifiers else None, run, poller))
        if poller is not None:
            triggers.append(poller)
        for trigger in triggers:
            trigger.start()
        _await_event_streams(triggers)
        if not fleet:
            controllers[0].run()
        else:
            threads = [
                threading.Thread(target=c.run, name=f"watch-{r.host}", daemon=True)
                for r, c in zip(runners, controllers, strict=True)
            ]
            for thread in threads:
                thread.start()
            while any(t.is_alive() for t in threads):
                for thread in threads:
                    thread.join(0.5)
    finally:
        for trigger in triggers:
            trigger.stop()
        if server is not None:
            server.close()
        for controller in controllers:
            controller.close()
        for close in closing:
            close()
        for lock in held:
            lock.release()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    log.info("watch.stopped", project=runners[0].project)
    return 0
