"""The operations a container's steps run on the engine: the create call built from the canonical spec, in-place
updates, waits for dependencies, and the crash-safe replace (park the old container aside, start the new one, then
remove the old). The driver's `apply` maps each step to one of them."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from reconciler.drivers.container import platform
from reconciler.drivers.container.discarded import refuse_discarded
from reconciler.drivers.container.fields import FIELDS, CreateCall
from reconciler.drivers.container.oneshot import completion_reached
from reconciler.drivers.container.spec import aside_name
from reconciler.drivers.engine import lazy
from reconciler.drivers.engine.common import by_name
from reconciler.errors import EngineFault, PermanentError, ReconcileError, TemporaryError
from reconciler.model import LABEL_PROJECT, Desired, mask

POLL_SECONDS = 0.25
LOG_TAIL_LINES = 20  # a crashed container's last output lines kept with its error (status, notifications)
LOG_LINE_CHARS = 500
# How long a freshly started replacement must keep running before the old container is removed: a command
# that exits at once (bad flag, missing file) is caught here and the old container is restored.
SETTLE_SECONDS = 1.5
SETTLE_POLL_SECONDS = 0.5  # looks at it at 0, 0.5, 1 and 1.5 s: each look is one engine request of the converge


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


def post_update(api: Any, container: str, body: Mapping[str, Any]) -> None:
    """docker-py's update_container knows neither NanoCpus nor PidsLimit: post the documented body directly."""
    result = api._post_json(api._url("/containers/{0}/update", container), data=dict(body))
    answer = api._result(result, True)
    refuse_discarded((answer or {}).get("Warnings") if isinstance(answer, dict) else None, "update")


def health_status(info: Mapping[str, Any]) -> str | None:
    return ((info.get("State") or {}).get("Health") or {}).get("Status")


def wait_for(
    inspect: Callable[[str], Mapping[str, Any]],
    name: str,
    condition: str,
    timeout_ns: int,
    sleep: Callable = time.sleep,
) -> None:
    """Block until container `name` is running (`started`), healthy (`healthy`) or exited 0 (`completed`); raise a
    clear error when it turns unhealthy, exits (non-zero, for `completed`), or the bounded timeout runs out."""
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
            if condition == "completed":
                if completion_reached(name, info):
                    return
                last = state.get("Status") or "unknown"
                if time.monotonic() < deadline:
                    sleep(POLL_SECONDS)
                    continue
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


def settle(
    inspect: Callable[[str], Mapping[str, Any]],
    cid: str,
    seconds: float = SETTLE_SECONDS,
    poll: float = SETTLE_POLL_SECONDS,
    output: Callable[[str], tuple[str, ...]] | None = None,
) -> None:
    """Raise when a just-started container stops (or restarts) within `seconds`.

    A restart policy may have brought a crashed container back between two looks, so each look is compared
    with the first (restart count and start time), not only checked for running: a crash anywhere in the
    window is caught however sparse the looks, which only decide how soon it is reported."""
    deadline = time.monotonic() + seconds
    first: tuple[Any, Any] | None = None
    while True:
        try:
            info = inspect(cid)
        except lazy.NotFound:
            # someone's `docker rm -f` that fell in the window (a container that exits is kept, so this is no
            # crash): as for a kill from outside, watch tries again after a backoff
            raise TemporaryError("the new container was removed from outside right after starting") from None
        state = info.get("State") or {}
        started = (info.get("RestartCount"), state.get("StartedAt"))
        first = first or started
        restarted = started != first or bool(info.get("RestartCount"))  # a new container starts at 0
        if not state.get("Running") or state.get("Restarting") or restarted:
            reason = state.get("Error") or f"exit code {state.get('ExitCode')}"
            if state.get("Running") and not state.get("Restarting"):
                reason = f"it was restarted ({reason})"
            elif _signalled(state):
                # most likely someone's `docker kill`/`docker stop` that fell in the window: nothing says the
                # spec is wrong, so watch tries again after a backoff instead of holding it until it is edited
                raise TemporaryError(f"the new container was stopped by a signal right after starting ({reason})")
            error = PermanentError(f"the new container stopped right after starting ({reason})")
            if output is not None:  # what it said is gone once a replace rolls it back: keep it with the error
                error.log_tail = output(cid)
            raise error
        left = deadline - time.monotonic()
        if left <= 0:
            return
        time.sleep(min(poll, left))


