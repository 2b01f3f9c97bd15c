"""How `watch`, a process that runs for months, asks the C allocator to keep its footprint flat."""

from __future__ import annotations

import ctypes
import os
import sys

import structlog

log = structlog.get_logger()

M_ARENA_MAX = -8  # mallopt parameter number, from glibc's malloc.h
WATCH_ARENAS = 2


def limit_malloc_arenas(arenas: int = WATCH_ARENAS) -> bool:
    """Cap glibc's malloc arenas at `arenas` for the rest of the process; True when the cap was set. Call it
    before the process starts threads. Does nothing on other C libraries, or when the environment already says
    (MALLOC_ARENA_MAX, or the glibc.malloc.arena_max tunable): the operator's choice wins.

    glibc gives threads arenas of their own, up to 8 per core, so that threads need not wait for one another in
    malloc; but CPython threads nearly always hold the GIL when they call it, so they gain little, and every
    extra arena keeps free memory of its own. watch runs every pass in new threads (pools made per pass, up to
    64 changes at once), which spread that free memory over all the arenas (16 on 2 cores). In the soak
    (docs/guarantees.md, Soak), memory free inside malloc grew from 2.4 to 8.4 MiB over 2,000 edits and the
    thread arenas' RSS from 7.3 to 12.2 MiB; with 2 arenas, the free memory stayed between 2.3 and 2.9 MiB after
    the first hundred edits and the arenas' RSS went from 5.4 to 5.8 MiB."""
    chosen = "MALLOC_ARENA_MAX" in os.environ or "glibc.malloc.arena_max" in os.environ.get("GLIBC_TUNABLES", "")
    if not sys.platform.startswith("linux") or chosen:
        return False
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # noqa: B018 -- only glibc has it (musl has mallopt but not this option)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    done = bool(mallopt(M_ARENA_MAX, arenas))
    log.debug("malloc.arenas_limited" if done else "malloc.arenas_not_limited", arenas=arenas)
    return done
