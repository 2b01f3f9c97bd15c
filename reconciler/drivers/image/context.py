"""Build inputs -> one hash: what docker-py would send as the build context (honouring `.dockerignore`, with the
very same exclude logic), the Dockerfile, the build args and the target.

Content, not paths or timestamps: a touched file with the same bytes is no change, a renamed file is, an edit to an
ignored file is not. Per-file digests are cached by (device, inode, size, mtime) so a watch loop does not re-read
an unchanged context on every resync.
"""

from __future__ import annotations

import hashlib
import os
import stat
import threading
from dataclasses import dataclass
from pathlib import Path

from reconciler.core.safeio import UnsafeFile, read_bytes, tree_of
from reconciler.drivers.engine import lazy
from reconciler.spechash import canonical_json

DOCKERFILE_LIMIT = 1024 * 1024  # the most of a Dockerfile or a .dockerignore read (reconciler.core.safeio)
_CACHE: dict[tuple[int, int, int, int], str] = {}
_CACHE_LOCK = threading.Lock()
_CACHE_MAX = 50_000
_CHUNK = 1 << 20


@dataclass(frozen=True)
class BuildInputs:
    """The hashes that decide a rebuild; `total` is stored on the image as `io.reconciler.input-hash`."""

    context: str
    dockerfile: str
    args: str
    target: str

    @property
    def parts(self) -> dict[str, str]:
        return {"context": self.context, "dockerfile": self.dockerfile, "args": self.args, "target": self.target}

    @property
    def total(self) -> str:
        return "sha256:" + hashlib.sha256(canonical_json(self.parts).encode()).hexdigest()


def dockerignore_patterns(context: Path) -> list[str]:
    """The patterns of `<context>/.dockerignore` exactly as docker-py's `build()` reads them."""
    path = context / ".dockerignore"
    if not os.path.lexists(path):
        return []
    text = read_bytes(path, DOCKERFILE_LIMIT, tree=context).decode("utf-8", errors="replace")
    lines = [line.strip() for line in text.splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


def context_files(context: Path, dockerfile: str) -> list[str]:
    """Relative paths (files, directories, links) docker-py puts into the build context tar, sorted."""
    return sorted(lazy.exclude_paths(str(context), dockerignore_patterns(context), dockerfile=dockerfile))


def _file_digest(path: str, st: os.stat_result) -> str:
    key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
    with _CACHE_LOCK:
        cached = _CACHE.get(key)
    if cached is not None:
        return cached
    digest = hashlib.sha256()
    # never through a link, never blocking (a file swapped for a FIFO after the lstat), at most the size lstat saw
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise UnsafeFile(path, "not a regular file")
        left = st.st_size
        while left > 0 and (chunk := os.read(fd, min(_CHUNK, left))):
            digest.update(chunk)
            left -= len(chunk)
    finally:
        os.close(fd)
    value = digest.hexdigest()
    with _CACHE_LOCK:
        if len(_CACHE) >= _CACHE_MAX:
            _CACHE.clear()
        _CACHE[key] = value
    return value


def context_hash(context: Path, dockerfile: str = "Dockerfile") -> str:
    """sha256 over (path, type, permission bits, content or link target) of every file sent to the engine."""
    digest = hashlib.sha256()
    for rel in context_files(context, dockerfile):
        full = os.path.join(context, rel)
        st = os.lstat(full)
        mode = stat.S_IMODE(st.st_mode)
        if stat.S_ISLNK(st.st_mode):
            entry = f"L {rel} {os.readlink(full)}"
        elif stat.S_ISDIR(st.st_mode):
            entry = f"D {rel} {mode:o}"
        elif stat.S_ISREG(st.st_mode):
            entry = f"F {rel} {mode:o} {_file_digest(full, st)}"
        else:
            continue  # sockets, fifos: docker-py skips them too
        digest.update(entry.encode("utf-8", "surrogateescape") + b"\0")
    return "sha256:" + digest.hexdigest()


def dockerfile_path(context: Path, dockerfile: str) -> Path:
    return Path(dockerfile) if os.path.isabs(dockerfile) else context / dockerfile


def build_inputs(context: Path, dockerfile: str, args: dict[str, str], target: str | None) -> BuildInputs:
    """Hash every input of a build. Raises OSError (UnsafeFile for a file refused by the safe reader: not regular,
    too large, a link out of the context) when the context or the Dockerfile cannot be read."""
    file = dockerfile_path(context, dockerfile)
    tree = tree_of(file, context)
    dockerfile_bytes = read_bytes(file, DOCKERFILE_LIMIT, tree=tree)
    return BuildInputs(
        context=context_hash(context, dockerfile),
        dockerfile="sha256:" + hashlib.sha256(dockerfile_bytes).hexdigest(),
        args="sha256:" + hashlib.sha256(canonical_json(args).encode()).hexdigest(),
        target=target or "",
    )
