"""docker-py and requests, imported on first use.

`reconcile validate` touches no engine, so it must not pay for (or depend on) the Docker SDK: the driver modules
name SDK classes through this module (`lazy.NotFound`, `lazy.Mount`, ...), which imports the SDK the first time
one of them is used (an `except lazy.NotFound:` clause is evaluated only when an exception reaches it).
"""

from __future__ import annotations

import importlib
from typing import Any

# attribute -> (module, name in it); name None: the module itself
_NAMES: dict[str, tuple[str, str | None]] = {
    "docker": ("docker", None),
    "docker_auth": ("docker.auth", None),
    "requests": ("requests", None),
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
    module = importlib.import_module(module_name)
    value = module if attr is None else getattr(module, attr)
    globals()[name] = value  # later lookups are plain module attributes
    return value
