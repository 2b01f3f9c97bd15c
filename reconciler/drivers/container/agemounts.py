"""Bind mounts of `.age` files (issue 22, item 6): the engine bind-mounts a file, so the plaintext must be one.

A Container's `type: bind` mount whose source ends `.age` is decrypted in memory (core/agefiles.py) and its
plaintext written mode 0600 (owner root) under a tmpfs run directory (`$RECONCILER_RUN_DIR`, else /run/reconciler
when /run is a tmpfs, else /dev/shm/reconciler: some hosts keep /run on disk), which is what the engine
bind-mounts (read-only unless the mount says `readOnly: false`):

    <run dir>/mounts/<project>-<engine digest>/<container>/<target name>-<target digest>.<keyed hash>

The name depends on the container, the target and the keyed hash of the plaintext (an HMAC under a key derived
from the identity: it tells nothing of the plaintext), nothing else: a re-apply computes the same path (no drift),
and a changed plaintext is a new path, so the mounts field differs and the container is replaced through the
ordinary comparison, the old container keeping its own file until it is gone (a rolled-back replace still finds
it). A memory file system is required (checked in /proc/self/mountinfo) so the plaintext never reaches a disk
and a reboot clears it; the container's change then rewrites it before the engine starts the container again (the
engine refuses a missing bind source of `HostConfig.Mounts` rather than creating a directory there).

Files go with their container: removed when it is removed, stale ones (an earlier plaintext) once its change
succeeded, and directories of containers that neither exist nor are declared when an apply touches a container.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import os
import re
import shutil
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reconciler.core.agefiles import FILE_LIMIT, AgeOptions, encrypted_binds, read_decrypted
from reconciler.core.lock import canonical_engine
from reconciler.core.safeio import UnsafeFile, manifest_root, tree_of
from reconciler.drivers.container.values import resolve_host_path
from reconciler.errors import PermanentError, SpecError
from reconciler.model import Action, Change, Desired, FieldChange, Observed, Resource

RUN_DIR_ENV = "RECONCILER_RUN_DIR"
DEFAULT_RUN_DIR = "/run/reconciler"
FALLBACK_RUN_DIR = "/dev/shm/reconciler"
MEMORY_FILE_SYSTEMS = frozenset({"tmpfs", "ramfs"})
MOUNTINFO = "/proc/self/mountinfo"
MASKED_LINE = 6  # shorter lines of a plaintext (`}`, `---`) are not masked on their own in a container's output
REWRITE_NOTE = "the decrypted file is gone from the run directory (a reboot clears it): written again"


def run_dir() -> Path:
    configured = os.environ.get(RUN_DIR_ENV)
    return Path(configured) if configured else _default_run_dir()


@functools.cache
def _default_run_dir() -> Path:
    """/run/reconciler where /run is a tmpfs (it is on most hosts), else /dev/shm/reconciler where that is one; if
    neither is, /run/reconciler, which the memory check then refuses with its reason."""
    for candidate in (DEFAULT_RUN_DIR, FALLBACK_RUN_DIR):
        if memory_backed_problem(Path(candidate)) is None:
            return Path(candidate)
    return Path(DEFAULT_RUN_DIR)


def _unescape(field: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as octal (`\\040`)."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def file_system_type(path: str, mountinfo: str) -> str | None:
    """The type of the file system holding the absolute, resolved `path`, from a mountinfo text: the last mount
    (mounts stack) of the longest mount point containing it."""
    best: tuple[int, str] | None = None
    for line in mountinfo.splitlines():
        fields = line.split()
        if "-" not in fields or len(fields) < 5:
            continue
        point = _unescape(fields[4])
        fstype = fields[fields.index("-") + 1] if fields.index("-") + 1 < len(fields) else ""
        if path == point or path.startswith(point.rstrip("/") + "/"):
            if best is None or len(point) >= best[0]:
                best = (len(point), fstype)
    return best[1] if best else None


def memory_backed_problem(directory: Path, mountinfo: str | None = None) -> str | None:
    """Why plaintext may not be written under `directory` (not a memory file system), or None; the check is on
    its nearest existing ancestor, resolved (what it will be created on)."""
    existing = Path(os.path.abspath(directory))
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if mountinfo is None:
        try:
            mountinfo = Path(MOUNTINFO).read_text()
        except OSError as exc:
            return f"cannot tell whether the run directory {directory} is a tmpfs ({MOUNTINFO}: {exc.strerror})"
    fstype = file_system_type(os.path.realpath(existing), mountinfo)
    if fstype in MEMORY_FILE_SYSTEMS:
        return None
    return (
        f"decrypted files are written under {directory}, which is not a tmpfs ({fstype or 'unknown'}): "
        f"plaintext must not reach a disk; set {RUN_DIR_ENV} to a directory on a tmpfs"
    )


def _component(text: str, limit: int = 48) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", text).lstrip(".")[:limit] or "_"


@dataclass(frozen=True)
class PlaintextDir:
    """Where one project's decrypted bind sources live on one engine."""

    leaf: str  # <project>-<engine digest>
    base: Path | None = None  # the run directory; None: run_dir(), found when first needed

    @classmethod
    def of(cls, project: str, engine_url: str | None, base: Path | None = None) -> PlaintextDir:
        engine = canonical_engine(engine_url) if engine_url else ""
        digest = hashlib.sha256(engine.encode()).hexdigest()[:10]  # as the lock file's: one per project and engine
        return cls(f"{project}-{digest}", base)

    @functools.cached_property
    def root(self) -> Path:
        # on first use, not when the driver is made: finding the default run directory reads the mount table,
        # which a host with 1,000 containers makes 2,000 lines long, and most projects have no `.age` mount
        return (self.base or run_dir()) / "mounts" / self.leaf

    def container_dir(self, name: str) -> Path:
        return self.root / _component(name, 255)

    def path_for(self, name: str, target: str, keyed_hash: str) -> Path:
        """Stable for one container, target and plaintext: a changed plaintext is a new file (and a replace)."""
        digest = hashlib.sha256(target.encode()).hexdigest()[:8]  # two targets with one base name stay apart
        base = _component(target.rstrip("/").rpartition("/")[2])
        return self.container_dir(name) / f"{base}-{digest}.{keyed_hash.rpartition(':')[2][:16]}"


