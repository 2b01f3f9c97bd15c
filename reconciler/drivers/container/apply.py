"""Container changes on the engine: the create call built from the canonical spec, in-place updates, waits for
dependencies, and the crash-safe replace (park the old container aside, start the new one, then remove the old)."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

import requests
from docker.errors import APIError, ImageNotFound, NotFound
from docker.types import Mount
from docker.utils import parse_repository_tag

from reconciler.drivers.container.spec import aside_name
from reconciler.drivers.engine.common import by_name
from reconciler.errors import PermanentError, ReconcileError, TemporaryError
from reconciler.model import LABEL_PROJECT, Desired

POLL_SECONDS = 0.25
# How long a freshly started replacement must keep running before the old container is removed: a command
# that exits at once (bad flag, missing file) is caught here and the old container is restored.
SETTLE_SECONDS = 1.5


def create_config(api: Any, desired: Desired, labels: Mapping[str, str]) -> dict[str, Any]:
    """Keyword arguments of `APIClient.create_container` for the canonical spec (one source for hash and engine)."""
    spec = desired.spec
    res = spec["resources"]
    mounts = []
    for m in spec["mounts"]:
        if m["type"] == "tmpfs":
            mounts.append(Mount(m["target"], None, type="tmpfs", tmpfs_size=m["size"], tmpfs_mode=m["mode"]))
        else:
            mounts.append(Mount(m["target"], m["source"], type=m["type"], read_only=m["readOnly"]))
    mode = spec["networkMode"]
    first = spec["networks"][0] if spec["networks"] else None
    restart = spec["restartPolicy"]
    host_kwargs: dict[str, Any] = {
        "mounts": mounts or None,
        "network_mode": mode if mode is not None else first["name"],  # type: ignore[index]
        "restart_policy": {"Name": restart["name"], "MaximumRetryCount": restart["maximumRetryCount"]}
        if restart["name"] != "no"
        else None,
        "cap_add": spec["capAdd"] or None,
        "cap_drop": spec["capDrop"] or None,
        "privileged": spec["privileged"],
        "read_only": spec["readOnlyRootfs"],
        "mem_limit": res["memory"],
        "memswap_limit": res["memorySwap"],
        "mem_reservation": res["memoryReservation"],
        "nano_cpus": res["cpus"],
        "cpu_shares": res["cpuShares"],
        "pids_limit": res["pidsLimit"],
    }
    host_config = api.create_host_config(**{k: v for k, v in host_kwargs.items() if v is not None})
    if spec["ports"]:
        bindings: dict[str, list[dict[str, str]]] = {}
        for p in spec["ports"]:
            bindings.setdefault(f"{p['containerPort']}/{p['protocol']}", []).append(
                {"HostIp": p["hostIP"], "HostPort": str(p["hostPort"]) if p["hostPort"] is not None else ""}
            )
        host_config["PortBindings"] = bindings
    kwargs: dict[str, Any] = {
        "image": spec["image"],
        "name": desired.name,
        "command": spec["command"],
        "entrypoint": spec["entrypoint"],
        "environment": [f"{k}={v}" for k, v in spec["env"].items()] or None,
        "labels": dict(labels),
        "stop_timeout": spec["stopTimeout"],
        "host_config": host_config,
        "ports": [(p["containerPort"], p["protocol"]) for p in spec["ports"]] or None,
        "hostname": spec["hostname"],
        "user": spec["user"],
        "working_dir": spec["workingDir"],
        "detach": True,
    }
    health = spec["healthcheck"]
    if health is not None:
        kwargs["healthcheck"] = (
            {"test": ["NONE"]}
            if health["test"] == ["NONE"]
            else {
                "test": health["test"],
                "interval": health["interval"],
                "timeout": health["timeout"],
                "start_period": health["startPeriod"],
                "retries": health["retries"],
            }
        )
    if first is not None and mode is None:
        endpoint = api.create_endpoint_config(aliases=first["aliases"] or None, ipv4_address=first["ipv4Address"])
        kwargs["networking_config"] = api.create_networking_config({first["name"]: endpoint})
    return {k: v for k, v in kwargs.items() if v is not None}


def update_body(spec: Mapping[str, Any], fields: list[str], restart: bool) -> dict[str, Any]:
    """The `POST /containers/{id}/update` body for the changed resource names (and the restart policy)."""
    res = spec["resources"]
    body: dict[str, Any] = {}
    if "memory" in fields or "memorySwap" in fields:
        if res["memory"] is not None:
            body["Memory"] = res["memory"]
            # sent together: raising memory above the current swap limit fails otherwise
            body["MemorySwap"] = res["memorySwap"] if res["memorySwap"] is not None else 2 * res["memory"]
    engine_names = {"memoryReservation": "MemoryReservation", "cpus": "NanoCpus", "cpuShares": "CpuShares"}
    for name, engine in engine_names.items():
        if name in fields and res[name] is not None:
            body[engine] = res[name]
    if "pidsLimit" in fields:
        body["PidsLimit"] = res["pidsLimit"] if res["pidsLimit"] is not None else -1  # -1: unlimited
    if restart:
        policy = spec["restartPolicy"]
        body["RestartPolicy"] = {"Name": "" if policy["name"] == "no" else policy["name"]}
        if policy["name"] == "on-failure":
            body["RestartPolicy"]["MaximumRetryCount"] = policy["maximumRetryCount"]
    return body


def post_update(api: Any, container: str, body: Mapping[str, Any]) -> None:
    """docker-py's update_container knows neither NanoCpus nor PidsLimit: post the documented body directly."""
    result = api._post_json(api._url("/containers/{0}/update", container), data=dict(body))
    api._result(result, True)


