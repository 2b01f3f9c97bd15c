"""Inspect answers and listing summaries of made-up containers, and an engine that answers and counts inspects:
shared by the tests of reconciler.drivers.engine.remembered and of the watch's resync (session.py)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from reconciler.drivers.engine.remembered import Remembered

A = "a" * 64
B = "b" * 64


def info(cid: str, state: str = "running", name: str = "web", networks: tuple[str, ...] = ("net",)) -> dict[str, Any]:
    return {
        "Id": cid,
        "Name": f"/{name}-{cid[:1]}",
        "Image": "sha256:1",
        "State": {"Status": state},
        "Config": {"Labels": {"k": "v"}},
        "NetworkSettings": {"Networks": {n: {} for n in networks}},
    }


def summary(doc: Mapping[str, Any]) -> dict[str, Any]:
    """What a container listing says of the container `doc` describes."""
    return {
        "Id": doc["Id"],
        "Names": [doc["Name"]],
        "ImageID": doc["Image"],
        "State": doc["State"]["Status"],
        "Labels": dict(doc["Config"]["Labels"]),
        "NetworkSettings": {"Networks": dict(doc["NetworkSettings"]["Networks"])},
    }


class Engine:
    """Answers inspects from `docs` and counts them."""

    def __init__(self, *docs: dict[str, Any]) -> None:
        self.docs = {d["Id"]: d for d in docs}
        self.asked: list[str] = []

    def inspect(self, ids: list[str]) -> dict[str, Mapping[str, Any]]:
        self.asked.extend(ids)
        return {i: self.docs[i] for i in ids if i in self.docs}

    def listing(self) -> list[dict[str, Any]]:
        return [summary(d) for d in self.docs.values()]


def observe(memory: Remembered, engine: Engine) -> dict[str, Mapping[str, Any]]:
    return memory.containers(engine.listing(), engine.inspect)
