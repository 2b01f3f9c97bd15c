"""A Container's image is pulled when missing, and for its declared `platform` when the engine has it for another
one (the engine's create refuses such an image and pulls nothing)."""

from __future__ import annotations

from typing import Any

import docker
import pytest

from reconciler.drivers.container.apply import ensure_image

REF = "127.0.0.1:5000/app:1"


class FakeApi:
    """inspect_image answers with `local` (None: not found); pull is recorded."""

    def __init__(self, local: dict[str, Any] | None) -> None:
        self.local = local
        self.pulls: list[tuple[str, str, str | None]] = []

    def inspect_image(self, reference: str) -> dict[str, Any]:
        if self.local is None:
            raise docker.errors.ImageNotFound("no such image")
        return self.local

    def pull(self, repository: str, tag: str, platform: str | None = None) -> None:
        self.pulls.append((repository, tag, platform))


AMD64 = {"Os": "linux", "Architecture": "amd64"}
ARM64 = {"Os": "linux", "Architecture": "arm64", "Variant": "v8"}


@pytest.mark.parametrize(
    ("local", "wanted", "pulled"),
    [
        (None, None, [("127.0.0.1:5000/app", "1", None)]),
        (None, "linux/arm64", [("127.0.0.1:5000/app", "1", "linux/arm64")]),
        (AMD64, None, []),
        (AMD64, "linux/amd64", []),
        (AMD64, "linux/arm64", [("127.0.0.1:5000/app", "1", "linux/arm64")]),
        (ARM64, "linux/arm64", []),
        (ARM64, "linux/arm64/v7", [("127.0.0.1:5000/app", "1", "linux/arm64/v7")]),
    ],
)
def test_the_image_is_pulled_for_the_declared_platform(local: Any, wanted: Any, pulled: list[Any]) -> None:
    api = FakeApi(local)
    ensure_image(api, REF, wanted)
    assert api.pulls == pulled
