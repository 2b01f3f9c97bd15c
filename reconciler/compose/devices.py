"""A service's device requests (`gpus`, `deploy.resources.reservations.devices`) as the Container's `gpus`.

Both Compose keys are lists of requests `{driver, count, device_ids, capabilities, options}` that `docker compose
up` sends as the engine's DeviceRequests (`gpus` may also be `all`); the Container's `gpus` field is the same
list in the manifest's spelling (`deviceIds`), so nothing is lost but a request the engine would refuse too.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from reconciler.compose.source import Loc, Map, Seq, compose_int, scalar_text

if TYPE_CHECKING:
    from reconciler.compose.service import ServiceMapper

MAX_COUNT = 1024  # the Container schema's bound on a request's count
_DRIVER = re.compile(r"^[a-zA-Z0-9][a-zA-Z0-9_.-]*$")
_CAPABILITY = re.compile(r"^[a-z0-9_]+$")
_OPTIONS = ("driver", "count", "device_ids", "capabilities", "options")


def map_gpus(m: ServiceMapper) -> None:
    """`gpus`, then `deploy.resources.reservations.devices` -> `spec.gpus` (one list: the engine takes both)."""
    s = m.service
    requests: list[dict[str, Any]] = []
    all_gpus = False
    gpus = s.get("gpus")
    if gpus is not None:
        count = compose_int(gpus)
        if scalar_text(gpus) == "all":
            all_gpus = True
        elif count is not None and 1 <= count <= MAX_COUNT:
            requests.append({"count": count})
        elif isinstance(gpus, Seq):
            requests.extend(_requests(m, gpus, "gpus"))
        else:
            m.lost("gpus", f"{scalar_text(gpus)!r}: gpus is `all` or a list of device requests")
    deploy = s.get("deploy")
    resources = deploy.get("resources") if isinstance(deploy, Map) else None
    reservations = resources.get("reservations") if isinstance(resources, Map) else None
    devices = reservations.get("devices") if isinstance(reservations, Map) else None
    if isinstance(devices, Seq):
        requests.extend(_requests(m, devices, "deploy.resources.reservations.devices"))
    elif devices is not None and isinstance(reservations, Map):
        m.lost("deploy.resources.reservations.devices", "must be a list of device requests", reservations.at("devices"))
    if all_gpus and not requests:
        m.spec["gpus"] = "all"
    elif all_gpus:
        m.spec["gpus"] = [{"count": "all"}, *requests]
    elif requests:
        m.spec["gpus"] = requests


def _requests(m: ServiceMapper, items: Seq, key: str) -> list[dict[str, Any]]:
    out = []
    for i, item in enumerate(items):
        at = items.at(i)
        if not isinstance(item, Map):
            m.lost(f"{key}[{i}]", "a device request is a mapping (driver, count, device_ids, capabilities)", at)
            continue
        request = _request(m, item, f"{key}[{i}]", at)
        if request is not None:
            out.append(request)
    return out


def _request(m: ServiceMapper, item: Map, key: str, at: Loc) -> dict[str, Any] | None:
    """One request in the manifest's spelling; None (reported) when the engine could not take it either."""
    out: dict[str, Any] = {}
    for option in item:
        if option not in _OPTIONS and not option.startswith("x-"):
            m.lost(f"{key}.{option}", "a device request has driver, count, device_ids, capabilities and options", at)
    if item.get("driver") is not None:
        driver = item.text("driver")
        if not _DRIVER.match(driver):
            m.lost(f"{key}.driver", f"{driver!r} is not a driver name", item.at("driver"))
            return None
        out["driver"] = driver
    if item.get("count") is not None:
        count = compose_int(item["count"])
        if item.text("count") == "all":
            out["count"] = "all"
        elif count is not None and 1 <= count <= MAX_COUNT:
            out["count"] = count
        else:
            m.lost(f"{key}.count", f"{item.text('count')!r}: a count is `all` or 1 to {MAX_COUNT}", item.at("count"))
            return None
    ids = [scalar_text(v) for v in item.get("device_ids") or []]
    if ids:
        if "count" in out:
            m.lost(key, "count and device_ids exclude each other (the engine refuses both)", at)
            return None
        out["deviceIds"] = list(dict.fromkeys(ids))
    capabilities = [scalar_text(c) for c in _flat(item.get("capabilities"))]
    bad = [c for c in capabilities if not _CAPABILITY.match(c)]
    if bad:
        m.lost(f"{key}.capabilities", f"{', '.join(map(repr, bad))}: not a capability name", item.at("capabilities"))
        return None
    if capabilities:
        out["capabilities"] = list(dict.fromkeys(capabilities))
    options = item.get("options")
    if isinstance(options, Map) and options:
        out["options"] = {str(k): scalar_text(v) for k, v in options.items()}
    return out


def _flat(value: Any) -> list[Any]:
    """Capabilities as one list: Compose writes `[gpu]`, the engine's own form is a list of lists."""
    out: list[Any] = []
    for item in value or []:
        out.extend(_flat(item) if isinstance(item, list) else [item])
    return out