def _signalled(state: Mapping[str, Any]) -> bool:
    """Ended by SIGKILL or SIGTERM (exit code 128 + signal) and not by the kernel's OOM killer (a memory limit
    too small for the command is the spec's fault)."""
    return not state.get("Running") and state.get("ExitCode") in (137, 143) and not state.get("OOMKilled")


class Replacer:
    """The replace algorithm, idempotent and safe to rerun after a crash at any step; the plan's steps call it:

    1. `stop_old`, `park`: stop the old container and rename it to `<name>__reconciler_old` (it may hold a host
       port or a static IP the new one needs); a container already parked there is the old one of an
       interrupted run;
    2. `guarded(create)`, `guarded(start)`: create and start the new one (after its dependencies are up) and let
       it settle;
    3. `drop_old`: only then remove the old one.
    If a step of 1 or 2 fails (an engine error at the stop or the rename, a failed create, start or settle):
    remove the new one, give the old one its name back and start it if it was running, checking the engine's
    state before each of these and trying again a few times, so a second engine error does not leave the
    service down; then raise, naming the step. If 3 fails, the new container runs and the old one stays parked
    (the next pass removes it as a leftover). Either the old container runs under its name or the new one does.
    """

    RESTORE_ATTEMPTS = 4
    RESTORE_DELAY = 0.5

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
        self._guard("stop", lambda: self.api.stop(self.old_id, timeout=self.stop_timeout))
        if self.parked:
            self.log.info("container.parked", name=self.name, aside=self.aside)

    def park(self) -> None:
        def park() -> None:
            if self._stale is not None:
                self.api.remove_container(self._stale, v=False, force=True)
            self._rename(self.old_id, self.aside)

        self._guard("rename", park)
        self.log.info("container.parked", name=self.name, aside=self.aside)

    def guarded(self, step: Callable[[], object]) -> Callable[[], None]:
        """`step` of the new container; should it fail, the old one is restored before the error is raised."""
        return lambda: self._guard(None, step)

    def drop_old(self) -> None:
        try:
            self.api.remove_container(self.old_id, v=False, force=True)
        except Exception as exc:
            # no rollback: the new container runs, and a fresh plan sees the parked one (a leftover to remove)
            raise _failure(
                f"container {self.name}: replace failed at its remove-old step, the new container runs "
                f"and the old one stays parked as {self.aside} until the next apply removes it",
                exc,
                replannable=True,
            ) from None
        self.log.info("container.replaced", name=self.name)

    def _guard(self, step: str | None, action: Callable[[], object]) -> None:
        """Run `action`; on failure restore the old container and raise naming the step (None: a step of the new
        container, told apart by what the engine has under the name)."""
        try:
            action()
        except Exception as exc:
            said = step or self._failed_step(self.name, self.old_id)
            outcome = self._restore(self.name, self.old_id, self.old_running)
            raise _failure(f"container {self.name}: replace failed at its {said} step, {outcome}", exc) from None

    def _rename(self, cid: str, new_name: str) -> None:
        """Rename, and after an engine error look before trying again: a rename whose answer was lost may have
        been done (the engine client never repeats a rename by itself)."""
        for attempt in range(self.RESTORE_ATTEMPTS):
            try:
                self.api.rename(cid, new_name)
                return
            except (lazy.APIError, lazy.requests.RequestException) as exc:
                if isinstance(exc, lazy.APIError) and (exc.status_code or 0) < 500:
                    raise
                if attempt + 1 == self.RESTORE_ATTEMPTS:
                    raise
                time.sleep(self.RESTORE_DELAY * (attempt + 1))
                try:
                    if str(self.api.inspect_container(cid).get("Name") or "").lstrip("/") == new_name:
                        return
                except (lazy.APIError, lazy.requests.RequestException):
                    pass

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

    def _failed_step(self, name: str, old_id: str) -> str:
        """Which step of the new container's creation failed, read from what the engine has under `name`."""
        try:
            new = by_name(self.api.inspect_container)(name)
        except Exception:  # NotFound, or the engine failing again: the create is the best guess
            return "create"
        if new["Id"] == old_id:
            return "create"
        started = str((new.get("State") or {}).get("StartedAt") or "")
        return "start" if not started or started.startswith("0001-") else "settle"

    def _restore(self, name: str, old_id: str, old_running: bool) -> str:
        """Put the old container back (see `_roll_back`), trying again after engine errors; say how it went."""
        last: Exception | None = None
        for attempt in range(self.RESTORE_ATTEMPTS):
            if attempt:
                time.sleep(self.RESTORE_DELAY * attempt)
            try:
                self._roll_back(name, old_id, old_running)
            except PermanentError:
                raise
            except Exception as exc:  # an engine error (5xx, a dropped connection): look again and retry
                last = exc
                self.log.warning("container.roll_back_retry", name=name, attempt=attempt + 1, error=_said(exc))
                continue
            return f"the old container was restored{' and restarted' if old_running else ''}"
        return (
            f"and restoring the old container failed too ({_said(last)}); it is left as it is (the next apply "
            "restores it)"
        )

    def _roll_back(self, name: str, old_id: str, old_running: bool) -> None:
        """Idempotent: each action only when the engine's state says it is still needed."""
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
        old = self.api.inspect_container(old_id)
        if str(old.get("Name") or "").lstrip("/") != self.restore_as:
            self._rename(old_id, self.restore_as)
        if old_running and not (old.get("State") or {}).get("Running"):
            self.api.start(old_id)
        self.log.warning("container.rolled_back", name=name)


