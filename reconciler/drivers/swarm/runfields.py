"""The run options a Service shares with a Container (logging, ulimits, sysctls, init, stopSignal, extraHosts,
dns, dnsSearch, dnsOptions, groupAdd, capAdd, capDrop, readOnlyRootfs, tty, stdinOpen): the same manifest keys and
canonical forms (drivers/engine/runoptions.py), read from and written to a ServiceSpec's task template, where swarm
spells them its own way (`Hosts` as `ADDRESS NAME`, one `DNSConfig`, `LogDriver`, `CapabilityAdd`). Checked on
Docker 20.10 (API 1.41): each reaches the task's container. Options swarm has no field for (securityOpt, ipc, pid,
devices, shmSize, …) are not in the Service schema, so declaring one is a validation error naming it.

Pure: readers take the swarm table's Reading, writers its Building (fields.py holds the rows).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from reconciler.drivers.engine import runoptions

# the keys, in table order; None (undeclared) is left out of the spec hash, so existing services hash as before
KEYS = (
    "logging",
    "ulimits",
    "sysctls",
    "init",
    "stopSignal",
    "extraHosts",
    "dns",
    "dnsSearch",
    "dnsOptions",
    "groupAdd",
    "capAdd",
    "capDrop",
    "readOnlyRootfs",
    "tty",
    "stdinOpen",
)
DNS = {"dns": "Nameservers", "dnsSearch": "Search", "dnsOptions": "Options"}


def capabilities(value: Iterable[Any] | None) -> list[str] | None:
    """`net_admin`, `CAP_NET_ADMIN` -> `NET_ADMIN`, sorted and unique; none is None."""
    found = sorted({str(c).upper().removeprefix("CAP_") for c in value or []})
    return found or None


def engine_capabilities(value: list[str] | None) -> list[str] | None:
    return [f"CAP_{c}" for c in value] if value else None


def read_logging(task: Mapping[str, Any]) -> dict[str, Any] | None:
    driver = task.get("LogDriver") or {}
    if not driver.get("Name"):
        return None
    return runoptions.read_logging({"Type": driver["Name"], "Config": driver.get("Options") or {}})


def write_logging(value: Mapping[str, Any] | None, b: Any) -> None:
    """TaskTemplate.LogDriver; undeclared, the service keeps what it has (the daemon's default, or set by hand)."""
    if value is not None:
        b.doc["LogDriver"] = {"Name": value["driver"], "Options": dict(value["options"])}


def write_init(value: bool | None, b: Any) -> None:
    """ContainerSpec.Init true; undeclared, false where it was true and kept otherwise (the CLI writes false)."""
    container = b.container
    if value:
        container["Init"] = True
    elif container.get("Init"):
        container["Init"] = False


def read_hosts(entries: Iterable[str] | None) -> list[str] | None:
    """Swarm's `ADDRESS NAME [NAME…]` lines -> `name:address` entries, as a container's ExtraHosts."""
    found = []
    for line in entries or []:
        address, *names = line.split()
        found += [f"{name}:{address}" for name in names]
    return runoptions.extra_hosts(found)


def engine_hosts(value: list[str] | None) -> list[str] | None:
    if not value:
        return None
    return [f"{address} {name}" for name, _, address in (entry.partition(":") for entry in value)]


def write_dns(key: str, value: list[str] | None, task: dict[str, Any]) -> None:
    """One of the three DNSConfig lists; the config goes when none is left."""
    container = task.setdefault("ContainerSpec", {})
    config = dict(container.get("DNSConfig") or {})
    if value:
        config[DNS[key]] = list(value)
    else:
        config.pop(DNS[key], None)
    if config:
        container["DNSConfig"] = config
    else:
        container.pop("DNSConfig", None)


def logging_problems(spec: Mapping[str, Any]) -> Iterable[tuple[str, str]]:
    """A service's log driver is named in the task template; there is no daemon default to take options for."""
    logging = spec.get("logging")
    if logging is not None and not logging["driver"]:
        yield "spec.logging.driver", "a Service names its log driver (json-file, local, …) with its options"


def capability_problems(spec: Mapping[str, Any]) -> Iterable[tuple[str, str]]:
    """The capabilities that hand over the host: a Service has no allowPrivileged to opt in with."""
    for name in spec.get("capAdd") or []:
        if name in runoptions.DANGEROUS_CAPS:
            yield "spec.capAdd", f"capAdd {name} gives the tasks (nearly) the host; a Service cannot be granted it"
