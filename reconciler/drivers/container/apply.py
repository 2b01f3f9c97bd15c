"""Container changes on the engine: the create call built from the canonical spec, in-place updates, waits for
dependencies, and the crash-safe replace (park the old container aside, start the new one, then remove the old)."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from reconciler.drivers.container.fields import FIELDS, CreateCall, in_place_body
from reconciler.drivers.container.inplace import reconnect as reconnect
from reconciler.drivers.container.spec import aside_name
from reconciler.drivers.engine import lazy
from reconciler.drivers.engine.common import by_name
from reconciler.errors import PermanentError, ReconcileError
from reconciler.model import LABEL_PROJECT, Desired

POLL_SECONDS = 0.25
# How long a freshly started replacement must keep running before the old container is removed: a command
# that exits at once (bad flag, missing file) is caught here and the old container is restored.
SETTLE_SECONDS = 1.5


def create_config(api: Any, desired: Desired, labels: Mapping[str, str]) -> dict[str, Any]:
    """Keyword arguments of `APIClient.create_container` for the canonical spec (one source for hash and engine):
    each field's row writes its part (`Field.create`)."""
    spec = desired.spec
    call = CreateCall(api, spec, labels)
    for row in FIELDS:
        if row.create is not None:
            row.create(spec.get(row.key), call)
    host_config = api.create_host_config(**{k: v for k, v in call.host.items() if v is not None})
    host_config.update(call.host_raw)
    kwargs = {"name": desired.name, **call.kwargs, "host_config": host_config, "detach": True}
    return {k: v for k, v in kwargs.items() if v is not None}


def update_body(spec: Mapping[str, Any], fields: list[str], restart: bool) -> dict[str, Any]:
    """The `POST /containers/{id}/update` body for the changed resource names (and the restart policy)."""
    return in_place_body(spec, {"resources": fields, **({"restartPolicy": []} if restart else {})})


def post_update(api: Any, container: str, body: Mapping[str, Any]) -> None:
    """docker-py's update_container knows neither NanoCpus nor PidsLimit: post the documented body directly."""
    result = api._post_json(api._url("/containers/{0}/update", container), data=dict(body))
    api._result(result, True)


def health_status(info: Mapping[str, Any]) -> str | None:
    return ((info.get("State") or {}).get("Health") or {}).get("Status")


def wait_for(
    inspect: Callable[[str], Mapping[str, Any]],
    name: str,
    condition: str,
    timeout_ns: int,
    sleep: Callable = time.sleep,
) -> None:
    """Block until container `name` is running (`started`) or healthy (`healthy`); raise a clear error when it
    turns unhealthy, exits, or the bounded timeout runs out."""
    deadline = time.monotonic() + timeout_ns / 1e9
    last = "not found"
    while True:
        try:
            info = inspect(name)
        except lazy.NotFound:
            info = None
        if info is not None:
            state = info.get("State") or {}
            health = health_status(info)
            if condition == "started" and state.get("Running"):
                return
            if condition == "healthy":
                if state.get("Running") and health == "healthy":
                    return
                if health is None and state.get("Running"):
                    raise PermanentError(f"dependency {name} has no healthcheck; it can never become healthy")
                if health == "unhealthy":
                    log = ((state.get("Health") or {}).get("Log") or [{}])[-1]
                    output = str(log.get("Output") or "").strip().splitlines()[-1:] or [""]
                    raise PermanentError(f"dependency {name} is unhealthy (last probe: {output[0][:200]!r})")
            if state.get("Status") in ("exited", "dead") and not state.get("Restarting"):
                raise PermanentError(f"dependency {name} is not running (exit code {state.get('ExitCode')})")
            last = health or state.get("Status") or "unknown"
        if time.monotonic() >= deadline:
            raise PermanentError(
                f"timed out after {timeout_ns / 1e9:g}s waiting for dependency {name} to be {condition} "
                f"(last seen: {last})"
            )
        sleep(POLL_SECONDS)


def settle(inspect: Callable[[str], Mapping[str, Any]], cid: str, seconds: float = SETTLE_SECONDS) -> None:
    """Raise when a just-started container stops (or restarts) within `seconds`."""
    deadline = time.monotonic() + seconds
    while True:
        state = inspect(cid).get("State") or {}
        if not state.get("Running") or state.get("Restarting"):
            reason = state.get("Error") or f"exit code {state.get('ExitCode')}"
            raise PermanentError(f"the new container stopped right after starting ({reason})")
        if time.monotonic() >= deadline:
            return
        time.sleep(POLL_SECONDS)


