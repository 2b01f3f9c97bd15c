"""What wakes the watch loop: a de-duplicating work queue, the manifest directory watcher (debounced), and the
engine's event stream. None of these reconcile anything; they only say *that* (and for whom) a pass is due.

Knows no engine: the event stream comes from the contract's `Engine`, and drivers say what an event is about.
"""

from __future__ import annotations

import contextlib
import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import structlog

from reconciler.contract import Engine, EngineEvent
from reconciler.delays import EVENT_STREAM

log = structlog.get_logger()

Key = tuple[str, str]

# Editors' and tools' stray files: vim swap/backup (.swp/.swx/~), vim's write test file 4913, emacs lock
# (.#name) and backups, patch leftovers. Hidden entries (.git, .#x) are skipped by their leading dot.
IGNORED_SUFFIXES = (".swp", ".swx", ".swo", "~", ".bak", ".tmp", ".part", ".orig", ".rej", ".dpkg-new")
IGNORED_NAMES = frozenset({"4913"})
MANIFEST_SUFFIXES = (".yaml", ".yml")

QUIET_SECONDS = 0.3
MAX_WAIT_SECONDS = 2.0


# --- the queue -----------------------------------------------------------------------------------------


@dataclass
class Batch:
    """Everything asked for since the last pass: `everything` or a set of object keys, and why."""

    everything: bool = False
    keys: set[Key] = field(default_factory=set)
    reasons: set[str] = field(default_factory=set)


