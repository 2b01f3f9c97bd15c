"""The one way reconciler writes and reads its JSON state files: atomic, durable, forgiving on read.

Used by every state file (the failures `status` reads, pulled images, volume policies), so a crash or a full
disk never leaves half a file, and a damaged file reads as "nothing recorded" instead of a traceback.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

STATE_DIR_ENV = "RECONCILER_STATE_DIR"


def state_dir() -> Path:
    """`$RECONCILER_STATE_DIR`, else /var/lib/reconciler for root, else `$XDG_STATE_HOME/reconciler`."""
    configured = os.environ.get(STATE_DIR_ENV)
    if configured:
        return Path(configured)
    if os.geteuid() == 0:
        return Path("/var/lib/reconciler")
    return Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state") / "reconciler"


def write_json(path: Path, data: Any) -> None:
    """Write `data` to `path` so readers see the old file or the new one, never a part, even after a crash:
    a temporary file in the same directory, fsync, rename over `path`, fsync of the directory."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(data, fh, indent=1, sort_keys=True)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    with contextlib.suppress(OSError):  # some filesystems cannot open a directory; the rename is done anyway
        dir_fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def read_json(path: Path) -> Any | None:
    """The JSON in `path`, or None when it is missing, unreadable or damaged."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
