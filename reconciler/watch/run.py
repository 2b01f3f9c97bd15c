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
from typing import Any

import structlog

from reconciler.core.lock import ProjectLock
from reconciler.core.project import ProjectRunner
from reconciler.errors import ReconcileError
from reconciler.gitsource import GitSource
from reconciler.gitsource.applied import in_force, revision_status
from reconciler.output.liveview import WatchLiveView, wants_live
from reconciler.watch.controller import Controller, PassObserver, WatchOptions
from reconciler.watch.gitpoll import GitPoller, RevisionObserver
from reconciler.watch.metrics import Metrics, MetricsServer, serve
from reconciler.watch.statuspage import StatusBoard
from reconciler.watch.triggers import DirectoryWatcher, EventReader, absolute_dir

log = structlog.get_logger()

EVENT_STREAM_WAIT = 5.0  # at start-up, at most this long for the event streams before the first pass
MIN_RESYNC = 0.5


@dataclass(frozen=True)
class GitWatch:
    """`watch --git`: the source (already synced once, its tree in force) and how often to fetch."""

    source: GitSource
    poll: float = 60.0


@dataclass(frozen=True)
class WatchRun:
    """How `reconcile watch` runs: each controller's options, and what is around the controllers."""

    options: WatchOptions = field(default_factory=WatchOptions)
    wait: bool = False  # wait for another writer's lock instead of failing
    metrics_addr: str | None = None  # serve the status page and metrics on this loopback HOST:PORT
    progress: str = "plain"  # the live view: auto, tty or plain (see output.liveview.wants_live)
    git: GitWatch | None = None  # the manifests come from a git source, fetched every `poll` seconds


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


def _revision_observers(run: WatchRun) -> list[PassObserver]:
    """With a git source: the record of which commit was last applied in full (`appliedAt`)."""
    if run.git is None:
        return []
    directory = run.git.source.directory
    return [RevisionObserver(directory, functools.partial(in_force, directory))]


def run_watch(runners: list[ProjectRunner], run: WatchRun) -> int:
    """The `watch` command: hold the project lock (of every Host, in a fleet) for life, start the triggers, loop
    until SIGINT/SIGTERM. A fleet runs one controller per Host, each with its own passes, backoff and state."""
    options = dataclasses.replace(run.options, resync=max(MIN_RESYNC, float(run.options.resync)))
    fleet = len(runners) > 1 or runners[0].host is not None
    if fleet and run.metrics_addr:
        raise ReconcileError("--metrics-addr serves one engine's metrics; it is not supported with a fleet yet")
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
    controllers = [
        Controller(
            r,
            r.ctx.engine_url or "",
            options,
            Metrics(),
            board=_board(r, run) if run.metrics_addr else None,
            observers=[*_live_views(run.progress, r), *_revision_observers(run)],
        )
        for r in runners
    ]

    def stop_all(*_: object) -> None:
        for controller in controllers:
            controller.request_stop()

    previous = install_signals(stop_all)
    triggers: list[Any] = []
    try:
        if run.metrics_addr:
            server = serve(run.metrics_addr, controllers[0].metrics, controllers[0].board)
            log.info("metrics.serving", addr=run.metrics_addr)
        for runner, controller in zip(runners, controllers, strict=True):
            if runner.engine is None:
                raise ReconcileError("internal error: watch needs an engine")
            watcher = DirectoryWatcher(runner.manifest_dir, functools.partial(controller.request, "files"))
            controller.on_inputs = watcher.watch_inputs
            triggers.append(watcher)
            triggers.append(EventReader(runner.engine, controller.event_keys, controller.request))
            log.info(
                "watch.started",
                project=runner.project,
                dir=str(runner.manifest_dir),
                resync=options.resync,
                **({"host": runner.host} if runner.host else {}),
            )
        if run.git is not None:

            def request_all(reason: str) -> None:
                for controller in controllers:
                    controller.request(reason)

            triggers.append(GitPoller(run.git.source, run.git.poll, request_all))
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
        for lock in held:
            lock.release()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    log.info("watch.stopped", project=runners[0].project)
    return 0
