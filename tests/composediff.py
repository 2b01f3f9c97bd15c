"""The differential test's machinery: bring one Compose stack up with docker-compose 1.29 and with
`reconcile import compose` + `apply`, and compare what the engine reports for both, field by field.

Each side's inspect documents are normalised so that only what the user configured can differ: the project's
name, each container's name and ID and each tool's subnets are replaced by placeholders, the tools' own labels
and per-run values (addresses, endpoint IDs, timestamps) are dropped. What is left must be equal, except the
paths of ALLOWED (each with the reason it differs by design).
"""

from __future__ import annotations

import contextlib
import fnmatch
import json
import os
import re
import subprocess
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import docker.errors

REPO = Path(__file__).resolve().parent.parent
STACKS = REPO / "tests" / "compose_files" / "differential"
COMPOSE_PROJECT_LABEL = "com.docker.compose.project"
COMPOSE_SERVICE_LABEL = "com.docker.compose.service"
TIMEOUT = 180


@dataclass(frozen=True)
class Allowed:
    """A difference by design: `where` globs `kind:key:path` (key: the service, network or volume name); `when`
    (Compose's value, reconcile's value) narrows it to those values; `why` is the reason."""

    where: str
    why: str
    when: Callable[[Any, Any], bool] = lambda theirs, ours: True


EXISTS = "<exists>"  # the path of an object made by one tool only

# What differs by design. Everything else the engine reports for a container, network or volume must be equal.
ALLOWED: tuple[Allowed, ...] = (
    Allowed(
        "container:*:Name",
        "Compose 1.29 names containers project_service_1; the import writes Compose v2's "
        "project-service-1 (both are the <service> placeholder elsewhere)",
    ),
    Allowed(
        "container:*:NetworkSettings.Networks.*.Aliases",
        "Compose 1.29 adds the container's short ID as an alias on each network; both add the service name",
        lambda theirs, ours: _without_ids(theirs) == _without_ids(ours),
    ),
    Allowed(
        "container:*:HostConfig.Binds*",
        "Compose 1.29 sends short-syntax volumes as Binds, reconcile every "
        "mount as a Mount: both are compared as HostConfig.AllMounts",
    ),
    Allowed("container:*:HostConfig.Mounts*", "see HostConfig.Binds"),
    Allowed(
        "container:*:Config.Volumes",
        "Compose 1.29 also lists the targets of its Binds as image-style "
        "volumes; the mounts themselves are compared as HostConfig.AllMounts",
    ),
    Allowed(
        "container:*:Mounts.*.Mode",
        'the engine reports a Bind\'s options (rw/ro) as its mode and "z" for a Mount; read-only is compared as RW',
    ),
    Allowed(
        "container:*:Config.StopTimeout",
        "reconcile always sets the stop timeout, 10 s unless declared: the "
        "engine's default, which Compose leaves unset",
        lambda theirs, ours: theirs is None and ours == 10,
    ),
    Allowed(
        "network:*:Attachable",
        "Compose 1.29 creates every network attachable (any engine API >= 1.24, compose/network.py); "
        "reconcile only overlay networks, where it means something (manual `docker run` on a swarm network)",
        lambda theirs, ours: theirs is True and ours is False,
    ),
    Allowed(
        f"network:default:{EXISTS}",
        "Compose 1.29 creates the default network when any service of the "
        "file uses it, also one of a profile that is not active; the import only when an imported one does",
        lambda theirs, ours: theirs and not ours,
    ),
    Allowed(
        "network:default:IPAM.Config.*",
        "the default network declares no subnet: the engine picks a free pool for each project",
    ),
    Allowed(
        "container:*:HostConfig.Tmpfs*",
        "Compose 1.29 sends `tmpfs:` entries as HostConfig.Tmpfs, reconcile "
        "as tmpfs Mounts: both are compared as HostConfig.AllMounts",
    ),
    Allowed(
        "container:*:HostConfig.GroupAdd",
        "reconcile keeps the groups sorted (their order means nothing)",
        lambda theirs, ours: sorted(theirs or []) == ours,
    ),
    Allowed(
        "container:*:HostConfig.SecurityOpt",
        "reconcile writes `name=value`, Compose passes the legacy `name:value` as written: the engine reads both alike",
        lambda theirs, ours: sorted(o.replace(":", "=", 1) for o in theirs or []) == sorted(ours or []),
    ),
    Allowed(
        "container:*:Config.Healthcheck.*",
        "reconcile sends the engine's own defaults (3 retries, 30 s "
        "timeout) for what a probe leaves out; Compose sends nothing, which the engine reads as the same",
        lambda theirs, ours: theirs is None and ours in (3, 30_000_000_000),
    ),
    # Driver (reported to the lead): an unspecified host address is published as 0.0.0.0, IPv4 only; Compose
    # sends none, which the engine also publishes on IPv6 when the daemon has it. Equal on this IPv4-only engine.
    Allowed(
        "container:*:HostConfig.PortBindings.*.HostIp",
        'reconcile publishes an unspecified host address as 0.0.0.0, Compose as "" (IPv6 too, where the daemon has it)',
        lambda theirs, ours: theirs == "" and ours == "0.0.0.0",
    ),
)


