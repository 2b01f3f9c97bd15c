"""The single-writer lock: a second writer is refused with the holder's PID; a dead holder leaves no lock."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from reconciler.core.lock import ProjectLock, lock_path
from reconciler.errors import LockHeld

HOLD = """
import sys, time
from reconciler.core.lock import ProjectLock
lock = ProjectLock(sys.argv[1], sys.argv[2])
lock.acquire()
print("held", flush=True)
time.sleep(60)
"""


@pytest.fixture
def lock_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("RECONCILER_LOCK_DIR", str(tmp_path))
    return tmp_path


_started: list[subprocess.Popen] = []


def _holder(lock_dir) -> subprocess.Popen:
    env = {**os.environ, "RECONCILER_LOCK_DIR": str(lock_dir)}
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, "proj", "unix:///x.sock"], stdout=subprocess.PIPE, env=env, text=True
    )
    _started.append(proc)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


@pytest.fixture(autouse=True)
def _reap():
    yield
    while _started:
        proc = _started.pop()
        proc.kill()
        proc.wait()
        assert proc.stdout is not None
        proc.stdout.close()


def test_second_writer_is_refused_naming_the_pid(lock_dir) -> None:
    """While another process holds the lock, acquiring without wait fails and names that process."""
    proc = _holder(lock_dir)
    try:
        with pytest.raises(LockHeld, match=f"PID {proc.pid}"):
            ProjectLock("proj", "unix:///x.sock").acquire()
    finally:
        proc.kill()
        proc.wait()


def test_crashed_holder_leaves_no_stale_lock(lock_dir) -> None:
    """A holder killed with SIGKILL releases the lock (the kernel drops flocks of dead processes)."""
    proc = _holder(lock_dir)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    with ProjectLock("proj", "unix:///x.sock"):
        assert lock_path("proj", "unix:///x.sock").read_text().strip() == str(os.getpid())


def test_wait_gets_the_lock_once_released(lock_dir) -> None:
    """With wait, a second writer blocks until the first is gone, then proceeds."""
    proc = _holder(lock_dir)
    started = time.monotonic()
    killer = subprocess.Popen(["sh", "-c", f"sleep 0.5; kill {proc.pid}"])
    with ProjectLock("proj", "unix:///x.sock", wait=True, poll=0.05):
        assert time.monotonic() - started >= 0.4
    killer.wait()
    proc.wait()


def test_lock_is_per_project_and_engine(lock_dir) -> None:
    """Different projects, or the same project on different engines, do not share a lock."""
    assert lock_path("a", "unix:///x") != lock_path("b", "unix:///x")
    assert lock_path("a", "unix:///x") != lock_path("a", "tcp://h:2375")
    with ProjectLock("a", "unix:///x"), ProjectLock("b", "unix:///x"):
        pass
