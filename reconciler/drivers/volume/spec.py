"""A Volume document -> its canonical spec: the driver and its options (hashed), and the reclaim policy (not
hashed: changing it never asks for a data-destroying replace)."""

from __future__ import annotations

from reconciler.model import Desired, Resource
from reconciler.spechash import spec_hash

# The volume label recording the reclaim policy it was created with (volume labels cannot change later).
LABEL_RECLAIM = "io.reconciler.reclaim-policy"
# A token set when reconcile creates a volume: it binds the policy record to this volume and no later one of the
# same name. The engine's CreatedAt cannot: for the local driver it is a stat of the data directory, which a
# tmpfs mount or the first container's copy-up changes.
LABEL_INSTANCE = "io.reconciler.volume-instance"


def normalize_volume(resource: Resource) -> Desired:
    spec = resource.spec
    normalized = {
        "driver": spec.get("driver") or "local",
        "driverOpts": {str(k): str(v) for k, v in (spec.get("driverOpts") or {}).items()},
    }
    # reclaimPolicy is a decision of reconcile, not a property of the volume: kept out of the hash so
    # changing it never asks for a (data-destroying) replace.
    policy = spec.get("reclaimPolicy", "Retain")
    full = {**normalized, "reclaimPolicy": policy}
    if spec.get("external"):  # made outside the project (drivers/engine/external.py): nothing else is declared
        full["external"] = True
        normalized = {"external": True}
    return Desired(resource, full, spec_hash("Volume", normalized, resource.labels))
