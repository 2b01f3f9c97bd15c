"""The desired state `watch` uses: every file's current documents when valid, its last valid version when not.

A file that becomes invalid (YAML, schema, or a cross-file problem attributed to it) never drops the objects
it declared: its last valid version stays in force until it is fixed. A file that is gone from disk is a
deliberate removal (its objects are pruned). A file that is invalid and was never valid during this run is
left out; a file that was valid but whose last valid version no longer fits the other files either (say what it
refers to was deleted) is suspended: nothing of it is used this pass, its last valid version is kept for later.
Either way the assembly is marked incomplete so that the caller prunes nothing.

A file that is empty now (nothing but whitespace: an editor that truncates before it writes, a failed write)
while its last valid version declared objects keeps that version, like an invalid file, until it has content
again or is deleted: a half-written save never prunes. A file emptied on purpose is deleted, or holds a comment.
"""

from __future__ import annotations

import enum
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from reconciler.core.manifests import build_resources, find_files, parse_file
from reconciler.core.safeio import MANIFEST_LIMIT, read_bytes
from reconciler.errors import Problem
from reconciler.model import Resource
from reconciler.watch.triggers import absolute_dir


class Use(enum.Enum):
    CURRENT = "current"  # the file as it is on disk now
    LAST_VALID = "last-valid"  # its last valid version
    LEFT_OUT = "left-out"  # invalid and never valid: nothing of it is used
    SUSPENDED = "suspended"  # valid before, but neither version fits the other files now: nothing of it is used


@dataclass
class Assembly:
    """What one pass works with. `complete` is False when some file's objects may be missing from
    `resources` (then pruning is unsafe); `ok` is False when no consistent set could be built at all."""

    resources: list[Resource]
    problems: list[Problem]
    use: dict[str, Use] = field(default_factory=dict)
    ok: bool = True
    emptied: list[str] = field(default_factory=list)  # empty files whose last valid version is used instead
    # every document read this pass, used or not, and the last valid versions of files on disk (what watch
    # asks the drivers' `inputs` about: a file held back by a broken env file still names that env file)
    read: list[Resource] = field(default_factory=list)

    @property
    def files(self) -> int:
        return len(self.use)

    @property
    def complete(self) -> bool:
        return self.ok and all(u not in (Use.LEFT_OUT, Use.SUSPENDED) for u in self.use.values())

    def using(self, use: Use) -> list[str]:
        return sorted(f for f, u in self.use.items() if u is use)


def read_file(path: Path, rel: str, root: Path | None = None) -> tuple[list[Resource], list[Problem]]:
    """The Resources of one file and its own problems (YAML and schema); with `root`, a file that is a link out of
    the manifest directory is refused."""
    docs, problems = parse_file(path, rel, root)
    resources: list[Resource] = []
    for doc in docs:
        resource, doc_problems = build_resources(doc, rel, path)
        problems.extend(doc_problems)
        if resource is not None:
            resources.append(resource)
    return resources, problems


def _blank(path: Path) -> bool:
    """Whether the file holds nothing but whitespace (a file that cannot be read is left to the parser)."""
    try:
        return not read_bytes(path, MANIFEST_LIMIT).strip()  # never blocks on a FIFO, never reads /dev/zero
    except OSError:
        return False


class LastValid:
    """Remembers the last valid Resources of every file under `root` (relative path -> Resources)."""

    def __init__(self, root: Path) -> None:
        self.root = absolute_dir(root)  # a relative root would keep reading the old directory once replaced
        self.files: dict[str, list[Resource]] = {}

    def assemble(self, check: Callable[[list[Resource]], list[Problem]]) -> Assembly:
        """Read every file and build the largest consistent set; `check` returns the cross-file problems of a
        candidate set (duplicates, references, cycles, driver checks), each naming its file."""
        paths, problems = find_files(self.root) if self.root.is_dir() else ([], [])
        fresh: dict[str, list[Resource]] = {}
        use: dict[str, Use] = {}
        emptied: list[str] = []
        for path in paths:
            rel = os.path.relpath(path, self.root)
            if self.files.get(rel) and _blank(path):
                use[rel] = Use.LAST_VALID  # truncated mid-save (or a failed write): not a request to prune
                emptied.append(rel)
                continue
            resources, file_problems = read_file(path, rel, self.root)
            if file_problems:
                problems.extend(file_problems)
                use[rel] = self._fallback(rel)
            else:
                fresh[rel] = resources
                use[rel] = Use.CURRENT

        read = [r for rel in sorted(fresh) for r in fresh[rel]]
        read += [r for rel in sorted(use) if rel in self.files for r in self.files[rel]]
        # Each round moves at least one file down CURRENT -> LAST_VALID -> SUSPENDED (or CURRENT -> LEFT_OUT
        # when it has no valid version), so this ends.
        for _ in range(2 * len(use) + 1):
            chosen = self._chosen(use, fresh)
            cross = check(chosen)
            if not cross:
                for rel, how in use.items():
                    if how is Use.CURRENT:
                        self.files[rel] = fresh[rel]
                for rel in [r for r in self.files if r not in use]:
                    del self.files[rel]  # gone from disk: removed on purpose
                return Assembly(chosen, sorted(set(problems)), use, emptied=sorted(emptied), read=read)
            problems.extend(cross)
            demoted = False
            for rel in sorted({p.file for p in cross}):
                if use.get(rel) is Use.CURRENT:
                    use[rel] = self._fallback(rel)
                    demoted = True
                elif use.get(rel) is Use.LAST_VALID:
                    use[rel] = Use.SUSPENDED  # self.files[rel] stays: it is used again once it fits
                    demoted = True
            if not demoted:
                break  # a problem no file can be blamed for: give up on this pass
        return Assembly([], sorted(set(problems)), use, ok=False, emptied=sorted(emptied), read=read)

    def _fallback(self, rel: str) -> Use:
        return Use.LAST_VALID if rel in self.files else Use.LEFT_OUT

    def _chosen(self, use: dict[str, Use], fresh: dict[str, list[Resource]]) -> list[Resource]:
        chosen: list[Resource] = []
        for rel in sorted(use):
            if use[rel] is Use.CURRENT:
                chosen.extend(fresh[rel])
            elif use[rel] is Use.LAST_VALID:
                chosen.extend(self.files[rel])
        return chosen
