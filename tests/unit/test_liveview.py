"""The live view: one line per object with its state and elapsed time, fed by progress reports and results."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from rich.console import Console

from reconciler.contract import DriverContext
from reconciler.model import Action, Change, Desired, ErrorClass, Outcome, Plan, Resource, Result, Source
from reconciler.output.liveview import LiveView, WatchLiveView, wants_live


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def change(kind: str, name: str, action: Action = Action.CREATE, blocked: str | None = None) -> Change:
    desired = Desired(Resource(kind, name, {}, {}, Source("a.yaml", 1, Path("/a"))), {}, "h")
    return Change(kind, name, action, desired=desired, blocked=blocked)


def plan() -> Plan:
    image, db, web = change("Image", "app"), change("Container", "db"), change("Container", "web", Action.UPDATE)
    lan = change("Network", "lan", blocked="overlaps eth0")
    keep = change("Volume", "data", Action.NONE)
    edges = {web.key: frozenset({db.key, image.key}), db.key: frozenset({keep.key})}
    return Plan("p", (image, db, web, lan, keep), edges=edges)


def lines(view: LiveView) -> list[str]:
    console = Console(file=io.StringIO(), width=100, color_system=None)
    console.print(view)
    return [line.rstrip() for line in console.file.getvalue().splitlines()]  # type: ignore[attr-defined]


def test_rows_go_from_waiting_through_progress_to_their_end_state() -> None:
    """Pending and blocked changes get a line (in-sync ones none); progress and results move each line on."""
    clock = Clock()
    view = LiveView(Console(file=io.StringIO()), clock=clock)
    p = plan()
    view.begin(p)
    view.end()  # no live redraw in a unit test; the rows are what is drawn
    shown = lines(view)
    assert len(shown) == 4 and not any("Volume/data" in line for line in shown)
    assert "waiting  for Container/db, Image/app" in shown[2]
    assert "blocked  overlaps eth0" in shown[3]

    clock.now = 101.0
    view.progress(("Image", "app"), "building", "2/5 : RUN make")
    clock.now = 103.5
    assert "building 2/5 : RUN make" in lines(view)[0] and lines(view)[0].endswith("2.5s")
    view.progress(("Container", "db"), "pulling", "12.0 MB / 30.0 MB, 2 layers")
    assert "pulling  12.0 MB / 30.0 MB, 2 layers" in lines(view)[1]

    view.result(Result(p.changes[0], Outcome.APPLIED, seconds=2.5))
    view.result(Result(p.changes[1], Outcome.FAILED, "port taken\nmore", error_class=ErrorClass.TEMPORARY))
    view.result(Result(p.changes[2], Outcome.SKIPPED, "Container/db failed"))
    clock.now = 200.0  # ended rows keep their time
    shown = lines(view)
    assert "done     created" in shown[0] and shown[0].endswith("2.5s")
    assert "failed   port taken" in shown[1] and "more" not in shown[1]
    assert "skipped  Container/db failed" in shown[2]


def test_a_done_row_turns_healthy_when_a_dependent_saw_it_healthy() -> None:
    """`healthy` reported for a finished container (by the change that waited for it) marks its line healthy."""
    view = LiveView(Console(file=io.StringIO()), clock=Clock())
    p = plan()
    view.begin(p)
    view.end()
    view.result(Result(p.changes[1], Outcome.APPLIED, seconds=1.0))
    view.progress(("Container", "db"), "healthy", "")
    assert "healthy  created" in lines(view)[1]


def test_progress_of_unknown_or_finished_rows_is_ignored() -> None:
    """A late report (after the result) or one about an object not shown changes nothing."""
    view = LiveView(Console(file=io.StringIO()), clock=Clock())
    p = plan()
    view.begin(p)
    view.end()
    view.result(Result(p.changes[0], Outcome.APPLIED))
    view.progress(("Image", "app"), "building", "late")
    view.progress(("Volume", "nope"), "pulling", "x")
    assert "done" in lines(view)[0] and "late" not in lines(view)[0]


def test_ctx_progress_reaches_the_sink_and_never_raises() -> None:
    """`DriverContext.progress` calls the sink; a sink that fails is swallowed; no sink is a no-op."""
    ctx = DriverContext("p", Path("/tmp"))
    ctx.progress(("Image", "a"), "pulling", "1 MB")  # nobody listens
    got = []
    ctx.progress_sink = lambda key, state, detail: got.append((key, state, detail))
    ctx.progress(("Image", "a"), "pulling", "1 MB")
    assert got == [(("Image", "a"), "pulling", "1 MB")]

    def broken(*_: object) -> None:
        raise RuntimeError("display gone")

    ctx.progress_sink = broken
    ctx.progress(("Image", "a"), "pulling", "1 MB")


@pytest.mark.parametrize(
    ("mode", "tty", "expected"),
    [("auto", True, True), ("auto", False, False), ("tty", False, True), ("plain", True, False)],
)
def test_wants_live(mode: str, tty: bool, expected: bool) -> None:
    """auto follows whether stdout is a terminal; tty and plain force it."""

    class Stream:
        def isatty(self) -> bool:
            return tty

    assert wants_live(mode, Stream()) is expected


def test_watch_view_draws_only_passes_with_changes_and_prints_their_summary() -> None:
    """A pass with nothing to do prints nothing; one with changes prints its title, lines and summary."""
    out = io.StringIO()
    watch = WatchLiveView(LiveView(Console(file=out, width=100, color_system=None, force_terminal=False)))
    idle = Plan("p", (change("Volume", "data", Action.NONE),))
    watch.pass_started(1, ["startup"])
    watch.planned(idle)
    watch.pass_done([Result(idle.changes[0], Outcome.UNCHANGED)], {})
    assert out.getvalue() == ""
    busy = Plan("p", (change("Container", "web", Action.UPDATE),))
    watch.pass_started(2, ["event:die"])
    watch.planned(busy)
    watch.progress(("Container", "web"), "starting", "")
    watch.result(Result(busy.changes[0], Outcome.APPLIED, seconds=0.3))
    watch.pass_done([Result(busy.changes[0], Outcome.APPLIED, seconds=0.3)], {})
    text = out.getvalue()
    assert "Pass 2 (event:die):" in text and "Container/web" in text and "updated" in text
    assert "Apply: 1 applied, 0 failed, 0 blocked, 0 skipped, 0 unchanged." in text
