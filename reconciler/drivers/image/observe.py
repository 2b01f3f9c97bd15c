"""What the engine (and this project's record of pulls) has under an Image's reference -> the observed spec
`diff` compares: who made the image (built, pulled, foreign, absent), its local and registry digests, and the
project's earlier tags of the same manifest. A gone manifest's tags become an orphan to prune.

Pure: the driver lists, inspects, reads the pull record and asks the registry.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from reconciler.drivers.engine.reference import parse_reference, repo_digest
from reconciler.model import LABEL_KIND, LABEL_NAME, LABEL_PROJECT, LABEL_SOURCE, Observed

KIND = "Image"
BUILT, PULLED, FOREIGN, ABSENT = "built", "pulled", "foreign", "absent"


def owner_of(project: str, reference: str, image: Mapping[str, Any] | None, pulled: Mapping[str, Any]) -> str:
    """Who made the image the engine has under `reference`: this project built or pulled it, someone else did
    (foreign), or there is none (absent)."""
    if image is None:
        return ABSENT
    labels = image.get("Config", {}).get("Labels") or {}
    if labels.get(LABEL_PROJECT) == project and labels.get(LABEL_KIND) == KIND:
        return BUILT
    if pulled_by_us(reference, image, pulled):
        return PULLED
    return FOREIGN


def pulled_by_us(reference: str, image: Mapping[str, Any] | None, pulled: Mapping[str, Any]) -> bool:
    """Recorded as pulled by this project *and* still the very image we pulled: if someone else moved or
    re-created the tag since, it is not ours any more (erring towards never removing what is not ours)."""
    entry = pulled.get(reference)
    return bool(entry and image is not None and entry.get("imageId") == image.get("Id"))


def _ownership(
    project: str, name: str, reference: str, owner: str, image_labels: Mapping[str, str], pulled: Any
) -> dict:
    if owner == BUILT:
        return dict(image_labels)
    if owner == PULLED:
        entry = pulled.get(reference) or {}
        return {LABEL_PROJECT: project, LABEL_KIND: KIND, LABEL_NAME: name,
                LABEL_SOURCE: str(entry.get("source") or "")}  # fmt: skip
    return dict(image_labels)


def observed_declared(
    project: str,
    name: str,
    reference: str,
    image: Mapping[str, Any] | None,
    pulled: Mapping[str, Any],
    owned: Mapping[str, str],
    remote: tuple[str | None, str | None] | None,
) -> Observed:
    owner = owner_of(project, reference, image, pulled)
    image_labels = dict((image or {}).get("Config", {}).get("Labels") or {})
    spec = {
        "reference": reference,
        "owner": owner,
        "localDigest": repo_digest(dict(image), parse_reference(reference)) if image else None,
        "remoteDigest": remote[0] if remote else None,
        "registryError": remote[1] if remote else None,
        "previous": {r: how for r, how in sorted(owned.items()) if r != reference},
    }
    labels = _ownership(project, name, reference, owner, image_labels, pulled)
    image_id = str((image or {}).get("Id") or "")
    return Observed(KIND, name, image_id, labels, spec, raw={"image": image, "imageLabels": image_labels})


def observed_orphan(
    project: str, name: str, references: Mapping[str, str], images: Mapping[str, Any], pulled: Mapping[str, Any]
) -> Observed:
    ids = {r: str(images[r]["Id"]) for r in references if r in images}
    first = sorted(references)[0]
    labels = {LABEL_PROJECT: project, LABEL_KIND: KIND, LABEL_NAME: name,
              LABEL_SOURCE: str((pulled.get(first) or {}).get("source") or "")}  # fmt: skip
    for reference in references:
        image_labels = (images.get(reference) or {}).get("Config", {}).get("Labels") or {}
        if image_labels.get(LABEL_SOURCE) and references[reference] == BUILT:
            labels[LABEL_SOURCE] = image_labels[LABEL_SOURCE]
    spec = {"references": dict(sorted(references.items())), "ids": ids}
    return Observed(KIND, name, ids.get(first, ""), labels, spec)
