"""The one way reconcile reads a file on a user's behalf (manifests, env files, Dockerfiles, `.dockerignore`,
build context files, secret and config files): regular files only, bounded in size, and never through a
symbolic link that leads out of the tree the file belongs to.

Why each rule: a FIFO blocks a read for ever and a device (`/dev/zero`) never ends; a file of gigabytes exhausts
memory; a link inside the manifest directory to `/etc` would hand host files to a container or an image. A file
is opened non-blocking (so a FIFO cannot hang the open), checked with `fstat` on the opened descriptor (so a file
swapped after a check is caught), and read to at most `limit + 1` bytes (so a file that grows is caught too).

Errors are `UnsafeFile` (an OSError): the caller turns the message into its `file:line` problem.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterable
from pathlib import Path

from reconciler.core.plugins import engine_class

MANIFEST_LIMIT = 4 * 1024 * 1024  # a manifest file
ENV_FILE_LIMIT = 1024 * 1024  # an env file

# Host paths that hand the host to whoever reads or mounts them: sensitive when a path is one of these, lies under
# one, or contains one (`/` contains everything). The engine adds its own: sensitive_host_paths().
HOST_PATHS = ("/etc", "/proc", "/sys", "/dev", "/boot", "/root")


def sensitive_host_paths() -> tuple[str, ...]:
    """The host's sensitive paths, then the engine's (its sockets, its data root: the contract's
    `Engine.sensitive_paths`); one list for every reader and mount check."""
    return (*HOST_PATHS, *engine_class().sensitive_paths)


# Kernel pseudo file systems: no input file lives there, and /proc/self/environ would hand reconcile's own
# environment to a container or a swarm secret. `read_bytes` refuses what it opened there.
PSEUDO_FILE_SYSTEMS = ("/proc", "/sys", "/dev")


class UnsafeFile(OSError):
    """A file reconcile refuses to read (or cannot read); `str()` is one line naming the file and why."""

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        super().__init__(reason)
        self.path = str(path)
        self.reason = reason

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


def human_size(size: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if size >= scale and size % scale == 0:
            return f"{size // scale} {unit}"
    return f"{size} bytes"


def inside(path: str, root: str) -> bool:
    """`path` is `root` or lies under it (both absolute and normalized)."""
    return path == root or path.startswith(root.rstrip("/") + "/")


def sensitive_reason(path: str, extra: Iterable[str] = ()) -> str | None:
    """Why `path` (absolute) is a sensitive host path, checked as written and after resolving links, or None."""
    resolved = os.path.realpath(path)
    for root in (*sensitive_host_paths(), *extra):
        for candidate in dict.fromkeys((os.path.normpath(path), resolved)):
            if inside(candidate, root):
                return f"{candidate} is inside the sensitive host path {root}"
            if inside(root, candidate):
                return f"{candidate} contains the sensitive host path {root}"
    return None


def tree_of(path: str | os.PathLike[str], manifest_dir: str | os.PathLike[str] | None) -> str:
    """The tree a referenced file belongs to: the manifest directory when the path (as written, `..` resolved
    lexically) lies inside it, otherwise the directory that holds the file."""
    lexical = os.path.normpath(os.path.abspath(path))
    if manifest_dir is not None:
        root = os.path.normpath(os.path.abspath(manifest_dir))
        if inside(lexical, root):
            return root
    return os.path.dirname(lexical)


def manifest_root(file: str, path: Path) -> Path:
    """The manifest directory, from a Source's relative `file` and absolute `path` (path = root / file)."""
    depth = len(Path(file).parts)
    return path.parents[depth - 1] if 0 < depth <= len(path.parents) else path.parent


def _opened_path(fd: int, fallback: str) -> str:
    """The real path of an open descriptor (what was opened, whatever links or renames led there)."""
    try:
        return os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        return os.path.realpath(fallback)


def _refuse_pseudo(name: str, real: str, roots: tuple[str, ...] = PSEUDO_FILE_SYSTEMS) -> None:
    if any(inside(real, root) for root in roots):
        raise UnsafeFile(name, f"{real} is in a kernel pseudo file system; never read")


