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
from reconciler.compose.context import NAME, RESERVED_LABEL_PREFIX, SECRETS_DIR, Context, Manifest, string_map
from reconciler.compose.devices import map_gpus
from reconciler.compose.envfiles import env_file_problem
from reconciler.compose.keys import DANGEROUS_CAPS, HANDLED, MAPPED_BY_HAND, UNMAPPED, container_fields
from reconciler.compose.limits import DURATION, map_healthcheck, map_resources, map_restart
from reconciler.compose.mounts import MountMapper
from reconciler.compose.networking import map_depends_on, map_networking
from reconciler.compose.source import ComposeError, Loc, Map, Seq, compose_bool, scalar_text
from reconciler.core.safeio import inside, sensitive_reason

SENSITIVE_ENV_NAME = re.compile(r"PASS|PWD|SECRET|TOKEN|KEY|PRIVATE|CREDENTIAL|AUTH", re.IGNORECASE)
_URL_PASSWORD = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*://[^/@\s:]*:[^/@\s]+@")  # scheme://user:password@host
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


def looks_secret(name: str, variables: frozenset[str] = frozenset(), value: str = "") -> bool:
    """Whether an env or arg name (or a variable feeding it) looks like it holds a secret (`*_FILE` names a
    path), or the value is a URL with a password."""
    named = any(SENSITIVE_ENV_NAME.search(n) and not n.upper().endswith("_FILE") for n in (name, *variables))
    return named or bool(_URL_PASSWORD.search(value))


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
        self.secrets: dict[str, str] = {}  # env values kept out of the manifest, for SECRETS_DIR/<container>.env

    def _where(self, key: str, loc: Loc | None) -> Loc:
        return loc or self.service.at(re.split(r"[.\[:]", key)[0])

    def lost(self, key: str, why: str, loc: Loc | None = None) -> None:
        self.ctx.report.lost(self._where(key, loc), f"services.{self.name}.{key}", why)

    def flag(self, key: str, why: str, loc: Loc | None = None) -> None:
        self.ctx.report.flag(self._where(key, loc), f"services.{self.name}.{key}", why)

    def grant(self, key: str, opt_in: str, why: str, loc: Loc | None = None) -> bool:
        """Whether to carry over what needs `opt_in`: yes, listed under "grants to review" (the import exits 2);
        with --no-grants no, reported as left out."""
        where, full = self._where(key, loc), f"services.{self.name}.{key}"
        if self.ctx.grants:
            self.ctx.report.grant(where, full, f"{why}: carried over with {opt_in}: true")
            return True
        self.ctx.report.lost(where, full, f"{why}: left out (--no-grants); it needs {opt_in}: true")
        return False

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
        map_gpus(self)
        self._process()
        self._copied()
        self._isolation_grants()
        self._labels()
        return Manifest("Container", self.container_name, self.spec, s.loc, self.labels, self.secrets)

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
        # a context outside the output directory is sent to the engine and may end up in a pushed image:
        # validation asks for allowExternalContext, a grant to review; one at a sensitive host path (or a
        # Dockerfile there) would bake host secrets into an image: the import never grants that
        context_at = build.at("context") if "context" in build else None
        real = os.path.realpath(path)
        out_root = os.path.realpath(self.ctx.out_dir)
        dockerfile_raw = build.text("dockerfile") if "dockerfile" in build else "Dockerfile"
        dockerfile_real = os.path.realpath(path / dockerfile_raw)  # an absolute Dockerfile is itself
        context_external = not inside(real, out_root)
        dockerfile_external = not inside(dockerfile_real, real) and not inside(dockerfile_real, out_root)
        if context_external or dockerfile_external:
            for candidate, key, external in (
                (str(path), "context", context_external),
                (dockerfile_real, "dockerfile", dockerfile_external),
            ):
                reason = sensitive_reason(candidate) if external else None
                if reason:
                    self.lost(
                        f"build.{key}",
                        f"{reason}: the import never grants allowSensitive to a build (host files would be sent to "
                        "the engine and may end up in the image); build left out, so the image is pulled",
                        build.at(key) if key in build else context_at,
                    )
                    return None
            outside = real if context_external else dockerfile_real
            why = f"{outside} is outside the output directory"
            if not self.grant("build.context", "allowExternalContext", why, context_at):
                return None
            out["allowExternalContext"] = True
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
                    if variables and looks_secret(arg, variables, build["args"].text(arg)):
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
            if not path.exists():
                if required:
                    raise ComposeError(at.file, at.line, f"services.{self.name}.env_file: {path} does not exist")
                continue  # Compose skips it too
            problem = env_file_problem(path)
            if not path.is_file():  # /dev/zero, a FIFO, a directory: it exists, it is just no file to read
                raise ComposeError(
                    at.file, at.line, f"services.{self.name}.env_file: {path}: {problem or 'not a file'}"
                )
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
            if isinstance(value, Map | Seq):
                raise ComposeError(at.file, at.line, f"services.{self.name}.environment.{key} must be a string")
            if not key or "=" in key or any(c.isspace() for c in key):
                raise ComposeError(at.file, at.line, f"services.{self.name}.environment: invalid name {key!r}")
            if value is None:
                # `- NAME`: the value of NAME in the shell or .env, as Compose v2 takes it; nothing when set nowhere
                if key not in self.ctx.variables:
                    continue
                value_text, variables = self.ctx.variables[key], frozenset({key})
            else:
                value_text = environment.text(key)
                variables = self.ctx.variables_in(at, key, value_text)
            marked = key in self.ctx.secret_env or bool(variables & self.ctx.secret_env)
            if marked or (variables and looks_secret(key, variables, value_text)):
                self._secret(key, value_text, variables, at)
                continue
            env[key] = value_text
            if looks_secret(key, value=value_text):
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
        if self.secrets:  # last: as `environment` in Compose, it wins over the service's own env files
            self.spec["envFiles"] = [*env_files, f"./{SECRETS_DIR}/{self.container_name}.env"]

    def _secret(self, key: str, value: str, variables: frozenset[str], at: Loc) -> None:
        """A secret env value: into this container's env file beside the manifests, never into a manifest."""
        origin = ", ".join(f"${{{v}}}" for v in sorted(variables)) or "the Compose file"
        if "\n" in value or "\r" in value or "\0" in value:
            self.lost(
                f"environment.{key}",
                f"the value (from {origin}) may be a secret and spans lines, which an env file cannot hold: not copied",
                at,
            )
            return
        self.secrets[key] = value
        self.ctx.report.secret(
            at,
            f"services.{self.name}.environment.{key}",
            f"the value (from {origin}) is in {SECRETS_DIR}/{self.container_name}.env (mode 0600, git-ignored), "
            "not in a manifest",
        )

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
                elif text in caps:
                    continue
                elif key == "cap_add" and text.upper().removeprefix("CAP_") in DANGEROUS_CAPS:
                    why = f"capability {text} gives the container (nearly) the host"
                    if self.grant(f"{key}[{i}]", "allowPrivileged", why, s[key].at(i)):
                        caps.append(text)
                        self.spec["allowPrivileged"] = True
                else:
                    caps.append(text)
            if caps:
                self.spec[field] = caps
        for key in ("privileged", "read_only"):
            if s.get(key) is not None and compose_bool(s[key]) is None:
                self.lost(key, f"{s.text(key)!r} is not a boolean (true or false)")
        if compose_bool(s.get("privileged")) is True and self.grant(
            "privileged", "allowPrivileged", "privileged: true gives the container the host"
        ):
            self.spec["privileged"] = True
            self.spec["allowPrivileged"] = True
        if compose_bool(s.get("read_only")) is True:
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
                if key in ISOLATION_KEYS:  # judged value by value in _isolation_grants
                    continue
                why = row.opt_in(self.spec[row.key]) if row.opt_in is not None else None
                if why:  # the row's own rule (checks.py asks the same): a grant to review, or left out
                    if self.grant(key, "allowPrivileged", f"{key}: {why}"):
                        self.spec["allowPrivileged"] = True
                    else:
                        del self.spec[row.key]

    def _isolation_grants(self) -> None:
        """Copied run options that take away the container's isolation (`pid: host`, `ipc: host`, an unconfined
        `security_opt`) need allowPrivileged, as validation says: a grant to review, or left out (--no-grants)."""
        fields = {key: row.key for row in container_fields() for key in row.compose}
        for key in ("pid", "ipc"):
            field = fields.get(key)
            if field and str(self.spec.get(field, "")).startswith(("service:", "container:")):
                self._shared_namespace(key, field)
            if field and self.spec.get(field) == "host":
                why = f"{key}: host shares the host's {key.upper()} namespace with the container"
                if self.grant(key, "allowPrivileged", why):
                    self.spec["allowPrivileged"] = True
                else:
                    del self.spec[field]
        field = fields.get("security_opt")
        if not field or not isinstance(self.spec.get(field), list):
            return
        kept = []
        for i, opt in enumerate(self.spec[field]):
            name, _, value = str(opt).replace(":", "=", 1).partition("=")
            if value == "unconfined" or (name == "label" and value == "disable"):
                why = f"security_opt {opt} lifts a protection of the host from the container"
                if not self.grant(f"security_opt[{i}]", "allowPrivileged", why, self.service["security_opt"].at(i)):
                    continue
                self.spec["allowPrivileged"] = True
            kept.append(opt)
        if kept:
            self.spec[field] = kept
        else:
            del self.spec[field]

    def _shared_namespace(self, key: str, field: str) -> None:
        """`service:X` -> `container:<X's container>`; `container:NAME` kept when the import declares NAME (no
        opt-in: a container of the project is not the host). Whoever's IPC is joined gets `ipc: shareable` later
        (`shareable_ipc`)."""
        mode = str(self.spec.pop(field))
        kind, _, other = mode.partition(":")
        if kind == "service" and other in self.ctx.containers:
            self.spec[field] = f"container:{self.ctx.containers[other]}"
        elif kind == "container" and other in self.ctx.containers.values():
            self.spec[field] = mode
        elif kind == "service":
            self.lost(key, f"service {other!r} is not part of the import")
        else:
            self.lost(key, f"container {other!r} is not declared by the project")

    def _labels(self) -> None:
        labels = self.service.get("labels")
        if isinstance(labels, Map):
            self.labels = string_map(labels, self.ctx, f"services.{self.name}.labels", labels=True)
        for key in list(self.labels):
            if key.startswith(RESERVED_LABEL_PREFIX):
                del self.labels[key]


