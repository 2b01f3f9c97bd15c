"""The engine operations of in-place container changes: network reconnects and start/stop (the rows of
fields.FIELDS name them), and the connects of extra networks after a create.

The only part of the field table that calls the engine; the driver hands in the client (`Updating.api`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from reconciler.drivers.container import oneshot
from reconciler.drivers.engine import lazy
from reconciler.model import Desired, FieldChange


@dataclass(frozen=True)
class Updating:
    """What an in-place operation gets: the engine client, the container, the declared and the observed spec, and
    the wait for `dependsOn` (before a start)."""

    api: Any
    log: Any
    name: str
    cid: str
    desired: Desired
    had: Mapping[str, Any]
    wait_for_dependencies: Callable[[], None]
    # a container's last output lines (secrets masked), kept with the error of a one-shot that failed
    tail: Callable[[str], tuple[str, ...]] = lambda cid: ()


def connect_extra_networks(api: Any, cid: str, spec: Mapping[str, Any]) -> None:
    """After the create call: every declared network but the first (which the create call carries)."""
    for extra in spec["networks"][1:] if spec["networkMode"] is None else []:
        api.connect_container_to_network(
            cid, extra["name"], aliases=extra["aliases"] or None, ipv4_address=extra["ipv4Address"]
        )


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


def run_networks(u: Updating, fields: list[FieldChange]) -> None:
    wanted = {n["name"]: n for n in u.desired.spec["networks"]}
    had = {n["name"]: n for n in (u.had.get("networks") or [])}
    for f in fields:
        net = f.path.split(".", 1)[1]
        reconnect(u.api, u.log, u.name, u.cid, net, had.get(net), wanted.get(net))


def run_state(u: Updating, fields: list[FieldChange]) -> None:
    state = fields[0]
    stop_timeout = u.desired.spec["stopTimeout"]
    if state.new == oneshot.COMPLETED:
        _complete(u, state)
    elif state.old == "paused":
        u.api.unpause(u.cid)  # running again; a stop from paused would skip the graceful signal
        u.log.info("container.unpaused", name=u.name)
        if state.new == "stopped":
            u.api.stop(u.cid, timeout=stop_timeout)
            u.log.info("container.stopped", name=u.name)
    elif state.new == "running":
        u.wait_for_dependencies()
        u.api.start(u.cid)
        u.log.info("container.started", name=u.name)
    else:
        u.api.stop(u.cid, timeout=stop_timeout)
        u.log.info("container.stopped", name=u.name)


def _complete(u: Updating, state: FieldChange) -> None:
    """A one-shot that has not completed for this spec: unpaused or waited for when it runs, run (again) once
    its dependencies are met when it failed or never ran."""
    running = state.old in ("running", "paused")
    if state.old == "paused":
        u.api.unpause(u.cid)
        u.log.info("container.unpaused", name=u.name)
    if not running:
        u.wait_for_dependencies()
    oneshot.run_to_completion(u.api, u.cid, u.desired.spec["completionTimeout"], u.tail, start=not running)
    u.log.info("container.completed", name=u.name)