def read_bytes(
    path: str | os.PathLike[str],
    limit: int,
    tree: str | os.PathLike[str] | None = None,
    follow_out: bool = False,
) -> bytes:
    """The content of the regular file `path`, at most `limit` bytes. With `tree`, a path whose links lead out
    of `tree` is refused unless `follow_out` (an explicit, documented opt-in of the caller). A file of a kernel
    pseudo file system (/proc, /sys, /dev: what was opened, whatever the path said) is never read."""
    name = str(path)
    _refuse_pseudo(name, os.path.realpath(name), ("/proc", "/sys"))  # not even opened (/dev's are devices)
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(name, flags)
    except FileNotFoundError:
        raise UnsafeFile(name, "does not exist") from None
    except OSError as exc:
        if exc.errno == errno.ENXIO:  # a FIFO without a writer, a socket
            raise UnsafeFile(name, "not a regular file") from None
        raise UnsafeFile(name, f"cannot be read: {exc.strerror}") from None
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise UnsafeFile(name, "not a regular file")
        real = _opened_path(fd, name)
        _refuse_pseudo(name, real)  # again on what was opened (a link swapped meanwhile)
        if tree is not None and not follow_out:
            real_tree = os.path.realpath(tree)
            if not inside(real, real_tree):
                raise UnsafeFile(name, f"a symbolic link leads out of {tree} (to {real}); not followed")
        if info.st_size > limit:
            raise UnsafeFile(name, f"file is {info.st_size} bytes; the limit is {human_size(limit)}")
        os.set_blocking(fd, True)
        chunks = []
        left = limit + 1
        while left > 0:
            chunk = os.read(fd, min(left, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            left -= len(chunk)
        data = b"".join(chunks)
        if len(data) > limit:
            raise UnsafeFile(name, f"file is larger than the limit of {human_size(limit)}")
        return data
    except UnsafeFile:
        raise
    except OSError as exc:
        raise UnsafeFile(name, f"cannot be read: {exc.strerror}") from None
    finally:
        os.close(fd)


def read_text(
    path: str | os.PathLike[str],
    limit: int,
    tree: str | os.PathLike[str] | None = None,
    follow_out: bool = False,
) -> str:
    """`read_bytes` decoded as UTF-8; anything else is an UnsafeFile naming the first bad byte."""
    data = read_bytes(path, limit, tree, follow_out)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UnsafeFile(str(path), f"not UTF-8 text (byte {exc.start})") from None


def read_env_text(path: str | os.PathLike[str], tree: str | os.PathLike[str] | None = None) -> str:
    """The text of an env file: `read_text` with ENV_FILE_LIMIT, and never from a kernel pseudo file system."""
    real = os.path.realpath(path)
    if any(inside(real, root) for root in PSEUDO_FILE_SYSTEMS):
        raise UnsafeFile(path, f"{real} is in a kernel pseudo file system, not an env file")
    return read_text(path, ENV_FILE_LIMIT, tree=tree)


def read_data_file(
    path: str | os.PathLike[str],
    limit: int,
    manifest_dir: str | os.PathLike[str] | None,
    allow_sensitive: bool = False,
) -> bytes:
    """The bytes of a file whose content goes to the engine as a value (a swarm Secret's or Config's `file`):
    `read_bytes` within its tree (tree_of; never from a kernel pseudo file system), and, outside the manifest
    directory, never from a sensitive host path (`/etc/shadow`, the engine's data root: sensitive_host_paths()),
    as written or reached through links, unless the manifest opts in with `allowSensitive` (as a bind mount's)."""
    lexical = os.path.normpath(os.path.abspath(path))
    tree = tree_of(path, manifest_dir)
    outside = manifest_dir is None or not inside(lexical, os.path.normpath(os.path.abspath(manifest_dir)))
    pseudo = any(inside(p, root) for p in (lexical, os.path.realpath(path)) for root in PSEUDO_FILE_SYSTEMS)
    if outside and not allow_sensitive and not pseudo:  # read_bytes refuses pseudo files in its own words
        why = sensitive_reason(lexical)
        if why is not None:
            raise UnsafeFile(path, f"{why}; set allowSensitive: true to read it")
    return read_bytes(path, limit, tree=tree)
