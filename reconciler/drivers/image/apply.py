"""The operations the Image driver's steps run on the engine: pull, build, push and untag, with progress and
one-line errors.

Every error names the manifest (`file:line`) first, because apply output prints it next to the object only.
Errors a retry may cure (registry unreachable, engine 5xx) are TemporaryError, the rest PermanentError.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from reconciler.drivers.engine import lazy
from reconciler.drivers.engine.errors import engine_errors, explain, registry_failure
from reconciler.drivers.engine.reference import parse_reference
from reconciler.drivers.image.progress import BuildProgress, LayerProgress, Report, StreamFailed
from reconciler.errors import PermanentError


def pull(api: Any, reference: str, log: Any, where: str, report: Report | None = None) -> str | None:
    """Pull `reference` with layer progress; returns the digest the engine reports."""
    ref = parse_reference(reference)
    log.info("image.pull.started", reference=reference)
    progress = LayerProgress(log, "image.pull.progress", reference, report=report)
    with engine_errors(f"{where}: pull {reference}", registry=True):
        try:
            progress.follow(api.pull(ref.repository, tag=ref.selector, stream=True, decode=True))
        except StreamFailed as exc:
            raise registry_failure(f"{where}: pull {reference}", exc.message) from None
    log.info("image.pulled", reference=reference, digest=progress.digest)
    return progress.digest


def push(api: Any, reference: str, log: Any, where: str, report: Report | None = None) -> str | None:
    """Push `reference` with layer progress; returns the digest the registry stored."""
    ref = parse_reference(reference)
    log.info("image.push.started", reference=reference)
    progress = LayerProgress(log, "image.push.progress", reference, report=report)
    with engine_errors(f"{where}: push {reference}", registry=True):
        try:
            progress.follow(api.push(ref.repository, tag=ref.tag or "latest", stream=True, decode=True))
        except StreamFailed as exc:
            raise registry_failure(f"{where}: push {reference}", exc.message) from None
    log.info("image.pushed", reference=reference, digest=progress.digest)
    return progress.digest


def build(
    api: Any, spec: Mapping[str, Any], labels: Mapping[str, str], log: Any, where: str, report: Report | None = None
) -> str:
    """Build with the classic builder, tagging `spec["reference"]`; returns the image ID. A failure names the
    step that failed and the engine's message."""
    reference = spec["reference"]
    options = spec["build"]
    log.info("image.build.started", reference=reference, context=options["context"])
    progress = BuildProgress(log, reference, report=report)
    with engine_errors(f"{where}: build {reference}"):
        try:
            stream = api.build(
                path=options["context"],
                dockerfile=options["dockerfile"],
                tag=reference,
                buildargs=dict(options["args"]) or None,
                target=options["target"],
                labels=dict(labels),
                rm=True,
                forcerm=True,  # no intermediate containers left behind by a failed step
                decode=True,
            )
            progress.follow(stream)
        except StreamFailed as exc:
            at = f" at {exc.step}" if exc.step else ""
            raise PermanentError(f"{where}: build of {reference} failed{at}: {exc.message}") from None
        except lazy.APIError as exc:
            if exc.status_code == 400:  # the engine rejected the Dockerfile itself (syntax) before any step
                raise PermanentError(f"{where}: build of {reference} failed: {explain(exc)}") from None
            raise
    if progress.image_id is None:
        raise PermanentError(f"{where}: build of {reference} ended without an image ID")
    log.info("image.built", reference=reference, id=progress.image_id[:19])
    return progress.image_id


def users(api: Any, image_id: str) -> list[str]:
    """Names of containers (any state, any owner) created from exactly this image."""
    with engine_errors(f"image {image_id[:19]}: list containers"):
        found = api.containers(all=True, filters={"ancestor": image_id})
    return sorted(c["Names"][0].lstrip("/") for c in found if c.get("ImageID") == image_id and c.get("Names"))


def untag(api: Any, reference: str, log: Any, where: str) -> None:
    """Remove the tag `reference` (the image goes too if it was its last tag). Never forced: an image in use
    stays, and says so."""
    try:
        api.remove_image(reference, force=False, noprune=False)
    except lazy.NotFound:
        return  # already gone: the desired end state
    except lazy.APIError as exc:
        if exc.status_code == 409:
            raise PermanentError(f"{where}: image {reference} kept: {explain(exc)}") from None
        with engine_errors(f"{where}: remove {reference}"):
            raise
    log.info("image.removed", reference=reference)
