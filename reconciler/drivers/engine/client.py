"""The Docker engine connection shared by the docker_* drivers, and the mapping of its errors."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import threading
import time
import urllib.parse
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from reconciler.contract import TlsFiles
from reconciler.drivers.engine import lazy, ssh, sshforward
from reconciler.drivers.engine.errors import reason
from reconciler.drivers.engine.remembered import Remembered
from reconciler.drivers.engine.retry import RETRY_POLICY, repeatable_answer, send_with_retries
from reconciler.errors import EngineUnavailable, PermanentError
from reconciler.model import LABEL_PROJECT

if TYPE_CHECKING:
    import docker

DEFAULT_SOCKET = "unix:///var/run/docker.sock"
TIMEOUT = 120
PING_TIMEOUT = 10
MIN_API = "1.40"
# docker-py keeps one pool per request URL on a unix socket (so one per container inspected), each of at most
# `max_pool_size` (default 10) connections; when more requests to one URL are in flight than that, urllib3
# discards the extra connections with a warning, and if the pool is evicted meanwhile (one of `num_pools` = 25,
# least recently used first) the request fails with "'NoneType' object has no attribute 'qsize'". That happened
# with `--parallel 32` (every worker inspects the same image). Sized above any `--parallel` worth using.
POOL_SIZE = 64
# The one pool of a unix-socket client (see _one_pool): above the executor's 64 changes in flight, each of which
# may hold a connection for a stop that takes no request slot, so no connection is discarded for want of room.
UNIX_POOL_SIZE = 128
_ONE_POOL = "http+docker://localhost"


def engine_url(docker_host: str | None) -> str:
    return docker_host or os.environ.get("DOCKER_HOST") or DEFAULT_SOCKET


# Requests the engine answers only when an operation is over (a stop waits out the stop timeout): they hold no
# slot of the request bound, so a container's stop never keeps others' creates waiting.
_WAITING = re.compile(r"/containers/[^/]+/(stop|restart|wait|attach)$")


@lru_cache(maxsize=1)
def _bounded_client_class() -> type:
    """The APIClient subclass below, made on first use: docker-py is imported only when an engine is contacted
    (`validate` never does)."""

    class _BoundedClient(lazy.docker.APIClient):
        """An APIClient whose requests take a slot of `limit` while the engine works on them. Changes wait (settle
        windows, health checks) without holding one: the bound is on the engine's work, not on the changes."""

        limit: threading.Semaphore | None = None
        remembered: Remembered = Remembered()  # replaced per connection; this one is never connected

        def send(self, request: Any, **kwargs: Any) -> Any:
            path = urllib.parse.urlsplit(request.url).path
            self.remembered.wrote(request.method, path)
            if self.limit is None or _WAITING.search(path):
                return super().send(request, **kwargs)
            with self.limit:
                return super().send(request, **kwargs)

        def inspect_container(self, container: Any) -> Any:
            # A plan inspects every container of the project: through requests each answer cost ~0.65 ms of CPU
            # here, through the connection pool underneath it ~0.30 ms (1,000 containers: 0.35 s of a 1.7 s plan).
            # An error answer raises what docker-py raises; one the usual way would repeat (a 5xx, a dropped
            # connection) is its first attempt: the usual way makes the others, after the same delay.
            if not isinstance(container, str):
                return super().inspect_container(container)
            url = self._url("/containers/{0}/json", container)
            answer = _fast_get(self, url)
            if isinstance(answer, tuple):
                status, body = answer
                if status == 200:
                    return json.loads(body)
                response = _response(url, status, body)
                if not repeatable_answer(response):
                    self._raise_for_status(response)
            made = 0 if answer is None else 1
            if made:
                time.sleep(RETRY_POLICY.delay(1))
            _MADE.attempts = made
            try:
                return super().inspect_container(container)
            finally:
                _MADE.attempts = 0

    return _BoundedClient


# Attempts of the request this thread is about to send that were made already (by _fast_get).
_MADE = threading.local()


def _fast_get(client: Any, url: str) -> tuple[int, bytes] | bool | None:
    """A GET through the unix-socket client's one pool (see _one_pool): its status and body; True when it failed
    on the way as a request that may be repeated; None when the client has no such pool (requests configures a
    TLS pool per request). A read timeout raises requests' ReadTimeout, which the usual way does not repeat."""
    adapter = getattr(client, "_custom_adapter", None)
    if adapter is None or not getattr(adapter, "one_pool", False):
        return None
    parts = urllib.parse.urlsplit(url)
    target = f"{parts.path}?{parts.query}" if parts.query else parts.path
    try:
        pool = adapter.get_connection(_ONE_POOL)
        with client.limit or contextlib.nullcontext():
            response = pool.urlopen(
                "GET",
                target,
                headers=dict(client.headers),
                retries=False,
                redirect=False,
                timeout=lazy.urllib3.Timeout(client.timeout),
                preload_content=True,
            )
    except lazy.urllib3.exceptions.ReadTimeoutError as exc:
        raise lazy.requests.exceptions.ReadTimeout(exc) from None
    except (lazy.urllib3.exceptions.HTTPError, OSError):
        return True
    return response.status, response.data


def _response(url: str, status: int, body: bytes) -> Any:
    """A requests Response for docker-py's own error mapping (NotFound and the rest, as the usual way raises)."""
    response = lazy.requests.Response()
    response.status_code = status
    response.reason = http.client.responses.get(status, "")
    response.url = url
    response._content = body
    return response


