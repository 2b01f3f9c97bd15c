"""Where the benchmarks find the engine: DOCKER_HOST, else the test environment's `.testenv/env`."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def docker_host() -> str:
    if os.environ.get("DOCKER_HOST"):
        return os.environ["DOCKER_HOST"]
    env = REPO / ".testenv" / "env"
    match = re.search(r"DOCKER_HOST=(\S+)", env.read_text()) if env.exists() else None
    if not match:
        sys.exit("no engine: set DOCKER_HOST or run scripts/testenv.sh")
    return match.group(1)


def compile_reconciler() -> None:
    """Write reconcile's bytecode before timing it, as an installed package has it: with PYTHONDONTWRITEBYTECODE
    set (or a source tree edited since its last run) every run would compile the changed modules again (~40 ms),
    a cost no installed copy pays and Compose, precompiled by its package, does not pay either."""
    import compileall

    compileall.compile_dir(str(REPO / "reconciler"), quiet=1)
