"""The Docker engine connection shared by the docker_* drivers, and the mapping of its errors."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import docker
import requests
from docker.errors import APIError, DockerException, NotFound

from reconciler.errors import EngineUnavailable, PermanentError, TemporaryError
from reconciler.model import LABEL_PROJECT

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
        kwargs = docker.utils.kwargs_from_env()
        kwargs["base_url"] = url
        client = docker.APIClient(version="auto", timeout=PING_TIMEOUT, **kwargs)
        client.ping()
    except (DockerException, requests.RequestException, OSError) as exc:
        raise EngineUnavailable(f"cannot reach the Docker engine at {url}: {_reason(exc)}") from None
    except ValueError as exc:  # a malformed URL (e.g. an unclosed IPv6 bracket)
        raise PermanentError(f"invalid engine address {url!r}: {exc}") from None
    client.timeout = TIMEOUT
    return client


def _reason(exc: BaseException) -> str:
    text = str(exc)
    for marker in ("Connection refused", "No such file or directory", "Permission denied", "timed out"):
        if marker in text:
            return marker.lower()
    return text.splitlines()[0][:200] if text else type(exc).__name__


@contextmanager
def engine_errors(what: str) -> Iterator[None]:
    """Translate docker-py and transport errors into retryable or permanent ReconcileErrors naming `what`."""
    try:
        yield
    except NotFound as exc:
        raise PermanentError(f"{what}: {_explain(exc)}") from None
    except APIError as exc:
        status = exc.status_code or 0
        if status >= 500 and "already" not in _explain(exc):
            raise TemporaryError(f"{what}: {_explain(exc)}") from None
        raise PermanentError(f"{what}: {_explain(exc)}") from None
    except (requests.ConnectionError, requests.Timeout) as exc:
        raise EngineUnavailable(f"{what}: engine unreachable: {_reason(exc)}") from None
    except DockerException as exc:
        raise PermanentError(f"{what}: {exc}") from None


def _explain(exc: APIError) -> str:
    explanation = exc.explanation
    if isinstance(explanation, bytes):
        explanation = explanation.decode(errors="replace")
    return str(explanation or exc)


def project_filter(project: str, kind: str | None = None) -> dict[str, Any]:
    """Engine-side label filter: list only this project's objects (never list everything and filter here)."""
    labels = [f"{LABEL_PROJECT}={project}"]
    if kind:
        labels.append(f"io.reconciler.kind={kind}")
    return {"label": labels}
