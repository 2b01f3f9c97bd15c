"""A container's `platform` (`linux/amd64`, `linux/arm64/v8`): sent with the create call, which then runs the image
built for it; read back from the image the container runs (its Os, Architecture and Variant), since the engine
keeps no more than the OS on the container. Declared parts are compared, so `linux/arm64` matches an image whose
variant is v8."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# the spellings `uname -m` and some registries use -> the OCI names the engine reports
ALIASES = {"x86_64": "amd64", "x86-64": "amd64", "aarch64": "arm64", "armhf": "arm", "i386": "386"}


def platform(value: Any) -> str | None:
    """`Linux/x86_64` -> `linux/amd64`; None undeclared."""
    if value is None:
        return None
    parts = str(value).strip().lower().split("/")
    if len(parts) > 1:
        parts[1] = ALIASES.get(parts[1], parts[1])
    return "/".join(parts)


def of_image(image: Mapping[str, Any] | None) -> str:
    """An inspected image's `os/architecture[/variant]` ("" when unknown)."""
    image = image or {}
    parts = [str(image.get("Os") or ""), str(image.get("Architecture") or "")]
    if image.get("Variant"):
        parts.append(str(image["Variant"]))
    return "/".join(parts) if all(parts[:2]) else ""


def matches(declared: str, image: str) -> bool:
    """Each declared part equals the image's (a variant left out matches any)."""
    have = image.split("/")
    return all(i < len(have) and part == have[i] for i, part in enumerate(declared.split("/")))
