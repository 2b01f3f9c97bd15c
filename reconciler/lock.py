"""The single-writer lock: one flock'd file per project and engine. The kernel drops a flock when its holder
dies, so a crashed writer never leaves a stale lock; the PID inside is only there to name the holder."""

from __future__ import annotations

import fcntl
import hashlib
import os
import time
from pathlib import Path
from types import TracebackType

from reconciler.errors import LockHeld

LOCK_DIR_ENV = "RECONCILER_LOCK_DIR"


def lock_dir() -> Path:
    configured = os.environ.get(LOCK_DIR_ENV)
    if configured:
        return Path(configured)
    return (
        Path("/run/reconciler") if os.geteuid() == 0 else Path(os.environ.get("XDG_RUNTIME_DIR", "/tmp")) / "reconciler"
    )


def lock_path(project: str, engine: str) -> Path:
    """`<lock dir>/<project>-<hash of the engine URL>.lock` (default lock dir: /run/reconciler)."""
    digest = hashlib.sha256(engine.encode()).hexdigest()[:10]
    return lock_dir() / f"{project}-{digest}.lock"


class ProjectLock:
    def __init__(self, project: str, engine: str, wait: bool = False, poll: float = 0.2) -> None:
        self.path = lock_path(project, engine)
        self.project = project
        self.wait = wait
        self.poll = poll
        self.waited = False  # True once another writer held the lock when this one asked
        self._fd: int | None = None

    def _holder(self) -> str:
        try:
            return self.path.read_text().strip() or "unknown"
        except OSError:
            return "unknown"

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                self.waited = True
                if not self.wait:
                    holder = self._holder()
                    os.close(fd)
                    raise LockHeld(
                        f"project {self.project} is being changed by another reconcile "
                        f"(PID {holder}, lock {self.path}); use --wait to wait for it"
                    ) from None
                time.sleep(self.poll)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd

    def release(self) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> ProjectLock:
        if self._fd is None:  # acquired beforehand (e.g. while signals could still cancel the wait)
            self.acquire()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()