class Replacer:
    """The replace algorithm, idempotent and safe to rerun after a crash at any step; the plan's steps call it:

    1. `stop_old`, `park`: stop the old container and rename it to `<name>__reconciler_old` (it may hold a host
       port or a static IP the new one needs); a container already parked there is the old one of an
       interrupted run;
    2. `guarded(create)`, `guarded(start)`: create and start the new one (after its dependencies are up);
    3. `drop_old`: only then remove the old one.
    If 2 fails: remove the new one, give the old one its name back, start it if it was running, and raise.
    """

    def __init__(
        self,
        api: Any,
        log: Any,
        project: str,
        name: str,
        old_id: str,
        old_running: bool,
        stop_timeout: int,
        parked: bool,
        restore_as: str | None = None,
    ) -> None:
        self.api = api
        self.log = log
        self.project = project  # containers under the aside or primary name of another owner are never removed
        self.name, self.old_id, self.old_running = name, old_id, old_running
        self.stop_timeout, self.parked = stop_timeout, parked
        self.aside = aside_name(name)
        self.restore_as = restore_as or name  # the name a rolled-back old container gets back
        self._stale: str | None = None

    def stop_old(self) -> None:
        if not self.parked:
            self._stale = self._stale_aside(self.aside, self.old_id)  # before the stop: a refusal leaves it serving
        self.api.stop(self.old_id, timeout=self.stop_timeout)
        if self.parked:
            self.log.info("container.parked", name=self.name, aside=self.aside)

    def park(self) -> None:
        if self._stale is not None:
            self.api.remove_container(self._stale, v=False, force=True)
        self.api.rename(self.old_id, self.aside)
        self.log.info("container.parked", name=self.name, aside=self.aside)

    def guarded(self, step: Callable[[], object]) -> Callable[[], None]:
        """`step` of the new container; should it fail, the old one is restored before the error is raised."""

        def run() -> None:
            try:
                step()
            except Exception as exc:
                self._roll_back(self.name, self.old_id, self.old_running, self.stop_timeout)
                reason = str(exc) if isinstance(exc, ReconcileError | lazy.APIError) else repr(exc)
                raise PermanentError(
                    f"container {self.name}: replace failed, the old container was restored"
                    f"{' and restarted' if self.old_running else ''}: {reason}"
                ) from None

        return run

    def drop_old(self) -> None:
        self.api.remove_container(self.old_id, v=False, force=True)
        self.log.info("container.replaced", name=self.name)

    def _stale_aside(self, aside: str, old_id: str) -> str | None:
        """The ID of a leftover of this project under the aside name (the primary exists, so it is an older
        one, to be removed), or None; a container of another owner there stops the replace untouched."""
        try:
            info = by_name(self.api.inspect_container)(aside)
        except lazy.NotFound:
            return None
        if info["Id"] == old_id:
            return None
        if _project_of(info) != self.project:
            raise PermanentError(
                f"container {aside} is in the way of the replace (the old container is renamed to it) and this "
                "project does not own it; rename or remove it"
            )
        return info["Id"]

    def _roll_back(self, name: str, old_id: str, old_running: bool, stop_timeout: int) -> None:
        try:
            new = by_name(self.api.inspect_container)(name)
        except lazy.NotFound:
            new = None
        if new is not None and new["Id"] != old_id:
            if _project_of(new) != self.project:
                raise PermanentError(
                    f"container {name}: replace failed and a container this project does not own took the name; "
                    f"the old container stays as {aside_name(name)}"
                )
            self.api.remove_container(new["Id"], v=False, force=True)
        self.api.rename(old_id, self.restore_as)
        if old_running:
            self.api.start(old_id)
        self.log.warning("container.rolled_back", name=name)


def _project_of(info: Mapping[str, Any]) -> str | None:
    return ((info.get("Config") or {}).get("Labels") or {}).get(LABEL_PROJECT)


def ensure_image(api: Any, reference: str) -> None:
    """Pull `reference` when the engine does not have it (an Image manifest, when declared, ran before)."""
    try:
        api.inspect_image(reference)
        return
    except lazy.ImageNotFound:
        pass
    repository, tag = lazy.docker.utils.parse_repository_tag(reference)
    api.pull(repository, tag=tag or "latest")
