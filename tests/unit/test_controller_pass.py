"""The watch controller's passes on in-memory drivers: last valid manifests, prune guards, per-object backoff,
dependents waiting, repair storms, an engine that goes away, shutdown."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from reconciler.core.failures import read_failures
from reconciler.core.project import ProjectRunner
from reconciler.errors import EngineUnavailable, PermanentError
from reconciler.model import Action, Desired, Outcome, Resource
from reconciler.spechash import spec_hash
from reconciler.watch.backoff import FailureMemory
from reconciler.watch.controller import Controller, WatchOptions

from .fakes import FakeDriver

ENGINE = "unix:///fake.sock"


class LabelDriver(FakeDriver):
    """FakeDriver whose fields come from metadata labels (the Volume/Network schemas allow no free spec)."""

    def normalize(self, res: Resource) -> Desired:
        needs = [res.labels["needs"]] if "needs" in res.labels else []
        spec = {"size": int(res.labels.get("size", "1")), "colour": res.labels.get("colour", "red"), "needs": needs}
        return Desired(res, spec, spec_hash(self.kind, spec))


class Engine:
    def __init__(self) -> None:
        self.up = True

    def ping(self) -> bool:
        if not self.up:
            raise ConnectionError("gone")
        return True


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def manifest(kind: str, name: str, **labels: str) -> str:
    label_text = "".join(f"\n    {k}: '{v}'" for k, v in labels.items())
    head = f"apiVersion: reconciler/v1\nkind: {kind}\nmetadata:\n  name: {name}\n"
    return head + f"  labels:{label_text or ' {}'}\nspec: {{}}\n"


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("RECONCILER_LOCK_DIR", str(tmp_path / "lock"))
    manifests = tmp_path / "m"
    manifests.mkdir()
    engine = Engine()
    runner = ProjectRunner(project="p", manifest_dir=manifests, engine_factory=lambda: engine)
    volumes, networks = LabelDriver("Volume", rank=1), LabelDriver("Network", rank=2)
    runner.classes = {"Volume": lambda ctx: volumes, "Network": lambda ctx: networks}
    runner.drivers = runner.new_drivers()
    clock = Clock()

    def make(**options) -> Controller:
        return Controller(
            runner,
            ENGINE,
            WatchOptions(**options),
            memory=FailureMemory(clock=clock, wall=clock),
        )

    return type(
        "World",
        (),
        {
            "dir": manifests,
            "runner": runner,
            "volumes": volumes,
            "networks": networks,
            "engine": engine,
            "clock": clock,
            "make": staticmethod(make),
        },
    )


def outcomes(results) -> dict[str, Outcome]:
    return {r.change.name: r.outcome for r in results}


def test_invalid_edit_keeps_the_object_and_fixing_applies(world) -> None:
    """A broken file changes nothing on the host and is logged with file:line; the fixed file is applied."""
    ctl = world.make()
    (world.dir / "v.yaml").write_text(manifest("Volume", "vol-a", colour="red"))
    ctl.run_pass()
    assert set(world.volumes.objects) == {"vol-a"}
    (world.dir / "v.yaml").write_text(manifest("Volume", "vol-a", colour="blue") + "  broken: [\n")
    with capture_logs() as logs:
        results = ctl.run_pass()
    assert all(r.outcome is Outcome.UNCHANGED for r in results)
    assert world.volumes.objects["vol-a"].spec["colour"] == "red"
    invalid = [e for e in logs if e["event"] == "manifest.invalid"]
    assert invalid and invalid[0]["problem"].startswith("v.yaml:")
    assert any(e["event"] == "manifest.kept_last_valid" and e["file"] == "v.yaml" for e in logs)
    (world.dir / "v.yaml").write_text(manifest("Volume", "vol-a", colour="blue"))
    ctl.run_pass()
    assert world.volumes.objects["vol-a"].spec["colour"] == "blue"


def test_deleted_file_prunes_its_objects(world) -> None:
    """Removing a manifest file deletes the objects it declared, and only those."""
    ctl = world.make()
    (world.dir / "a.yaml").write_text(manifest("Volume", "vol-a"))
    (world.dir / "b.yaml").write_text(manifest("Volume", "vol-b"))
    ctl.run_pass()
    (world.dir / "b.yaml").unlink()
    ctl.run_pass()
    assert set(world.volumes.objects) == {"vol-a"}


@pytest.mark.parametrize("allow_empty", [False, True])
def test_empty_directory_prunes_only_with_allow_empty(world, allow_empty: bool) -> None:
    """An emptied manifest directory prunes nothing unless --allow-empty."""
    ctl = world.make(allow_empty=allow_empty)
    (world.dir / "a.yaml").write_text(manifest("Volume", "vol-a"))
    ctl.run_pass()
    (world.dir / "a.yaml").unlink()
    ctl.run_pass()
    assert set(world.volumes.objects) == (set() if allow_empty else {"vol-a"})


def test_vanished_directory_prunes_nothing(world) -> None:
    """A manifest directory that disappears (failed checkout) leaves the host alone."""
    ctl = world.make()
    (world.dir / "a.yaml").write_text(manifest("Volume", "vol-a"))
    ctl.run_pass()
    (world.dir / "a.yaml").unlink()
    world.dir.rmdir()
    ctl.run_pass()
    assert set(world.volumes.objects) == {"vol-a"}


def test_never_valid_file_suspends_pruning(world) -> None:
    """With a file invalid since startup, owned objects without a manifest are kept (they may be its own)."""
    world.volumes.put("vol-old")
    (world.dir / "a.yaml").write_text(manifest("Volume", "vol-a"))
    (world.dir / "b.yaml").write_text("apiVersion: reconciler/v1\nkind: [\n")
    ctl = world.make()
    ctl.run_pass()
    assert set(world.volumes.objects) == {"vol-a", "vol-old"}


def test_failure_backs_off_while_others_converge_and_dependents_wait(world) -> None:
    """A failing object is retried with backoff; an independent one converges; its dependent waits."""
    ctl = world.make()
    (world.dir / "a.yaml").write_text(manifest("Volume", "vol-a"))
    (world.dir / "c.yaml").write_text(manifest("Volume", "vol-c"))
    (world.dir / "n.yaml").write_text(manifest("Network", "net-b", needs="Volume/vol-a"))
    world.volumes.fail.add("vol-a")
    results = ctl.run_pass()
    assert outcomes(results) == {"vol-a": Outcome.FAILED, "vol-c": Outcome.APPLIED, "net-b": Outcome.SKIPPED}
    state = read_failures("p", ENGINE)
    assert state["Volume/vol-a"]["status"] == "failing" and "on purpose" in state["Volume/vol-a"]["error"]
    assert state["Volume/vol-a"]["nextRetry"]
    assert state["Network/net-b"]["status"] == "blocked"
    assert ctl.retry_at == pytest.approx(world.clock.now + 1.0, abs=0.1)

    ctl.run_pass()  # too early: vol-a is not tried again
    assert world.volumes.applied.count(("vol-a", Action.CREATE)) == 1

    world.clock.now += 1.5
    world.volumes.fail.clear()
    results = ctl.run_pass()
    assert outcomes(results)["vol-a"] is Outcome.APPLIED and outcomes(results)["net-b"] is Outcome.APPLIED
    assert ctl.memory.failures() == {} and read_failures("p", ENGINE) == {}


def test_repeated_failures_double_the_wait(world) -> None:
    """Each failure in a row doubles the wait before the next attempt."""
    ctl = world.make()
    (world.dir / "a.yaml").write_text(manifest("Volume", "vol-a"))
    world.volumes.fail.add("vol-a")
    waits = []
    for _ in range(4):
        ctl.run_pass()
        waits.append(ctl.retry_at - world.clock.now)
        world.clock.now = ctl.retry_at
    assert [round(w) for w in waits] == [1, 2, 4, 8]


def test_repair_storm_is_capped(world) -> None:
    """An object undone on the host over and over is repaired 5 times, then held back."""
    ctl = world.make()
    (world.dir / "a.yaml").write_text(manifest("Volume", "vol-a"))
    ctl.run_pass()
    with capture_logs() as logs:
        for _ in range(6):
            world.volumes.objects.clear()  # someone removes it again
            world.clock.now += 1
            ctl.run_pass()
    assert world.volumes.applied.count(("vol-a", Action.CREATE)) == 6  # the first create + 5 repairs
    assert any(e["event"] == "object.repair_storm" for e in logs)
    assert read_failures("p", ENGINE)["Volume/vol-a"]["reason"] == "repair-storm"


def test_manifest_change_is_not_a_repair(world) -> None:
    """Applying an edited manifest never counts toward the repair cap."""
    ctl = world.make()
    for size in range(1, 9):
        (world.dir / "a.yaml").write_text(manifest("Volume", "vol-a", size=str(size)))
        ctl.run_pass()
    assert world.volumes.objects["vol-a"].spec["size"] == 8 and ctl.memory.failures() == {}


def test_engine_unavailable_during_observe_is_survived(world) -> None:
    """An unreachable engine ends the pass quietly, drops the client and schedules a retry."""
    ctl = world.make()
    (world.dir / "a.yaml").write_text(manifest("Volume", "vol-a"))

    def down(declared):
        raise EngineUnavailable("cannot reach the Docker engine")

    world.volumes.observe = down
    world.runner.ctx._engine = object()
    assert ctl.run_pass() == []
    assert ctl.engine_retry_at is not None and world.runner.ctx._engine is None
    del world.volumes.observe
    ctl.run_pass()
    assert ctl.engine_retry_at is None and "vol-a" in world.volumes.objects


def test_failures_while_the_engine_is_gone_are_not_blamed_on_objects(world) -> None:
    """Changes that failed because the engine went away mid-pass get no per-object backoff."""
    ctl = world.make()
    (world.dir / "a.yaml").write_text(manifest("Volume", "vol-a"))
    world.volumes.fail.add("vol-a")
    world.volumes.fail_with = EngineUnavailable  # what the engine drivers raise when the engine went away
    assert ctl.run_pass() == []
    assert ctl.memory.failures() == {} and ctl.engine_retry_at is not None


def test_stop_cancels_changes_not_yet_started(world) -> None:
    """After a stop request no change starts, and cancelled ones are not failures."""
    ctl = world.make()
    (world.dir / "a.yaml").write_text(manifest("Volume", "vol-a"))
    ctl.stop.set()
    results = ctl.run_pass()
    assert outcomes(results) == {"vol-a": Outcome.SKIPPED} and world.volumes.objects == {}
    assert ctl.memory.failures() == {} and ctl.blocked == {}


def test_run_loop_coalesces_and_stops(world) -> None:
    """The loop runs a startup pass, a pass per request batch, and ends on request_stop."""
    ctl = world.make(resync=300)
    (world.dir / "a.yaml").write_text(manifest("Volume", "vol-a"))
    thread = threading.Thread(target=ctl.run)
    thread.start()
    try:
        for _ in range(100):
            if "vol-a" in world.volumes.objects:
                break
            threading.Event().wait(0.02)
        assert "vol-a" in world.volumes.objects
        (world.dir / "b.yaml").write_text(manifest("Volume", "vol-b"))
        ctl.request("files")
        for _ in range(100):
            if "vol-b" in world.volumes.objects:
                break
            threading.Event().wait(0.02)
        assert "vol-b" in world.volumes.objects
    finally:
        ctl.request_stop()
        thread.join(timeout=10)
    assert not thread.is_alive()


def test_close_keeps_errors_without_retry_times(world) -> None:
    """After watch ends, status still shows the last error but no retry that nobody will make."""
    ctl = world.make()
    (world.dir / "a.yaml").write_text(manifest("Volume", "vol-a"))
    world.volumes.fail.add("vol-a")
    ctl.run_pass()
    ctl.close()
    entry = json.loads(json.dumps(read_failures("p", ENGINE)))["Volume/vol-a"]
    assert entry["nextRetry"] is None and entry["error"]


def test_stop_during_a_change_lets_it_finish_and_starts_nothing_else(world) -> None:
    """SIGTERM while a change is in flight: that change completes, what waits for it is cancelled."""
    ctl = world.make()
    (world.dir / "a.yaml").write_text(manifest("Volume", "vol-a"))
    (world.dir / "n.yaml").write_text(manifest("Network", "net-b", needs="Volume/vol-a"))
    started = threading.Event()
    original = world.volumes.apply

    def slow_apply(change) -> None:
        started.set()
        time.sleep(0.3)  # the stop request arrives meanwhile
        original(change)

    world.volumes.apply = slow_apply
    threading.Thread(target=lambda: (started.wait(5), ctl.request_stop())).start()
    results = ctl.run_pass()
    assert outcomes(results) == {"vol-a": Outcome.APPLIED, "net-b": Outcome.SKIPPED}
    assert "vol-a" in world.volumes.objects and world.networks.objects == {}
    assert ctl.blocked == {}


def test_edited_manifest_is_tried_at_once_despite_backoff(world) -> None:
    """Fixing the manifest of a failing object ends its backoff: the new spec is tried in the next pass."""
    ctl = world.make()
    (world.dir / "a.yaml").write_text(manifest("Volume", "vol-a", size="1"))
    world.volumes.fail.add("vol-a")
    ctl.run_pass()
    world.clock.now = ctl.retry_at
    ctl.run_pass()
    assert ctl.memory.held(("Volume", "vol-a")) is not None
    world.volumes.fail.clear()
    (world.dir / "a.yaml").write_text(manifest("Volume", "vol-a", size="2"))
    results = ctl.run_pass()  # the clock has not reached the retry time
    assert outcomes(results)["vol-a"] is Outcome.APPLIED and ctl.memory.failures() == {}


def test_edited_manifest_lifts_a_repair_storm_hold(world) -> None:
    """An object held for a repair storm is applied at once when its manifest changes (like a failing one)."""
    ctl = world.make()
    (world.dir / "a.yaml").write_text(manifest("Volume", "vol-a", size="1"))
    ctl.run_pass()
    for _ in range(6):
        world.volumes.objects.clear()  # someone removes it again
        world.clock.now += 1
        ctl.run_pass()
    assert ctl.memory.held(("Volume", "vol-a")) is not None and "vol-a" not in world.volumes.objects
    (world.dir / "a.yaml").write_text(manifest("Volume", "vol-a", size="2"))
    with capture_logs() as logs:
        results = ctl.run_pass()  # the clock has not reached the retry time
    assert outcomes(results)["vol-a"] is Outcome.APPLIED and ctl.memory.failures() == {}
    assert world.volumes.objects["vol-a"].spec["size"] == 2
    assert any(e["event"] == "object.retry_now" and e["reason"] == "manifest changed" for e in logs)
    world.volumes.objects.clear()  # the edit started a new count: the next removal is repaired again
    world.clock.now += 1
    assert outcomes(ctl.run_pass())["vol-a"] is Outcome.APPLIED


def test_file_whose_reference_was_deleted_is_reported_as_valid_before(world) -> None:
    """Deleting the file a valid file still refers to leaves the referring file's objects and the referenced
    ones as they are, and the log says the file was valid before (not 'not valid since watch started')."""
    ctl = world.make()
    (world.dir / "v.yaml").write_text(manifest("Volume", "vol-a"))
    (world.dir / "n.yaml").write_text(manifest("Network", "net-b", needs="Volume/vol-a"))
    ctl.run_pass()
    (world.dir / "v.yaml").unlink()
    with capture_logs() as logs:
        results = ctl.run_pass()
    assert all(r.outcome is Outcome.UNCHANGED for r in results)
    assert set(world.volumes.objects) == {"vol-a"} and set(world.networks.objects) == {"net-b"}
    assert not [e for e in logs if e["event"] == "manifest.left_out"]
    (held,) = [e for e in logs if e["event"] == "manifest.suspended"]
    assert held["file"] == "n.yaml" and "last valid version" in held["hint"]
    assert "since watch started" not in held["hint"]
    (world.dir / "n.yaml").write_text(manifest("Network", "net-b"))  # the reference is dropped: now a prune
    ctl.run_pass()
    assert world.volumes.objects == {} and set(world.networks.objects) == {"net-b"}


def test_truncated_manifest_prunes_nothing_until_deleted(world) -> None:
    """A manifest truncated to 0 bytes leaves its objects in place (and says so); deleting it prunes them."""
    ctl = world.make()
    (world.dir / "a.yaml").write_text(manifest("Volume", "vol-a"))
    (world.dir / "b.yaml").write_text(manifest("Volume", "vol-b"))
    ctl.run_pass()
    (world.dir / "a.yaml").write_text("")
    with capture_logs() as logs:
        ctl.run_pass()
    assert set(world.volumes.objects) == {"vol-a", "vol-b"}
    assert any(e["event"] == "manifest.emptied" and e["file"] == "a.yaml" for e in logs)
    (world.dir / "a.yaml").unlink()
    ctl.run_pass()
    assert set(world.volumes.objects) == {"vol-b"}


def test_permanent_failure_is_held_without_a_timer_until_the_manifest_changes(world) -> None:
    """A permanent failure gets no retry timer: passes skip it (blocked, saying why) until its manifest changes."""
    ctl = world.make()
    (world.dir / "a.yaml").write_text(manifest("Volume", "vol-a", size="1"))
    world.volumes.fail.add("vol-a")
    world.volumes.fail_with = PermanentError
    ctl.run_pass()
    assert ctl.retry_at is None and ctl.memory.failures()[("Volume", "vol-a")].permanent
    world.clock.now += 10_000
    held = ctl.run_pass()
    assert outcomes(held)["vol-a"] is Outcome.BLOCKED and world.volumes.applied == [("vol-a", Action.CREATE)]
    assert "permanent failure" in held[0].error
    assert ctl.failures_state()["Volume/vol-a"]["errorClass"] == "permanent"
    world.volumes.fail.clear()
    (world.dir / "a.yaml").write_text(manifest("Volume", "vol-a", size="2"))
    assert outcomes(ctl.run_pass())["vol-a"] is Outcome.APPLIED and ctl.memory.failures() == {}


def test_permanent_failure_is_retried_when_the_observed_object_changes(world) -> None:
    """The failed object changed on the host since the pass after the failure: it is tried again at once."""
    ctl = world.make()
    (world.dir / "a.yaml").write_text(manifest("Volume", "vol-a", size="2"))
    world.volumes.put("vol-a", size=1)  # owned, drifted: an update is planned
    world.volumes.fail.add("vol-a")
    world.volumes.fail_with = PermanentError
    ctl.run_pass()
    assert outcomes(ctl.run_pass())["vol-a"] is Outcome.BLOCKED  # first look after the failure: same object
    world.volumes.fail.clear()
    world.volumes.put("vol-a", size=3)  # someone changed it
    assert outcomes(ctl.run_pass())["vol-a"] is Outcome.APPLIED


@pytest.mark.parametrize("reason", ["resync", "engine.reconnected"])
def test_a_resync_or_an_engine_reconnect_releases_permanent_failures(world, reason: str) -> None:
    """A resync tries held objects once more (what blocked them may have been outside the object), and so does the
    pass after the engine came back (its event stream reconnected): a daemon shutting down stops containers while
    it still answers, which a change in flight takes for its own failure. Other events release nothing."""
    from reconciler.watch.triggers import Batch

    ctl = world.make()
    (world.dir / "a.yaml").write_text(manifest("Volume", "vol-a"))
    world.volumes.fail.add("vol-a")
    world.volumes.fail_with = PermanentError
    ctl.run_pass()
    world.volumes.fail.clear()
    assert outcomes(ctl.run_pass(Batch(keys={("Volume", "vol-a")}, reasons={"event:die"})))["vol-a"] is Outcome.BLOCKED
    again = ctl.run_pass(Batch(everything=True, reasons={reason, "event:die"}))
    assert outcomes(again)["vol-a"] is Outcome.APPLIED


def test_temporary_failure_waits_as_long_as_the_driver_suggests(world) -> None:
    """A TemporaryError's own delay becomes the retry time instead of the computed backoff."""
    from reconciler.errors import TemporaryError

    class Slow(TemporaryError):
        def __init__(self, message: str) -> None:
            super().__init__(message, delay=42.0)

    ctl = world.make()
    (world.dir / "a.yaml").write_text(manifest("Volume", "vol-a"))
    world.volumes.fail.add("vol-a")
    world.volumes.fail_with = Slow
    ctl.run_pass()
    retry = ctl.memory.failures()[("Volume", "vol-a")]
    assert not retry.permanent and retry.not_before == pytest.approx(world.clock.now + 42.0)


