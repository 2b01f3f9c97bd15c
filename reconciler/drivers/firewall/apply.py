"""Writing the project's ruleset of one family through the chosen backend, checked by reading it back.

The driver builds the expected ruleset (every desired list) and holds its lock while it writes.
"""

from __future__ import annotations

from reconciler.drivers.firewall.backend import Backend, LiveFamily
from reconciler.drivers.firewall.rules import ChainSet
from reconciler.errors import TemporaryError


def matches(live: LiveFamily, want: ChainSet | None) -> bool:
    """The live rules of a family are `want` (None: the project has none), its jump the first rule."""
    if want is None:
        return not live.chains and live.jumps == 0
    return dict(live.chains) == dict(want.chains) and live.jump_on_top


def enforce(backend: Backend, family: int, project: str, want: ChainSet | None) -> LiveFamily | None:
    """Write `want` unless the live rules are already it; read them back after a write and return them (None:
    nothing written). Raises TemporaryError when what is read back differs from what was written."""
    live = backend.read(family, project)
    if matches(live, want):
        return None
    backend.write(family, project, want)
    after = backend.read(family, project)
    if not matches(after, want):
        raise TemporaryError(f"IPv{family} rules read back differ from what was written")
    return after
