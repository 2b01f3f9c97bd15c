"""Reclaim policies changed after a volume was created. Volume labels cannot change, and the manifest is gone
when a prune decides, so a changed policy is recorded here: `<state dir>/<project>/volume-policies.json`
(state dir as for images: `$RECONCILER_STATE_DIR`, else /var/lib/reconciler for root).

Entries are keyed by volume name and bound to the volume they were made for, so a record never outlives it: by the
instance label reconcile sets when it creates a volume, else (an adopted Compose volume, a volume created before
that label) by the engine's CreatedAt. A volume created with Delete is recorded too, and its label alone never
allows a removal: when the record is missing (another state dir, a wiped /var/lib) or the file cannot be read,
the volume counts as Retain: unsure means keep the data. Applying its manifest again records the policy anew."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from reconciler.drivers.volume.spec import LABEL_INSTANCE
from reconciler.statefile import read_json, state_dir, write_json

RETAIN, DELETE = "Retain", "Delete"


class VolumePolicies:
    def __init__(self, project: str, engine_key: str = "") -> None:
        suffix = f"-{engine_key}" if engine_key else ""  # a fleet's Hosts each have their own volumes
        self.path = state_dir() / project / f"volume-policies{suffix}.json"
        self._lock = threading.Lock()

    def load(self) -> dict[str, dict[str, Any]] | None:
        """name -> {"policy", "createdAt"}; None when the file exists but cannot be read."""
        if not self.path.exists():
            return {}
        data = read_json(self.path)
        return {str(k): v for k, v in data.items() if isinstance(v, dict)} if isinstance(data, dict) else None

    def effective(self, volume: Mapping[str, Any], records: dict[str, dict[str, Any]] | None, label: str) -> str:
        """The policy in force for an engine volume: its recorded change, else its label."""
        if records is None:
            return RETAIN
        record = records.get(volume["Name"])
        if record and record == {**record, **_identity(volume)}:
            return str(record.get("policy", RETAIN))
        return RETAIN if label == DELETE else label

    def record(self, name: str, volume: Mapping[str, Any], policy: str) -> None:
        """Record `policy` for the engine volume `volume` (an inspect or create answer) named `name`."""
        with self._lock:
            records = self.load()
            if records is None:
                raise OSError(f"{self.path} cannot be read; not overwriting it")
            records[name] = {"policy": policy, **_identity(volume)}
            self._write(records)

    def forget(self, name: str) -> None:
        with self._lock:
            records = self.load()
            if records and name in records:
                del records[name]
                self._write(records)

    def _write(self, records: dict[str, dict[str, Any]]) -> None:
        write_json(self.path, records)


def _identity(volume: Mapping[str, Any]) -> dict[str, Any]:
    instance = (volume.get("Labels") or {}).get(LABEL_INSTANCE)
    return {"instance": instance} if instance else {"createdAt": volume.get("CreatedAt")}