def _without_ids(aliases: Any) -> list[str]:
    return sorted(a for a in aliases or [] if not re.fullmatch(r"<[a-z0-9_-]+-id>", a))


# Keys the importer maps that the stacks do not use, each with why it cannot be brought up by both tools here
# (tests/unit/test_compose_differential_keys.py checks that every other mapped key is in some stack).
NOT_IN_STACKS: dict[str, str] = {
    "build": "Compose 1.29 builds with its own builder and tag (project_service); builds are compared by "
    "tests/integration/test_image_build.py",
    "pull_policy": "Compose 1.29 refuses the key",
    "uts": "Compose 1.29 refuses the key",
    "gpus": "Compose 1.29 refuses the key, and the test engine has no GPU device driver to start such a container",
    "privileged": "the test engine runs in a container where a privileged container cannot start",
    "cgroup_parent": "a parent cgroup depends on the host's cgroup layout and driver",
    "container_name": "a fixed name cannot be used by both projects on one engine; the container's name is the "
    "one thing it sets",
    "configs": "Compose 1.29 ignores configs outside swarm (it warns); reconcile bind-mounts file-based ones",
    "blkio_config": "the test engine (Docker 20.10, cgroup v1 without a weight controller) discards a block IO "
    "weight: Compose's container would lack it and reconcile's create fails naming it, as designed",
}


@dataclass
class Side:
    """One tool's run of a stack: its project name, subnets and the objects it made (inspect documents)."""

    project: str
    subnets: dict[str, str]  # variable -> the /24 this side uses
    docker_host: str  # the test engine (tests.helpers.configured_docker_host: maybe only in .testenv/env)
    containers: dict[str, dict[str, Any]] = field(default_factory=dict)  # service -> inspect
    networks: dict[str, dict[str, Any]] = field(default_factory=dict)  # Compose key -> inspect
    volumes: dict[str, dict[str, Any]] = field(default_factory=dict)  # Compose key -> inspect

    def env(self, image: str) -> dict[str, str]:
        """The variables the stack files interpolate: the image, and this side's subnets (with their
        `<NAME>_PREFIX`, the first three octets, for static addresses)."""
        out = {"IMAGE": image, "DOCKER_HOST": self.docker_host}
        for name, subnet in self.subnets.items():
            out[f"{name}_SUBNET"] = subnet
            out[f"{name}_PREFIX"] = subnet.rsplit(".", 1)[0]
        return out


def stack_names() -> list[str]:
    return sorted(p.name for p in STACKS.iterdir() if (p / "compose.yaml").is_file())


def subnet_variables(stack: Path) -> list[str]:
    """The `<NAME>` of every `${<NAME>_SUBNET}` the stack file uses."""
    return sorted(set(re.findall(r"\$\{([A-Z]+)_SUBNET\}", (stack / "compose.yaml").read_text())))


