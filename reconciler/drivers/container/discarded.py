"""Settings the engine accepts and then drops: a create or update answered with a warning such as "Your kernel does
not support Block I/O weight or the cgroup is not mounted. Weight discarded." (Docker 20.10 on a cgroup v1 host
without a block I/O weight controller). The container would then differ from the manifest on every plan, with an
update that never sticks; so the create or update fails instead, saying which setting and why."""

from __future__ import annotations

from collections.abc import Iterable

from reconciler.errors import PermanentError

# words of the engine's warning -> the manifest field it drops
FIELDS = {"block i/o weight": "resources.blkioWeight"}


def refuse_discarded(warnings: Iterable[str] | None, action: str) -> None:
    """Raise when the engine's answer to `action` (create, update) says it discarded part of the request."""
    dropped = [w for w in warnings or () if "discarded" in w.lower()]
    if not dropped:
        return
    fields = sorted({f for w in dropped for words, f in FIELDS.items() if words in w.lower()}) or ["a declared setting"]
    raise PermanentError(
        f"the engine discarded {', '.join(fields)} at the {action} ({'; '.join(dropped)}); it would differ from "
        "the manifest on every plan: remove it, or use an engine whose kernel supports it"
    )
