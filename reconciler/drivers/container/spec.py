"""Container manifests -> one canonical spec: defaults filled, units canonical, env files read.

Pure functions: nothing here touches the engine. The fields and how each is normalized are declared once, in
fields.FIELDS; the same canonical spec feeds the spec hash, the diff and the create call, so they can never disagree
(see docs/containers.md).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from reconciler.core.agefiles import AgeOptions
from reconciler.drivers.container.agemounts import PlaintextDir, place_encrypted
from reconciler.drivers.container.fields import FIELDS
from reconciler.drivers.container.values import LABEL_SENSITIVE_ENV
from reconciler.drivers.engine.fields import normalize_table_keyed
from reconciler.model import Desired, Resource
from reconciler.spechash import spec_hash

ASIDE_SUFFIX = "__reconciler_old"


def normalize_container(
    resource: Resource, age: AgeOptions | None = None, plaintexts: PlaintextDir | None = None
) -> Desired:
    """The canonical spec of a Container manifest (one key per field of FIELDS that is kept in the spec);
    `Desired.sensitive` names the env entries never printed. Env values from `.age` files (opened with `age`)
    enter the spec hash as keyed hashes, so the hash label reveals nothing of them; `.age` bind sources are
    their plaintext's path under `plaintexts` (agemounts.py)."""
    normalized, sensitive, keyed = normalize_table_keyed(FIELDS, resource, age)
    if plaintexts is not None:
        normalized["mounts"] = place_encrypted(normalized["mounts"], resource, age or AgeOptions(), plaintexts)
    hashed = hashed_spec(normalized)
    if keyed:
        hashed["env"] = {**hashed["env"], **keyed}
    return Desired(resource, normalized, spec_hash("Container", hashed, resource.labels), sensitive)


def hashed_spec(spec: Mapping[str, Any]) -> dict[str, Any]:
    """The part of the canonical spec whose change needs a new container (what the spec-hash label covers): the
    REPLACE fields, each in its `hash_form`. In-place fields and what is no engine state are left out, so editing
    them can never recreate a container. A run option left undeclared is left out (`hashed_when_set`), so manifests
    hash as they did before the run options existed."""
    return {
        row.key: row.hash_form(spec[row.key])
        for row in FIELDS
        if row.hashed and not (row.hashed_when_set and spec[row.key] is None)
    }


def sensitive_env_label(desired: Desired) -> dict[str, str]:
    """The sensitive-env label of a container created from `desired` (empty when nothing is sensitive)."""
    names = sorted(p.removeprefix("env.") for p in desired.sensitive if p.startswith("env."))
    return {LABEL_SENSITIVE_ENV: ",".join(names)} if names else {}


def sensitive_values(desired: Desired | None) -> list[str]:
    """The values of `desired`'s sensitive env entries, longest first (so no value is left half-masked)."""
    if desired is None:
        return []
    env = desired.spec.get("env") or {}
    names = [p.removeprefix("env.") for p in desired.sensitive if p.startswith("env.")]
    return sorted({str(env[n]) for n in names if env.get(n)}, key=len, reverse=True)


def scrub(text: str, secrets: Iterable[str]) -> str:
    """`text` with every secret replaced by "(sensitive)", also where it was quoted with escapes."""
    for secret in secrets:
        for form in {secret, secret.encode("unicode_escape").decode(), json.dumps(secret)[1:-1]}:
            text = text.replace(form, "(sensitive)")
    return text


def aside_name(name: str) -> str:
    """The one deterministic name an old container has while its replacement starts (never stacked)."""
    base = name.removesuffix(ASIDE_SUFFIX)
    return base + ASIDE_SUFFIX
