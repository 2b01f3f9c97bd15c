"""Watch triggers: stray-file filtering, debouncing, the coalescing queue and engine event matching."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import pytest

from reconciler.watch.triggers import Debouncer, WorkQueue, is_manifest_event, is_manifest_path

ROOT = "/srv/manifests"


@pytest.mark.parametrize(
    ("rel", "is_dir", "relevant"),
    [
        ("app.yaml", False, True),
        ("sub/app.yml", False, True),
        ("sub", True, True),
        (".", True, True),
        (".app.yaml.swp", False, False),
        ("app.yaml.swp", False, False),
        ("app.yaml.swx", False, False),
        ("app.yaml~", False, False),
        ("app.yaml.bak", False, False),
        ("4913", False, False),
        (".#app.yaml", False, False),
        (".git/HEAD", False, False),
        (".git", True, False),
        (".hidden/app.yaml", False, False),
        ("README.md", False, False),
        ("app.json", False, False),
        ("../elsewhere.yaml", False, False),
    ],
)
def test_only_manifests_and_directories_count(rel: str, is_dir: bool, relevant: bool) -> None:
    """Editors' swap/backup files, hidden entries and non-YAML files never trigger a pass."""
    assert is_manifest_path(f"{ROOT}/{rel}", ROOT, is_dir) is relevant


def event(kind: str, src: str, dest: str = "", is_dir: bool = False) -> SimpleNamespace:
    return SimpleNamespace(
        event_type=kind, src_path=f"{ROOT}/{src}", dest_path=f"{ROOT}/{dest}" if dest else "", is_directory=is_dir
    )


def test_atomic_save_by_rename_counts_through_its_destination() -> None:
    """An editor writing `.app.yaml.tmp` and renaming it over `app.yaml` triggers a pass."""
    assert is_manifest_event(event("moved", ".app.yaml.tmp", "app.yaml"), ROOT)
    assert not is_manifest_event(event("moved", "a.yaml.swp", "b.yaml.swp"), ROOT)


def test_reads_and_directory_mtime_changes_are_ignored() -> None:
    """Opening a file, closing it unwritten, or a directory's mtime change is not a change."""
    assert not is_manifest_event(event("opened", "app.yaml"), ROOT)
    assert not is_manifest_event(event("closed_no_write", "app.yaml"), ROOT)
    assert not is_manifest_event(event("modified", "sub", is_dir=True), ROOT)
    assert is_manifest_event(event("deleted", "sub", is_dir=True), ROOT)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_debouncer_waits_for_quiet() -> None:
    """A burst fires once, 300 ms after its last event."""
    clock = Clock()
    deb = Debouncer(quiet=0.3, max_wait=2.0, clock=clock)
    assert deb.due_at() is None and not deb.fire()
    for _ in range(5):
        deb.poke()
        clock.now += 0.1
        assert not deb.fire()
    clock.now += 0.2
    assert deb.fire() and not deb.fire()


def test_debouncer_fires_within_max_wait_during_a_long_burst() -> None:
    """A never-ending burst (a long checkout) still fires every 2 s."""
    clock = Clock()
    deb = Debouncer(quiet=0.3, max_wait=2.0, clock=clock)
    fired = 0
    for _ in range(45):  # 4.5 s of events every 100 ms
        deb.poke()
        clock.now += 0.1
        fired += deb.fire()
    assert fired == 2


def test_queue_coalesces_requests_into_one_batch() -> None:
    """Requests made while a pass runs become one batch: keys merged, 'everything' wins."""
    queue = WorkQueue()
    queue.add("event:die", {("Container", "a")})
    queue.add("event:destroy", {("Volume", "v")})
    batch = queue.take(0)
    assert batch is not None and not batch.everything
    assert batch.keys == {("Container", "a"), ("Volume", "v")}
    assert queue.take(0) is None
    queue.add("event:die", {("Container", "a")})
    queue.add("files")
    batch = queue.take(0)
    assert batch is not None and batch.everything and batch.reasons == {"event:die", "files"}


def test_queue_take_times_out_and_wakes() -> None:
    """`take` returns None after its timeout, and at once after `wake`."""
    queue = WorkQueue()
    started = time.monotonic()
    assert queue.take(0.05) is None
    assert time.monotonic() - started >= 0.05
    threading.Timer(0.05, queue.wake).start()
    started = time.monotonic()
    assert queue.take(5) is None
    assert time.monotonic() - started < 2


def test_queue_take_returns_a_request_made_while_waiting() -> None:
    """A request from another thread ends the wait with its batch."""
    queue = WorkQueue()
    threading.Timer(0.05, queue.add, args=("files",)).start()
    batch = queue.take(5)
    assert batch is not None and batch.everything


