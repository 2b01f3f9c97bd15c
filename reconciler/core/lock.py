"""The single-writer lock: one flock'd file per project and engine. The kernel drops a flock when its holder
dies, so a crashed writer never leaves a stale lock; the PID inside is only there to name the holder."""

from __future__ import annotations

import fcntl
import hashlib
import os
import time
from pathlib import Path
from types import TracebackType

import structlog

from reconciler.core.plugins import engine_class
from reconciler.errors import LockHeld

log = structlog.get_logger()

LOCK_DIR_ENV = "RECONCILER_LOCK_DIR"


def lock_dir() -> Path:
    configured = os.environ.get(LOCK_DIR_ENV)
    if configured:
        return Path(configured)
    return (
        Path("/run/reconciler") if os.geteuid() == 0 else Path(os.environ.get("XDG_RUNTIME_DIR", "/tmp")) / "reconciler"
    )


def canonical_engine(engine: str) -> str:
    """One spelling per engine, so two spellings of the same engine take the same lock: the engine's own rule
    (the contract's `Engine.canonical_address`; the Docker engine's default ports, resolved socket paths...)."""
    return engine_class().canonical_address(engine)


def _path_for(project: str, engine_key: str) -> Path:
    digest = hashlib.sha256(engine_key.encode()).hexdigest()[:10]
    return lock_dir() / f"{project}-{digest}.lock"


def lock_path(project: str, engine: str) -> Path:
    """`<lock dir>/<project>-<hash of the canonical engine URL>.lock` (default lock dir: /run/reconciler)."""
    return _path_for(project, canonical_engine(engine))


def legacy_lock_path(project: str, engine: str) -> Path | None:
    """The lock file earlier releases used for `engine` (hashed as spelled), when it differs from the canonical
    one: taken as well, so a writer of an earlier release and this one still exclude each other."""
    legacy = _path_for(project, engine)
    return None if legacy == lock_path(project, engine) else legacy


class ProjectLock:
    def __init__(self, project: str, engine: str, wait: bool = False, poll: float = 0.2) -> None:
        self.path = lock_path(project, engine)
        self.paths = [p for p in (self.path, legacy_lock_path(project, engine)) if p is not None]
        self.project = project
        self.wait = wait
        self.poll = poll
        self.waited = False  # True once another writer held the lock when this one asked
        self._fd: int | None = None
        self._fds: list[int] = []

    def _holder(self, path: Path) -> str:
        try:
            return path.read_text().strip() or "unknown"
        except OSError:
            return "unknown"

    def _take(self, path: Path) -> int:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        announced = False
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                self.waited = True
                if not self.wait:
                    holder = self._holder(path)
                    os.close(fd)
                    raise LockHeld(
                        f"project {self.project} is being changed by another reconcile "
                        f"(PID {holder}, lock {path}); use --wait to wait for it"
                    ) from None
                if not announced:  # once: a waiting writer is otherwise silent, and people ask why nothing happens
                    log.info("lock.waiting", project=self.project, holder=self._holder(path), lock=str(path))
                    announced = True
                time.sleep(self.poll)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        return fd

    def acquire(self) -> None:
        """The canonical lock file first, then the one earlier releases named by the URL as spelled (always in
        this order, so two writers of this release never wait on each other crosswise)."""
        try:
            for path in self.paths:
                self._fds.append(self._take(path))
        except BaseException:
            self.release()
            raise
        self._fd = self._fds[0]

    def release(self) -> None:
        while self._fds:
            fd = self._fds.pop()
            os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
        self._fd = None

    def __enter__(self) -> ProjectLock:
        if self._fd is None:  # acquired beforehand (e.g. while signals could still cancel the wait)
            self.acquire()
        return self

    def __exit__(
        self, _exc_type: type[BaseException] | None, _exc: BaseException | None, _tb: TracebackType | None
    ) -> None:
        self.release()