# --- normalize (pure but for reading the .age file and the mount table) -------------------------------------------


def place_encrypted(
    mounts: list[dict[str, Any]], resource: Resource, age: AgeOptions, where: PlaintextDir
) -> list[dict[str, Any]]:
    """The canonical mounts with each `.age` bind source replaced by its plaintext path (read-only unless the
    manifest says `readOnly: false`). The file is decrypted here, so a missing identity or a file that does not
    decrypt is a problem of validate and plan (naming the file) before anything changes."""
    found = list(encrypted_binds(resource.spec.get("mounts")))
    if not found:
        return mounts
    by_target = {entry["target"]: (i, entry) for i, entry in reversed(found)}  # the first of a duplicate target
    root = manifest_root(resource.source.file, resource.source.path)
    out = []
    for mount in mounts:
        hit = by_target.get(mount["target"]) if mount["type"] == "bind" else None
        if hit is None:
            out.append(mount)
            continue
        i, entry = hit
        field = f"spec.mounts.{i}.source"
        problem = memory_backed_problem(where.root)
        if problem is not None:
            raise SpecError(field, problem)
        source = resolve_host_path(entry["source"], resource.source.path)
        try:
            identities = age.identities()
            plaintext = read_decrypted(source, identities, tree_of(source, root), FILE_LIMIT)
        except UnsafeFile as exc:
            raise SpecError(field, str(exc)) from None
        assert identities is not None  # read_decrypted refuses without one
        path = where.path_for(resource.name, mount["target"], identities.keyed_hash(plaintext))
        out.append({**mount, "source": str(path), "readOnly": bool(entry.get("readOnly", True))})
    return out