def test_container_events_are_matched_by_label() -> None:
    """A container event names the project object through its labels; other projects' are ignored."""
    ev = {
        "Type": "container",
        "Action": "die",
        "Actor": {
            "ID": "abc",
            "Attributes": {
                "io.reconciler.project": "p",
                "io.reconciler.kind": "Container",
                "io.reconciler.name": "web",
                "name": "web",
            },
        },
    }
    assert set(_keys(ev, "p", set())) == {("Container", "web")}
    assert set(_keys(ev, "other", set())) == set()


def _keys(raw: dict, project: str, known: set) -> list:
    """What every built-in driver says the engine event `raw` is about."""
    from pathlib import Path

    from reconciler.contract import DriverContext, EngineEvent
    from reconciler.core.plugins import driver_classes

    event = EngineEvent(str(raw.get("Action")), raw, str(raw.get("Type")))
    ctx = DriverContext(project, Path("/tmp"))
    drivers = [cls(ctx) for cls in driver_classes().values()]
    return [key for d in drivers for key in d.event_keys(event, project, known)]


def test_network_and_volume_events_are_matched_by_known_name() -> None:
    """Network and volume events carry no labels: only names of known project objects count."""
    known = {("Network", "front"), ("Volume", "data")}
    net = {"Type": "network", "Action": "destroy", "Actor": {"ID": "1f", "Attributes": {"name": "front"}}}
    vol = {"Type": "volume", "Action": "destroy", "Actor": {"ID": "data", "Attributes": {"driver": "local"}}}
    stranger = {"Type": "volume", "Action": "destroy", "Actor": {"ID": "theirs", "Attributes": {}}}
    assert _keys(net, "p", known) == [("Network", "front")]
    assert _keys(vol, "p", known) == [("Volume", "data")]
    assert _keys(stranger, "p", known) == []
    assert _keys({"Type": "image", "Actor": {}}, "p", known) == []


class FakeStream:
    """An event stream that yields its events, then ends (the engine went away) or blocks until closed."""

    def __init__(self, events: list[dict], block: bool) -> None:
        self.events = events
        self.block = block
        self.closed = threading.Event()

    def __iter__(self):
        yield from self.events
        if self.block:
            self.closed.wait(10)

    def close(self) -> None:
        self.closed.set()


def test_event_reader_reports_keys_and_resyncs_after_reconnecting() -> None:
    """Events become per-key requests; a lost stream is reopened and asks for a full pass; stop ends it."""
    die = {
        "Type": "container",
        "Action": "die",
        "Actor": {
            "ID": "x",
            "Attributes": {
                "io.reconciler.project": "p",
                "io.reconciler.kind": "Container",
                "io.reconciler.name": "web",
            },
        },
    }
    streams = [FakeStream([die], block=False), FakeStream([], block=True)]
    calls: list[tuple[str, set | None]] = []
    connects = []

    from reconciler.contract import EngineEvent
    from reconciler.watch.triggers import EventReader

    class Engine:
        def events(self):
            connects.append(1)
            if len(connects) == 2:
                raise ConnectionError("engine restarting")
            stream = streams[min(len(connects) - 1, 1)]
            self.stream = stream
            return (EngineEvent(e["Action"], e, e["Type"]) for e in stream)

        def close_events(self):
            self.stream.close()

    def keys_of(event):
        return {("Container", event.raw["Actor"]["Attributes"]["io.reconciler.name"])}

    reader = EventReader(Engine(), keys_of, lambda reason, keys: calls.append((reason, keys)), max_delay=0.1)
    reader.start()
    deadline = time.monotonic() + 10
    while not any(reason == "engine.reconnected" for reason, _ in calls) and time.monotonic() < deadline:
        time.sleep(0.02)
    reader.stop()
    assert ("event:die", {("Container", "web")}) in calls
    assert ("engine.reconnected", None) in calls
    assert len(connects) >= 3 and streams[1].closed.is_set()


def test_event_reader_lines_name_their_host() -> None:
    """Issue 24, defect 10: in a fleet every Host has an event reader; its `engine.events_*` lines say which."""
    import structlog

    from reconciler.watch.triggers import EventReader

    class Down:
        def events(self):
            raise ConnectionError("engine down")

        def close_events(self):
            pass

    with structlog.testing.capture_logs() as logs:
        reader = EventReader(Down(), lambda e: set(), lambda reason, keys: None, max_delay=0.05, host="b")
        reader.start()
        deadline = time.monotonic() + 10
        while not any(line["event"] == "engine.events_unavailable" for line in logs) and time.monotonic() < deadline:
            time.sleep(0.02)
        reader.stop()
    lines = [line for line in logs if line["event"] == "engine.events_unavailable"]
    assert lines and all(line.get("host") == "b" for line in lines)