def _connect(api: Any, cid: str, network: str, how: Mapping[str, Any]) -> None:
    api.connect_container_to_network(cid, network, aliases=how["aliases"] or None, ipv4_address=how["ipv4Address"])


def reconnect(
    api: Any,
    log: Any,
    name: str,
    cid: str,
    network: str,
    previous: Mapping[str, Any] | None,
    wanted: Mapping[str, Any] | None,
) -> None:
    """Bring one network membership from `previous` (None: not connected) to `wanted` (None: disconnected).

    A disconnect the engine answers with "is not connected" is already done (a replaced network took the
    endpoint with it). When the connect fails after a disconnect, the container is connected again with its
    previous settings before the error is raised, so a failed change never leaves it off the network.
    """
    disconnected = False
    if previous is not None:
        try:
            api.disconnect_container_from_network(cid, network, force=True)
            disconnected = True
        except APIError as exc:
            if "is not connected" not in str(exc):
                raise
        log.info("container.disconnected", name=name, network=network)
    if wanted is None:
        return
    try:
        _connect(api, cid, network, wanted)
    except APIError as exc:
        if disconnected and previous is not None:
            try:
                _connect(api, cid, network, previous)
                log.warning("container.reconnect_restored", name=name, network=network, error=str(exc))
            except APIError as again:
                log.error("container.reconnect_lost", name=name, network=network, error=str(again))
        raise
    log.info("container.connected", name=name, network=network)


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
        except NotFound:
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
    """The replace algorithm, idempotent and safe to rerun after a crash at any step:

    1. stop the old container and rename it to `<name>__reconciler_old` (it may hold a host port or a static IP
       the new one needs); a container already parked there is the old one of an interrupted run;
    2. create and start the new one (after its dependencies are up) and let it settle;
    3. only then remove the old one.
    If a step of 1 or 2 fails (an engine error at the stop, the rename, the create, the start or the settle):
    remove the new one, give the old one its name back and start it if it was running, checking the engine's
    state before each of these and trying again a few times, so a second engine error does not leave the
    service down; then raise, naming the step. If 3 fails, the new container runs and the old one stays parked
    (the next pass removes it as a leftover). Either the old container runs under its name or the new one does.
    """

    RESTORE_ATTEMPTS = 4
    RESTORE_DELAY = 0.5

    def __init__(self, api: Any, log: Any, create_and_start: Callable[[], str], project: str) -> None:
        self.api = api
        self.log = log
        self.create_and_start = create_and_start
        self.project = project  # containers under the aside or primary name of another owner are never removed

    def run(self, name: str, old_id: str, old_running: bool, stop_timeout: int, parked: bool) -> None:
        aside = aside_name(name)
        stale = None if parked else self._stale_aside(aside, old_id)  # before the old one stops: a refusal
        step = "stop"  # leaves it serving
        try:
            self.api.stop(old_id, timeout=stop_timeout)
            if stale is not None:
                step = "remove-stale-parked"
                self.api.remove_container(stale, v=False, force=True)
            if not parked:
                step = "rename"
                self._rename(old_id, aside)
            self.log.info("container.parked", name=name, aside=aside)
            step = "create"
            self.create_and_start()
        except Exception as exc:
            if step == "create":
                step = self._failed_step(name, old_id)
            outcome = self._restore(name, old_id, old_running)
            raise _failure(f"container {name}: replace failed at its {step} step, {outcome}", exc) from None
        try:
            self.api.remove_container(old_id, v=False, force=True)
        except Exception as exc:
            raise _failure(
                f"container {name}: replace failed at its remove-old step, the new container runs "
                f"and the old one stays parked as {aside} until the next apply removes it",
                exc,
            ) from None
        self.log.info("container.replaced", name=name)

    def _rename(self, cid: str, new_name: str) -> None:
        """Rename, and after an engine error look before trying again: a rename whose answer was lost may have
        been done (the engine client never repeats a rename by itself)."""
        for attempt in range(self.RESTORE_ATTEMPTS):
            try:
                self.api.rename(cid, new_name)
                return
            except (APIError, requests.RequestException) as exc:
                if isinstance(exc, APIError) and (exc.status_code or 0) < 500:
                    raise
                if attempt + 1 == self.RESTORE_ATTEMPTS:
                    raise
                time.sleep(self.RESTORE_DELAY * (attempt + 1))
                try:
                    if str(self.api.inspect_container(cid).get("Name") or "").lstrip("/") == new_name:
                        return
                except (APIError, requests.RequestException):
                    pass

    def _stale_aside(self, aside: str, old_id: str) -> str | None:
        """The ID of a leftover of this project under the aside name (the primary exists, so it is an older
        one, to be removed), or None; a container of another owner there stops the replace untouched."""
        try:
            info = by_name(self.api.inspect_container)(aside)
        except NotFound:
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
        except NotFound:
            new = None
        if new is not None and new["Id"] != old_id:
            if _project_of(new) != self.project:
                raise PermanentError(
                    f"container {name}: replace failed and a container this project does not own took the name; "
                    f"the old container stays as {aside_name(name)}"
                )
            self.api.remove_container(new["Id"], v=False, force=True)
        old = self.api.inspect_container(old_id)
        if str(old.get("Name") or "").lstrip("/") != name:
            self._rename(old_id, name)
        if old_running and not (old.get("State") or {}).get("Running"):
            self.api.start(old_id)
        self.log.warning("container.rolled_back", name=name)


