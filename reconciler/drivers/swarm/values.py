"""Spellings people write -> canonical values: durations, sizes, command lines, image references, env files.

The rules shared with the Container kind (durations, sizes, command lines, references, env files) live in the shared
engine package (reconciler/drivers/engine/values.py): driver packages do not import one another.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any

from reconciler.drivers.engine import lazy
from reconciler.drivers.engine.swarmnode import worker_problem
from reconciler.drivers.engine.values import ENV_LINE as _ENV_LINE  # noqa: F401 - read by compose's tests
from reconciler.drivers.engine.values import (
    INT64_MAX as INT64_MAX,
)
from reconciler.drivers.engine.values import (
    canonical_reference as canonical_reference,
)
from reconciler.drivers.engine.values import (
    command_line as command_line,
)
from reconciler.drivers.engine.values import (
    parse_bytes as parse_bytes,
)
from reconciler.drivers.engine.values import (
    parse_duration as parse_duration,
)
from reconciler.drivers.engine.values import (
    read_env_file as read_env_file,
)

NOT_A_MANAGER = "this engine is not a swarm manager (run `docker swarm init` there, or point at a manager)"


def not_a_manager(api: Any, creates: str) -> str:
    """The reason a swarm kind is blocked on an engine that answered "not a swarm manager": a worker (named as
    such, with its managers) or an engine in no swarm."""
    try:
        swarm = api.info().get("Swarm") or {}
    except Exception:  # the reason is a courtesy: the listing's answer already said enough
        return NOT_A_MANAGER
    return worker_problem(swarm, creates) or NOT_A_MANAGER


def show_duration(ns: int | None) -> str | None:
    """Nanoseconds as the shortest exact `1m30s`-style text, for plans."""
    if ns is None:
        return None
    if ns == 0:
        return "0s"
    out = ""
    for unit, size in (("h", 3600 * 10**9), ("m", 60 * 10**9), ("s", 10**9), ("ms", 10**6), ("us", 10**3)):
        if ns >= size and (ns % size == 0 or unit in ("h", "m")):
            out += f"{ns // size}{unit}"
            ns %= size
    return out + (f"{ns}ns" if ns else "")


def split_digest(ref: str) -> tuple[str, str | None]:
    """`repo:tag@sha256:x` -> (`repo:tag`, `sha256:x`)."""
    name, at, digest = ref.partition("@")
    return name, (digest if at else None)


def scrub(text: str, secrets: Iterable[str]) -> str:
    """`text` with every secret replaced by "(sensitive)", also where it was quoted with escapes."""
    for secret in sorted(set(secrets), key=len, reverse=True):
        if not secret:
            continue
        for form in {secret, secret.encode("unicode_escape").decode(), json.dumps(secret)[1:-1]}:
            text = text.replace(form, "(sensitive)")
    return text


def list_on_manager(listing: Callable[[], Any]) -> Any:
    """`listing()`, or None when the engine answers that it is not a swarm manager (503): a tree without swarm
    kinds must plan on any engine, and one with them is blocked with a clear reason."""
    try:
        return listing()
    except lazy.APIError as exc:
        if exc.status_code == 503 and "swarm" in str(exc.explanation or "").lower():
            return None
        raise
