"""A service's `volumes`, `tmpfs`, `secrets` and `configs` as Container mounts.

Named volumes mount the project's Volume manifests; bind sources are rewritten so they still point at the same
place from the output directory; file-based secrets and configs become read-only bind mounts of the very same
files (at `/run/secrets/NAME`, and `/NAME` for configs, as Compose does outside swarm), so no secret value is
ever copied. Sensitive host paths get the `allowSensitive` opt-in and a flag in the loss report.
"""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING, Any

from reconciler.compose.source import ComposeError, Loc, Map, Seq, compose_bool, scalar_text
from reconciler.core.safeio import sensitive_host_paths

if TYPE_CHECKING:
    from reconciler.compose.service import ServiceMapper

# The sensitive host paths validation checks (the same list as the Container driver and the safe reader):
# the import sets allowSensitive exactly where validation will ask for it.
SENSITIVE_PATHS = sensitive_host_paths()  # one list for every reader and mount check (reconciler.core.safeio)
# a bind's propagation modes (the Container schema's bindMount.propagation; rprivate is the engine's default)
PROPAGATIONS = ("rprivate", "private", "rshared", "shared", "rslave", "slave")
# a bind's SELinux relabelling (`z` shared between containers, `Z` private to this one)
SELINUX_LABELS = ("z", "Z")
_SIZE = re.compile(r"^[0-9]+(\.[0-9]+)? ?([bB]|[kKmMgGtTpP]([iI]?[bB])?)?$")


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def sensitive_reason(source: str) -> str | None:
    """Why binding `source` hands the container the host (after resolving links), or None."""
    extra: tuple[str, ...] = ()
    docker_host = os.environ.get("DOCKER_HOST", "")
    if docker_host.startswith("unix://"):
        extra = (docker_host[len("unix://") :],)
    resolved = os.path.realpath(source)
    for root in (*SENSITIVE_PATHS, *extra):
        for candidate in {source, resolved}:
            if _inside(candidate, root) or _inside(root, candidate):
                return f"{candidate} exposes the sensitive host path {root}"
    return None


