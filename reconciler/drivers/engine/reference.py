"""Image references: one canonical spelling, and their parts (registry host, repository path, tag, digest).

The canonical form is what the engine itself reports in `RepoTags`: Docker Hub's `docker.io/library/` prefix
dropped, `:latest` added when neither a tag nor a digest is given, and a tag dropped when a digest pins the image
(the engine resolves `name:tag@digest` by the digest alone). `canonical_reference` is the one spelling every side
uses: the Image's `reference`, a Container's or Service's `image` (so a container finds its Image: a pinned
`repo:tag@sha256:...` once kept its tag on the Container side only and was not linked), and `import compose`.
"""

from __future__ import annotations

from dataclasses import dataclass

INDEX_NAME = "docker.io"  # docker.auth.INDEX_NAME


def split_repo_name(repo_name: str) -> tuple[str, str]:
    """docker.auth.split_repo_name (docker-py 7, Apache-2.0), copied so that validation needs no Docker SDK."""
    parts = repo_name.split("/", 1)
    if len(parts) == 1 or ("." not in parts[0] and ":" not in parts[0] and parts[0] != "localhost"):
        return INDEX_NAME, repo_name  # a Docker Hub repository (`ubuntu`, `user/app`)
    return parts[0], parts[1]


def parse_repository_tag(repo_name: str) -> tuple[str, str | None]:
    """docker.utils.parse_repository_tag (docker-py 7, Apache-2.0), copied for the same reason."""
    parts = repo_name.rsplit("@", 1)
    if len(parts) == 2:
        return parts[0], parts[1]
    parts = repo_name.rsplit(":", 1)
    if len(parts) == 2 and "/" not in parts[1]:
        return parts[0], parts[1]
    return repo_name, None


DOCKER_HUB_HOSTS = frozenset({INDEX_NAME, "index.docker.io", "registry-1.docker.io"})
DOCKER_HUB_API = "registry-1.docker.io"


@dataclass(frozen=True)
class ImageRef:
    """A parsed reference: `registry` is the host[:port] (docker.io for Docker Hub), `path` the repository."""

    registry: str
    path: str
    tag: str | None
    digest: str | None

    @property
    def repository(self) -> str:
        """The repository as the engine spells it in RepoTags/RepoDigests (no docker.io/library/ prefix)."""
        if self.registry == INDEX_NAME:
            return self.path.removeprefix("library/")
        return f"{self.registry}/{self.path}"

    @property
    def canonical(self) -> str:
        if self.digest:
            return f"{self.repository}@{self.digest}"
        return f"{self.repository}:{self.tag or 'latest'}"

    @property
    def api_host(self) -> str:
        """The host that serves the distribution API for this registry."""
        return DOCKER_HUB_API if self.registry == INDEX_NAME else self.registry

    @property
    def selector(self) -> str:
        """What to ask the registry's manifest endpoint for: the digest, else the tag."""
        return self.digest or self.tag or "latest"


def parse_reference(reference: str) -> ImageRef:
    """Split `[registry/]path[:tag][@digest]`; Docker Hub names get the `library/` prefix in `path`."""
    if "@" in reference:
        name, digest = reference.rsplit("@", 1)
        name, tag = parse_repository_tag(name)[0], None  # name:tag@digest: the engine goes by the digest
    else:
        (name, tag), digest = parse_repository_tag(reference), None
    registry, path = split_repo_name(name)
    if registry in DOCKER_HUB_HOSTS:
        registry = INDEX_NAME
        if "/" not in path:
            path = f"library/{path}"
    return ImageRef(registry, path, tag, digest)


def canonical_reference(reference: str) -> str:
    """The canonical spelling of `reference` (`busybox` -> `busybox:latest`, `docker.io/library/x:1` -> `x:1`,
    `x:1@sha256:...` -> `x@sha256:...`)."""
    return parse_reference(reference).canonical


def repo_digest(image: dict, ref: ImageRef) -> str | None:
    """The digest the engine recorded for `ref`'s repository when the image was pulled or pushed, if any."""
    for entry in image.get("RepoDigests") or []:
        repo, _, digest = entry.partition("@")
        if repo == ref.repository or (ref.registry == INDEX_NAME and repo == f"{INDEX_NAME}/{ref.path}"):
            return digest
    return None
