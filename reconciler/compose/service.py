"""One Compose service as a Container manifest (and the Image it needs).

Only what the Compose file sets is written: a key the file leaves out stays out of the manifest, so the image's
own defaults (command, entrypoint, env, user, working dir, healthcheck) are never copied in and cannot cause a
perpetual diff later. Every key that is not carried over is reported with the reason.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from typing import Any

from reconciler.compose import ports as port_mapping
from reconciler.compose.context import NAME, RESERVED_LABEL_PREFIX, Context, Manifest, string_map
from reconciler.compose.envfiles import env_file_problem
from reconciler.compose.keys import HANDLED, MAPPED_BY_HAND, UNMAPPED, container_fields
from reconciler.compose.limits import DURATION, map_healthcheck, map_resources, map_restart
from reconciler.compose.mounts import MountMapper
from reconciler.compose.networking import map_depends_on, map_networking
from reconciler.compose.source import ComposeError, Loc, Map, Seq, scalar_text
from reconciler.core.safeio import inside, sensitive_reason

SENSITIVE_ENV_NAME = re.compile(r"PASSW|SECRET|TOKEN|PRIVATE|CREDENTIAL|API_?KEY|ACCESS_?KEY", re.IGNORECASE)
_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ns|us|µs|ms|s|m|h)")
_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}
_USER = re.compile(r"^[^:\s]+(:[^:\s]+)?$")
_CAPABILITY = re.compile(r"^[A-Za-z0-9_]+$")
_HOSTNAME = re.compile(r"^[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?(\.[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)*$")
_IMAGE = re.compile(
    r"^((\[[0-9a-fA-F:]+\]|[a-zA-Z0-9.-]+)(:[0-9]+)?/)?[a-z0-9]+(([._]|__|-+)[a-z0-9]+)*(/[a-z0-9]+(([._]|__|-+)[a-z0-9]+)*)*"
    r"(:[a-zA-Z0-9_][a-zA-Z0-9_.-]{0,127})?(@[a-zA-Z][a-zA-Z0-9]*([-_+.][a-zA-Z][a-zA-Z0-9]*)*:[0-9a-fA-F]{32,})?$"
)
# Keys whose shape the mapping relies on; Compose refuses other shapes too.
_SHAPES: dict[str, tuple[type, str]] = {
    "healthcheck": (Map, "a mapping"),
    "deploy": (Map, "a mapping"),
    "cap_add": (Seq, "a list"),
    "cap_drop": (Seq, "a list"),
    "profiles": (Seq, "a list"),
}
_PULL_POLICIES = {"always": "Always", "never": "Never", "missing": "IfNotPresent", "if_not_present": "IfNotPresent"}


@dataclass(frozen=True)
class ImageNeed:
    """The image a service runs: pulled by reference, or built from a context (then `build` is the spec)."""

    reference: str
    build: dict[str, Any] | None
    pull_policy: str | None
    service: str
    manifest_name: str  # the service's Container name: always a valid manifest name
    origin: Loc


def looks_secret(name: str, variables: frozenset[str] = frozenset()) -> bool:
    """Whether an env or arg name (or a variable feeding it) looks like it holds a secret; `*_FILE` names a path."""
    return any(SENSITIVE_ENV_NAME.search(n) and not n.upper().endswith("_FILE") for n in (name, *variables))


def duration_seconds(text: str) -> float:
    if re.fullmatch(r"[0-9]+(\.[0-9]+)?", text):
        return float(text)
    return sum(float(n) * _SECONDS[u] for n, u in _DURATION_PART.findall(text))


class ServiceMapper:
    """Maps one service: `run()` returns its Container manifest and leaves the image it needs in `image`."""

    def __init__(self, name: str, service: Map, ctx: Context, top: Map) -> None:
        self.name = name
        self.service = service
        self.ctx = ctx
        self.top = top
        self.spec: dict[str, Any] = {}
        self.labels: dict[str, str] = {}
        self.container_name = ctx.containers[name]
        self.image: ImageNeed | None = None

    def _where(self, key: str, loc: Loc | None) -> Loc:
        return loc or self.service.at(re.split(r"[.\[:]", key)[0])

    def lost(self, key: str, why: str, loc: Loc | None = None) -> None:
        self.ctx.report.lost(self._where(key, loc), f"services.{self.name}.{key}", why)

    def flag(self, key: str, why: str, loc: Loc | None = None) -> None:
        self.ctx.report.flag(self._where(key, loc), f"services.{self.name}.{key}", why)

    def run(self) -> Manifest:
        s = self.service
        for key in s:
            if key.startswith("x-") or key in HANDLED:
                continue
            if key in UNMAPPED:
                self.lost(key, UNMAPPED[key])
                continue
            at = s.at(key)
            raise ComposeError(at.file, at.line, f"services.{self.name}: unknown key {key!r}")
        for key, (shape, shown) in _SHAPES.items():
            if s.get(key) is not None and not isinstance(s[key], shape):
                at = s.at(key)
                raise ComposeError(at.file, at.line, f"services.{self.name}.{key} must be {shown}")
        self._image()
        self._command_lines()
        self._environment()
        port_mapping.map_ports(self)
        mounts = MountMapper(self)
        mounts.run()
        if mounts.mounts:
            self.spec["mounts"] = mounts.mounts
        map_networking(self)
        map_depends_on(self)
        map_healthcheck(self)
        map_restart(self)
        map_resources(self)
        self._process()
        self._copied()
        self._labels()
        return Manifest("Container", self.container_name, self.spec, s.loc, self.labels)

    # --- image and build -------------------------------------------------------------------------------------

    def _image(self) -> None:
        s = self.service
        image = s.get("image")
        build = s.get("build")
        if image is None and build is None:
            raise ComposeError(s.loc.file, s.loc.line, f"services.{self.name}: needs 'image' or 'build'")
        if image is not None:
            reference = s.text("image")
            if not _IMAGE.match(reference):
                at = s.at("image")
                raise ComposeError(at.file, at.line, f"services.{self.name}.image: invalid reference {reference!r}")
        else:
            # what `docker compose build` tags an image without `image:` as
            reference = f"{self.ctx.project}-{self.name.lower()}"
            if not _IMAGE.match(reference):
                at = s.at("build")
                raise ComposeError(
                    at.file,
                    at.line,
                    f"services.{self.name}: the image name Compose would build "
                    f"({reference!r}) is not a valid reference; set image:",
                )
        self.spec["image"] = reference
        policy = None
        if "pull_policy" in s:
            raw = s.text("pull_policy")
            if raw in _PULL_POLICIES:
                policy = _PULL_POLICIES[raw]
            elif raw != "build":
                self.lost("pull_policy", f"{raw!r}: reconciler has pull policies IfNotPresent, Always, Never")
        build_spec = self._build(build) if build is not None else None
        origin = s.at("build" if build else "image")
        self.image = ImageNeed(reference, build_spec, policy, self.name, self.container_name, origin)

    def _build(self, build: Map) -> dict[str, Any] | None:
        out: dict[str, Any] = {}
        context = build.text("context") if "context" in build else "."
        if re.match(r"^[a-z]+://|^git@|\.git(#|$)", context):
            self.lost("build.context", "a remote build context (URL or git): reconciler builds from directories")
            return None
        path = self.ctx.host_path(context)
        if not path.is_dir():
            at = build.at("context")
            raise ComposeError(at.file, at.line, f"services.{self.name}.build.context: {path} is not a directory")
        out["context"] = self.ctx.manifest_path(context)
        # validation asks for these opt-ins: a context outside the output directory (and a sensitive one) is sent
        # to the engine and may end up in a pushed image, so the import sets them and says so
        real = os.path.realpath(path)
        if not inside(real, os.path.realpath(self.ctx.out_dir)):
            out["allowExternalContext"] = True
            self.flag(
                "build.context",
                f"{real} is outside the output directory: carried over with allowExternalContext: true",
                build.at("context") if "context" in build else None,
            )
            reason = sensitive_reason(str(path))
            if reason:
                out["allowSensitive"] = True
                self.flag("build.context", f"{reason}: carried over with allowSensitive: true")
        for key in build:
            at = build.at(key)
            if key == "context" or key.startswith("x-"):
                continue
            if key == "dockerfile":
                dockerfile = build.text("dockerfile")
                if os.path.isabs(dockerfile):
                    dockerfile = os.path.relpath(dockerfile, path)
                out["dockerfile"] = dockerfile
            elif key == "args":
                args: dict[str, str] = {}
                for arg, value in build["args"].items():
                    if value is None:
                        self.lost(
                            f"build.args.{arg}",
                            "value comes from the shell at build time; not copied",
                            build["args"].at(arg),
                        )
                        continue
                    arg_at = build["args"].at(arg)
                    variables = self.ctx.variables_in(arg_at, arg, build["args"].text(arg))
                    if variables and looks_secret(arg, variables):
                        self.lost(
                            f"build.args.{arg}",
                            "the value comes from the shell or .env and may be a secret: not copied",
                            arg_at,
                        )
                        continue
                    args[arg] = build["args"].text(arg)
                if args:
                    out["args"] = args
            elif key == "target":
                out["target"] = build.text("target")
            else:
                self.lost(f"build.{key}", "reconciler's Image build has context, dockerfile, args and target only", at)
        return out

    # --- process ---------------------------------------------------------------------------------------------

    def _command_lines(self) -> None:
        for key in ("command", "entrypoint"):
            if key not in self.service:
                continue
            value = self.service[key]
            if value is None:
                continue
            if isinstance(value, Seq):
                items = [scalar_text(v) for v in value]
                if not items:
                    self.lost(key, "an empty list clears the image's value; reconciler cannot declare that")
                    continue
                self.spec[key] = items
            elif isinstance(value, Map):
                at = self.service.at(key)
                raise ComposeError(at.file, at.line, f"services.{self.name}.{key} must be a string or a list")
            else:
                text = self.service.text(key)
                if not text.strip():
                    self.lost(key, "an empty value clears the image's value; reconciler cannot declare that")
                    continue
                self.spec[key] = text

    def _environment(self) -> None:
        s = self.service
        env_files = []
        for i, entry in enumerate(s.get("env_file") or []):
            at = s["env_file"].at(i)
            raw = entry.text("path")
            path = self.ctx.host_path(raw)
            required = entry.get("required", True) is not False
            for option in entry:
                if option not in ("path", "required") and not option.startswith("x-"):
                    self.lost(
                        f"env_file[{i}].{option}",
                        "reconciler reads env files as KEY=VALUE lines only",
                        entry.at(option),
                    )
            if not path.is_file():
                if required:
                    raise ComposeError(at.file, at.line, f"services.{self.name}.env_file: {path} does not exist")
                continue  # Compose skips it too
            problem = env_file_problem(path)
            if problem:
                self.lost(f"env_file[{i}]", f"{raw}: {problem}; convert it to plain KEY=VALUE lines", at)
                continue
            env_files.append(self.ctx.manifest_path(raw))
        if env_files:
            self.spec["envFiles"] = env_files
        env: dict[str, str] = {}
        sensitive: list[str] = []
        environment = s.get("environment") or Map(s.loc)
        for key, value in environment.items():
            at = environment.at(key)
            if value is None:
                self.lost(
                    f"environment.{key}",
                    "the value comes from the shell that runs `docker compose`; not copied (it may be a secret): "
                    "put it in an env file",
                    at,
                )
                continue
            if isinstance(value, Map | Seq):
                raise ComposeError(at.file, at.line, f"services.{self.name}.environment.{key} must be a string")
            if not key or "=" in key or any(c.isspace() for c in key):
                raise ComposeError(at.file, at.line, f"services.{self.name}.environment: invalid name {key!r}")
            value_text = environment.text(key)
            variables = self.ctx.variables_in(at, key, value_text)
            if variables and looks_secret(key, variables):
                shown = ", ".join(f"${{{v}}}" for v in sorted(variables))
                self.lost(
                    f"environment.{key}",
                    f"the value comes from {shown} in the shell or .env, not from the Compose file, and may be a "
                    "secret: not copied; put it in an env file",
                    at,
                )
                continue
            env[key] = value_text
            if looks_secret(key):
                sensitive.append(key)
                self.flag(
                    f"environment.{key}",
                    "the value is written into the manifest in clear (marked sensitiveEnv, so never printed); "
                    "consider moving it to an env file",
                    at,
                )
        if env:
            self.spec["env"] = env
        if sensitive:
            self.spec["sensitiveEnv"] = sensitive

    def _process(self) -> None:
        s = self.service
        if "user" in s:
            user = s.text("user")
            if _USER.match(user):
                self.spec["user"] = user
            else:
                self.lost("user", f"{user!r} is not `user[:group]`")
        if "working_dir" in s:
            workdir = s.text("working_dir")
            if workdir.startswith("/"):
                self.spec["workingDir"] = workdir
            else:
                self.lost("working_dir", "reconciler needs an absolute working directory")
        if "hostname" in s:
            hostname = s.text("hostname")
            if str(self.spec.get("networkMode", "")).startswith("container:"):
                self.lost("hostname", "a container sharing another's network namespace has that one's hostname")
            elif _HOSTNAME.match(hostname):
                self.spec["hostname"] = hostname
            else:
                self.lost("hostname", f"{hostname!r} is not a valid host name")
        for key, field in (("cap_add", "capAdd"), ("cap_drop", "capDrop")):
            if key not in s:
                continue
            caps: list[str] = []
            for i, cap in enumerate(s[key] or []):
                text = scalar_text(cap)
                if not _CAPABILITY.match(text):
                    self.lost(f"{key}[{i}]", f"{text!r} is not a capability name", s[key].at(i))
                elif text not in caps:
                    caps.append(text)
            if caps:
                self.spec[field] = caps
        if s.get("privileged") is True:
            self.spec["privileged"] = True
            self.spec["allowPrivileged"] = True
            self.flag("privileged", "carried over with allowPrivileged: true; the container has the host")
        if "read_only" in s and s["read_only"] is True:
            self.spec["readOnlyRootfs"] = True
        if "stop_grace_period" in s:
            text = s.text("stop_grace_period")
            if not DURATION.match(text) and not text.isdigit():
                self.lost("stop_grace_period", f"{text!r} is not a duration")
            else:
                seconds = duration_seconds(text)
                self.spec["stopTimeout"] = math.ceil(seconds)
                if seconds != math.ceil(seconds):
                    self.flag("stop_grace_period", f"rounded up to {math.ceil(seconds)}s: stopTimeout is whole seconds")

    def _copied(self) -> None:
        """The Container fields whose Compose key no mapper here reads (a row names it): copied as written; the
        manifest is validated as a whole before it is written."""
        for row in container_fields():
            for key in row.compose:
                if key in MAPPED_BY_HAND or key not in self.service or row.key in self.spec:
                    continue
                self.spec[row.key] = _plain(self.service[key])
                why = row.opt_in(self.spec[row.key]) if row.opt_in is not None else None
                if why:  # as for privileged: the explicit request is carried with its opt-in, flagged
                    self.spec["allowPrivileged"] = True
                    self.flag(key, f"carried over with allowPrivileged: true; {key}: {why}")

    def _labels(self) -> None:
        labels = self.service.get("labels")
        if isinstance(labels, Map):
            self.labels = string_map(labels, self.ctx, f"services.{self.name}.labels", labels=True)
        for key in list(self.labels):
            if key.startswith(RESERVED_LABEL_PREFIX):
                del self.labels[key]


def _plain(value: Any) -> Any:
    """A Compose value as plain data (the source's mappings and lists carry their locations)."""
    if isinstance(value, Map):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, Seq):
        return [_plain(v) for v in value]
    return value


def container_name(service: str, raw: Map, project: str) -> tuple[str, str | None]:
    """The Container name for a service: `container_name`, else the service name; with the reason when the
    service name is not a valid engine name and the Compose v2 name `<project>-<service>-1` is used."""
    if raw.get("container_name") is not None:
        name = raw.text("container_name")
        if not NAME.match(name) or len(name) < 2:
            at = raw.at("container_name")
            raise ComposeError(at.file, at.line, f"services.{service}.container_name: {name!r} is not a valid name")
        return name, None
    if NAME.match(service) and len(service) >= 2:
        return service, None
    fallback = f"{project}-{service}-1"
    if not NAME.match(fallback):
        raise ComposeError(raw.loc.file, raw.loc.line, f"services.{service}: no valid container name can be made")
    return fallback, f"{service!r} is not a valid reconciler Container name; named {fallback!r} as Compose v2 does"