def _said(exc: BaseException | None) -> str:
    if exc is None:
        return "unknown error"
    if isinstance(exc, lazy.APIError):
        text = exc.explanation
        return str(text.decode(errors="replace") if isinstance(text, bytes) else text or exc)
    return str(exc) if isinstance(exc, ReconcileError) else repr(exc)


def _failure(what: str, exc: BaseException, replannable: bool = False) -> ReconcileError:
    """`what` went wrong because of `exc`: temporary when the cause was (an engine 5xx, a lost connection, a
    TemporaryError), so watch retries soon; permanent otherwise. A rolled-back replace is an outcome, never
    planned again in the same apply (a fresh plan would find the old spec and replace it again, and a success
    then would hide the failure); `replannable`: a step with no rollback, whose fault a fresh plan sees."""
    fault = (
        (isinstance(exc, ReconcileError) and exc.replannable)
        or (isinstance(exc, lazy.APIError) and (exc.status_code or 0) >= 500)
        or isinstance(exc, lazy.requests.RequestException)
    )
    temporary = fault or (isinstance(exc, ReconcileError) and exc.retryable)
    text = f"{what}: {_said(exc)}"
    error = (
        (EngineFault(text) if replannable and fault else TemporaryError(text)) if temporary else PermanentError(text)
    )
    if isinstance(exc, ReconcileError):
        error.log_tail = exc.log_tail
    return error


def output_tail(api: Any, cid: str, secrets: Iterable[str], lines: int = LOG_TAIL_LINES) -> tuple[str, ...]:
    """The last `lines` lines container `cid` printed (stdout and stderr), `secrets` masked; none when the engine
    cannot say (a logging driver without read-back, the container gone)."""
    try:
        raw = api.logs(cid, stdout=True, stderr=True, tail=lines)
    except Exception:  # the error being reported matters more than its context
        return ()
    text = raw.decode(errors="replace") if isinstance(raw, bytes) else str(raw)
    return tuple(mask(line, secrets)[:LOG_LINE_CHARS] for line in text.splitlines()[-lines:])


def _project_of(info: Mapping[str, Any]) -> str | None:
    return ((info.get("Config") or {}).get("Labels") or {}).get(LABEL_PROJECT)


def ensure_image(api: Any, reference: str, wanted: str | None = None) -> None:
    """Pull `reference` when the engine does not have it (an Image manifest, when declared, ran before), or has it
    for another platform than the declared `wanted` one: pulled for that platform (as `docker run --platform`
    does), since the engine's create refuses a local image of another platform and does not pull."""
    try:
        found = api.inspect_image(reference)
        if wanted is None or platform.matches(wanted, platform.of_image(found)):
            return
    except lazy.ImageNotFound:
        pass
    repository, tag = lazy.docker.utils.parse_repository_tag(reference)
    api.pull(repository, tag=tag or "latest", platform=wanted)
