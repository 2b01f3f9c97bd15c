"""What `status` and the status page say of the git source: the revision in force, when it was last applied in
full, and the newest commit's refusal. Kept in the source's own directory (`DIR/applied.json`), so `status DIR`
reads it without the network, and a restarted watch knows what it had applied."""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

from reconciler.gitsource.source import REVISION_FILE, Rejection, Revision
from reconciler.statefile import read_json, write_json

RECORD = "applied.json"
CHECKOUTS = "checkouts"
CURRENT = "current"


def is_source_dir(directory: Path) -> bool:
    """A directory a git source keeps (its checkouts and the `current` link), as opposed to a manifest directory."""
    return (directory / CHECKOUTS).is_dir() and (directory / CURRENT).is_symlink()


def stable_tree(directory: Path) -> Path:
    """The manifests of the revision in force under one path that stays the same across revisions (through the
    `current` link, switched by one rename), so a watch on it follows every switch."""
    return directory / CURRENT / "tree"


def now_iso() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


class AppliedRecord:
    """The revision record of one source directory."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / RECORD

    def read(self) -> dict[str, Any]:
        data = read_json(self.path)
        return data if isinstance(data, dict) else {}

    def applied(self, revision: Revision) -> None:
        """`revision` converged: the objects are what its manifests say."""
        data = self.read()
        data.update(revision.to_json())
        data["appliedAt"] = now_iso()
        if (data.get("rejected") or {}).get("commit") == revision.commit:
            del data["rejected"]
        write_json(self.path, data)

    def rejected(self) -> Rejection | None:
        found = self.read().get("rejected")
        if not isinstance(found, dict):
            return None
        return Rejection(str(found.get("commit", "")), str(found.get("reason", "")))

    def refused(self, rejection: Rejection | None) -> None:
        """The newest commit's refusal (None: the newest commit is the one in force, or in force soon)."""
        data = self.read()
        if (data.get("rejected") or None) == (rejection.to_json() if rejection else None):
            return
        if rejection is None:
            data.pop("rejected", None)
        else:
            data["rejected"] = rejection.to_json()
        write_json(self.path, data)


def in_force(directory: Path) -> Revision | None:
    """The revision in force, read from disk without taking the source's lock (a running watch holds it)."""
    data = read_json(directory / CURRENT / REVISION_FILE)
    if not isinstance(data, dict):
        return None
    try:
        return Revision(**{k: str(data[k]) for k in Revision.__dataclass_fields__})
    except (KeyError, TypeError):
        return None


def revision_status(directory: Path) -> dict[str, Any] | None:
    """`revision` of `status -o json` and `/status.json`: the commit in force, its ref, message and author, when it
    was applied (None: not yet in full), and `rejected` when the newest commit was refused."""
    revision = in_force(directory)
    if revision is None:
        return None
    record = AppliedRecord(directory).read()
    out: dict[str, Any] = {**revision.to_json(), "appliedAt": None, "rejected": record.get("rejected")}
    if record.get("commit") == revision.commit:
        out["appliedAt"] = record.get("appliedAt")
    return out
