"""What the core asks of the Docker engine through the contract's `Engine` (reconciler/contract.py), without
knowing Docker: which host paths hand the engine over (`sensitive_paths`), one spelling per engine address
(`canonical_address`: the lock and the failure state are per engine, so two spellings of one engine must agree),
which Host addresses can be used (`address_problems`, at `validate`) and which are this machine's (`is_local`).
"""

from __future__ import annotations

import ipaddress
import os
import re
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


LOCAL_SCHEMES = ("unix://",)
# A host name as DNS has it (labels of letters, digits and inner hyphens), an ssh user name as useradd allows
# (no leading `-`: it would be an option to ssh); nothing else ever reaches a command line or a connection.
_HOSTNAME = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)(\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))*\.?")
_USER = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,31}\$?")
_SOCKET_PATH = re.compile(r"/[A-Za-z0-9_./@+-]*")


def _address_problem(engine: str) -> str | None:
    """Why `engine` is not a Host address reconcile can use, or None: the scheme, a host name or IP address, a
    port in 1-65535, an ssh user that is not an option, no shell metacharacters, paths, queries or passwords."""
    scheme, sep, rest = engine.partition("://")
    if not sep or scheme not in ("unix", "tcp", "ssh"):
        return f"{engine!r}: the scheme must be unix://, tcp:// or ssh://"
    if scheme == "unix":
        if not _SOCKET_PATH.fullmatch(rest) or "/../" in f"{rest}/":
            return (
                f"{engine!r}: a unix:// engine is an absolute socket path of letters, digits and _ . / @ + - (no `..`)"
            )
        return None
    user, at, location = rest.rpartition("@")
    if scheme == "ssh":
        if not at:
            return f"{engine!r}: an ssh:// engine names its user: ssh://user@host[:port]"
        if not _USER.fullmatch(user):
            return f"{engine!r}: the ssh user must be letters, digits, _ . - (not first) and at most 32 characters"
    elif at:
        return f"{engine!r}: a tcp:// engine names no user"
    if location.startswith("["):  # [IPv6]:port
        address, bracket, port_text = location[1:].partition("]")
        if not bracket or (port_text and not port_text.startswith(":")):
            return f"{engine!r}: an IPv6 address is written [address]:port"
        port_text = port_text[1:]
        try:
            ipaddress.IPv6Address(address)
        except ValueError:
            return f"{engine!r}: {address!r} is not an IPv6 address"
        host_ok = True
    else:
        host, colon, port_text = location.partition(":")
        if colon and not port_text:
            return f"{engine!r}: the port is empty"
        host_ok = bool(_HOSTNAME.fullmatch(host))
    if not host_ok:
        return f"{engine!r}: the host must be a DNS name or an IP address (letters, digits, - and .)"
    if not port_text:
        if scheme == "tcp":
            return f"{engine!r}: a tcp:// engine needs its port (tcp://host:2376)"
        return None
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        return f"{engine!r}: the port must be a number from 1 to 65535"
    return None


def address_problems(engine: str, tls: bool) -> list[tuple[str, str]]:
    """(field, message) for each reason `engine` (a Host's `spec.engine`, with or without `spec.tls`) cannot be
    used: its form, and TLS exactly for tcp:// (an engine is never reached unverified)."""
    problems = []
    problem = _address_problem(engine)
    if problem is not None:
        problems.append(("spec.engine", problem))
    if engine.startswith("tcp://") and not tls:
        problems.append(("spec.engine", "a tcp:// engine needs spec.tls (engines are never reached unverified)"))
    if tls and not engine.startswith("tcp://"):
        problems.append(("spec.tls", "tls applies to tcp:// engines only"))
    return problems


def is_local(engine: str) -> bool:
    """Reached through a socket of this machine."""
    return engine.startswith(LOCAL_SCHEMES)
