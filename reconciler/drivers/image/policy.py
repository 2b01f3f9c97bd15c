"""Image update policies (`spec.update`): which tag a semver range moves to, and how a new reference is written.

Pure: the tags and digests come from the registry (registry.py); nothing here talks to it.

Ranges are npm's (`^1.2`, `~1.4.0`, `>=1.0 <2`, `1.x`), through semantic-version's `NpmSpec`, with npm's rule for
pre-releases: a pre-release tag is only a candidate when the range itself names a pre-release of the same
major.minor.patch (`>=1.4.0-rc.0` offers `1.4.0-rc.1`, `^1.2` never offers `1.5.0-rc.1`). A tag is a version when
it is a full semver `MAJOR.MINOR.PATCH[-PRERELEASE]`, optionally with a leading `v` (`v1.2.3`); every other tag
(`latest`, `1.2`, `1.2-alpine`, `1.2.3-alpine3.19` is a pre-release by semver's rules and so only offered to a
range naming one) is ignored. The tag is written as the registry spells it, so a `v` stays.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import semantic_version

from reconciler.drivers.engine.reference import parse_repository_tag


def version_of(tag: str) -> semantic_version.Version | None:
    """The semver a tag names (`1.2.3`, `v1.2.3`, `1.4.0-rc.1`), or None for any other tag."""
    text = tag[1:] if tag[:1] in ("v", "V") else tag
    try:
        return semantic_version.Version(text)
    except ValueError:
        return None


def range_problem(text: str) -> str | None:
    """Why `text` is not an npm-style range, or None when it is one."""
    try:
        semantic_version.NpmSpec(text)
    except ValueError as exc:
        return f"not an npm-style semver range ({exc})"
    return None


def best_tag(semver_range: str, current: str | None, tags: Iterable[str]) -> str | None:
    """The tag to move to: the highest version in range that is newer than `current` (never a downgrade, and no
    move from a version outside the range to a lower one inside it). With a current tag that is no version
    (`latest`) the highest in range. Of two spellings of one version (`1.3.0`, `v1.3.0`) the one written like the
    current tag wins. None: nothing to move to."""
    spec = semantic_version.NpmSpec(semver_range)
    prefixed = bool(current) and current[:1] in ("v", "V")  # type: ignore[index]
    candidates: dict[semantic_version.Version, str] = {}
    for tag in tags:
        version = version_of(tag)
        if version is None or version not in spec:
            continue
        if version not in candidates or (tag[:1] in ("v", "V")) == prefixed:
            candidates[version] = tag
    if not candidates:
        return None
    best = max(candidates)
    now = version_of(current) if current else None
    if now is not None and best <= now:
        return None
    if candidates[best] == current:
        return None
    return candidates[best]


@dataclass(frozen=True)
class Written:
    """A reference as the manifest writes it: `name[:tag][@digest]`, the name spelled as written."""

    name: str
    tag: str | None
    digest: str | None

    @classmethod
    def parse(cls, reference: str) -> Written:
        name, digest = parse_repository_tag(reference) if "@" in reference else (reference, None)
        name, tag = parse_repository_tag(name)
        return cls(name, tag, digest)

    def with_tag(self, tag: str, digest: str | None) -> str:
        return f"{self.name}:{tag}" + (f"@{digest}" if digest else "")


def short_digest(digest: str) -> str:
    """`sha256:0123abcd`: enough of a digest for people (the reference keeps the whole)."""
    algorithm, _, hexdigest = digest.partition(":")
    return f"{algorithm}:{hexdigest[:8]}"
