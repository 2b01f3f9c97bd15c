"""The SDK imported on first use from many threads at once, as a fleet's Hosts connect (one of them over ssh)."""

from __future__ import annotations

import subprocess
import sys

from tests.helpers import REPO

RACE = """
import threading
from reconciler.drivers.engine import lazy
errors, barrier = [], threading.Barrier(8)
def sdk():
    barrier.wait()
    try:
        lazy.NotFound
    except Exception as exc:
        errors.append(repr(exc))
def ssh():
    barrier.wait()
    try:
        lazy.ssh_transport()
    except Exception as exc:
        errors.append(repr(exc))
threads = [threading.Thread(target=sdk if i % 2 else ssh) for i in range(8)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(errors[:1])
"""


def test_the_sdk_and_its_ssh_transport_imported_from_threads_at_once() -> None:
    """The SDK's first import hides paramiko for a moment; an ssh Host's transport import in another thread then
    failed ("import of paramiko halted", or a module-lock deadlock), failing that Host with an internal error."""
    for _ in range(3):  # a fresh interpreter each time: only a first import can race
        done = subprocess.run(
            [sys.executable, "-c", RACE], cwd=REPO, capture_output=True, text=True, timeout=60, check=False
        )
        assert done.returncode == 0 and done.stdout.strip() == "[]", done.stdout + done.stderr
