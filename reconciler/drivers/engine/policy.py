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
    `unix:///run/docker.sock` where /var/run links to /run); tcp (and http/https) as `tcp://host:port` with the host
    in lower case, an IP address in its compressed form and the default port 2375 filled in; ssh as
    `ssh://[user@]host:port` (default 22). Anything else is kept as written."""
    text = engine.strip()
    if text.startswith("unix://"):
        path = text[len("unix://") :] or "/"
        return "unix://" + os.path.realpath(path)
    if text.startswith("/"):  # docker-py also takes a bare socket path
        return "unix://" + os.path.realpath(text)
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
