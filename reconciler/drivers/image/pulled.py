"""Which references this project pulled, per engine. A pulled image cannot carry our labels (its labels come
from the registry), yet deleting it later is allowed only if this project pulled it: so remember it here.

`<state dir>/<project>/pulled-images-<engine id hash>.json`, state dir `$RECONCILER_STATE_DIR`, else
`/var/lib/reconciler` for root, else `$XDG_STATE_HOME/reconciler`. Written atomically (reconciler.statefile);
writers of one project are serialized by the project lock, threads of one process by a mutex.
"""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path
from typing import Any

from reconciler.statefile import read_json, state_dir, write_json


def pulled_path(project: str, engine_id: str) -> Path:
    digest = hashlib.sha256(engine_id.encode()).hexdigest()[:12]
    return state_dir() / project / f"pulled-images-{digest}.json"


class PulledImages:
    """reference -> {"name", "source", "imageId"} for every reference this project pulled on one engine."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def load(self) -> dict[str, dict[str, Any]]:
        data = read_json(self.path)  # unreadable: as if nothing was pulled, so nothing is removed by mistake
        return {str(k): dict(v) for k, v in data.items() if isinstance(v, dict)} if isinstance(data, dict) else {}

    def _write(self, data: dict[str, dict[str, Any]]) -> None:
        write_json(self.path, data)

    def record(self, reference: str, name: str, source: str, image_id: str) -> None:
        with self._lock:
            data = self.load()
            data[reference] = {"name": name, "source": source, "imageId": image_id}
            self._write(data)

    def forget(self, reference: str) -> None:
        with self._lock:
            data = self.load()
            if data.pop(reference, None) is not None:
                self._write(data)
