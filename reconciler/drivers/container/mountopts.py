"""Mount options the engine's Mounts API has no field for: SELinux relabelling of a bind mount (`:z` shared,
`:Z` private) and an executable tmpfs (`exec`; a Mounts-API tmpfs is always `noexec`). The engine takes them only
in the option strings of HostConfig.Binds (`src:dst:ro,z,rshared`) and HostConfig.Tmpfs (`{dst: "exec,size=…"}`),
so the mounts declaring them go there, and only those (the others stay in HostConfig.Mounts, so the hashes and
read-back of existing containers stay as they were). Both read back exactly as written.

Pure: canonical mount dicts (fields._mount) <-> the engine's strings.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from reconciler.drivers.engine.values import parse_bytes
from reconciler.errors import SpecError

SELINUX = ("z", "Z")
PROPAGATIONS = ("rprivate", "private", "rshared", "shared", "rslave", "slave")
DEFAULT_PROPAGATION = "rprivate"


def needs_binds(mount: Mapping[str, Any]) -> bool:
    """A bind mount relabelled for SELinux: only HostConfig.Binds can say so."""
    return mount["type"] == "bind" and mount.get("selinux") in SELINUX


def needs_tmpfs(mount: Mapping[str, Any]) -> bool:
    """An executable tmpfs: only HostConfig.Tmpfs can say so."""
    return mount["type"] == "tmpfs" and bool(mount.get("exec"))


def bind_string(mount: Mapping[str, Any]) -> str:
    """`src:dst:ro,z,rshared` (`rw` and the default propagation left out, as the engine keeps it)."""
    options = ["ro"] if mount["readOnly"] else []
    options.append(mount["selinux"])
    if mount.get("propagation"):
        options.append(mount["propagation"])
    return f"{mount['source']}:{mount['target']}:{','.join(options)}"


def tmpfs_options(mount: Mapping[str, Any]) -> str:
    """`exec,size=<bytes>,mode=<octal>` for HostConfig.Tmpfs."""
    options = ["exec"]
    if mount.get("size") is not None:
        options.append(f"size={mount['size']}")
    if mount.get("mode") is not None:
        options.append(f"mode={mount['mode']:o}")
    return ",".join(options)


def read_bind(entry: str) -> dict[str, Any] | None:
    """One HostConfig.Binds entry -> a canonical mount: a bind of a host path, or a named volume (`name:dst`: what
    Compose 1.29 and `docker run -v` write, read so that an adopted container's volumes are no change)."""
    parts = entry.split(":")
    if len(parts) < 2:
        return None
    if len(parts) >= 3 and all(o in (*SELINUX, *PROPAGATIONS, "ro", "rw", "nocopy") for o in parts[-1].split(",")):
        source, target, options = ":".join(parts[:-2]), parts[-2], parts[-1].split(",")
    else:
        source, target, options = ":".join(parts[:-1]), parts[-1], []
    if not source:
        return None
    if not source.startswith("/"):
        volume: dict[str, Any] = {"type": "volume", "source": source, "target": target, "readOnly": "ro" in options}
        if "nocopy" in options:
            volume["noCopy"] = True
        return volume
    mount: dict[str, Any] = {"type": "bind", "source": source, "target": target, "readOnly": "ro" in options}
    propagation = next((o for o in options if o in PROPAGATIONS), None)
    if propagation not in (None, DEFAULT_PROPAGATION):
        mount["propagation"] = propagation
    selinux = next((o for o in options if o in SELINUX), None)
    if selinux is not None:
        mount["selinux"] = selinux
    return mount


def read_tmpfs(target: str, options: str) -> dict[str, Any]:
    """One HostConfig.Tmpfs entry -> a canonical tmpfs mount (`exec` kept only when the last exec/noexec is exec)."""
    mount: dict[str, Any] = {"type": "tmpfs", "target": target, "size": None, "mode": None}
    executable = False
    for option in filter(None, options.split(",")):
        name, _, value = option.partition("=")
        if name == "size" and value:
            try:
                mount["size"] = parse_bytes(value, "size")
            except SpecError:  # a size the kernel reads but reconcile never writes (`50%`): not one it declared
                mount["size"] = value
        elif name == "mode" and value:
            mount["mode"] = int(value, 8)
        elif name in ("exec", "noexec"):
            executable = name == "exec"
    if executable:
        mount["exec"] = True
    return mount
