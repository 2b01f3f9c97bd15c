"""What the core asks of the Docker engine through the contract's `Engine` (reconciler/contract.py), without
knowing Docker: which host paths hand the engine over (`sensitive_paths`), and one spelling per engine address
(`canonical_address`: the lock and the failure state are per engine, so two spellings of one engine must agree).
"""

from __future__ import annotations

import ipaddress
import os
from urllib.parse import urlsplit

# The engine's data root and its usual sockets: whoever reads or bind-mounts one of them (or a directory holding
# one: `/var` holds `/var/lib/docker`) owns the engine, and with it the host. The core adds them to the host's
# own sensitive paths (reconciler.core.safeio.sensitive_host_paths).
SENSITIVE_PATHS = ("/var/lib/docker", "/var/run/docker.sock", "/run/docker.sock")

DEFAULT_PORTS = {"tcp": 2375, "ssh": 22}


def canonical_address(engine: str) -> str:
    """One spelling per engine, so two spellings of the same engine take the same lock: a unix socket's path with
    `.`, `..`, repeated slashes and symbolic links resolved (`unix:///var/run/docker.sock` is
    `unix:///run/docker.sock` where /var/run links to /run), however the URL spells it (unix_socket_path); tcp
    (and http/https) as `tcp://host:port` with the host in lower case, an IP address in its compressed form and
    the default port 2375 filled in; ssh as `ssh://[user@]host:port` (default 22). Anything else is kept as
    written."""
    text = engine.strip()
    path = unix_socket_path(text)
    if path is not None:
        return "unix://" + os.path.realpath(path)
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        return text
    scheme = parts.scheme.lower()
    if scheme in ("http", "https"):
        scheme = "tcp"
    if scheme not in DEFAULT_PORTS or not parts.hostname:
        return text
    host = parts.hostname.lower().rstrip(".")
    try:
        address = ipaddress.ip_address(host)
        host = f"[{address.compressed}]" if address.version == 6 else address.compressed
    except ValueError:
        pass
    user = f"{parts.username}@" if scheme == "ssh" and parts.username else ""
    return f"{scheme}://{user}{host}:{port or DEFAULT_PORTS[scheme]}"


def unix_socket_path(address: str) -> str | None:
    """The socket path docker-py connects to for a unix address, or None for another scheme: `unix:///run/x.sock`,
    `unix:/run/x.sock`, `http+unix://...` and a bare `/run/x.sock` name it as written; in `unix://run/x.sock` docker-py
    reads `run` as the URL's host and connects to `/run//x.sock` (its documented legacy spelling), with that first
    part in lower case as its URL parser leaves it; a relative path (`unix:run/x.sock`) is rooted at `/`."""
    text = address.strip()
    if text.startswith("/"):  # docker-py also takes a bare socket path
        return text
    scheme, colon, rest = text.partition(":")
    if not colon or scheme.lower() not in ("unix", "http+unix"):
        return None
    if rest == "//":  # docker-py's default socket
        return "/var/run/docker.sock"
    if rest.startswith("//"):
        rest = rest[2:]
        if not rest.startswith("/"):  # `unix://run/x.sock`: the host part is the path's first component
            host, slash, tail = rest.partition("/")
            rest = "/" + host.lower() + slash + tail
    return rest if rest.startswith("/") else "/" + rest  # docker-py's unix adapter roots a relative path at /
