"""The Docker engine connection shared by the docker_* drivers, and the mapping of its errors."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

from reconciler.drivers.engine import lazy
from reconciler.drivers.engine.errors import reason
from reconciler.errors import EngineUnavailable, PermanentError
from reconciler.model import LABEL_PROJECT

if TYPE_CHECKING:
    import docker

DEFAULT_SOCKET = "unix:///var/run/docker.sock"
TIMEOUT = 120
PING_TIMEOUT = 10


def engine_url(docker_host: str | None) -> str:
    return docker_host or os.environ.get("DOCKER_HOST") or DEFAULT_SOCKET


def connect(docker_host: str | None = None) -> docker.APIClient:
    """A low-level client; raises EngineUnavailable with one clear line when nothing answers."""
    url = engine_url(docker_host)
    try:
        # a short timeout for the first contact: an engine that accepts but never answers is down, not slow
        # DOCKER_TLS_VERIFY / DOCKER_CERT_PATH apply as they do for the docker CLI
        sdk = lazy.docker
        kwargs = sdk.utils.kwargs_from_env()
        kwargs["base_url"] = url
        client = sdk.APIClient(version="auto", timeout=PING_TIMEOUT, **kwargs)
        client.ping()
    except (lazy.DockerException, lazy.requests.RequestException, OSError) as exc:
        raise EngineUnavailable(f"cannot reach the Docker engine at {url}: {reason(exc)}") from None
    except ValueError as exc:  # a malformed URL (e.g. an unclosed IPv6 bracket)
        raise PermanentError(f"invalid engine address {url!r}: {exc}") from None
    client.timeout = TIMEOUT
    return client


def project_filter(project: str, kind: str | None = None) -> dict[str, Any]:
    """Engine-side label filter: list only this project's objects (never list everything and filter here)."""
    labels = [f"{LABEL_PROJECT}={project}"]
    if kind:
        labels.append(f"io.reconciler.kind={kind}")
    return {"label": labels}
