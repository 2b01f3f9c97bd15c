"""Service, Secret and Config manifests -> one canonical spec each (defaults filled, units canonical, env files
and secret/config files read and hashed). Pure: nothing here touches the engine.

A Service's fields and how each is normalized are declared once, in fields.FIELDS (the defaults are the engine's
and the docker CLI's own: update/rollback one task at a time, pause on failure, monitor 5s, stop-first; restart
any, 5s; stop grace period 10s, so a service made by hand with `docker service create` and a manifest that leaves
these out compare equal).
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from reconciler.core.agefiles import NO_IDENTITY, Identities, is_encrypted
from reconciler.core.safeio import UnsafeFile, manifest_root, read_bytes, read_data_file
from reconciler.drivers.engine.fields import normalize_table
from reconciler.drivers.swarm import runfields
from reconciler.drivers.swarm.fields import FIELDS
from reconciler.errors import SpecError
from reconciler.model import Desired, Resource
from reconciler.spechash import spec_hash

SWARM_NAME_MAX = 64  # the engine refuses longer secret, config and service names
HASH_CHARS = 8
MAX_DATA_BYTES = {"Secret": 500 * 1024, "Config": 1000 * 1024}
SECRET_HASH_ROUNDS = 100_000


def _relative(value: str, manifest: Path) -> Path:
    path = Path(value)
    return path if path.is_absolute() else manifest.parent / path


def normalize_service(resource: Resource) -> Desired:
    """The canonical spec of a Service manifest (one key per row of fields.FIELDS kept in the spec);
    `Desired.sensitive` names the env entries never printed."""
    normalized, sensitive = normalize_table(FIELDS, resource)
    if any(not c for c in normalized["placement"]["constraints"]):
        raise SpecError("spec.placement.constraints", "empty constraint")
    # run options left undeclared are not hashed: services made before they existed keep their hash
    hashed = {k: v for k, v in normalized.items() if not (k in runfields.KEYS and v is None)}
    return Desired(resource, normalized, spec_hash("Service", hashed, resource.labels), sensitive)


def content_digest(kind: str, name: str, data: bytes) -> str:
    """The hex digest that names a version. A Config's is the sha256 of its bytes. A Secret's is a slow, salted
    derivation (PBKDF2-SHA256): the digest shows in the engine object's name and labels, which anyone allowed to
    list secrets can read, and a plain hash of a short password would let them test guesses quickly."""
    if kind == "Secret":
        salt = f"reconciler/v1 Secret {name}".encode()
        return hashlib.pbkdf2_hmac("sha256", data, salt, SECRET_HASH_ROUNDS).hex()
    return hashlib.sha256(data).hexdigest()


def engine_name(name: str, digest: str) -> str:
    """The engine object's name for one version of a Secret or Config: `<name>-<first 8 hex of sha256>`."""
    return f"{name}-{digest[:HASH_CHARS]}"


def _read(
    path: Path, limit: int, root: Path | None, identities: Identities | None, allow_sensitive: bool = False
) -> bytes:
    """The file's bytes, or with a name ending `.age` its plaintext, decrypted in memory. With the manifest
    directory `root` (planning), regular files only, at most the engine's limit, never through a link out of the
    manifest directory, never from /proc or /sys, and never from a sensitive host path outside the manifest
    directory without `allowSensitive`."""
    encrypted = is_encrypted(path)
    if encrypted and identities is None:
        raise UnsafeFile(str(path), NO_IDENTITY)
    size = limit * 2 + 4096 if encrypted else limit  # armor grows a file by a third
    raw = read_data_file(path, size, root, allow_sensitive) if root is not None else read_bytes(path, size)
    return identities.decrypt(path, raw) if identities is not None and encrypted else raw


def _digest(kind: str, name: str, data: bytes, encrypted: bool, identities: Identities | None) -> str:
    """The version's digest: for a file kept encrypted, a keyed hash (nobody without the identity can test a
    guess against the engine name or the labels it shows)."""
    if encrypted and identities is not None:
        return identities.keyed_hash(data).removeprefix("hmac-sha256:")
    return content_digest(kind, name, data)


def read_data(desired: Desired, identities: Identities | None = None) -> bytes:
    """The bytes of a Secret/Config, read again at apply; refused when they no longer match the plan's hash."""
    path = Path(desired.spec["file"])
    try:
        data = _read(path, MAX_DATA_BYTES[desired.kind], None, identities)  # checked at plan; the hash is the plan's
    except UnsafeFile as exc:
        raise SpecError("spec.file", f"{path} {exc.reason}" if exc.reason == "does not exist" else str(exc)) from None
    if _digest(desired.kind, desired.name, data, is_encrypted(path), identities) != desired.spec["hash"]:
        raise SpecError("spec.file", f"{path} changed since the plan was made; plan again")
    return data


def normalize_data(resource: Resource, identities: Identities | None = None) -> Desired:
    """A Secret or Config: the absolute file, the sha256 of its bytes and the engine name carrying that hash.
    The bytes themselves never enter the spec (plans print specs). A file ending `.age` is decrypted in memory
    with `identities` and hashed with a key of theirs."""
    raw = resource.spec.get("file")
    if not raw:
        raise SpecError("spec.file", "required")
    path = _relative(str(raw), resource.source.path)
    limit = MAX_DATA_BYTES[resource.kind]
    root = manifest_root(resource.source.file, resource.source.path)
    try:
        data = _read(path, limit, root, identities, allow_sensitive=bool(resource.spec.get("allowSensitive")))
    except UnsafeFile as exc:
        if os.path.isdir(path):
            raise SpecError("spec.file", f"{path} is a directory") from None
        if "limit" in exc.reason:
            size = os.stat(path).st_size
            raise SpecError("spec.file", f"{path} holds {size} bytes; the engine takes at most {limit}") from None
        raise SpecError("spec.file", f"{path} {exc.reason}" if exc.reason == "does not exist" else str(exc)) from None
    if not data and resource.kind == "Secret":
        raise SpecError("spec.file", f"{path} is empty; the engine refuses an empty secret")
    if len(data) > limit:
        raise SpecError("spec.file", f"{path} decrypts to {len(data)} bytes; the engine takes at most {limit}")
    digest = _digest(resource.kind, resource.name, data, is_encrypted(path), identities)
    name = engine_name(resource.name, digest)
    if len(name) > SWARM_NAME_MAX:
        raise SpecError(
            "metadata.name",
            f"at most {SWARM_NAME_MAX - HASH_CHARS - 1} characters: the engine name adds -<hash of the content>",
        )
    normalized = {"file": os.path.abspath(path), "hash": digest, "engineName": name}
    # the path is not part of the hash: moving a file with the same bytes is no change
    hashed = {"hash": digest}
    return Desired(resource, normalized, spec_hash(resource.kind, hashed, resource.labels), frozenset({"content"}))
