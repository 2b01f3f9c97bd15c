"""How long to wait before trying again: every retry delay of the program, its formula and its numbers.

One formula serves every retry: the n-th wait in a row is `base * factor^(n-1)`, capped, and optionally
jittered (a fraction of it random, so many clients failing together do not retry in step). Its users:

- `ENGINE_REQUEST`: one engine request repeated inside a pass (drivers/engine/retry.py, which also decides
  *which* requests may be repeated): ~0.2 s, ~0.4 s, ~0.8 s, each jittered to 50-100 %, at most 2 s.
  Reads that were sent are repeated up to `ENGINE_READ_ATTEMPTS` times.
- `APPLY_ROUND`: `apply` planning again what an engine fault failed (core/project.py): ~0.5 s, ~1 s, ~2 s, ~4 s,
  jittered, `APPLY_ROUNDS` passes in all.
- `OBJECT_RETRY`: `watch` trying one failed object again (watch/backoff.py): 1 s, 2 s, 4 s, ... 300 s.
- `ENGINE_DOWN`: `watch` running the whole pass again when the engine was unreachable (watch/controller.py):
  1 s, 2 s, 4 s, ... 30 s.
- `EVENT_STREAM`: `watch` reconnecting the engine's event stream (watch/triggers.py): 1 s, 2 s, 4 s, ... 30 s.
- `spread`: the periodic resync, +-10 % (`RESYNC_SPREAD`).

Pure arithmetic over an injectable random source; drivers and the core both import it (it imports nothing of
the project).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Exponential:
    """Exponential backoff: the wait after the n-th failure in a row (n >= 1) is `base * factor^(n-1)`, at most
    `cap`; with `jitter` j it is then scaled by a random factor between 1-j and 1 (0.5: half to all of it)."""

    base: float
    cap: float
    factor: float = 2.0
    jitter: float = 0.0

    def nominal(self, failures: int) -> float:
        """The wait before jitter (0 for no failure)."""
        if failures <= 0:
            return 0.0
        return min(self.cap, self.base * self.factor ** min(failures - 1, 64))

    def delay(self, failures: int, rand: Callable[[], float] = random.random) -> float:
        """Seconds to wait after the `failures`-th consecutive failure; `rand` returns a number in [0, 1)."""
        nominal = self.nominal(failures)
        if not self.jitter:
            return nominal
        return nominal * (1 - self.jitter + self.jitter * rand())


def spread(seconds: float, fraction: float, uniform: Callable[[float, float], float] = random.uniform) -> float:
    """`seconds` moved by a random amount of up to +-`fraction` of it (a periodic timer of many hosts not in step)."""
    return seconds * (1 + uniform(-fraction, fraction))


# client-go starts at 5 ms and Flux at 750 ms; an engine call that failed rarely succeeds a few ms later.
OBJECT_RETRY = Exponential(base=1.0, cap=300.0)
ENGINE_DOWN = Exponential(base=1.0, cap=30.0)
EVENT_STREAM = Exponential(base=1.0, cap=30.0)
# Inside a pass: a busy engine's 5xx or a dropped connection usually passes within a second.
ENGINE_REQUEST = Exponential(base=0.2, cap=2.0, jitter=0.5)
ENGINE_REQUEST_ATTEMPTS = 4
# A read that was sent and failed (a 5xx, a lost answer) is repeated more: doing it again costs nothing, and one
# read failing four times in a row ended a whole `apply` at 30 % faults. Refused connections keep the 4 above.
ENGINE_READ_ATTEMPTS = 8
# `apply` observing and planning again what an engine fault failed (core/project.py, `rounds`), at most
# APPLY_ROUNDS passes. Outcomes (a swarm update that did not converge, a replace rolled back) are never re-planned.
APPLY_ROUND = Exponential(base=0.5, cap=4.0, jitter=0.5)
APPLY_ROUNDS = 6
RESYNC_SPREAD = 0.1
