"""An image update a policy found (issue 23): what `plan`, `status`, `images outdated` and notifications report,
and what the git source commits in `mode: commit`. Pure data, shared by the Image driver that finds updates and
the git source that writes them."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ImageUpdate:
    image: str  # the Image's metadata.name
    file: str  # the manifest file declaring it, as the Resource's source names it
    line: int  # the line of its spec.reference
    mode: str  # "report" or "commit"
    old_reference: str  # spec.reference as written, e.g. "registry:5000/app:1.2.0"
    new_reference: str  # what to write: "registry:5000/app:1.3.1", or "registry:5000/app:1.2@sha256:..." (digest)
    old_version: str  # for people: "1.2.0", or a short digest "sha256:0123abcd"
    new_version: str  # "1.3.1", or "sha256:4567ef01"

    @property
    def summary(self) -> str:
        """The one line every report uses: `update available: 1.2.0 -> 1.3.1`."""
        return f"update available: {self.old_version} -> {self.new_version}"