def connect(
    docker_host: str | None = None,
    tls: TlsFiles | None = None,
    limit: threading.Semaphore | None = None,
    remembered: Remembered | None = None,
) -> docker.APIClient:
    """A low-level client; raises EngineUnavailable with one clear line when nothing answers.

    `tls` (a fleet Host's files) is always verified against its own CA; without it, DOCKER_TLS_VERIFY /
    DOCKER_CERT_PATH apply as they do for the docker CLI. `ssh://` engines go through the system ssh client (its
    config, agent and jump hosts apply; all ssh to one Host share one connection: sshmux), to the Host's engine
    socket forwarded over it when it can be (sshforward), else a `docker system dial-stdio` per connection (ssh).
    `remembered` is told of every write the client makes."""
    url = engine_url(docker_host)
    base_url = url
    known: str | None = None  # the engine's API version, when the first contact told it
    pooled = _one_pool
    if tls is not None:
        kwargs: dict[str, Any] = {
            "tls": lazy.docker.tls.TLSConfig(
                client_cert=(str(tls.cert), str(tls.key)), ca_cert=str(tls.ca), verify=True
            ),
            "max_pool_size": POOL_SIZE,
        }
    elif url.startswith("ssh://"):
        try:  # an earlier command's master and forward, still there: no first contact needed
            forward = sshforward.kept(url, ssh.destination(url), PING_TIMEOUT)
        except sshforward.EngineHung as exc:
            raise EngineUnavailable(f"cannot reach the Docker engine at {url}: {exc}") from None
        if forward is None:
            first = ssh.preflight(url, PING_TIMEOUT)
            known = first.version
            forward = sshforward.open_forward(url, ssh.destination(url), first.endpoint, PING_TIMEOUT)
        if forward is not None:  # the Host's engine socket, forwarded over its ssh connection: a unix socket here
            kwargs = {"max_pool_size": POOL_SIZE}
            base_url = forward.base_url

            def pooled(client: Any) -> None:
                _one_pool(client)
                forward.attach(client)
        else:
            kwargs = {"use_ssh_client": True, "max_pool_size": ssh.POOL}  # each pooled connection an ssh process
            ssh.patch_transport()
            pooled = ssh.keep_connections
    else:
        kwargs = {**lazy.docker.utils.kwargs_from_env(), "max_pool_size": POOL_SIZE}
    kwargs["base_url"] = base_url
    try:
        # A fixed version, so the constructor connects to nothing before trust_env is off: requests would let
        # REQUESTS_CA_BUNDLE replace the Host's own CA (psf/requests#3829) and route an engine through a proxy.
        # A short timeout for the first contact: an engine that accepts but never answers is down, not slow.
        # ssh: the probe's too, so that its close ends its ssh process (docker-py's own pool was let go)
        if known is not None:  # ssh: the first-contact check asked the Host's docker for it already
            version = known
        else:
            probe = _client(kwargs, MIN_API, PING_TIMEOUT)
            pooled(probe)
            try:
                version = str(probe.version(api_version=False)["ApiVersion"])
            finally:
                probe.close()
        if _version_tuple(version) < _version_tuple(MIN_API):
            raise PermanentError(
                f"the Docker engine at {url} speaks API {version}; reconcile needs {MIN_API} (Docker 19.03) or newer"
            )
        client = _client(
            kwargs, min(version, lazy.docker.constants.DEFAULT_DOCKER_API_VERSION, key=_version_tuple), TIMEOUT
        )
        client.limit = limit
        pooled(client)
        if remembered is not None:
            client.remembered = remembered
    except (lazy.DockerException, lazy.requests.RequestException, OSError) as exc:
        raise EngineUnavailable(f"cannot reach the Docker engine at {url}: {reason(exc)}") from None
    except ValueError as exc:  # a malformed URL (e.g. an unclosed IPv6 bracket)
        raise PermanentError(f"invalid engine address {url!r}: {exc}") from None
    return client


def _one_pool(client: Any) -> None:
    """Every request of a unix-socket client through one connection pool, whatever its URL.

    docker-py's unix adapter keeps a pool per request URL, so every inspect of another container made a pool
    (pre-filled with POOL_SIZE slots) and a new connection, and at most 25 pools were kept: a third of a 200-
    container `plan`'s CPU went to making and dropping pools. The pool's URL is never used to connect (the socket
    path is), so one pool serves them all and its connections are reused."""
    adapter = getattr(client, "_custom_adapter", None)
    if adapter is None or not hasattr(adapter, "pools"):
        return  # tcp: requests' own pool manager keeps one pool per host already
    original = adapter.get_connection

    def get_connection(url: str, proxies: Any = None) -> Any:
        return original(_ONE_POOL, proxies)

    adapter.get_connection = get_connection
    adapter.max_pool_size = max(adapter.max_pool_size, UNIX_POOL_SIZE)
    adapter.one_pool = True  # _fast_get may use it


@lru_cache(maxsize=1)
def _client_class() -> type:
    """The bounded client whose every request is retried when that is safe (reconciler.drivers.engine.retry),
    each attempt taking its own slot of the bound (a retry's backoff holds none); made on first use."""

    class _Client(_bounded_client_class()):  # type: ignore[misc]
        def send(self, request: Any, **kwargs: Any) -> Any:
            made = getattr(_MADE, "attempts", 0)
            _MADE.attempts = 0  # the request asked again, not the next one
            return send_with_retries(super().send, request, kwargs, RETRY_POLICY, made=made)

    return _Client


def _client(kwargs: dict[str, Any], version: str, timeout: float) -> Any:
    client = _client_class()(version=version, timeout=timeout, **kwargs)
    client.trust_env = False
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
