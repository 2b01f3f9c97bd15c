"""The watch's resync keeps what the engine's event log vouches for (reconciler.drivers.engine.session): a fake
client stands in for the engine's /info and /events replay; the real engine is in
tests/integration/test_engine_resync.py."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from reconciler.drivers.engine.session import EVENT_LOG, EVENT_LOG_MARGIN, DockerEngine, engine_time
from tests.remembering import A, B, Engine, info, observe


class Client:
    """/info's clock and a replay of `log`; records the windows it was asked for."""

    def __init__(self, log: list[dict[str, Any]], fail: bool = False) -> None:
        self.log = log
        self.fail = fail
        self.clock = 1_000
        self.windows: list[tuple[str, str]] = []

    def info(self) -> dict[str, Any]:
        self.clock += 300
        return {"SystemTime": f"1970-01-01T00:{self.clock // 60:02d}:{self.clock % 60:02d}.5Z"}

    def events(self, since: str, until: str, decode: bool) -> Iterator[dict[str, Any]]:
        assert decode
        if self.fail:
            raise ConnectionError("engine gone")
        self.windows.append((since, until))
        return iter(self.log)


def watching(client: Client) -> tuple[DockerEngine, Engine]:
    """An engine session whose stream connected at the client's current time, with A and B remembered."""
    engine = DockerEngine()
    engine._client = client
    engine.remembered.connected()
    engine._replay_from = engine_time(client.info())
    inspects = Engine(info(A), info(B))
    observe(engine.remembered, inspects)
    return engine, inspects


def test_a_quiet_log_keeps_every_answer_and_the_next_window_starts_where_this_one_ended() -> None:
    client = Client([{"Type": "container", "Action": "exec_start", "Actor": {"ID": A}}])  # a health check
    engine, inspects = watching(client)
    engine.resync()
    engine.resync()
    observe(engine.remembered, inspects)
    assert inspects.asked == [A, B]  # nothing asked again
    (since1, until1), (since2, until2) = client.windows
    assert since2 == until1 and float(since1) < float(until1) < float(until2)


def test_an_event_the_stream_dropped_is_found_in_the_log() -> None:
    client = Client([{"Type": "container", "Action": "update", "Actor": {"ID": B}}])
    engine, inspects = watching(client)
    engine.resync()
    observe(engine.remembered, inspects)
    assert inspects.asked == [A, B, B]


@pytest.mark.parametrize(
    "client",
    [
        Client([{"Type": "network", "Action": "create", "Actor": {"ID": "n"}}] * (EVENT_LOG - EVENT_LOG_MARGIN)),
        Client([], fail=True),
    ],
    ids=["a-full-log", "no-answer"],
)
def test_a_log_that_cannot_vouch_for_the_whole_time_drops_everything(client: Client) -> None:
    """As many events as the engine keeps (less the margin): older ones may be gone; a failed replay: unknown."""
    engine, inspects = watching(client)
    engine.resync()
    observe(engine.remembered, inspects)
    assert inspects.asked == [A, B, A, B]


def test_without_a_connected_stream_the_resync_asks_nothing_and_drops_everything() -> None:
    client = Client([])
    engine, inspects = watching(client)
    engine._replay_from = None  # the stream's connection could not read the engine's clock
    engine.resync()
    observe(engine.remembered, inspects)
    assert inspects.asked == [A, B, A, B] and client.windows == []


@pytest.mark.parametrize(
    ("system_time", "expected"),
    [
        ("2026-12-06T08:20:01.123456789Z", "1796545201.123456789"),
        ("2026-12-06T08:20:01Z", "1796545201.000000000"),
        ("2026-12-06T09:20:01.5+01:00", "1796545201.500000000"),
    ],
)
def test_the_engine_clock_is_read_to_the_nanosecond(system_time: str, expected: str) -> None:
    assert engine_time({"SystemTime": system_time}) == expected


def test_a_clock_that_is_no_time_is_refused() -> None:
    with pytest.raises(ValueError, match="not a time"):
        engine_time({"SystemTime": "yesterday"})