def local_fields(resource: Resource) -> Iterator[tuple[str, str]]:
    """The mounts whose file is written on this machine, for the engine of this machine to bind-mount."""
    for i, entry in encrypted_binds(resource.spec.get("mounts")):
        yield (
            f"spec.mounts.{i}.source",
            f"the bind source {entry['source']} is decrypted into this machine's {run_dir()}",
        )


# --- apply ---------------------------------------------------------------------------------------------------------


def _plaintext_paths(desired: Desired) -> dict[str, str]:
    """target -> plaintext path of the desired container's `.age` bind mounts."""
    targets = {entry["target"] for _, entry in encrypted_binds(desired.resource.spec.get("mounts"))}
    return {m["target"]: m["source"] for m in desired.spec["mounts"] if m["type"] == "bind" and m["target"] in targets}


def write_private(path: Path, data: bytes) -> None:
    """`data` at `path`, mode 0600, replaced atomically (a container holding the old file keeps it); the
    directories are made 0700. An empty directory in its place (an engine that made one) is removed first."""
    for directory in reversed([path.parent, *path.parent.parents]):
        if not directory.exists():
            directory.mkdir(mode=0o700, exist_ok=True)  # mkdir(parents=True) would make the parents 0755
    if path.is_dir() and not path.is_symlink():
        path.rmdir()  # not empty: an OSError naming it, nothing written
    with contextlib.suppress(OSError):
        if path.read_bytes() == data and (os.lstat(path).st_mode & 0o777) == 0o600:
            return
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(temporary, flags, 0o600)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temporary)
        raise


def _say_plaintext_changed(change: Change, desired: Desired) -> Change:
    paths = _plaintext_paths(desired)
    if not paths:
        return change
    fields = []
    for f in change.fields:
        if f.path == "mounts" and isinstance(f.old, list) and isinstance(f.new, list):
            old = {m.get("target"): m for m in f.old}
            moved = sorted(t for t, p in paths.items() if t in old and old[t].get("source") != p)
            if moved:
                f = dataclasses.replace(f, note=f"the decrypted content of {', '.join(moved)} changed")
        fields.append(f)
    return dataclasses.replace(change, fields=tuple(fields))