def test_a_retry_that_falls_due_during_a_slow_pass_is_due_right_after_it(world) -> None:
    """Defect: a failing object whose retry deadline passed while a (slow) pass ran had no timer any more
    (`next_due` looked only at future deadlines) and waited for the periodic resync."""
    ctl = world.make(resync=300)
    (world.dir / "a.yaml").write_text(manifest("Volume", "vol-a"))
    world.volumes.fail.add("vol-a")
    ctl.run_pass()
    assert ctl.retry_at == pytest.approx(world.clock.now + 1.0, abs=0.1)

    original = world.volumes.apply

    def slow_apply(change) -> None:
        if change.name == "vol-b":
            world.clock.now += 5.0  # a slow change: vol-a's deadline passes meanwhile
        original(change)

    world.volumes.apply = slow_apply
    world.clock.now += 0.5
    (world.dir / "b.yaml").write_text(manifest("Volume", "vol-b"))
    results = ctl.run_pass()  # vol-a is held (0.5 s of its 1 s left), vol-b takes 5 s
    assert outcomes(results) == {"vol-a": Outcome.BLOCKED, "vol-b": Outcome.APPLIED}
    assert ctl.retry_at is not None and ctl.retry_at <= world.clock.now + 0.1  # due now, not at the resync

    world.volumes.fail.clear()
    assert outcomes(ctl.run_pass())["vol-a"] is Outcome.APPLIED
    assert ctl.retry_at is None


