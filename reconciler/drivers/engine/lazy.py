"""docker-py and requests, imported on first use.

`reconcile validate` touches no engine, so it must not pay for (or depend on) the Docker SDK: the driver modules
name SDK classes through this module (`lazy.NotFound`, `lazy.Mount`, ...), which imports the SDK the first time
one of them is used (an `except lazy.NotFound:` clause is evaluated only when an exception reaches it).

docker-py imports its paramiko-based ssh transport with every client (paramiko, cryptography, invoke: ~70 ms of a
~0.5 s `plan`), although only an `ssh://` engine uses it; the SDK is imported without it, and `ssh_transport()`
brings it in when an ssh engine is connected.
"""

from __future__ import annotations

import importlib
import sys
import threading
from typing import Any

# attribute -> (module, name in it); name None: the module itself
_NAMES: dict[str, tuple[str, str | None]] = {
    "docker": ("docker", None),
    "docker_auth": ("docker.auth", None),
    "requests": ("requests", None),
    "urllib3": ("urllib3", None),
    "APIError": ("docker.errors", "APIError"),
    "DockerException": ("docker.errors", "DockerException"),
    "ImageNotFound": ("docker.errors", "ImageNotFound"),
    "NotFound": ("docker.errors", "NotFound"),
    "Mount": ("docker.types", "Mount"),
    "exclude_paths": ("docker.utils.build", "exclude_paths"),
}


def __getattr__(name: str) -> Any:
    try:
        module_name, attr = _NAMES[name]
    except KeyError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None
    module = _import(module_name)
    value = module if attr is None else getattr(module, attr)
    globals()[name] = value  # later lookups are plain module attributes
    return value


# The SDK's first import hides paramiko for a moment (sys.modules is global): the fleet's Hosts connect from
# threads at once, and an ssh Host's transport import must not run inside that moment ("import of paramiko
# halted").
_LOCK = threading.RLock()


def _import(module_name: str) -> Any:
    if module_name.partition(".")[0] != "docker" or "docker" in sys.modules or "paramiko" in sys.modules:
        return importlib.import_module(module_name)
    with _LOCK:
        if "docker" in sys.modules:
            return importlib.import_module(module_name)
        sys.modules["paramiko"] = None  # type: ignore[assignment]  # docker-py then leaves its ssh transport out
        try:
            return importlib.import_module(module_name)
        finally:
            del sys.modules["paramiko"]


def ssh_transport() -> None:
    """Make sure docker-py's ssh transport is loaded (it is left out when the SDK is imported; see above)."""
    with _LOCK:
        api_client = _import("docker.api.client")
        if not hasattr(api_client, "SSHHTTPAdapter"):
            from docker.transport.sshconn import SSHHTTPAdapter

            api_client.SSHHTTPAdapter = SSHHTTPAdapter  # the client's constructor looks the name up here