def _base_env() -> dict[str, str]:
    keep = ("PATH", "HOME", "LANG", "PYTHONPATH", "DOCKER_HOST", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH")
    return {k: os.environ[k] for k in keep if k in os.environ}


def run(args: list[str], cwd: Path, env: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args, cwd=cwd, env={**_base_env(), **env}, capture_output=True, text=True, timeout=TIMEOUT, check=False
    )


def compose(side: Side, stack: Path, image: str, *args: str) -> subprocess.CompletedProcess[str]:
    return run(["docker-compose", "-p", side.project, "-f", "compose.yaml", *args], stack, side.env(image))


def reconcile(*args: str, cwd: Path, env: Mapping[str, str]) -> subprocess.CompletedProcess[str]:
    return run([sys.executable, "-m", "reconciler.cli", *args], cwd, env)


def collect_compose(api: docker.APIClient, side: Side) -> None:
    """The containers, networks and volumes Compose made for `side.project`, by service / Compose key."""
    label = {"label": [f"{COMPOSE_PROJECT_LABEL}={side.project}"]}
    for c in api.containers(all=True, filters=label):
        info = api.inspect_container(c["Id"])
        side.containers[info["Config"]["Labels"][COMPOSE_SERVICE_LABEL]] = info
    for n in api.networks(filters=label):
        info = api.inspect_network(n["Id"])
        side.networks[info["Labels"]["com.docker.compose.network"]] = info
    for v in api.volumes(filters=label).get("Volumes") or []:
        info = api.inspect_volume(v["Name"])
        side.volumes[info["Labels"]["com.docker.compose.volume"]] = info


def collect_reconcile(
    api: docker.APIClient, side: Side, services: list[str], networks: list[str], volumes: list[str]
) -> None:
    """The objects the imported manifests made: Compose v2's names (`<project>-<service>-1`, `<project>_<key>`)."""
    for service in services:
        with contextlib.suppress(docker.errors.NotFound):  # then compare() reports it made by Compose only
            side.containers[service] = api.inspect_container(f"{side.project}-{service}-1")
    for key in networks:
        with contextlib.suppress(docker.errors.NotFound):
            side.networks[key] = api.inspect_network(f"{side.project}_{key}")
    for key in volumes:
        with contextlib.suppress(docker.errors.NotFound):
            side.volumes[key] = api.inspect_volume(f"{side.project}_{key}")


# --- normalising --------------------------------------------------------------------------------------------


def own_label(name: str) -> bool:
    """A label a tool sets for itself, not one the user declared."""
    return name.startswith(("com.docker.compose.", "io.reconciler."))


def _user_labels(labels: Mapping[str, str] | None) -> dict[str, str]:
    return {k: v for k, v in sorted((labels or {}).items()) if not own_label(k)}


def _placeholders(side: Side) -> list[tuple[str, str]]:
    """(text, placeholder) pairs, longest text first: container IDs and names, then the project, then subnets."""
    pairs: list[tuple[str, str]] = []
    for service, info in side.containers.items():
        pairs.append((info["Id"], f"<{service}-id>"))
        pairs.append((info["Id"][:12], f"<{service}-id>"))
        pairs.append((info["Name"].lstrip("/"), f"<{service}>"))
    pairs.append((side.project, "<project>"))
    for name, subnet in side.subnets.items():
        pairs.append((subnet.rsplit(".", 1)[0] + ".", f"<{name.lower()}>."))
    return sorted(pairs, key=lambda p: -len(p[0]))


def _replace(value: Any, pairs: list[tuple[str, str]]) -> Any:
    """`value` with the placeholders put into every string in it, keys too (networks are keyed by name)."""
    if isinstance(value, dict):
        return {_replace(k, pairs): _replace(v, pairs) for k, v in value.items()}
    if isinstance(value, list):
        return [_replace(v, pairs) for v in value]
    if isinstance(value, str):
        for old, new in pairs:
            value = value.replace(old, new)
    return value


def _bytes(text: str) -> int:
    units = {"": 1, "k": 1024, "m": 1024**2, "g": 1024**3}
    return int(text[:-1]) * units[text[-1].lower()] if text[-1:].isalpha() else int(text)


def _all_mounts(host: Mapping[str, Any]) -> list[dict[str, Any]]:
    """HostConfig's Binds (`source:target[:options]`) and Mounts as one list of Mount-API entries, so a volume
    sent either way compares equal (the engine mounts both the same)."""
    out = []
    for bind in host.get("Binds") or []:
        source, target, *rest = bind.split(":")
        options = rest[0].split(",") if rest else []
        kind = "bind" if source.startswith("/") else "volume"
        mount: dict[str, Any] = {"Type": kind, "Source": source, "Target": target}
        if "ro" in options:
            mount["ReadOnly"] = True
        if "nocopy" in options:
            mount["VolumeOptions"] = {"NoCopy": True}
        propagation = [o for o in options if o in ("private", "rprivate", "shared", "rshared", "slave", "rslave")]
        if propagation:
            mount["BindOptions"] = {"Propagation": propagation[0]}
        out.append(mount)
    for target, options in (host.get("Tmpfs") or {}).items():
        tmpfs: dict[str, Any] = {}
        for option in filter(None, options.split(",")):
            name, _, value = option.partition("=")
            if name == "size":
                tmpfs["SizeBytes"] = _bytes(value)
            elif name == "mode":
                tmpfs["Mode"] = int(value, 8)
        out.append({"Type": "tmpfs", "Target": target, **({"TmpfsOptions": tmpfs} if tmpfs else {})})
    out.extend(dict(m) for m in host.get("Mounts") or [])
    return sorted(out, key=lambda m: m["Target"])


def container_view(info: Mapping[str, Any]) -> dict[str, Any]:
    """What the user configured of a container: its Config, its whole HostConfig, Mounts and network
    attachments (aliases, static addresses, links), without what changes from run to run."""
    config = dict(info["Config"])
    config["Labels"] = _user_labels(config.get("Labels"))
    config["Env"] = sorted(config.get("Env") or [])  # the engine keeps the order sent; it means nothing
    host = dict(info["HostConfig"])
    host["AllMounts"] = _all_mounts(host)
    networks = {
        name: {
            "Aliases": sorted(net.get("Aliases") or []),
            "IPAMConfig": net.get("IPAMConfig") or None,
            "Links": net.get("Links"),
            "DriverOpts": net.get("DriverOpts"),
        }
        for name, net in sorted(((info.get("NetworkSettings") or {}).get("Networks") or {}).items())
    }
    mounts = sorted(
        (
            {k: m.get(k) for k in ("Type", "Name", "Source", "Destination", "Driver", "Mode", "RW", "Propagation")}
            for m in info.get("Mounts") or []
            if m.get("Type") != "tmpfs"  # HostConfig.Tmpfs entries are not listed here: see AllMounts
        ),
        key=lambda m: m["Destination"],
    )
    return {
        "Name": info["Name"],
        "Config": config,
        "HostConfig": host,
        "Mounts": mounts,
        "NetworkSettings": {"Networks": networks},
    }


def network_view(info: Mapping[str, Any]) -> dict[str, Any]:
    keys = ("Name", "Driver", "Scope", "IPAM", "Options", "Internal", "Attachable", "Ingress", "EnableIPv6")
    out = {k: info.get(k) for k in keys}
    out["Labels"] = _user_labels(info.get("Labels"))
    return out


def volume_view(info: Mapping[str, Any]) -> dict[str, Any]:
    out = {k: info.get(k) for k in ("Name", "Driver", "Options", "Scope")}
    out["Labels"] = _user_labels(info.get("Labels"))
    return out


def views(side: Side) -> dict[str, Any]:
    """Every object of a side as `kind:key` -> its normalised view."""
    pairs = _placeholders(side)
    out: dict[str, Any] = {}
    for service, info in side.containers.items():
        out[f"container:{service}"] = _replace(container_view(info), pairs)
    for key, info in side.networks.items():
        out[f"network:{key}"] = _replace(network_view(info), pairs)
    for key, info in side.volumes.items():
        out[f"volume:{key}"] = _replace(volume_view(info), pairs)
    return out


# --- comparing ----------------------------------------------------------------------------------------------


def _empty(value: Any) -> bool:
    return value is None or value == [] or value == {} or value == ""


def differences(want: Any, have: Any, path: str = "") -> Iterator[tuple[str, Any, Any]]:
    """(path, Compose's value, reconcile's value) for every leaf that differs; dicts compared key by key, lists
    of dicts item by item. An empty value and none are the same (the engine fills in `[]`, `{}` or null
    depending on what the client sent)."""
    if _empty(want) and _empty(have):
        return
    if (
        isinstance(want, list)
        and isinstance(have, list)
        and len(want) == len(have)
        and all(isinstance(item, dict) for item in want + have)
    ):
        for i, (a, b) in enumerate(zip(want, have, strict=True)):
            yield from differences(a, b, f"{path}.{i}")
        return
    if isinstance(want, dict) and isinstance(have, dict):
        for key in sorted(set(want) | set(have)):
            sub = f"{path}.{key}" if path else str(key)
            yield from differences(want.get(key), have.get(key), sub)
    elif want != have:
        yield path, want, have


def allowed(kind_key: str, path: str, theirs: Any, ours: Any) -> str | None:
    """Why this difference is by design (its ALLOWED entry), or None."""
    where = f"{kind_key}:{path}"
    for entry in ALLOWED:
        if fnmatch.fnmatchcase(where, entry.where) and entry.when(theirs, ours):
            return entry.why
    return None


def compare(theirs: Side, ours: Side) -> list[str]:
    """Every difference not on the allow-list, one line each (`kind:key:path: compose=... reconcile=...`)."""
    left, right = views(theirs), views(ours)
    lines = []
    for kind_key in sorted(set(left) | set(right)):
        if kind_key not in left or kind_key not in right:
            if allowed(kind_key, EXISTS, kind_key in left, kind_key in right) is None:
                lines.append(f"{kind_key}: made by {'Compose' if kind_key in left else 'reconcile'} only")
            continue
        for path, want, have in differences(left[kind_key], right[kind_key]):
            if allowed(kind_key, path, want, have) is None:
                lines.append(f"{kind_key}:{path}: compose={json.dumps(want)} reconcile={json.dumps(have)}")
    return lines