def test_a_held_object_whose_dependency_waits_does_not_spin_the_loop(world) -> None:
    """Deadlines that were already due when the pass decided its holds do not make the next pass due at once
    (the object was eligible in this pass: it ran or waited for something else)."""
    ctl = world.make(resync=300)
    (world.dir / "a.yaml").write_text(manifest("Volume", "vol-a"))
    (world.dir / "n.yaml").write_text(manifest("Network", "net-b", needs="Volume/vol-a"))
    world.networks.fail.add("net-b")
    ctl.run_pass()  # vol-a created, net-b failed
    world.volumes.fail.add("vol-a")
    (world.dir / "a.yaml").write_text(manifest("Volume", "vol-a", colour="blue"))
    world.clock.now += 2.0  # net-b's retry is due
    ctl.run_pass()  # vol-a fails (1 s), net-b is skipped behind it
    assert ctl.retry_at == pytest.approx(world.clock.now + 1.0, abs=0.1)


class InPlaceSizeDriver(LabelDriver):
    """Like the real drivers: `size` is changed in place, so it is not part of the spec hash."""

    def normalize(self, res: Resource) -> Desired:
        desired = super().normalize(res)
        return Desired(res, desired.spec, spec_hash(self.kind, {"colour": desired.spec["colour"]}))


