"""The Docker engine connection shared by the docker_* drivers, and the mapping of its errors."""

from __future__ import annotations

import os
from typing import Any

import docker
import docker.tls
import requests
from docker.errors import DockerException

from reconciler.contract import TlsFiles
from reconciler.drivers.engine.errors import reason
from reconciler.errors import EngineUnavailable, PermanentError
from reconciler.model import LABEL_PROJECT

DEFAULT_SOCKET = "unix:///var/run/docker.sock"
TIMEOUT = 120
PING_TIMEOUT = 10
MIN_API = "1.40"
SSH_POOL = 4


def engine_url(docker_host: str | None) -> str:
    return docker_host or os.environ.get("DOCKER_HOST") or DEFAULT_SOCKET


def connect(docker_host: str | None = None, tls: TlsFiles | None = None) -> docker.APIClient:
    """A low-level client; raises EngineUnavailable with one clear line when nothing answers.

    `tls` (a fleet Host's files) is always verified; without it, DOCKER_TLS_VERIFY / DOCKER_CERT_PATH apply as
    they do for the docker CLI. `ssh://` engines go through the system ssh client (its config, agent, jump hosts
    and ControlMaster apply)."""
    url = engine_url(docker_host)
    try:
        if tls is not None:
            kwargs: dict[str, Any] = {
                "tls": docker.tls.TLSConfig(client_cert=(str(tls.cert), str(tls.key)), ca_cert=str(tls.ca), verify=True)
            }
        elif docker_host is None or not url.startswith("ssh://"):
            kwargs = docker.utils.kwargs_from_env()
        else:
            kwargs = {}
        kwargs["base_url"] = url
        if url.startswith("ssh://"):
            kwargs["use_ssh_client"] = True
            kwargs["max_pool_size"] = SSH_POOL  # each pooled connection is one ssh process
        # a short timeout for the first contact: an engine that accepts but never answers is down, not slow
        client = docker.APIClient(version="auto", timeout=PING_TIMEOUT, **kwargs)
        client.ping()
    except (DockerException, requests.RequestException, OSError) as exc:
        raise EngineUnavailable(f"cannot reach the Docker engine at {url}: {reason(exc)}") from None
    except ValueError as exc:  # a malformed URL (e.g. an unclosed IPv6 bracket)
        raise PermanentError(f"invalid engine address {url!r}: {exc}") from None
    version = str(client.api_version)
    if _version_tuple(version) < _version_tuple(MIN_API):
        client.close()
        raise PermanentError(
            f"the Docker engine at {url} speaks API {version}; reconcile needs {MIN_API} (Docker 19.03) or newer"
        )
    client.timeout = TIMEOUT
    return client


def _version_tuple(version: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in version.split("."))
    except ValueError:
        return (0,)


def project_filter(project: str, kind: str | None = None) -> dict[str, Any]:
    """Engine-side label filter: list only this project's objects (never list everything and filter here)."""
    labels = [f"{LABEL_PROJECT}={project}"]
    if kind:
        labels.append(f"io.reconciler.kind={kind}")
    return {"label": labels}
