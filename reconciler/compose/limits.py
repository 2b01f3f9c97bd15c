"""A service's healthcheck, restart policy and resource limits (`deploy.resources`, `mem_limit`, `cpus`...)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from reconciler.compose.source import ComposeError, Loc, Map, Seq, compose_bool, compose_int, scalar_text

if TYPE_CHECKING:
    from reconciler.compose.service import ServiceMapper

DURATION = re.compile(r"^(0|([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+)$")
_BYTES = re.compile(r"^[0-9]+(\.[0-9]+)? ?([bB]|[kKmMgGtTpP]([iI]?[bB])?)?$")
_RESTART = {"no", "always", "unless-stopped", "on-failure"}
_CPU_LIST = re.compile(r"^[0-9]+(-[0-9]+)?(,[0-9]+(-[0-9]+)?)*$")  # the Container schema's resources.cpuset


def map_healthcheck(m: ServiceMapper) -> None:
    """`healthcheck` -> `spec.healthcheck` (a probe, or `{disable: true}`); what has no field is reported."""
    health = m.service.get("healthcheck")
    if not isinstance(health, Map):
        return
    disable = compose_bool(health.get("disable"))
    if disable is True:
        m.spec["healthcheck"] = {"disable": True}
        return
    if disable is False and all(k == "disable" or k.startswith("x-") for k in health):
        return  # `disable: false` alone changes nothing: the image's healthcheck runs, as without the key
    out: dict[str, Any] = {}
    test = health.get("test")
    if isinstance(test, Seq):
        items = [scalar_text(t) for t in test]
        if items and items[0] == "NONE":
            m.spec["healthcheck"] = {"disable": True}
            return
        if len(items) < 2 or items[0] not in ("CMD", "CMD-SHELL"):
            m.lost("healthcheck.test", "a test list starts with CMD or CMD-SHELL and has a command", health.at("test"))
            return
        out["test"] = items
    elif isinstance(test, str) and test:
        out["test"] = test
    else:
        m.lost(
            "healthcheck",
            "a healthcheck without a test keeps the image's test with other timings; reconciler declares a whole probe",
        )
        return
    for key, field in (("interval", "interval"), ("timeout", "timeout"), ("start_period", "startPeriod")):
        if key in health:
            text = health.text(key)
            if DURATION.match(text):
                out[field] = text
            else:
                m.lost(f"healthcheck.{key}", f"{text!r} is not a duration", health.at(key))
    if "retries" in health:
        retries = compose_int(health["retries"])
        if retries is not None and retries >= 1:
            out["retries"] = retries
        else:
            m.lost("healthcheck.retries", "reconciler needs a whole number >= 1", health.at("retries"))
    for key in health:
        if key not in ("test", "interval", "timeout", "start_period", "retries", "disable"):
            m.lost(
                f"healthcheck.{key}",
                "reconciler's healthcheck has test, interval, timeout, startPeriod and retries",
                health.at(key),
            )
    m.spec["healthcheck"] = out


def map_restart(m: ServiceMapper) -> None:
    """`deploy.restart_policy`, else `restart` -> `spec.restartPolicy`: as in Compose (1.29 and v2 alike), the
    deploy policy wins when both are set."""
    s = m.service
    policy: dict[str, Any] | None = None
    deploy = s.get("deploy")
    restart = deploy.get("restart_policy") if isinstance(deploy, Map) else None
    if isinstance(restart, Map):
        policy = _deploy_restart(m, restart)
    if "restart" in s:
        raw = s.text("restart")
        name, _, count = raw.partition(":")
        if name not in _RESTART or (count and (name != "on-failure" or not count.isdigit())):
            raise ComposeError(
                s.at("restart").file, s.at("restart").line, f"services.{m.name}.restart: invalid value {raw!r}"
            )
        if isinstance(restart, Map):
            m.lost("restart", "deploy.restart_policy is set too and wins, as in Compose")
        else:
            policy = {"name": name}
            if count:
                policy["maximumRetryCount"] = int(count)
    if policy is not None:
        m.spec["restartPolicy"] = policy


def _deploy_restart(m: ServiceMapper, restart: Map) -> dict[str, Any] | None:
    condition = restart.text("condition") if "condition" in restart else "any"
    name = {"none": "no", "any": "always", "on-failure": "on-failure"}.get(condition)
    policy: dict[str, Any] | None = None
    if name is None:
        m.lost("deploy.restart_policy.condition", f"unknown condition {condition!r}", restart.at("condition"))
    else:
        policy = {"name": name}
        if name == "on-failure" and isinstance(restart.get("max_attempts"), int):
            policy["maximumRetryCount"] = restart["max_attempts"]
    for key in restart:
        if key not in ("condition", "max_attempts") or (key == "max_attempts" and name != "on-failure"):
            m.lost(
                f"deploy.restart_policy.{key}",
                "reconciler's restartPolicy has a name and a maximumRetryCount (on-failure) only",
                restart.at(key),
            )
    return policy


def map_resources(m: ServiceMapper) -> None:
    """`mem_limit`, `cpus`, `pids_limit`… then `deploy.resources` (which wins) -> `spec.resources`."""
    s = m.service
    resources: dict[str, Any] = {}

    def size(key: str, field: str, source: Map, where: str) -> None:
        text = source.text(key)
        if text == "-1" and field == "memorySwap":
            resources[field] = -1
        elif text in ("0", "-1"):
            pass  # Compose reads these as "no limit", which is reconciler's default
        elif _BYTES.match(text) and text.strip("0.") not in ("", "b", "B"):
            resources[field] = int(text) if text.isdigit() else text
        else:
            m.lost(where, f"{text!r} is not a byte size reconciler reads", source.at(key))

    for key, field in (
        ("mem_limit", "memory"),
        ("memswap_limit", "memorySwap"),
        ("mem_reservation", "memoryReservation"),
    ):
        if s.get(key) is not None:
            size(key, field, s, key)
    if s.get("cpus") is not None:
        _cpus(m, s, "cpus", resources, "cpus")
    if s.get("cpu_shares") is not None:
        shares = compose_int(s["cpu_shares"])
        if shares is not None and 2 <= shares <= 262144:
            resources["cpuShares"] = shares
        else:
            m.lost("cpu_shares", "reconciler takes 2 to 262144")
    if s.get("cpuset") is not None:
        if _CPU_LIST.match(str(s["cpuset"])):
            resources["cpuset"] = str(s["cpuset"])
        else:
            m.lost("cpuset", "reconciler takes a CPU list such as 0-2,5")
    if s.get("pids_limit") is not None:
        _pids(m, s, "pids_limit", resources, "pids_limit")
    if s.get("blkio_config") is not None:
        _blkio(m, s["blkio_config"], s.at("blkio_config"), resources)
    deploy = s.get("deploy")
    if isinstance(deploy, Map):
        _deploy(m, deploy, resources, size)
    if "memorySwap" in resources and "memory" not in resources:
        m.lost("memswap_limit", "reconciler needs a memory limit to go with a swap limit")
        del resources["memorySwap"]
    if resources:
        m.spec["resources"] = resources


def _cpus(m: ServiceMapper, source: Map, key: str, resources: dict[str, Any], where: str) -> None:
    try:
        cpus = float(source.text(key))
    except ValueError:
        cpus = 0.0
    if cpus > 0:
        resources["cpus"] = int(cpus) if cpus.is_integer() else cpus
    elif cpus == 0 and source.text(key) in ("0", "0.0"):
        pass  # Compose reads 0 as "no limit"
    else:
        m.lost(where, "not a positive number of CPUs", source.at(key))


def _pids(m: ServiceMapper, source: Map, key: str, resources: dict[str, Any], where: str) -> None:
    value = compose_int(source[key])
    if value is not None and value >= 1:
        resources["pidsLimit"] = value
    elif value in (0, -1):
        pass  # Compose reads 0 and -1 as "no limit", which is reconciler's default
    else:
        m.lost(where, "reconciler takes a whole number >= 1", source.at(key))


def _blkio(m: ServiceMapper, blkio: Any, at: Loc, resources: dict[str, Any]) -> None:
    """`blkio_config.weight` -> `resources.blkioWeight`; the per-device limits have no Container field."""
    if not isinstance(blkio, Map):
        raise ComposeError(at.file, at.line, f"services.{m.name}.blkio_config must be a mapping")
    for key in blkio:
        kat = blkio.at(key)
        if key.startswith("x-"):
            continue
        if key != "weight":
            m.lost(
                f"blkio_config.{key}", "reconciler's Container has a block IO weight only (no per-device limits)", kat
            )
            continue
        weight = compose_int(blkio[key])
        if weight == 0:
            continue  # Compose sends 0 as "unset", the engine's default
        if weight is None or not 10 <= weight <= 1000:
            m.lost("blkio_config.weight", "reconciler takes a whole number from 10 to 1000", kat)
            continue
        resources["blkioWeight"] = weight
        # the one engine this project knows to discard it: say so before apply fails on it
        m.flag(
            "blkio_config.weight",
            "an engine without a block IO weight controller (Docker 20.10 on cgroup v1 without CFQ/BFQ) discards "
            "it: apply then fails naming resources.blkioWeight; remove it there if so",
            kat,
        )


def _deploy(m: ServiceMapper, deploy: Map, resources: dict[str, Any], size: Any) -> None:
    for key in deploy:
        at = deploy.at(key)
        if key == "resources" and isinstance(deploy[key], Map):
            res = deploy[key]
            for part in res:
                pat = res.at(part)
                values = res[part]
                if part not in ("limits", "reservations") or not isinstance(values, Map):
                    m.lost(f"deploy.resources.{part}", "reconciler has limits and a memory reservation only", pat)
                    continue
                for item in values:
                    where = f"deploy.resources.{part}.{item}"
                    if part == "limits" and item == "memory":
                        size(item, "memory", values, where)
                    elif part == "limits" and item == "cpus":
                        _cpus(m, values, item, resources, where)
                    elif part == "limits" and item == "pids":
                        _pids(m, values, item, resources, where)
                    elif part == "reservations" and item == "memory":
                        size(item, "memoryReservation", values, where)
                    elif part == "reservations" and item == "devices":
                        continue  # device requests: the Container's gpus (devices.py)
                    else:
                        m.lost(
                            where,
                            "reconciler's resources have memory, cpus and pidsLimit limits and a memory reservation",
                            values.at(item),
                        )
        elif key == "restart_policy":
            continue  # mapped with `restart`
        elif (key == "replicas" and deploy[key] == 1) or key.startswith("x-"):
            continue
        else:
            m.lost(f"deploy.{key}", "swarm deployment settings: reconciler runs one container per service", at)
