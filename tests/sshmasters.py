"""ssh masters of a test's own. reconcile keeps a Host's ssh master in the user's directory for the next command
(sshmux); a test that counts logins or sessions, or changes what the ssh client accepts (an unknown host key),
needs commands that find no master of earlier tests: it gives them a directory of its own (XDG_RUNTIME_DIR, short
enough for a socket path), whose masters are told to end afterwards."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from reconciler.drivers.engine.sshmux import end_masters


@contextlib.contextmanager
def own_masters() -> Iterator[dict[str, str]]:
    """The environment (XDG_RUNTIME_DIR) of commands that share masters among themselves only."""
    runtime = Path(tempfile.mkdtemp(prefix="rx", dir="/tmp"))
    try:
        yield {"XDG_RUNTIME_DIR": str(runtime)}
    finally:
        end_masters(runtime / "reconciler-ssh")
        shutil.rmtree(runtime, ignore_errors=True)
