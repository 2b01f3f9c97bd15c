"""The inspect answers a watch keeps between passes (reconciler.drivers.engine.remembered): pure logic, no engine."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

import pytest

from reconciler.drivers.engine.remembered import MAX_IMAGES, Remembered
from tests.remembering import A, B, Engine, info, observe


def test_nothing_is_kept_until_the_event_stream_is_connected() -> None:
    memory, engine = Remembered(), Engine(info(A), info(B))
    observe(memory, engine)
    observe(memory, engine)
    assert engine.asked == [A, B, A, B]


def test_while_connected_only_what_an_event_names_is_asked_again() -> None:
    memory, engine = Remembered(), Engine(info(A), info(B))
    memory.connected()
    assert observe(memory, engine) == engine.docs
    assert observe(memory, engine) == engine.docs
    assert engine.asked == [A, B]
    memory.saw({"Type": "container", "Action": "update", "Actor": {"ID": B}})
    observe(memory, engine)
    assert engine.asked == [A, B, B]
    assert memory.hits == 3


def test_health_check_execs_do_not_count_as_changes() -> None:
    memory, engine = Remembered(), Engine(info(A))
    memory.connected()
    observe(memory, engine)
    memory.saw({"Type": "container", "Action": "exec_start: /bin/true", "Actor": {"ID": A}})
    observe(memory, engine)
    assert engine.asked == [A]
    memory.saw({"Type": "container", "Action": "health_status: unhealthy", "Actor": {"ID": A}})
    observe(memory, engine)
    assert engine.asked == [A, A]


@pytest.mark.parametrize(
    "changed",
    [
        {"State": {"Status": "exited"}},
        {"Name": "/renamed"},
        {"Image": "sha256:2"},
        {"Config": {"Labels": {"k": "other"}}},
        {"NetworkSettings": {"Networks": {"net": {}, "other": {}}}},
    ],
    ids=["state", "name", "image", "labels", "networks"],
)
def test_a_listing_that_disagrees_with_the_answer_is_asked_again(changed: dict[str, Any]) -> None:
    """A change whose event has not arrived yet, but which the listing shows."""
    memory, engine = Remembered(), Engine(info(A))
    memory.connected()
    observe(memory, engine)
    engine.docs[A] = {**engine.docs[A], **changed}
    assert observe(memory, engine)[A] == engine.docs[A]
    assert engine.asked == [A, A]


def test_network_connects_and_own_writes_drop_the_containers_they_touch() -> None:
    memory, engine = Remembered(), Engine(info(A), info(B))
    memory.connected()
    observe(memory, engine)
    memory.saw({"Type": "network", "Action": "connect", "Actor": {"ID": "n1", "Attributes": {"container": A}}})
    memory.wrote("POST", f"/v1.41/containers/{B}/update")
    memory.wrote("GET", f"/v1.41/containers/{A}/json")  # reads change nothing
    observe(memory, engine)
    assert engine.asked == [A, B, A, B]
    memory.wrote("POST", "/v1.41/containers/create")  # a new container: nothing known changes
    observe(memory, engine)
    assert engine.asked == [A, B, A, B]
    memory.wrote("POST", "/v1.41/networks/n1/disconnect")  # names no container: all are asked again
    observe(memory, engine)
    assert engine.asked == [A, B, A, B, A, B]


def test_forget_and_disconnect_drop_everything() -> None:
    memory, engine = Remembered(), Engine(info(A))
    memory.connected()
    observe(memory, engine)
    memory.forget()
    observe(memory, engine)
    assert engine.asked == [A, A]
    memory.disconnected()
    observe(memory, engine)
    observe(memory, engine)
    assert engine.asked == [A, A, A, A]


def test_an_answer_overtaken_by_an_event_is_not_kept() -> None:
    """The event arrives while the inspect is on its way: the answer may predate the change it tells of."""
    memory, engine = Remembered(), Engine(info(A))
    memory.connected()

    def racing(ids: list[str]) -> dict[str, Mapping[str, Any]]:
        answers = engine.inspect(ids)
        memory.saw({"Type": "container", "Action": "update", "Actor": {"ID": A}})
        return answers

    memory.containers(engine.listing(), racing)
    observe(memory, engine)
    assert engine.asked == [A, A]


def test_an_answer_asked_before_the_stream_connected_is_not_kept() -> None:
    memory, engine = Remembered(), Engine(info(A))

    def connecting(ids: list[str]) -> dict[str, Mapping[str, Any]]:
        answers = engine.inspect(ids)
        memory.connected()
        return answers

    memory.containers(engine.listing(), connecting)
    observe(memory, engine)
    assert engine.asked == [A, A]


def test_containers_gone_from_the_listing_are_not_kept() -> None:
    memory, engine = Remembered(), Engine(info(A), info(B))
    memory.connected()
    observe(memory, engine)
    memory.saw({"Type": "container", "Action": "destroy", "Actor": {"ID": B}})
    del engine.docs[B]
    observe(memory, engine)
    assert set(memory._containers) == {A}
    assert memory._changed == {}  # nothing grows with the containers that came and went


def test_image_answers_are_kept_until_any_image_event_or_write() -> None:
    memory = Remembered()
    asked: list[str] = []

    def inspect(ref: str) -> Mapping[str, Any]:
        asked.append(ref)
        return {"Id": "sha256:1"}

    memory.image("r:1", inspect)
    memory.image("r:1", inspect)
    assert asked == ["r:1", "r:1"]  # not connected
    memory.connected()
    memory.image("r:1", inspect)
    memory.image("r:1", inspect)
    assert asked == ["r:1"] * 3
    memory.saw({"Type": "image", "Action": "tag", "Actor": {"ID": "sha256:2"}})
    memory.image("r:1", inspect)
    memory.wrote("POST", "/v1.41/images/create")
    memory.image("r:1", inspect)
    assert asked == ["r:1"] * 5


def test_image_answers_are_bounded() -> None:
    memory = Remembered()
    memory.connected()
    for i in range(MAX_IMAGES + 10):
        memory.image(f"r:{i}", lambda ref: {"Id": ref})
    assert len(memory._images) <= MAX_IMAGES


def test_a_missing_image_is_not_remembered() -> None:
    memory = Remembered()
    memory.connected()

    def missing(ref: str) -> Mapping[str, Any]:
        raise LookupError(ref)

    for _ in range(2):
        with pytest.raises(LookupError):
            memory.image("r:1", missing)
    assert memory._images == {}


def test_concurrent_events_and_passes_keep_it_consistent() -> None:
    """Events from the reading thread while passes run: every answer served is one the engine gave."""
    memory, engine = Remembered(), Engine(*(info(f"{i:064x}") for i in range(20)))
    memory.connected()
    stop = threading.Event()

    def events() -> None:
        n = 0
        while not stop.is_set():
            memory.saw({"Type": "container", "Action": "die", "Actor": {"ID": f"{n % 20:064x}"}})
            n += 1

    thread = threading.Thread(target=events)
    thread.start()
    try:
        for _ in range(200):
            assert observe(memory, engine) == engine.docs
    finally:
        stop.set()
        thread.join()


def test_events_of_other_containers_on_the_host_are_not_kept() -> None:
    memory, engine = Remembered(), Engine(info(A))
    memory.connected()
    observe(memory, engine)
    for i in range(1000):
        memory.saw({"Type": "container", "Action": "start", "Actor": {"ID": f"{i:064x}"}})
    assert memory._changed == {}
    observe(memory, engine)
    assert engine.asked == [A]
