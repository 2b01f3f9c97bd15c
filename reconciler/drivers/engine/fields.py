"""What the field tables of Container (container/fields.py) and Service (swarm/fields.py) share.

Both kinds run a process from an image, so several manifest fields mean the same thing in both (image, command,
entrypoint, env, user, workingDir, hostname): each is declared once here as a `Shared` row, the manifest half
of a row (its key, the manifest keys it is made from, how it is normalized), and each table builds its own row
from it with the engine half (how that kind reads it back, writes it and compares it), because a container's
inspect document and a service's ServiceSpec spell the same value differently (`Cmd` vs `Args`).

Fields whose canonical value differs between the kinds are not shared: mounts (a container's bind mounts resolve
through the host-path rules and carry `allowSensitive`), resources (a service has reservations and no swap),
healthcheck (a container's undeclared timings are the engine defaults, a service's stay unset), ports and
networks (publish modes, static addresses), restartPolicy (different engine policies).

One env-masking rule for both (`shown_env` and `env_changes`): an observed env value is printed only when the
manifest declares that name in plain `env` now (not sensitive, not recorded as sensitive when the object was
made) or it is still a public default (the image's own value, where the kind knows it). Anything else may have
come from an env file or a sensitiveEnv entry since removed from the manifest: never shown.

Shared by the drivers that speak to the Docker engine, which may not import one another.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from reconciler.core.agefiles import AgeOptions, is_encrypted
from reconciler.core.safeio import manifest_root, tree_of
from reconciler.drivers.engine.values import canonical_reference, clean_path, command_line, read_env_file
from reconciler.model import Action, Desired, FieldChange, Resource


@dataclass
class Normalizing:
    """A manifest being normalized: its `spec`, the manifest file (relative paths), and the paths (`env.NAME`)
    whose values must never be shown, which normalizers add to."""

    spec: Mapping[str, Any]
    manifest: Path
    sensitive: set[str] = field(default_factory=set)
    root: Path | None = None  # the manifest directory: env files written inside it may not link out of it
    age: AgeOptions = field(default_factory=AgeOptions)  # the identity opening `.age` env files (issue 22)
    # env names whose value came from an encrypted file -> its keyed hash (what the spec hash covers instead)
    keyed: dict[str, str] = field(default_factory=dict)


Normalizer = Callable[[Normalizing], Any]


def normalize_table(rows: Iterable[Any], resource: Resource) -> tuple[dict[str, Any], frozenset[str]]:
    """A manifest through a field table: the canonical value of each row that has a normalizer, in table order
    (rows marked `normalize_first` run first: an env file's problem is reported before the others), and the
    paths whose values are never shown."""
    normalized, sensitive, _ = normalize_table_keyed(rows, resource)
    return normalized, sensitive


def normalize_table_keyed(
    rows: Iterable[Any], resource: Resource, age: AgeOptions | None = None
) -> tuple[dict[str, Any], frozenset[str], dict[str, str]]:
    """`normalize_table` with `.age` env files opened by `age` (issue 22), and the keyed hashes of their values
    (env name -> hash), which the spec hash covers instead of the values."""
    normalizing = Normalizing(
        resource.spec,
        resource.source.path,
        root=manifest_root(resource.source.file, resource.source.path),
        age=age or AgeOptions(),
    )
    kept = [row for row in rows if row.normalize is not None]
    values = {row.key: row.normalize(normalizing) for row in sorted(kept, key=lambda row: not row.normalize_first)}
    return {row.key: values[row.key] for row in kept}, frozenset(normalizing.sensitive), normalizing.keyed


@dataclass(frozen=True)
class Shared:
    """The manifest half of a field with one meaning in both kinds; `columns()` are the keyword arguments each
    table's row class takes for it."""

    key: str
    manifest: tuple[str, ...]
    normalize: Normalizer
    # normalized before the other fields (env files are read first, so a bad one is reported first)
    normalize_first: bool = False

    def columns(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "manifest": self.manifest,
            "normalize": self.normalize,
            "normalize_first": self.normalize_first,
        }


def normalize_env(n: Normalizing) -> dict[str, str]:
    """envFiles in order, then `env` on top (as Compose does), sorted by name; env-file values and sensitiveEnv
    names are sensitive (never shown). Files ending `.age` are decrypted with `n.age`; their values' keyed hashes
    go to `n.keyed` for the spec hash."""
    env: dict[str, str] = {}
    secret: set[str] = set()
    for i, name in enumerate(n.spec.get("envFiles") or []):
        path = Path(name)
        if not path.is_absolute():
            path = n.manifest.parent / path
        found = read_env_file(path, f"spec.envFiles.{i}", tree_of(path, n.root), n.age)
        env.update(found)
        secret.update(found)
        identities = n.age.identities() if is_encrypted(path) else None
        for key, value in found.items():
            if identities is not None:
                n.keyed[key] = identities.keyed_hash(value.encode())
            else:
                n.keyed.pop(key, None)
    plain = {str(k): str(v) for k, v in (n.spec.get("env") or {}).items()}
    for key in plain:
        n.keyed.pop(key, None)
    env.update(plain)
    secret.update(n.spec.get("sensitiveEnv") or [])
    n.sensitive.update(f"env.{name}" for name in secret)
    return dict(sorted(env.items()))


IMAGE = Shared("image", ("spec.image",), lambda n: canonical_reference(n.spec["image"]))
COMMAND = Shared("command", ("spec.command",), lambda n: command_line(n.spec.get("command")))
ENTRYPOINT = Shared("entrypoint", ("spec.entrypoint",), lambda n: command_line(n.spec.get("entrypoint")))
ENV = Shared("env", ("spec.env", "spec.envFiles", "spec.sensitiveEnv"), normalize_env, normalize_first=True)
# the schema allows no empty user, path or hostname: unset is None in both kinds
USER = Shared("user", ("spec.user",), lambda n: n.spec.get("user") or None)
WORKING_DIR = Shared("workingDir", ("spec.workingDir",), lambda n: clean_path(n.spec.get("workingDir")) or None)
HOSTNAME = Shared("hostname", ("spec.hostname",), lambda n: n.spec.get("hostname") or None)


# --- env: one masking rule ----------------------------------------------------------------------------------------


def shown_env(
    desired: Desired,
    have: Mapping[str, str],
    recorded: frozenset[str] = frozenset(),
    public: Mapping[str, str] | None = None,
) -> frozenset[str]:
    """The env names whose OBSERVED value (`have`) may be printed: declared in plain `env` now (not sensitive),
    or still the `public` default (the image's own value); never a name `recorded` as sensitive when the object
    was made."""
    plain = {str(k) for k in desired.resource.spec.get("env") or {}}
    plain -= {p.removeprefix("env.") for p in desired.sensitive}
    public = public or {}
    return frozenset(k for k in have if k not in recorded and (k in plain or (k in public and public[k] == have[k])))


def env_changes(
    want: Mapping[str, str],
    have: Mapping[str, str] | None,
    desired: Desired,
    shown: frozenset[str],
    action: Action,
    note: str = "",
) -> list[FieldChange]:
    """One change per differing name (`env.NAME`); sensitive (both values masked) when the declared value is
    sensitive or the observed one is not in `shown` (see shown_env)."""
    have = have or {}
    changes = []
    for key in sorted(set(want) | set(have)):
        if want.get(key) != have.get(key):
            path = f"env.{key}"
            secret = path in desired.sensitive or (key in have and key not in shown)
            changes.append(FieldChange(path, have.get(key), want.get(key), action, sensitive=secret, note=note))
    return changes
