"""Image references: the canonical spelling both Image and Container manifests are compared by."""

from __future__ import annotations

import pytest

from reconciler.drivers.engine.reference import canonical_reference, parse_reference, repo_digest

DIGEST = "sha256:" + "a" * 64


@pytest.mark.parametrize(
    ("given", "canonical"),
    [
        ("busybox", "busybox:latest"),
        ("busybox:1.36", "busybox:1.36"),
        ("docker.io/library/busybox:1", "busybox:1"),
        ("index.docker.io/library/busybox", "busybox:latest"),
        ("user/app", "user/app:latest"),
        ("127.0.0.1:5000/a/b:1.2", "127.0.0.1:5000/a/b:1.2"),
        ("127.0.0.1:5000/a/b", "127.0.0.1:5000/a/b:latest"),
        ("localhost/x", "localhost/x:latest"),
        (f"127.0.0.1:5000/x@{DIGEST}", f"127.0.0.1:5000/x@{DIGEST}"),
        (f"127.0.0.1:5000/x:1@{DIGEST}", f"127.0.0.1:5000/x@{DIGEST}"),
    ],
)
def test_canonical_spelling(given: str, canonical: str) -> None:
    """Defaults filled and Docker Hub prefixes dropped, as the engine spells RepoTags."""
    assert canonical_reference(given) == canonical


def test_parts_for_the_registry_api() -> None:
    """Docker Hub names get library/ and the API host; other registries keep host:port and path."""
    hub = parse_reference("busybox")
    assert (hub.api_host, hub.path, hub.selector) == ("registry-1.docker.io", "library/busybox", "latest")
    local = parse_reference(f"127.0.0.1:5000/t/x@{DIGEST}")
    assert (local.api_host, local.path, local.selector, local.tag) == ("127.0.0.1:5000", "t/x", DIGEST, None)


def test_repo_digest_matches_the_repository_only() -> None:
    """The local digest is the RepoDigests entry of the reference's own repository."""
    image = {"RepoDigests": [f"other/x@sha256:{'b' * 64}", f"127.0.0.1:5000/t/x@{DIGEST}"]}
    assert repo_digest(image, parse_reference("127.0.0.1:5000/t/x:1")) == DIGEST
    assert repo_digest(image, parse_reference("127.0.0.1:5000/t/y:1")) is None
