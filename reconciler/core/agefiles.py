"""Encrypted files in git (issue 22, item 6): a file whose name ends `.age` (the age format, X25519 recipients,
binary or ASCII-armored) is decrypted in memory with the identities of `--age-identity FILE` (or the file
`RECONCILER_AGE_IDENTITY` names), through pyrage (the age library's Python binding).

The plaintext lives only in memory: callers put it where the engine needs it (an env value, a secret's data) and
keep it out of plans, logs and state as they do for env files. Change detection uses `keyed_hash`, an HMAC-SHA256
whose key is derived from the identity, so a hash in a label or a state file reveals nothing about the plaintext
(no dictionary of guesses can be checked against it without the identity).

A missing identity, an identity file that is not one, and a file that does not decrypt are an `UnsafeFile`: one
line naming the file, which callers already turn into their `file:line` problem.

Layer: core. No engine library.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from reconciler.contract import option
from reconciler.core.safeio import UnsafeFile, read_bytes, read_text

SUFFIX = ".age"
ENV_VAR = "RECONCILER_AGE_IDENTITY"
IDENTITY_LIMIT = 64 * 1024  # an identity file: a few keys and comments
FILE_LIMIT = 16 * 1024 * 1024  # an encrypted file (env files and secrets are small; swarm's limit is 500 KB)
HASH_CONTEXT = b"reconciler age keyed hash v1"  # domain separation of the HMAC key from the identity itself
NO_IDENTITY = f"encrypted (.age) but no identity is given: pass --age-identity FILE or set {ENV_VAR}"


def is_encrypted(path: str | os.PathLike[str]) -> bool:
    """Whether `path` names an age file (by its name, as the user wrote it)."""
    return str(path).endswith(SUFFIX)


class Identities:
    """The X25519 identities of one identity file (`age-keygen` output: `AGE-SECRET-KEY-1…` lines, `#` comments)."""

    def __init__(self, source: str, keys: list[str]) -> None:
        import pyrage  # lazily: only trees with .age files pay for it

        self.source = source
        try:
            self._identities = [pyrage.x25519.Identity.from_str(k) for k in keys]
        except pyrage.IdentityError:
            raise UnsafeFile(source, "not an age identity file (expected AGE-SECRET-KEY-1… lines)") from None
        if not self._identities:
            raise UnsafeFile(source, "not an age identity file (no AGE-SECRET-KEY-1… line)")
        self._hash_key = hmac.new(HASH_CONTEXT, "\n".join(sorted(keys)).encode(), hashlib.sha256).digest()

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Identities:
        """The identities in `path`; an unreadable or malformed file is an UnsafeFile naming it."""
        text = read_text(path, IDENTITY_LIMIT)
        keys = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
        if any(not k.upper().startswith("AGE-SECRET-KEY-1") for k in keys):
            raise UnsafeFile(str(path), "not an age identity file (expected AGE-SECRET-KEY-1… lines)")
        return cls(str(path), keys)

    def decrypt(self, path: str | os.PathLike[str], data: bytes) -> bytes:
        """The plaintext of `data`, the content of `path` (named in the error when it does not decrypt)."""
        import pyrage

        try:
            return bytes(pyrage.decrypt(data, self._identities))
        except pyrage.DecryptError as exc:
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else "no identity matches"
            raise UnsafeFile(str(path), f"does not decrypt with the identity in {self.source} ({reason})") from None

    def keyed_hash(self, plaintext: bytes) -> str:
        """`hmac-sha256:<hex>` of `plaintext` under a key derived from the identity: equal plaintexts hash equal,
        and the hash tells nothing about the plaintext to whoever lacks the identity."""
        return "hmac-sha256:" + hmac.new(self._hash_key, plaintext, hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class AgeOptions:
    """`--age-identity FILE` (default `$RECONCILER_AGE_IDENTITY`): a global flag because the Container driver
    declares this as its options type; every driver reading secret files asks `ctx.options_for(AgeOptions)`."""

    age_identity: str | None = option(
        None,
        "--age-identity",
        f"age identity file (age-keygen) decrypting files ending .age, e.g. envFiles (default: ${ENV_VAR})",
        env=ENV_VAR,
        metavar="FILE",
        scope="global",  # validate reads env files too
    )

    def identities(self) -> Identities | None:
        """The identities of the file (read once while it is unchanged), None without one; an unreadable or
        malformed file is an UnsafeFile naming it."""
        if not self.age_identity:
            return None
        return _load_cached(self.age_identity)


_cache: dict[str, tuple[tuple[int, int, int], Identities]] = {}
_cache_lock = threading.Lock()


def _load_cached(path: str) -> Identities:
    try:
        info = os.stat(path)
        stamp = (info.st_ino, info.st_size, info.st_mtime_ns)
    except OSError:
        return Identities.load(path)  # raises, naming the file
    with _cache_lock:
        cached = _cache.get(path)
        if cached is not None and cached[0] == stamp:
            return cached[1]
    loaded = Identities.load(path)
    with _cache_lock:
        _cache[path] = (stamp, loaded)
    return loaded


def read_decrypted(
    path: str | os.PathLike[str],
    identities: Identities | None,
    tree: str | os.PathLike[str] | None = None,
    limit: int = FILE_LIMIT,
) -> bytes:
    """The plaintext of the age file `path`, read with the safe reader (a regular file, bounded, no link out of
    `tree`); no identity, or one that does not open it, is an UnsafeFile naming the file."""
    if identities is None:
        raise UnsafeFile(str(path), NO_IDENTITY)
    return identities.decrypt(path, read_bytes(path, limit, tree))


def read_maybe_encrypted_text(
    path: str | os.PathLike[str],
    identities: Identities | None,
    limit: int,
    tree: str | os.PathLike[str] | None = None,
) -> str:
    """The UTF-8 text of `path`: decrypted first when its name ends `.age` (the plaintext bounded by `limit`)."""
    if not is_encrypted(path):
        return read_text(path, limit, tree=tree)
    data = read_decrypted(path, identities, tree, limit * 2 + 4096)  # armor grows it by a third
    if len(data) > limit:
        raise UnsafeFile(str(path), f"decrypted content is larger than the limit of {limit} bytes")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UnsafeFile(str(path), f"decrypted content is not UTF-8 text (byte {exc.start})") from None


# a Service's bind source is read on whichever node runs its task, not where reconcile decrypted it
SERVICE_BIND = "a Service cannot bind-mount an .age file (its tasks may run on another node): use a Secret with file:"


def encrypted_binds(mounts: Iterable[Mapping[str, Any]] | None) -> Iterator[tuple[int, Mapping[str, Any]]]:
    """(index, entry) of each `type: bind` mount of a manifest whose source is an age file."""
    for i, entry in enumerate(mounts or []):
        if entry.get("type") == "bind" and is_encrypted(str(entry.get("source") or "")):
            yield i, entry
