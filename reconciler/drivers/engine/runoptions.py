"""Canonical forms of the run options of a Container and, where swarm has them, of a Service (swarm/runfields.py):
logging, ulimits, shmSize, sysctls, init, securityOpt, stopSignal, extraHosts, dns, dnsSearch, dnsOptions,
groupAdd, oomScoreAdj, tty, stdinOpen, ipc, pid, uts, expose, devices, deviceCgroupRules, gpus, macAddress, runtime,
cgroupParent.

Each option has one canonical form, made the same way from the manifest and from `docker inspect`, so a value read
back compares equal to the value declared. Undeclared (or declared as the engine's default, such as `tty: false`
or `oomScoreAdj: 0`) is None, which the spec hash leaves out (a manifest that declares none of them hashes as it
did before they existed); what the engine reports for an undeclared option is the row's `expect` in fields.py.

Pure functions: nothing here touches the engine.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from reconciler.errors import SpecError

# Capabilities that hand a container (nearly) the host, as `privileged` does: a Container needs allowPrivileged
# for them, a Service (which has no such opt-in) cannot have them.
DANGEROUS_CAPS = frozenset(
    {
        "ALL",
        "SYS_ADMIN",
        "SYS_MODULE",
        "SYS_RAWIO",
        "SYS_PTRACE",
        "SYS_BOOT",
        "DAC_READ_SEARCH",
        "MAC_ADMIN",
        "MAC_OVERRIDE",
        "BPF",
    }
)
# ShmSize the engine gives a container that declares none (`docker inspect` reports it, 64m)
DEFAULT_SHM_SIZE = 64 * 1024**2
# the IPC modes a daemon may be configured to give a container that declares none (`default-ipc-mode`)
DAEMON_IPC_MODES = ("private", "shareable")
MAX_EXPOSED = 1024  # ports one `expose` entry may name (a range is expanded, as the engine does)

_RANGE = re.compile(r"^([0-9]+)(?:-([0-9]+))?(?:/(tcp|udp|sctp))?$")


def logging(value: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """`{driver, options}`; option values are strings (the engine's log options are), booleans `true`/`false`;
    a missing driver is None (the daemon's default driver, with these options)."""
    if value is None:
        return None
    options = {str(k): _text(v) for k, v in sorted((value.get("options") or {}).items())}
    return {"driver": value.get("driver"), "options": options}


def read_logging(config: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if not config or not config.get("Type"):
        return None
    return {"driver": config["Type"], "options": dict(sorted((config.get("Config") or {}).items()))}


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def ulimits(value: Mapping[str, Any] | None, field: str) -> dict[str, dict[str, int]] | None:
    """`{nofile: 1024}` or `{nofile: {soft, hard}}` -> `{nofile: {soft, hard}}` sorted by name; soft <= hard."""
    out: dict[str, dict[str, int]] = {}
    for name, limit in sorted((value or {}).items()):
        if isinstance(limit, Mapping):
            soft, hard = int(limit["soft"]), int(limit["hard"])
        else:
            soft = hard = int(limit)
        if hard != -1 and (soft == -1 or soft > hard):
            raise SpecError(f"{field}.{name}", f"the soft limit {soft} is above the hard limit {hard}")
        out[str(name)] = {"soft": soft, "hard": hard}
    return out or None


def read_ulimits(items: Iterable[Mapping[str, Any]] | None) -> dict[str, dict[str, int]] | None:
    out = {str(u["Name"]): {"soft": int(u["Soft"]), "hard": int(u["Hard"])} for u in items or []}
    return dict(sorted(out.items())) or None


def engine_ulimits(value: Mapping[str, Mapping[str, int]] | None) -> list[dict[str, Any]] | None:
    if not value:
        return None
    return [{"Name": name, "Soft": limit["soft"], "Hard": limit["hard"]} for name, limit in value.items()]


def sysctls(value: Mapping[str, Any] | list[str] | None) -> dict[str, str] | None:
    """A mapping, or Compose's list of `name=value`; values are strings."""
    if isinstance(value, list):
        value = dict(item.partition("=")[::2] for item in value)
    return {str(k): _text(v) for k, v in sorted((value or {}).items())} or None


def security_opt(value: Iterable[str] | None) -> list[str] | None:
    """Each option as `name=value` (the legacy `name:value` and a bare `no-new-privileges` too), sorted, unique."""
    out = set()
    for raw in value or []:
        opt = str(raw)
        if opt == "no-new-privileges":
            opt = "no-new-privileges=true"
        elif "=" not in opt and ":" in opt:
            opt = opt.replace(":", "=", 1)
        out.add(opt)
    return sorted(out) or None


LABEL_DISABLE = "label=disable"
# the runtime a daemon runs containers with unless told otherwise; any other needs allowPrivileged
DEFAULT_RUNTIME = "runc"
# security options that take isolation away: refused without allowPrivileged
UNCONFINED = ("seccomp=unconfined", "apparmor=unconfined", "systempaths=unconfined")


def stop_signal(value: Any) -> str | None:
    """`sigint`, `INT`, `SIGINT` -> `SIGINT`; a number stays a number (as text)."""
    if value is None or value == "":
        return None
    text = str(value).upper()
    if text.isdigit():
        return text
    return text if text.startswith("SIG") else "SIG" + text


def extra_hosts(value: Mapping[str, Any] | Iterable[str] | None) -> list[str] | None:
    """`name:address` entries, sorted and unique, from a mapping `{name: address}` or a list of `name:address` /
    `name=address` (Compose's newer form); the engine reads `name:address`."""
    if isinstance(value, Mapping):
        entries = [f"{name}:{address}" for name, address in value.items()]
    else:
        entries = []
        for raw in value or []:
            text = str(raw)
            name, sep, address = text.partition("=")
            entries.append(f"{name}:{address}" if sep else text)
    return sorted(set(entries)) or None


def text_list(value: str | Iterable[Any] | None) -> list[str] | None:
    """A string or a list -> a list of strings, in the declared order (DNS servers and search domains are tried
    in order), repeated entries dropped."""
    if value is None:
        return None
    items = [value] if isinstance(value, str) else [str(v) for v in value]
    return list(dict.fromkeys(items)) or None


def sorted_texts(value: Iterable[Any] | None) -> list[str] | None:
    """Strings (group names or IDs, device cgroup rules), sorted and unique (their order means nothing)."""
    return sorted({str(v) for v in value or []}) or None


def _port_key(entry: str) -> tuple[int, str]:
    port, _, proto = entry.partition("/")
    return int(port), proto


def expose(value: Iterable[Any] | None, field: str) -> list[str] | None:
    """`80`, `"8080/udp"`, `"9000-9005"` -> `port/proto` entries (a range expanded, as the engine does), sorted."""
    out: set[str] = set()
    for i, raw in enumerate(value or []):
        match = _RANGE.match(str(raw))
        if match is None:
            raise SpecError(f"{field}.{i}", f"{raw!r} is not a port, a port range or either with /tcp, /udp, /sctp")
        first = int(match.group(1))
        last = int(match.group(2) or first)
        proto = match.group(3) or "tcp"
        if not 1 <= first <= last <= 65535 or last - first >= MAX_EXPOSED:
            raise SpecError(f"{field}.{i}", f"{raw!r}: ports are 1-65535, a range low-high of at most {MAX_EXPOSED}")
        out.update(f"{port}/{proto}" for port in range(first, last + 1))
    return sorted(out, key=_port_key) or None


def exposed(entries: Iterable[str]) -> list[str] | None:
    """Engine `ExposedPorts` keys -> the canonical sorted list."""
    return sorted(set(entries), key=_port_key) or None


def engine_ports(entries: Iterable[str]) -> list[tuple[int, str]]:
    """The canonical entries as docker-py's create_container `ports` items."""
    return [_port_key(entry) for entry in entries]


def true_or_none(value: Any) -> bool | None:
    """A boolean whose false is the engine's only default: True, or None."""
    return True if value else None


def nonzero(value: Any) -> int | None:
    return int(value) if value else None


def mode(value: Any) -> str | None:
    """A namespace mode: "" (the engine's none) is None."""
    return str(value) if value else None


def devices(value: Iterable[str] | None) -> list[str] | None:
    """`/dev/x`, `/dev/x:/dev/y`, `/dev/x:rw`, `/dev/x:/dev/y:mrw` -> `host:container:permissions` (the container
    path defaults to the host's, the permissions to `rwm`, written in the order r, w, m), sorted and unique."""
    out = set()
    for raw in value or []:
        parts = str(raw).split(":")
        host = parts[0]
        inside = parts[1] if len(parts) > 1 and parts[1].startswith("/") else host
        perms = parts[-1] if len(parts) > 1 and not parts[-1].startswith("/") else "rwm"
        out.add(f"{host}:{inside}:{''.join(p for p in 'rwm' if p in perms)}")
    return sorted(out) or None


def read_devices(items: Iterable[Mapping[str, Any]] | None) -> list[str] | None:
    return devices(
        f"{d['PathOnHost']}:{d.get('PathInContainer') or d['PathOnHost']}:{d.get('CgroupPermissions') or 'rwm'}"
        for d in items or []
    )


def engine_devices(value: Iterable[str]) -> list[dict[str, str]]:
    out = []
    for entry in value:
        host, inside, perms = entry.split(":")
        out.append({"PathOnHost": host, "PathInContainer": inside, "CgroupPermissions": perms})
    return out


def lower(value: Any) -> str | None:
    """A MAC address in lower case ("" is None)."""
    return str(value).lower() if value else None


def cpu_list(value: Any, field: str = "spec.resources.cpuset") -> str | None:
    """A CPU list (`0-2,5`, `3,1,2`) as sorted ranges (`1-3`); "" is None. The engine keeps it as written."""
    if value is None or value == "":
        return None
    cpus: set[int] = set()
    for part in str(value).split(","):
        first, _, last = part.partition("-")
        if not first.isdigit() or (last and not last.isdigit()) or int(last or first) < int(first):
            raise SpecError(field, f"{value!r} is not a CPU list such as 0-2,5")
        cpus.update(range(int(first), int(last or first) + 1))
    ranges: list[str] = []
    for cpu in sorted(cpus):
        if ranges and cpu - 1 in cpus:
            ranges[-1] = f"{ranges[-1].split('-')[0]}-{cpu}"
        else:
            ranges.append(str(cpu))
    return ",".join(ranges)


def gpus(value: Any) -> list[dict[str, Any]] | None:
    """`all`, a count, or a list of requests `{driver, count, deviceIds, capabilities, options}` -> the engine's
    device requests: count -1 is all (also when neither a count nor device IDs are given), capabilities one set,
    default `[gpu]`."""
    if value is None:
        return None
    if value == "all" or isinstance(value, int):
        value = [{"count": value}]
    out = []
    for request in value:
        ids = [str(i) for i in request.get("deviceIds") or []]
        count = request.get("count")
        count = -1 if count == "all" or (count is None and not ids) else int(count or 0)
        out.append(
            {
                "driver": request.get("driver") or "",
                "count": count,
                "deviceIds": ids,
                "capabilities": [sorted({str(c) for c in request.get("capabilities") or ["gpu"]})],
                "options": {str(k): str(v) for k, v in sorted((request.get("options") or {}).items())},
            }
        )
    return out or None


def read_gpus(items: Iterable[Mapping[str, Any]] | None) -> list[dict[str, Any]] | None:
    out = [
        {
            "driver": r.get("Driver") or "",
            "count": int(r.get("Count") or 0),
            "deviceIds": list(r.get("DeviceIDs") or []),
            "capabilities": [sorted(caps) for caps in r.get("Capabilities") or []],
            "options": dict(sorted((r.get("Options") or {}).items())),
        }
        for r in items or []
    ]
    return out or None


def engine_gpus(value: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    return [
        {
            "Driver": r["driver"],
            "Count": r["count"],
            "DeviceIDs": r["deviceIds"] or None,
            "Capabilities": r["capabilities"],
            "Options": r["options"] or None,
        }
        for r in value
    ]


def security_opt_in(value: Iterable[str] | None) -> str | None:
    unconfined = [opt for opt in security_opt(value) or [] if opt in UNCONFINED]
    return f"{', '.join(unconfined)} lifts a protection of the host from the container" if unconfined else None


def host_namespace_opt_in(namespace: str) -> Callable[[Any], str | None]:
    def opt_in(value: Any) -> str | None:
        return f"host shares the host's {namespace} namespace with the container" if value == "host" else None

    return opt_in


def runtime_opt_in(value: Any) -> str | None:
    if value in (None, DEFAULT_RUNTIME):
        return None
    return f"runtime {value} is not the default runtime ({DEFAULT_RUNTIME})"