def _said(exc: BaseException | None) -> str:
    if exc is None:
        return "unknown error"
    if isinstance(exc, APIError):
        text = exc.explanation
        return str(text.decode(errors="replace") if isinstance(text, bytes) else text or exc)
    return str(exc) if isinstance(exc, ReconcileError) else repr(exc)


def _failure(what: str, exc: BaseException) -> ReconcileError:
    """`what` went wrong because of `exc`: temporary when the cause was (an engine 5xx, a lost connection, a
    TemporaryError), so watch retries soon; permanent otherwise."""
    temporary = (
        (isinstance(exc, ReconcileError) and exc.retryable)
        or (isinstance(exc, APIError) and (exc.status_code or 0) >= 500)
        or isinstance(exc, requests.RequestException)
    )
    text = f"{what}: {_said(exc)}"
    return TemporaryError(text) if temporary else PermanentError(text)


def _project_of(info: Mapping[str, Any]) -> str | None:
    return ((info.get("Config") or {}).get("Labels") or {}).get(LABEL_PROJECT)


def ensure_image(api: Any, reference: str) -> None:
    """Pull `reference` when the engine does not have it (an Image manifest, when declared, ran before)."""
    try:
        api.inspect_image(reference)
        return
    except ImageNotFound:
        pass
    repository, tag = parse_repository_tag(reference)
    api.pull(repository, tag=tag or "latest")
