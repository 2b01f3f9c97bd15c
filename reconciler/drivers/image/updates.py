"""Finding image updates (`spec.update`): one Image's policy against what its registry holds now.

`semver: RANGE` lists the repository's tags and moves to the highest version in range (policy.py); `digest: true`
asks for the digest behind the written tag and pins it (`repo:tag@sha256:...`). The registry calls are passed in
(`Registry`), so the rules are tested without one and the driver decides about credentials and plain HTTP.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from reconciler.drivers.engine.reference import ImageRef, parse_reference
from reconciler.drivers.image.policy import Written, best_tag, short_digest
from reconciler.model import Desired
from reconciler.updates import ImageUpdate


@dataclass(frozen=True)
class Registry:
    """The two questions an update check asks: a repository's tags, and the digest behind a reference."""

    tags: Callable[[ImageRef], list[str]]
    digest: Callable[[ImageRef], str]


def update_problems(desired: Desired) -> Iterable[tuple[str, str]]:
    """What makes a policy unusable, as (field, message): a built image has no registry to follow, and both
    policies follow a tag."""
    update = desired.spec.get("update")
    if update is None:
        return
    if desired.spec["build"] is not None:
        yield "spec.update", "only a pulled image can follow a registry; this one has `build`"
        return
    written = Written.parse(str(desired.resource.spec["reference"]))
    if written.tag is None:
        policy = "semver" if update["semver"] is not None else "digest"
        yield f"spec.update.{policy}", f"follows a tag, and reference {written.name}@... names none"


def find_update(desired: Desired, registry: Registry, local_digest: Callable[[], str | None]) -> ImageUpdate | None:
    """The update `desired`'s policy finds now, or None. Raises the registry's errors (RegistryError)."""
    update = desired.spec["update"]
    raw = str(desired.resource.spec["reference"])
    written = Written.parse(raw)
    ref = parse_reference(written.with_tag(written.tag or "latest", None))
    if update["semver"] is not None:
        tag = best_tag(update["semver"], written.tag, registry.tags(ref))
        if tag is None:
            return None
        moved = parse_reference(written.with_tag(tag, None))
        digest = registry.digest(moved) if written.digest else None  # a pinned reference stays pinned
        return _record(desired, raw, written.with_tag(tag, digest), written.tag or "", tag)
    remote = registry.digest(ref)
    current = written.digest or local_digest()
    if remote == current:
        return None
    old = short_digest(current) if current else written.tag or ""
    return _record(desired, raw, written.with_tag(written.tag or "latest", remote), old, short_digest(remote))


def _record(desired: Desired, raw: str, new_reference: str, old_version: str, new_version: str) -> ImageUpdate:
    resource = desired.resource
    return ImageUpdate(
        image=desired.name,
        file=resource.source.file,
        line=resource.line_of("spec.reference"),
        mode=desired.spec["update"]["mode"],
        old_reference=raw,
        new_reference=new_reference,
        old_version=old_version,
        new_version=new_version,
    )