class AgeMounts:
    """The Container driver's side of `.age` bind mounts for one pass: writes the plaintext before a container
    is created or started, removes it with the container, and notices plaintexts gone since the last apply."""

    def __init__(self, where: PlaintextDir, age: AgeOptions) -> None:
        self.where = where
        self.age = age
        self._missing: dict[str, list[str]] = {}  # container -> targets whose file is gone (seen in observe)
        self._known: set[str] | None = None  # declared or existing containers (their directories are kept)
        self._collected = False
        self._collect_lock = threading.Lock()  # changes are applied on several threads
        self._written: dict[str, list[bytes]] = {}  # container -> the plaintexts written this pass (to mask)

    def observed(self, desired: Iterable[Desired], found: Mapping[str, Observed]) -> None:
        """Reads the run directory (no change): which declared containers lost a file they mount."""
        self._known = {d.name for d in desired} | set(found)
        self._missing = {}
        for d in desired:
            obs = found.get(d.name)
            if obs is None:
                continue
            have = {(m.get("target"), m.get("source")) for m in obs.spec.get("mounts") or []}
            gone = sorted(t for t, p in _plaintext_paths(d).items() if (t, p) in have and not os.path.isfile(p))
            if gone:
                self._missing[d.name] = gone

    def diff(self, change: Change) -> Change:
        """An otherwise unchanged (or updated in place) container whose plaintext is gone: an update writing it.
        A replace because a plaintext changed says so (the mounts differ only in a keyed hash)."""
        if change.action is Action.REPLACE and change.desired is not None:
            return _say_plaintext_changed(change, change.desired)
        gone = self._missing.get(change.name)
        if not gone or change.action not in (Action.NONE, Action.UPDATE):
            return change
        fields = tuple(
            FieldChange(f"mounts.{t}", "(missing)", "(decrypted)", Action.UPDATE, note=REWRITE_NOTE) for t in gone
        )
        steps = tuple(f"write the decrypted file of {t}" for t in gone)
        return Change(
            change.kind,
            change.name,
            Action.UPDATE,
            (*fields, *change.fields),
            change.desired,
            change.observed,
            steps=(*steps, *change.steps),
            notes=change.notes,
        )

    def write(self, desired: Desired) -> None:
        """Decrypt and write every `.age` bind source of `desired` (before its container is created or started)."""
        paths = _plaintext_paths(desired)
        if not paths:
            return
        problem = memory_backed_problem(self.where.root)
        if problem is not None:
            raise PermanentError(problem)
        root = manifest_root(desired.resource.source.file, desired.resource.source.path)
        for _, entry in encrypted_binds(desired.resource.spec.get("mounts")):
            source = resolve_host_path(entry["source"], desired.resource.source.path)
            try:
                identities = self.age.identities()
                plaintext = read_decrypted(source, identities, tree_of(source, root), FILE_LIMIT)
            except UnsafeFile as exc:
                raise PermanentError(str(exc)) from None
            assert identities is not None
            self._written.setdefault(desired.name, []).append(plaintext)
            path = self.where.path_for(desired.name, entry["target"], identities.keyed_hash(plaintext))
            if str(path) != paths.get(entry["target"]):
                raise PermanentError(f"{source}: changed since the plan was made; the next apply uses it")
            try:
                write_private(path, plaintext)
            except OSError as exc:
                raise PermanentError(f"{path}: cannot write the decrypted {source}: {exc.strerror}") from None

    def secret_values(self, name: str) -> list[str]:
        """What to mask in the output of container `name` (a crash log tail): each plaintext written for it this
        pass, whole and line by line (a program printing its key file prints lines)."""
        values: set[str] = set()
        for plaintext in self._written.get(name, []):
            text = plaintext.decode(errors="replace")
            values.update(v for v in (text, text.strip()) if v.strip())
            values.update(line.strip() for line in text.splitlines() if len(line.strip()) >= MASKED_LINE)
        return sorted(values, key=len, reverse=True)

    def keep_only(self, desired: Desired) -> None:
        """After the container's change succeeded: its files of earlier plaintexts go."""
        keep = {Path(p).name for p in _plaintext_paths(desired).values()}
        self._remove(self.where.container_dir(desired.name), keep)

    def removed(self, name: str) -> None:
        """The container `name` is gone: its files go."""
        self._remove(self.where.container_dir(name), set())

    def collect(self) -> None:
        """Once per pass, on the first change applied: the directories of containers that neither exist nor
        are declared (removed by hand, or while reconcile was not running)."""
        with self._collect_lock:
            if self._collected or self._known is None:  # nothing observed: nothing known to keep
                return
            self._collected = True
        known = {_component(n, 255) for n in self._known}
        with contextlib.suppress(FileNotFoundError, NotADirectoryError):
            for entry in os.scandir(self.where.root):
                if entry.is_dir(follow_symlinks=False) and entry.name not in known:
                    shutil.rmtree(entry.path, ignore_errors=True)

    @staticmethod
    def _remove(directory: Path, keep: set[str]) -> None:
        try:
            entries = list(os.scandir(directory))
        except (FileNotFoundError, NotADirectoryError):
            return
        for entry in entries:
            if entry.name not in keep:
                with contextlib.suppress(FileNotFoundError):
                    if entry.is_dir(follow_symlinks=False):
                        shutil.rmtree(entry.path, ignore_errors=True)
                    else:
                        os.unlink(entry.path)
        if not keep:
            with contextlib.suppress(OSError):
                directory.rmdir()
