"""The distribution API, for one question: which digest does a registry hold for `repo:tag` right now?

A manifest HEAD (a GET only when the registry leaves out `Docker-Content-Digest`), never a pull. Credentials come
from the user's Docker client configuration (`~/.docker/config.json` or `DOCKER_CONFIG`, credential helpers
included) through docker-py's `docker.auth`, exactly as `docker pull` finds them. They are never logged or put
into an error message.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
import socket
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from reconciler.drivers.engine import lazy
from reconciler.drivers.engine.reference import ImageRef
from reconciler.errors import PermanentError, ReconcileError, TemporaryError

if TYPE_CHECKING:
    import requests

TIMEOUT = 10.0
# Lists/indexes first: `docker pull` records the digest of what the registry serves for the tag, which for a
# multi-platform image is the list's digest.
MANIFEST_TYPES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
)
ACCEPT = ", ".join(MANIFEST_TYPES)
_CHALLENGE_PARAM = re.compile(r'(\w+)="([^"]*)"')
_DNS_FAILURE = (
    "Name or service not known",
    "nodename nor servname",
    "Temporary failure in name resolution",
    "No address associated",
    "getaddrinfo failed",
)


class RegistryError(ReconcileError):
    """The registry could not answer for a reference; the message is one line for plan/apply output."""


class UnknownRegistryHost(RegistryError, PermanentError):
    pass


class RegistryUnreachable(RegistryError, TemporaryError):
    """Nothing answers (or it answers 5xx): may go away by itself."""


class ManifestNotFound(RegistryError, PermanentError):
    pass


class AuthRefused(RegistryError, PermanentError):
    pass


class RegistryProtocolError(RegistryError, PermanentError):
    pass


@dataclass(frozen=True)
class Credentials:
    """What the Docker config holds for one registry. `describe()` names the source, never the secret."""

    username: str | None = None
    password: str | None = None
    identity_token: str | None = None

    @property
    def present(self) -> bool:
        return bool(self.identity_token or (self.username and self.password))

    def __repr__(self) -> str:  # never show secrets, even in a traceback or a debug log
        return f"Credentials(username={self.username!r}, secret={'***' if self.present else None})"


def _pick(entry: Mapping[str, Any], *names: str) -> str | None:
    lowered = {k.lower(): v for k, v in entry.items()}
    for name in names:
        value = lowered.get(name.lower())
        if value:
            return str(value)
    return None


def credentials_for(registry: str) -> Credentials:
    """The user's credentials for `registry` from the Docker client config (none when not configured)."""
    try:
        config = lazy.docker_auth.load_config()
        entry = lazy.docker_auth.resolve_authconfig(config, registry) or {}
    except Exception:  # an unreadable config or a broken credential helper: go anonymous, as docker does
        return Credentials()
    return Credentials(
        username=_pick(entry, "username", "Username"),
        password=_pick(entry, "password", "Password", "Secret"),
        identity_token=_pick(entry, "identitytoken", "IdentityToken"),
    )


def is_insecure(host: str, index_configs: Mapping[str, Any], insecure_cidrs: Iterable[str]) -> bool:
    """Whether the engine treats `host` as an insecure (plain HTTP allowed) registry, by its RegistryConfig."""
    if host in index_configs:
        return not (index_configs[host] or {}).get("Secure", True)
    name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
    name = name.strip("[]")
    try:
        addresses = [ipaddress.ip_address(name)]
    except ValueError:
        try:
            addresses = [ipaddress.ip_address(ai[4][0]) for ai in socket.getaddrinfo(name, None)]
        except (OSError, ValueError):
            return False
    networks = []
    for cidr in insecure_cidrs:
        try:
            networks.append(ipaddress.ip_network(cidr, strict=False))
        except ValueError:
            continue
    return any(a in n for a in addresses for n in networks if a.version == n.version)


def _parse_challenge(header: str) -> tuple[str, dict[str, str]]:
    scheme, _, rest = header.strip().partition(" ")
    return scheme.lower(), dict(_CHALLENGE_PARAM.findall(rest))