# Copied keys whose values take isolation away one by one (`pid: host`, one unconfined `security_opt` entry):
# _isolation_grants keeps the safe values and asks for a grant for the others.
ISOLATION_KEYS = frozenset({"pid", "ipc", "security_opt"})


def _plain(value: Any) -> Any:
    """A Compose value as plain data (the source's mappings and lists carry their locations)."""
    if isinstance(value, Map):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, Seq):
        return [_plain(v) for v in value]
    return value


def container_name(service: str, raw: Map, project: str) -> str:
    """The Container name for a service as Compose v2 names it: `container_name`, else `<project>-<service>-1`
    (so two projects with a `db` each can run on one engine; the service name stays a network alias)."""
    if raw.get("container_name") is not None:
        name = raw.text("container_name")
        if not NAME.match(name) or len(name) < 2:
            at = raw.at("container_name")
            raise ComposeError(at.file, at.line, f"services.{service}.container_name: {name!r} is not a valid name")
        return name
    name = f"{project}-{service}-1"
    if not NAME.match(name):
        raise ComposeError(
            raw.loc.file,
            raw.loc.line,
            f"services.{service}: the Compose name {name!r} is not a valid Container name (at most 63 of "
            "a-z A-Z 0-9 _ . -): set container_name",
        )
    return name
