"""The versioned hash of a normalized spec, stamped on objects as `io.reconciler.spec-hash`."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

# Bump when normalization changes what a spec hashes to. Objects stamped with another version are compared
# field by field instead of by hash, so an upgrade never recreates what did not really change.
NORMALIZER_VERSION = 1


def canonical_json(value: Any) -> str:
    """Key order and whitespace independent JSON text of `value`."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def spec_hash(kind: str, spec: Mapping[str, Any], labels: Mapping[str, str] | None = None) -> str:
    """`v<version>-<sha256 prefix>` of the canonical spec (and the user's labels, which live on the object)."""
    payload = canonical_json({"kind": kind, "spec": spec, "labels": dict(labels or {})})
    digest = hashlib.sha256(payload.encode()).hexdigest()[:32]
    return f"v{NORMALIZER_VERSION}-{digest}"


def hash_version(value: str | None) -> int | None:
    """The normalizer version a stamped hash was made with, or None when it is not one of ours."""
    if not value or not value.startswith("v") or "-" not in value:
        return None
    head = value[1:].split("-", 1)[0]
    return int(head) if head.isdigit() else None
