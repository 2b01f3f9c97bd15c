"""Image update policies: npm range semantics over registry tags, the written reference, and what an update check
finds for a semver or digest policy (the registry's two answers given as plain functions)."""

from __future__ import annotations

from pathlib import Path

import pytest
import semantic_version
from hypothesis import given
from hypothesis import strategies as st

from reconciler.drivers.engine.reference import ImageRef
from reconciler.drivers.image.policy import Written, best_tag, short_digest, version_of
from reconciler.drivers.image.spec import normalize_image
from reconciler.drivers.image.updates import Registry, find_update, update_problems
from reconciler.errors import SpecError
from reconciler.model import Resource, Source

TAGS = ["latest", "1.2", "1.2-alpine", "1.1.9", "1.2.0", "1.2.5", "1.3.1", "1.4.0-rc.1", "2.0.0", "v1.3.2-beta"]


@pytest.mark.parametrize(
    ("spec", "current", "expected"),
    [
        ("^1.2", "1.2.0", "1.3.1"),  # in range, newest
        ("~1.2.0", "1.2.0", "1.2.5"),  # tilde: patch only
        (">=1.0 <2", "1.2.0", "1.3.1"),
        ("^2", "1.2.0", "2.0.0"),
        ("^1.2", "1.3.1", None),  # already the newest in range
        ("^1.2", "2.0.0", None),  # outside the range above it: never a downgrade
        ("^3", "1.2.0", None),  # nothing in range
        ("^1.2", "latest", "1.3.1"),  # a current tag that is no version moves to the newest in range
        (">=1.4.0-rc.0 <2", "1.3.1", "1.4.0-rc.1"),  # a range naming a pre-release offers it
        ("^1.3", "1.3.1", None),  # ... and one that does not never does (1.4.0-rc.1 is newer)
    ],
)
def test_best_tag(spec: str, current: str, expected: str | None) -> None:
    assert best_tag(spec, current, TAGS) == expected


def test_a_v_prefix_is_accepted_and_kept_and_the_current_spelling_wins() -> None:
    assert best_tag("^1.2", "v1.2.0", ["v1.2.0", "v1.3.0"]) == "v1.3.0"
    assert best_tag("^1.2", "v1.2.0", ["1.3.0", "v1.3.0"]) == "v1.3.0"
    assert best_tag("^1.2", "1.2.0", ["v1.3.0", "1.3.0"]) == "1.3.0"
    assert best_tag("^1.2", "1.2.0", ["v1.3.0"]) == "v1.3.0"  # only spelled with a v: written as the registry has it


@pytest.mark.parametrize("tag", ["latest", "1.2", "1", "1.2-alpine", "main", "sha-abc123", "1.2.3.4", ""])
def test_tags_that_are_not_semver_are_no_versions(tag: str) -> None:
    assert version_of(tag) is None


versions = st.tuples(st.integers(0, 4), st.integers(0, 4), st.integers(0, 4)).map(lambda v: f"{v[0]}.{v[1]}.{v[2]}")
prereleases = st.tuples(versions, st.sampled_from(["rc.1", "beta", "alpha.2"])).map(lambda v: f"{v[0]}-{v[1]}")
ranges = st.sampled_from(["^1.2", "~1.2.0", ">=1.0 <2", "^0.1", ">=2", "1.x", "*", ">=1.2.0-rc.0 <1.3"])


@given(tags=st.lists(st.one_of(versions, prereleases, st.just("latest")), max_size=12), spec=ranges, current=versions)
def test_the_offered_tag_is_the_newest_allowed_one(tags: list[str], spec: str, current: str) -> None:
    """Whatever the tags: the offer is in range, newer than the current version, and no allowed tag is newer."""
    offered = best_tag(spec, current, tags)
    npm = semantic_version.NpmSpec(spec)
    allowed = [semantic_version.Version(t) for t in tags if version_of(t) is not None and version_of(t) in npm]
    newer = [v for v in allowed if v > semantic_version.Version(current)]
    if offered is None:
        assert newer == []
        return
    version = semantic_version.Version(offered)
    assert offered in tags and version in npm and version == max(newer)
    if version.prerelease:  # npm: only a range that names a pre-release of the same version offers one
        assert any(
            (c.target.major, c.target.minor, c.target.patch) == (version.major, version.minor, version.patch)
            for c in _prerelease_bounds(spec)
        )


def _prerelease_bounds(spec: str) -> list[semantic_version.base.Range]:
    bounds = []
    clause = semantic_version.NpmSpec(spec).clause
    stack = [clause]
    while stack:
        item = stack.pop()
        stack.extend(getattr(item, "clauses", ()))
        if isinstance(item, semantic_version.base.Range) and item.target.prerelease:
            bounds.append(item)
    return bounds


