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