class MountMapper:
    """Collects the mounts of one service into `mounts`."""

    def __init__(self, mapper: ServiceMapper) -> None:
        self.m = mapper
        self.mounts: list[dict[str, Any]] = []
        self.targets: dict[str, Loc] = {}

    def run(self) -> None:
        s = self.m.service
        volumes = s.get("volumes") or Seq(s.loc)
        for i, volume in enumerate(volumes):
            self._volume(i, volume, volumes.at(i))
        if s.get("tmpfs") is not None:
            tmpfs = s["tmpfs"]
            items = tmpfs if isinstance(tmpfs, Seq) else [tmpfs]
            for i, item in enumerate(items):
                at = tmpfs.at(i) if isinstance(tmpfs, Seq) else s.at("tmpfs")
                self._tmpfs_short(i, scalar_text(item), at)
        for kind in ("secrets", "configs"):
            entries = s.get(kind) or Seq(s.loc)
            for i, entry in enumerate(entries):
                self._file_ref(kind, i, entry, entries.at(i))

    def _add(self, mount: dict[str, Any], at: Loc) -> None:
        target = mount["target"]
        if target in self.targets:
            first = self.targets[target]
            raise ComposeError(
                at.file, at.line, f"services.{self.m.name}: mount target {target} is also used at {first}"
            )
        self.targets[target] = at
        self.mounts.append(mount)

    def _target(self, value: Map, at: Loc, where: str) -> str:
        target = value.text("target") if "target" in value else ""
        if not target.startswith("/"):
            raise ComposeError(at.file, at.line, f"{where}: the target {target!r} must be an absolute path")
        return target.rstrip("/") or "/"

    def _volume(self, i: int, volume: Map, at: Loc) -> None:
        key = f"volumes[{i}]"
        where = f"services.{self.m.name}.{key}"
        kind = volume.text("type") if "type" in volume else "volume"
        if kind in ("npipe", "cluster", "image"):
            self.m.lost(key, f"{kind} mounts are not supported by reconciler", at)
            return
        if kind not in ("volume", "bind", "tmpfs"):
            raise ComposeError(at.file, at.line, f"{where}: unknown type {kind!r}")
        target = self._target(volume, at, where)
        read_only = compose_bool(volume.get("read_only")) is True
        if volume.get("read_only") is not None and compose_bool(volume["read_only"]) is None:
            self.m.lost(f"{key}.read_only", f"{volume.text('read_only')!r} is not a boolean", volume.at("read_only"))
        extra: dict[str, Any] = {}  # noCopy, propagation
        for option in volume:
            if option in ("type", "source", "target", "read_only") or option.startswith("x-"):
                continue
            if option == kind and isinstance(volume[option], Map):
                extra.update(self._sub_options(kind, volume[option], key, at))
            elif option == "flags":
                for flag in volume["flags"]:
                    if kind == "volume" and flag == "nocopy":  # `name:/target:nocopy`
                        extra["noCopy"] = True
                        continue
                    if kind == "bind" and flag in PROPAGATIONS:  # `./dir:/target:rslave`
                        if flag != "rprivate":
                            extra["propagation"] = flag
                        continue
                    if kind == "bind" and flag in SELINUX_LABELS:  # `./dir:/target:z`
                        extra["selinux"] = flag
                        continue
                    why = "reconciler relabels bind sources only" if flag in SELINUX_LABELS else "not supported"
                    if flag in ("cached", "delegated", "consistent"):
                        why = "a Docker Desktop consistency hint"
                    self.m.lost(f"{key}:{flag}", why, at)
            elif option == "consistency":
                self.m.lost(f"{key}.consistency", "a Docker Desktop consistency hint", volume.at(option))
            else:
                self.m.lost(f"{key}.{option}", f"not a setting of a {kind} mount in reconciler", volume.at(option))
        if kind == "tmpfs":
            self._tmpfs(target, volume.get("tmpfs"), key, at)
            return
        source = volume.text("source") if volume.get("source") not in (None, "") else None
        if kind == "volume":
            if source is None:
                self.m.lost(
                    key,
                    "an anonymous volume: reconciler mounts only declared volumes; give it a name in "
                    "the top-level volumes to keep its data",
                    at,
                )
                return
            if source not in self.m.ctx.volumes:
                raise ComposeError(at.file, at.line, f"{where}: refers to undefined volume {source!r}")
            declared = self.m.ctx.volumes[source]
            if declared is None:
                self.m.lost(
                    key,
                    f"volume {source!r} is external or not declarable (see its entry); mount left out "
                    "— the container would run without that data",
                    at,
                )
                return
            mount: dict[str, Any] = {"type": "volume", "source": declared, "target": target}
            if read_only:
                mount["readOnly"] = True
            self._add({**mount, **extra}, at)
            return
        if source is None:
            raise ComposeError(at.file, at.line, f"{where}: a bind mount needs a source")
        self.bind(source, target, read_only, key, at, extra=extra)

    def _sub_options(self, kind: str, options: Map, key: str, at: Loc) -> dict[str, Any]:
        """The mount fields `volume:`/`bind:`/`tmpfs:` options make (`noCopy`, `propagation`); the others lost."""
        fields: dict[str, Any] = {}
        for option in options:
            value = options[option]
            oat = options.at(option)
            if kind == "bind" and option == "create_host_path":
                continue  # handled where the source is checked
            if kind == "tmpfs" and option in ("size", "mode"):
                continue
            if kind == "volume" and option == "nocopy":
                nocopy = compose_bool(value)
                if nocopy is None:
                    self.m.lost(f"{key}.volume.nocopy", f"{scalar_text(value)!r} is not a boolean", oat)
                elif nocopy:
                    fields["noCopy"] = True
                continue
            if kind == "bind" and option == "selinux":
                text = scalar_text(value)
                if text in SELINUX_LABELS:
                    fields["selinux"] = text
                else:
                    self.m.lost(f"{key}.bind.selinux", f"{text!r} is not z or Z", oat)
                continue
            if kind == "bind" and option == "propagation":
                text = scalar_text(value)
                if text not in PROPAGATIONS:
                    self.m.lost(f"{key}.bind.propagation", f"{text!r} is not one of {', '.join(PROPAGATIONS)}", oat)
                elif text != "rprivate":  # the engine's default: nothing to declare
                    fields["propagation"] = text
                continue
            self.m.lost(f"{key}.{kind}.{option}", f"not a setting of a {kind} mount in reconciler", oat)
        return fields

    def bind(
        self,
        source: str,
        target: str,
        read_only: bool,
        key: str,
        at: Loc,
        file_ref: bool = False,
        extra: dict[str, Any] | None = None,
    ) -> None:
        """A bind mount of a Compose host path; left out (and reported) when the source does not exist. A
        sensitive source needs allowSensitive: a grant to review for a volume, never granted for a secret or
        config file (`file_ref`): a Compose file naming /etc/shadow as a secret is not a request to trust."""
        path = self.m.ctx.host_path(source)
        if not path.exists():
            self.m.lost(
                key,
                f"bind source {path} does not exist: Compose would create an empty directory, "
                "reconcile never creates one; create it and import again",
                at,
            )
            return
        mount: dict[str, Any] = {"type": "bind", "source": self.m.ctx.manifest_path(source), "target": target}
        if read_only:
            mount["readOnly"] = True
        mount.update(extra or {})
        reason = sensitive_reason(str(path))
        if reason and file_ref:
            self.m.lost(key, f"{reason}: the import never grants allowSensitive to a secret or config; left out", at)
            return
        if reason:
            if not self.m.grant(key, "allowSensitive", reason, at):
                return
            mount["allowSensitive"] = True
        self._add(mount, at)

    def _tmpfs(self, target: str, options: Any, key: str, at: Loc) -> None:
        mount: dict[str, Any] = {"type": "tmpfs", "target": target}
        if isinstance(options, Map):
            if options.get("size") is not None:
                size = options.text("size")
                if _SIZE.match(size) and size.strip("0.") not in ("", "b", "B"):
                    mount["size"] = int(size) if size.isdigit() else size
                else:
                    self.m.lost(f"{key}.tmpfs.size", f"{size!r} is not a byte size reconciler reads", at)
            if options.get("mode") is not None:
                mode = options.text("mode")
                mount_mode = mode if re.fullmatch(r"0?[0-7]{3,4}", mode) else None
                if mount_mode is None:
                    self.m.lost(f"{key}.tmpfs.mode", f"{mode!r} is not an octal mode", at)
                else:
                    mount["mode"] = mount_mode[-4:] if len(mount_mode) > 4 else mount_mode
            if options.get("exec") is True:  # noexec is the engine's default: nothing to declare
                mount["exec"] = True
        self._add(mount, at)

    def _tmpfs_short(self, i: int, text: str, at: Loc) -> None:
        target, _, opts = text.partition(":")
        if not target.startswith("/"):
            raise ComposeError(at.file, at.line, f"services.{self.m.name}.tmpfs: {target!r} is not an absolute path")
        options = Map(at)
        for opt in filter(None, opts.split(",")):
            name, _, value = opt.partition("=")
            if name in ("size", "mode") and value:
                options.put(name, value, at)
            elif name in ("exec", "noexec") and not value:
                options.put("exec", name == "exec", at)  # the last one wins, as in mount(8)
            else:
                self.m.lost(f"tmpfs[{i}]:{name}", "reconciler's tmpfs mounts take size, mode and exec only", at)
        self._tmpfs(target.rstrip("/") or "/", options, f"tmpfs[{i}]", at)

    def _file_ref(self, kind: str, i: int, entry: Map, at: Loc) -> None:
        key = f"{kind}[{i}]"
        name = entry.text("source")
        declared = (self.m.top.get(kind) or {}).get(name)
        if not isinstance(declared, Map):
            raise ComposeError(at.file, at.line, f"services.{self.m.name}.{key}: undefined {kind[:-1]} {name!r}")
        default_dir = "/run/secrets" if kind == "secrets" else ""
        target = entry.text("target") if entry.get("target") not in (None, "") else name
        if not target.startswith("/"):
            target = f"{default_dir}/{target}"
        for option in entry:
            if option in ("uid", "gid", "mode"):
                self.m.lost(
                    f"{key}.{option}",
                    "Compose ignores it for file-based " + kind + " outside swarm; "
                    "reconciler bind-mounts the file as it is",
                    entry.at(option),
                )
        if declared.get("file") is not None:
            self.bind(declared.text("file"), target, True, key, at, file_ref=True)
            return
        how = next((k for k in ("environment", "content", "external") if declared.get(k) is not None), "definition")
        why = {
            "environment": "its value comes from the shell environment; reconciler never copies secret values",
            "content": "inline content would have to be copied into a file; not done",
            "external": "external (swarm) objects do not exist outside swarm",
        }.get(how, "only file-based " + kind + " are mapped")
        self.m.lost(key, f"{kind[:-1]} {name!r}: {why}", at)
