"""Image manifests -> the normalized spec (reference canonical, defaults filled, build context resolved and its
inputs hashed), and the labels a build stamps on the image (read back by diff.py)."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from reconciler.core.safeio import UnsafeFile, inside, manifest_root, sensitive_reason
from reconciler.drivers.engine.reference import canonical_reference
from reconciler.drivers.image.context import build_inputs, dockerfile_path
from reconciler.errors import SpecError
from reconciler.model import Desired, Resource
from reconciler.spechash import spec_hash

LABEL_INPUT_HASH = "io.reconciler.input-hash"
LABEL_BUILD_INPUTS = "io.reconciler.build-inputs"
INPUT_FIELDS = ("context", "dockerfile", "args", "target")


def resolve_context(resource: Resource, raw: str) -> Path:
    """The context directory: relative paths are relative to the manifest file holding them."""
    path = Path(raw).expanduser()
    if not path.is_absolute():
        path = resource.source.path.parent / path
    return Path(os.path.normpath(path))


def _root(resource: Resource, manifest_dir: Path | None) -> str:
    root = manifest_dir if manifest_dir is not None else manifest_root(resource.source.file, resource.source.path)
    return os.path.realpath(root)


def context_warning(resource: Resource, manifest_dir: Path | None) -> str | None:
    """A note when the context lies outside the manifest directory (allowed only with allowExternalContext):
    the directory is then not self-contained, a checkout elsewhere builds something else."""
    build = resource.spec.get("build") or {}
    raw = str(build.get("context") or "")
    if not raw:
        return None
    context = os.path.realpath(resolve_context(resource, raw))
    if inside(context, _root(resource, manifest_dir)):
        return None
    return f"build context {raw!r} is outside the manifest directory ({context})"


def check_context(resource: Resource, context: Path, dockerfile: str, manifest_dir: Path | None) -> None:
    """A context (or a Dockerfile) outside the manifest directory, links resolved, needs
    `build.allowExternalContext: true`; one that is, lies in or contains a sensitive host path needs
    `build.allowSensitive: true` as well: host secrets must never end up in an image by accident."""
    build = resource.spec.get("build") or {}
    raw = str(build.get("context") or "")
    root = _root(resource, manifest_dir)
    real = os.path.realpath(context)
    if not inside(real, root) and not build.get("allowExternalContext"):
        raise SpecError(
            "spec.build.context",
            f"build context {raw!r} is outside the manifest directory ({real}); "
            "set build.allowExternalContext: true to build it",
        )
    reason = None if inside(real, root) else sensitive_reason(str(context))
    if reason and not build.get("allowSensitive"):
        raise SpecError(
            "spec.build.context", f"build context {raw!r}: {reason}; set build.allowSensitive: true to build it"
        )
    file = os.path.realpath(dockerfile_path(context, dockerfile))
    if inside(file, real) or inside(file, root):
        return
    if not build.get("allowExternalContext"):
        raise SpecError(
            "spec.build.dockerfile",
            f"Dockerfile {dockerfile!r} is outside the build context and the manifest directory ({file}); "
            "set build.allowExternalContext: true to use it",
        )
    reason = sensitive_reason(file)
    if reason and not build.get("allowSensitive"):
        raise SpecError(
            "spec.build.dockerfile", f"Dockerfile {dockerfile!r}: {reason}; set build.allowSensitive: true to use it"
        )


def normalize_image(resource: Resource, manifest_dir: Path | None = None) -> Desired:
    """The canonical spec of an Image. Raises SpecError for a context or Dockerfile that cannot be read, or
    that lies outside the manifest directory without the opt-in."""
    spec = resource.spec
    reference = canonical_reference(str(spec["reference"]))
    normalized: dict[str, Any] = {
        "reference": reference,
        "pullPolicy": spec.get("pullPolicy") or "IfNotPresent",
        "push": bool(spec.get("push", False)),
        "build": None,
    }
    if spec.get("build") is not None:
        normalized["build"] = _normalize_build(resource, spec["build"], manifest_dir)
    # What the image *is*: pullPolicy and push say how to get and publish it, so changing them never rebuilds.
    build = normalized["build"]
    identity = {
        "reference": reference,
        "build": None if build is None else {"inputHash": build["inputHash"]},
    }
    return Desired(resource, normalized, spec_hash("Image", identity, resource.labels))


def _normalize_build(resource: Resource, build: Mapping[str, Any], manifest_dir: Path | None) -> dict[str, Any]:
    raw = str(build["context"])
    context = resolve_context(resource, raw)
    if not context.exists():
        raise SpecError("spec.build.context", f"build context {raw!r} does not exist ({context})")
    if not context.is_dir():
        raise SpecError("spec.build.context", f"build context {raw!r} is not a directory ({context})")
    dockerfile = str(build.get("dockerfile") or "Dockerfile")
    found = dockerfile_path(context, dockerfile)
    if os.path.lexists(found) and not found.is_file():
        raise SpecError("spec.build.dockerfile", f"Dockerfile {dockerfile!r} is not a regular file ({found})")
    if not found.is_file():
        raise SpecError(
            "spec.build.dockerfile", f"Dockerfile {dockerfile!r} not found in the build context ({context})"
        )
    check_context(resource, context, dockerfile, manifest_dir)
    args = {str(k): str(v) for k, v in (build.get("args") or {}).items()}
    target = build.get("target") or None
    try:
        inputs = build_inputs(context, dockerfile, args, target)
    except UnsafeFile as exc:
        field = (
            "spec.build.dockerfile" if exc.path == str(dockerfile_path(context, dockerfile)) else "spec.build.context"
        )
        raise SpecError(field, f"cannot read the build context: {exc}") from None
    except OSError as exc:
        where = exc.filename or context
        raise SpecError("spec.build.context", f"cannot read the build context: {exc.strerror}: {where}") from None
    return {
        "context": str(context),
        "dockerfile": dockerfile,
        "args": args,
        "target": target,
        "inputs": inputs.parts,
        "inputHash": inputs.total,
    }


def build_labels(desired: Desired) -> dict[str, str]:
    """Our labels that are not ownership labels: the input hash that decides rebuilds, and its parts."""
    build = desired.spec["build"]
    return {
        LABEL_INPUT_HASH: build["inputHash"],
        LABEL_BUILD_INPUTS: json.dumps(build["inputs"], sort_keys=True, separators=(",", ":")),
    }


def stamped_inputs(labels: Mapping[str, str]) -> dict[str, str] | None:
    try:
        value = json.loads(labels.get(LABEL_BUILD_INPUTS) or "null")
    except ValueError:
        return None
    return value if isinstance(value, dict) else None