class _Client:
    def __init__(self, ref: ImageRef, creds: Credentials, insecure: bool, timeout: float) -> None:
        self.ref = ref
        self.creds = creds
        self.insecure = insecure
        self.timeout = timeout
        self.session = lazy.requests.Session()
        self.session.trust_env = False  # a proxy from the environment must not see registry credentials
        self.scheme = "https"

    @property
    def where(self) -> str:
        return f"registry {self.ref.registry}"

    def _send(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        try:
            return self.session.request(method, url, timeout=self.timeout, allow_redirects=True, **kwargs)
        except lazy.requests.exceptions.SSLError as exc:
            raise RegistryUnreachable(f"{self.where}: TLS handshake failed ({_short(exc)})") from None
        except lazy.requests.exceptions.Timeout:
            raise RegistryUnreachable(f"{self.where} is unreachable: timed out after {self.timeout:.0f}s") from None
        except lazy.requests.exceptions.ConnectionError as exc:
            text = str(exc)
            if any(marker in text for marker in _DNS_FAILURE):
                raise UnknownRegistryHost(
                    f"unknown registry host {self.ref.api_host.rsplit(':', 1)[0]!r} (DNS lookup failed)"
                ) from None
            reason = "connection refused" if "refused" in text.lower() else _short(exc)
            raise RegistryUnreachable(f"{self.where} is unreachable: {reason}") from None

    def request(self, method: str, path: str, headers: dict[str, str]) -> requests.Response:
        """`method` on `path`, falling back to plain HTTP for registries the engine treats as insecure."""
        schemes = ["https", "http"] if self.insecure else ["https"]
        last: RegistryError | None = None
        for scheme in schemes:
            try:
                resp = self._send(method, f"{scheme}://{self.ref.api_host}{path}", headers=headers)
            except UnknownRegistryHost:
                raise
            except RegistryUnreachable as exc:
                last = exc
                continue
            self.scheme = scheme
            return resp
        assert last is not None
        raise last

    def token(self, params: dict[str, str]) -> str:
        realm = params.get("realm")
        if not realm:
            raise AuthRefused(f"{self.where} asked for a token without naming where to get it")
        query = {k: v for k, v in params.items() if k in ("service", "scope")}
        query.setdefault("scope", f"repository:{self.ref.path}:pull")
        if self.creds.identity_token:
            resp = self._post_token(realm, query)
        else:
            basic = (self.creds.username, self.creds.password) if self.creds.present else None
            resp = self._send("GET", realm, params=query, auth=basic)
        if resp.status_code in (401, 403):
            raise AuthRefused(self._refused(resp.status_code))
        if resp.status_code != 200:
            raise RegistryUnreachable(f"{self.where}: token service answered HTTP {resp.status_code}")
        body = resp.json()
        token = body.get("token") or body.get("access_token")
        if not token:
            raise AuthRefused(f"{self.where}: token service returned no token")
        return str(token)

    def _post_token(self, realm: str, query: dict[str, str]) -> requests.Response:
        data = {
            "grant_type": "refresh_token",
            "refresh_token": self.creds.identity_token or "",
            "client_id": "reconciler",
            **query,
        }
        return self._send("POST", realm, data=data)

    def _refused(self, status: int) -> str:
        creds = (
            "with the credentials from the Docker config"
            if self.creds.present
            else f"no credentials for {self.ref.registry} in the Docker config"
        )
        return f"{self.where} refused access to {self.ref.path} (HTTP {status}, {creds})"

    def manifest(self, method: str) -> requests.Response:
        path = f"/v2/{self.ref.path}/manifests/{self.ref.selector}"
        headers = {"Accept": ACCEPT}
        resp = self.request(method, path, headers)
        if resp.status_code == 401:
            scheme, params = _parse_challenge(resp.headers.get("WWW-Authenticate", ""))
            if scheme == "bearer":
                headers["Authorization"] = f"Bearer {self.token(params)}"
            elif scheme == "basic" and self.creds.present:
                token = lazy.requests.auth._basic_auth_str(self.creds.username or "", self.creds.password or "")
                headers["Authorization"] = token
            else:
                raise AuthRefused(self._refused(401))
            resp = self.request(method, path, headers)
        if resp.status_code in (401, 403):
            raise AuthRefused(self._refused(resp.status_code))
        return resp


def _short(exc: BaseException) -> str:
    text = str(exc)
    match = re.search(r"\[Errno [^\]]+\] ([^'\")]+)", text)
    if match:
        return match.group(1).strip()
    return text.splitlines()[0][:160] if text else type(exc).__name__


def _not_found(client: _Client, resp: requests.Response) -> ManifestNotFound:
    try:
        codes = {e.get("code", "") for e in resp.json().get("errors", [])}
    except ValueError:
        codes = set()
    ref = client.ref
    if "NAME_UNKNOWN" in codes:
        return ManifestNotFound(f"repository {ref.path!r} not found on {client.where}")
    what = f"digest {ref.digest}" if ref.digest else f"tag {ref.selector!r}"
    return ManifestNotFound(f"{what} not found in repository {ref.path!r} on {client.where}")


def remote_digest(
    ref: ImageRef, insecure: bool = False, creds: Credentials | None = None, timeout: float = TIMEOUT
) -> str:
    """The digest `ref` resolves to in its registry now. Raises a RegistryError subclass with a one-line message."""
    client = _Client(ref, creds if creds is not None else credentials_for(ref.registry), insecure, timeout)
    resp = client.manifest("HEAD")
    if resp.status_code == 404:
        resp = client.manifest("GET")  # a HEAD has no body: ask again for the registry's error code
        raise _not_found(client, resp)
    if resp.status_code >= 500:
        raise RegistryUnreachable(f"{client.where} answered HTTP {resp.status_code}")
    if resp.status_code != 200:
        raise RegistryProtocolError(f"{client.where} answered HTTP {resp.status_code} for {ref.path}:{ref.selector}")
    digest = resp.headers.get("Docker-Content-Digest")
    if digest:
        return digest
    resp = client.manifest("GET")
    if resp.status_code != 200:
        raise RegistryProtocolError(f"{client.where} answered HTTP {resp.status_code} for {ref.path}:{ref.selector}")
    return "sha256:" + hashlib.sha256(resp.content).hexdigest()