@pytest.mark.parametrize(
    ("written", "parts"),
    [
        ("127.0.0.1:5000/app:1.2.0", ("127.0.0.1:5000/app", "1.2.0", None)),
        ("app:1.2@sha256:" + "a" * 64, ("app", "1.2", "sha256:" + "a" * 64)),
        ("localhost:5000/team/app", ("localhost:5000/team/app", None, None)),
        ("app@sha256:" + "b" * 64, ("app", None, "sha256:" + "b" * 64)),
    ],
)
def test_written_references_keep_their_spelling(written: str, parts: tuple[str, str | None, str | None]) -> None:
    found = Written.parse(written)
    assert (found.name, found.tag, found.digest) == parts
    assert found.with_tag("9.9.9", None) == f"{parts[0]}:9.9.9"


def _image(tmp_path: Path, spec: dict[str, object]) -> Resource:
    return Resource("Image", "app", spec, {}, Source("images.yaml", 1, tmp_path / "images.yaml"), {"spec.reference": 5})


def _desired(tmp_path: Path, reference: str, update: dict[str, object], **more: object):  # type: ignore[no-untyped-def]
    return normalize_image(_image(tmp_path, {"reference": reference, "update": update, **more}), tmp_path)


def _registry(tags: list[str], digests: dict[str, str]) -> Registry:
    def digest(ref: ImageRef) -> str:
        return digests[ref.tag or "latest"]

    return Registry(tags=lambda ref: tags, digest=digest)


def test_semver_update_record(tmp_path: Path) -> None:
    desired = _desired(tmp_path, "127.0.0.1:5000/app:1.2.0", {"semver": "^1.2"})
    found = find_update(desired, _registry(TAGS, {}), lambda: None)
    assert found is not None
    assert (found.image, found.file, found.line, found.mode) == ("app", "images.yaml", 5, "report")
    assert (found.old_reference, found.new_reference) == ("127.0.0.1:5000/app:1.2.0", "127.0.0.1:5000/app:1.3.1")
    assert found.summary == "update available: 1.2.0 -> 1.3.1"


def test_a_pinned_reference_stays_pinned_on_a_semver_update(tmp_path: Path) -> None:
    old, new = "sha256:" + "1" * 64, "sha256:" + "2" * 64
    desired = _desired(tmp_path, f"app:1.2.0@{old}", {"semver": "^1.2", "mode": "commit"})
    found = find_update(desired, _registry(["1.2.0", "1.3.0"], {"1.3.0": new}), lambda: None)
    assert found is not None and found.new_reference == f"app:1.3.0@{new}" and found.mode == "commit"


def test_digest_policy_pins_the_new_digest_behind_the_tag(tmp_path: Path) -> None:
    old, new = "sha256:" + "1" * 64, "sha256:" + "2" * 64
    pinned = _desired(tmp_path, f"app:1.2@{old}", {"digest": True})
    found = find_update(pinned, _registry([], {"1.2": new}), lambda: None)
    assert found is not None
    assert (found.new_reference, found.old_version, found.new_version) == (
        f"app:1.2@{new}",
        short_digest(old),
        "sha256:22222222",
    )
    assert find_update(pinned, _registry([], {"1.2": old}), lambda: None) is None
    unpinned = _desired(tmp_path, "app:1.2", {"digest": True})
    assert find_update(unpinned, _registry([], {"1.2": new}), lambda: new) is None  # the engine has it already
    found = find_update(unpinned, _registry([], {"1.2": new}), lambda: old)
    assert found is not None and found.new_reference == f"app:1.2@{new}"


@pytest.mark.parametrize(
    ("update", "field"),
    [
        ({"semver": "^1", "digest": True}, "spec.update"),
        ({"mode": "commit"}, "spec.update"),
        ({"semver": "not a range!"}, "spec.update.semver"),
    ],
)
def test_bad_policies_are_spec_errors(tmp_path: Path, update: dict[str, object], field: str) -> None:
    with pytest.raises(SpecError) as caught:
        _desired(tmp_path, "app:1.2.0", update)
    assert caught.value.field == field


def test_a_built_image_or_a_reference_without_a_tag_cannot_follow(tmp_path: Path) -> None:
    (tmp_path / "ctx").mkdir()
    (tmp_path / "ctx" / "Dockerfile").write_text("FROM scratch\n")
    built = _desired(tmp_path, "app:1.2.0", {"semver": "^1"}, build={"context": "ctx"})
    assert [f for f, _ in update_problems(built)] == ["spec.update"]
    bare = _desired(tmp_path, "app@sha256:" + "1" * 64, {"digest": True})
    assert [f for f, _ in update_problems(bare)] == ["spec.update.digest"]
    assert list(update_problems(_desired(tmp_path, "app:1.2.0", {"semver": "^1"}))) == []
