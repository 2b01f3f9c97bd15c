"""Which references this project pulled, per engine. A pulled image cannot carry our labels (its labels come
from the registry), yet deleting it later is allowed only if this project pulled it: so remember it here.

`<state dir>/<project>/pulled-images-<engine id hash>.json`, state dir `$RECONCILER_STATE_DIR`, else
`/var/lib/reconciler` for root, else `$XDG_STATE_HOME/reconciler`. Written atomically (temp file + rename);
writers of one project are serialized by the project lock, threads of one process by a mutex.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import threading
from pathlib import Path
from typing import Any

STATE_DIR_ENV = "RECONCILER_STATE_DIR"


def state_dir() -> Path:
    configured = os.environ.get(STATE_DIR_ENV)
    if configured:
        return Path(configured)
    if os.geteuid() == 0:
        return Path("/var/lib/reconciler")
    return Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state") / "reconciler"


def pulled_path(project: str, engine_id: str) -> Path:
    digest = hashlib.sha256(engine_id.encode()).hexdigest()[:12]
    return state_dir() / project / f"pulled-images-{digest}.json"


class PulledImages:
    """reference -> {"name", "source", "imageId"} for every reference this project pulled on one engine."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def load(self) -> dict[str, dict[str, Any]]:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError):
            return {}  # unreadable: behave as if nothing was pulled, so nothing is ever removed by mistake
        return {str(k): dict(v) for k, v in data.items() if isinstance(v, dict)} if isinstance(data, dict) else {}

    def _write(self, data: dict[str, dict[str, Any]]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".pulled-", dir=self.path.parent)
        try:
            with os.fdopen(fd, "w") as fh:
                json.dump(data, fh, indent=1, sort_keys=True)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)  # readers never see half a file
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

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