def test_edits_of_an_in_place_field_are_not_repairs(world) -> None:
    """Defect (found by scripts/soak): the repair count compared spec hashes, which leave out in-place fields,
    so six edits of a memory limit within 300 s were taken for repairs and held as a repair storm."""
    volumes = InPlaceSizeDriver("Volume", rank=1)
    world.runner.classes = {"Volume": lambda ctx: volumes}
    world.runner.drivers = world.runner.new_drivers()
    ctl = world.make()
    with capture_logs() as logs:
        for size in range(1, 8):
            (world.dir / "a.yaml").write_text(manifest("Volume", "vol-a", size=str(size)))
            world.clock.now += 1
            ctl.run_pass()
            assert volumes.objects["vol-a"].spec["size"] == size
    assert not any(e["event"] in ("object.repair_storm", "object.repaired") for e in logs)


def test_an_in_place_edit_after_a_failure_is_tried_at_once(world) -> None:
    """The same defect the other way: an edit of an in-place field did not count as the manifest changing."""
    volumes = InPlaceSizeDriver("Volume", rank=1)
    world.runner.classes = {"Volume": lambda ctx: volumes}
    world.runner.drivers = world.runner.new_drivers()
    volumes.fail_with = PermanentError
    volumes.fail.add("vol-a")
    ctl = world.make()
    (world.dir / "a.yaml").write_text(manifest("Volume", "vol-a", size="1"))
    ctl.run_pass()
    volumes.fail.clear()
    (world.dir / "a.yaml").write_text(manifest("Volume", "vol-a", size="2"))
    results = ctl.run_pass()
    assert outcomes(results)["vol-a"] is Outcome.APPLIED


def test_names_that_come_and_go_leave_no_record_behind(world) -> None:
    """A watch that runs for months keeps its per-object records only for objects declared or observed now: a
    failure, a recovery, repairs and a prune of each of 30 names in turn leave the records of one name."""
    ctl = world.make()
    for i in range(30):
        name = f"vol-{i}"
        (world.dir / "a.yaml").write_text(manifest("Volume", name))  # the previous name is pruned
        world.volumes.fail.add(name)
        ctl.run_pass()
        world.volumes.fail.clear()
        world.clock.now = ctl.retry_at or world.clock.now
        assert outcomes(ctl.run_pass())[name] is Outcome.APPLIED  # recovered
        world.volumes.objects.pop(name)  # someone removes it: repaired
        world.clock.now += 1
        assert outcomes(ctl.run_pass())[name] is Outcome.APPLIED
    ctl.run_pass()
    kept = [ctl.memory.records, ctl.memory.repairs.times]
    assert all(set(k) <= {("Volume", "vol-29")} for k in kept), [list(k) for k in kept]
    assert ("Volume", "vol-29") in ctl.memory.repairs.times  # a repair within the window is kept
