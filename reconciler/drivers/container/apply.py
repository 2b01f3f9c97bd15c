"""Container changes on the engine: the create call built from the canonical spec, in-place updates, waits for
dependencies, and the crash-safe replace (park the old container aside, start the new one, then remove the old)."""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

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
    """Keyword arguments of `APIClient.create_container` for the canonical spec (one source for hash and engine)."""
    spec = desired.spec
    res = spec["resources"]
    mounts = []
    for m in spec["mounts"]:
        if m["type"] == "tmpfs":
            mounts.append(lazy.Mount(m["target"], None, type="tmpfs", tmpfs_size=m["size"], tmpfs_mode=m["mode"]))
        else:
            mounts.append(lazy.Mount(m["target"], m["source"], type=m["type"], read_only=m["readOnly"]))
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
        except lazy.APIError as exc:
            if "is not connected" not in str(exc):
                raise
        log.info("container.disconnected", name=name, network=network)
    if wanted is None:
        return
    try:
        _connect(api, cid, network, wanted)
    except lazy.APIError as exc:
        if disconnected and previous is not None:
            try:
                _connect(api, cid, network, previous)
                log.warning("container.reconnect_restored", name=name, network=network, error=str(exc))
            except lazy.APIError as again:
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
    """The replace algorithm, idempotent and safe to rerun after a crash at any step:

    1. stop the old container and rename it to `<name>__reconciler_old` (it may hold a host port or a static IP
       the new one needs); a container already parked there is the old one of an interrupted run;
    2. create and start the new one (after its dependencies are up);
    3. only then remove the old one.
    If 2 fails: remove the new one, give the old one its name back, start it if it was running, and raise.
    """

    def __init__(self, api: Any, log: Any, create_and_start: Callable[[], str], project: str) -> None:
        self.api = api
        self.log = log
        self.create_and_start = create_and_start
        self.project = project  # containers under the aside or primary name of another owner are never removed

    def run(self, name: str, old_id: str, old_running: bool, stop_timeout: int, parked: bool) -> None:
        aside = aside_name(name)
        if not parked:
            stale = self._stale_aside(aside, old_id)  # before the old one stops: a refusal leaves it serving
            self.api.stop(old_id, timeout=stop_timeout)
            if stale is not None:
                self.api.remove_container(stale, v=False, force=True)
            self.api.rename(old_id, aside)
        else:
            self.api.stop(old_id, timeout=stop_timeout)
        self.log.info("container.parked", name=name, aside=aside)
        try:
            self.create_and_start()
        except Exception as exc:
            self._roll_back(name, old_id, old_running, stop_timeout)
            reason = str(exc) if isinstance(exc, ReconcileError | lazy.APIError) else repr(exc)
            raise PermanentError(
                f"container {name}: replace failed, the old container was restored"
                f"{' and restarted' if old_running else ''}: {reason}"
            ) from None
        self.api.remove_container(old_id, v=False, force=True)
        self.log.info("container.replaced", name=name)

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
        self.api.rename(old_id, name)
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