class WorkQueue:
    """De-duplicating and coalescing: any number of requests made while a pass runs become one next pass."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._pending: Batch | None = None
        self._woken = False

    def add(self, reason: str, keys: Iterable[Key] | None = None) -> None:
        """Ask for a pass; `keys=None` means the whole project."""
        with self._cond:
            batch = self._pending or Batch()
            if keys is None:
                batch.everything = True
            else:
                batch.keys.update(keys)
            batch.reasons.add(reason)
            self._pending = batch
            self._cond.notify_all()

    def wake(self) -> None:
        """Return from `take` now (used on shutdown)."""
        with self._cond:
            self._woken = True
            self._cond.notify_all()

    def take(self, timeout: float | None) -> Batch | None:
        """The pending batch, waiting at most `timeout` seconds for one; None on timeout or wake."""
        deadline = None if timeout is None else time.monotonic() + max(0.0, timeout)
        with self._cond:
            while self._pending is None and not self._woken:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    break
                self._cond.wait(remaining)
            self._woken = False
            batch, self._pending = self._pending, None
            return batch


# --- debouncing ----------------------------------------------------------------------------------------


class Debouncer:
    """Fires once a burst is over: `quiet` seconds without a new poke, or `max_wait` after the burst began
    (a long `git checkout` still gets a pass every couple of seconds)."""

    def __init__(
        self,
        quiet: float = QUIET_SECONDS,
        max_wait: float = MAX_WAIT_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.quiet = quiet
        self.max_wait = max_wait
        self.clock = clock
        self.first: float | None = None
        self.last: float | None = None

    def poke(self) -> None:
        now = self.clock()
        if self.first is None:
            self.first = now
        self.last = now

    def due_at(self) -> float | None:
        """Clock time at which the burst counts as over, or None when nothing is pending."""
        if self.first is None or self.last is None:
            return None
        return min(self.last + self.quiet, self.first + self.max_wait)

    def fire(self) -> bool:
        """True (and reset) when the burst is over."""
        due = self.due_at()
        if due is None or self.clock() < due:
            return False
        self.first = self.last = None
        return True


# --- the manifest directory ----------------------------------------------------------------------------


def is_manifest_path(path: str, root: str, is_directory: bool = False) -> bool:
    """True when a change at `path` can change the manifests under `root`."""
    rel = os.path.relpath(path, root)
    if rel == ".":
        return True
    if rel.startswith(".." + os.sep) or rel == "..":
        return False
    parts = rel.split(os.sep)
    if any(part.startswith(".") for part in parts):
        return False
    name = parts[-1]
    if name in IGNORED_NAMES or name.endswith(IGNORED_SUFFIXES):
        return False
    return is_directory or name.endswith(MANIFEST_SUFFIXES)


def is_manifest_event(event: Any, root: str) -> bool:
    """Filter for watchdog events: writes, creations, deletions and moves of manifests or directories."""
    if event.event_type in ("opened", "closed_no_write"):
        return False
    if event.is_directory and event.event_type == "modified":
        return False  # a directory's mtime changes with every file written in it; the file events count
    paths = [os.fsdecode(event.src_path)]
    if getattr(event, "dest_path", ""):
        paths.append(os.fsdecode(event.dest_path))
    return any(is_manifest_path(p, root, event.is_directory) for p in paths)


def absolute_dir(path: Path) -> Path:
    """`path` made absolute once, at startup: a relative DIR (`watch .`) would otherwise keep naming the
    directory the process started in (its cwd inode) after DIR is replaced or a symlink to it is switched.

    The cwd is taken from $PWD when that names the cwd (the shell's logical path keeps a symlinked checkout,
    `cd /srv/current`, as a symlink), else from getcwd(); `..` is left for the kernel to resolve, as before.
    """
    if path.is_absolute():
        return path
    cwd = os.getcwd()
    pwd = os.environ.get("PWD")
    if pwd and os.path.isabs(pwd):
        with contextlib.suppress(OSError):
            if os.path.samefile(pwd, "."):
                cwd = pwd
    return Path(cwd) / path


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()  # follows a symlinked DIR: a swapped link (git-sync) is a new identity
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


def _input_watches(inputs: Iterable[Path], root: str) -> set[tuple[str, bool]]:
    """The (directory, recursive) watches that cover `inputs`: a directory recursively, a file (present or
    not yet) through its directory; nothing under `root` (watched recursively already) or under another watch."""
    wanted: set[tuple[str, bool]] = set()
    for path in inputs:
        if path.is_dir():
            wanted.add((str(path), True))
        elif path.parent.is_dir():
            wanted.add((str(path.parent), False))

    def covered(directory: str, recursive: bool) -> bool:
        if _under(directory, root):
            return True
        for other, other_recursive in wanted:
            if not other_recursive or (other, other_recursive) == (directory, recursive):
                continue
            if _under(directory, other) and (directory != other or not recursive):
                return True
        return False

    return {w for w in wanted if not covered(*w)}


def _under(path: str, directory: str) -> bool:
    return path == directory or path.startswith(directory.rstrip(os.sep) + os.sep)


class DirectoryWatcher:
    """Watches `root` recursively and calls `trigger()` once per burst of relevant changes.

    Also notices when `root` itself is replaced, deleted or re-created (a swapped symlink, `rm -rf` and a new
    clone): inotify watches the old inode, so the observer is re-created and a pass is triggered.

    `watch_inputs(paths)` adds the files and directories the documents are read from besides the manifests
    (env files, build contexts, configuration: the drivers' `inputs`), inside or outside `root`: a change to one
    of them triggers like a manifest edit.
    """

    def __init__(self, root: Path, trigger: Callable[[], None], debouncer: Debouncer | None = None) -> None:
        self.root = absolute_dir(root)
        self.trigger = trigger
        self.debouncer = debouncer or Debouncer()
        self._cond = threading.Condition()
        self._stop = False
        self._observer: Any = None
        self._identity: tuple[int, int] | None = None
        self._watched = str(root)
        self._thread = threading.Thread(target=self._run, name="dir-watch", daemon=True)
        self._handler: Any = None
        self._inputs: frozenset[str] = frozenset()  # resolved input paths (files and directories)
        self._input_dirs: frozenset[str] = frozenset()  # those that are directories (watched recursively)
        self._scheduled: dict[tuple[str, bool], Any] = {}  # (directory, recursive) -> watchdog's watch

    def start(self) -> DirectoryWatcher:
        self._schedule()
        self._thread.start()
        return self

    def stop(self) -> None:
        with self._cond:
            self._stop = True
            self._cond.notify_all()
        self._thread.join(timeout=5)
        self._unschedule()

    def on_event(self, event: Any) -> None:
        if is_manifest_event(event, self._watched) or self._is_input_event(event):
            with self._cond:
                self.debouncer.poke()
                self._cond.notify_all()

    def watch_inputs(self, paths: Iterable[Path]) -> None:
        """Watch these files and directories too (replacing the previous set); see the class docstring."""
        resolved = set()
        for path in paths:
            with contextlib.suppress(OSError, ValueError):
                resolved.add(Path(os.path.realpath(path)))
        with self._cond:
            self._inputs = frozenset(str(p) for p in resolved)
            self._input_dirs = frozenset(str(p) for p in resolved if p.is_dir())
        self._sync_input_watches()

    def _is_input_event(self, event: Any) -> bool:
        if event.event_type in ("opened", "closed_no_write") or (event.is_directory and event.event_type == "modified"):
            return False
        inputs, dirs = self._inputs, self._input_dirs
        if not inputs:
            return False
        paths = [os.fsdecode(event.src_path)]
        if getattr(event, "dest_path", ""):
            paths.append(os.fsdecode(event.dest_path))
        for path in paths:
            if path in inputs:
                return True
            name = os.path.basename(path)
            if name in IGNORED_NAMES or name.endswith(IGNORED_SUFFIXES):
                continue
            if any(_under(path, d) for d in dirs):
                return True
        return False

    def _sync_input_watches(self) -> None:
        observer = self._observer
        if observer is None:
            return
        wanted = _input_watches((Path(p) for p in self._inputs), self._watched)
        for key in [k for k in self._scheduled if k not in wanted]:
            with contextlib.suppress(Exception):  # the directory may be gone already
                observer.unschedule(self._scheduled.pop(key))
        for directory, recursive in sorted(wanted - set(self._scheduled)):
            try:
                self._scheduled[(directory, recursive)] = observer.schedule(
                    self._handler, directory, recursive=recursive
                )
            except OSError as exc:
                log.warning("watch.input_unwatchable", path=directory, error=str(exc))

    def _schedule(self) -> None:
        from watchdog.events import FileSystemEventHandler
        from watchdog.observers import Observer

        self._unschedule()
        self._identity = _identity(self.root)
        if self._identity is None:
            log.warning("manifests.dir_missing", dir=str(self.root))
            return
        watcher = self

        class Handler(FileSystemEventHandler):
            def on_any_event(self, event: Any) -> None:
                watcher.on_event(event)

        # events name paths under the resolved directory (a symlinked DIR points elsewhere)
        self._watched = str(self.root.resolve())
        observer = Observer()
        self._handler = Handler()
        observer.schedule(self._handler, self._watched, recursive=True)
        observer.daemon = True
        observer.start()
        self._observer = observer
        self._scheduled = {}
        self._sync_input_watches()

    def _unschedule(self) -> None:
        if self._observer is not None:
            self._observer.stop()
            self._observer.join(timeout=5)
            self._observer = None

    def _run(self) -> None:
        while True:
            with self._cond:
                if self._stop:
                    return
                due = self.debouncer.due_at()
                timeout = 1.0 if due is None else max(0.0, min(1.0, due - self.debouncer.clock()))
                self._cond.wait(timeout)
                if self._stop:
                    return
                fire = self.debouncer.fire()
            if _identity(self.root) != self._identity or (self._observer is not None and not self._observer.is_alive()):
                log.info("manifests.dir_replaced", dir=str(self.root))
                try:
                    self._schedule()
                except OSError as exc:
                    log.warning("manifests.watch_failed", dir=str(self.root), error=str(exc))
                fire = True
            if fire:
                self.trigger()


# --- the engine's event stream ---------------------------------------------------------------------------


class EventReader:
    """Reads the engine's event stream in a thread and reports the affected keys; reconnects with backoff
    and asks for a full pass after every reconnect (events may have been missed meanwhile).

    The engine yields its events and the drivers say which objects each is about (`keys_of`): nothing here
    knows what an engine event looks like."""

    def __init__(
        self,
        engine: Engine,
        keys_of: Callable[[EngineEvent], set[Key]],
        trigger: Callable[[str, set[Key] | None], None],
        max_delay: float | None = None,
        host: str | None = None,
    ) -> None:
        self.engine = engine
        # in a fleet every Host has its reader: its lines say which (`host=`)
        self.log = log.bind(host=host) if host else log
        self.keys_of = keys_of
        self.trigger = trigger
        # the waits between connection attempts (reconciler/delays.py); `max_delay` lowers the cap (tests)
        self.delays = EVENT_STREAM if max_delay is None else replace(EVENT_STREAM, cap=max_delay)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="engine-events", daemon=True)
        self.connected = threading.Event()

    def start(self) -> EventReader:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        with contextlib.suppress(Exception):  # closing a dead stream may fail in many ways
            self.engine.close_events()  # unblocks the reading thread
        self._thread.join(timeout=5)

    def _run(self) -> None:
        failures = 0  # in a row; a lost stream counts as one (its first reconnect waits the first delay)
        delay = 0.0
        first = True
        while not self._stop.is_set():
            if failures:
                self._stop.wait(delay)
                if self._stop.is_set():
                    return
            try:
                stream = self.engine.events()
            except Exception as exc:
                failures += 1
                delay = self.delays.delay(failures)
                self.log.warning("engine.events_unavailable", error=_first_line(exc), retry_in=delay)
                continue
            self.log.info("engine.events_connected")
            self.connected.set()
            if not first:
                self.trigger("engine.reconnected", None)
            first = False
            failures = 0
            try:
                for event in stream:
                    if self._stop.is_set():
                        return
                    self._report(event)
            except Exception as exc:
                if self._stop.is_set():
                    return
                self.log.warning("engine.events_lost", error=_first_line(exc))
            else:
                if self._stop.is_set():
                    return
                self.log.warning("engine.events_lost", error="stream ended")
            self.connected.clear()
            failures = 1
            delay = self.delays.delay(failures)

    def _report(self, event: EngineEvent) -> None:
        for key in sorted(self.keys_of(event)):
            self.log.info("engine.event", type=event.type, action=event.action, subject="/".join(key))
            self.trigger(f"event:{event.action}", {key})


def _first_line(exc: BaseException) -> str:
    text = str(exc)
    return text.splitlines()[0][:200] if text else type(exc).__name__
