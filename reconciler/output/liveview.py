"""The live view of `apply` and `watch` on a terminal: one line per object with its state and elapsed time,
redrawn in place (rich), fed by the executor's results and the drivers' `DriverContext.progress` reports.

Only used when stdout is a terminal (or `--progress tty`); otherwise the output stays the plain text of
`reconciler.output.render`, byte for byte. Logs stay on stderr: while the view is drawn on a terminal that stderr
shares, log lines are printed above the view instead of through it, so neither garbles the other.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from reconciler.model import Outcome, Plan, Result
from reconciler.output import render

if TYPE_CHECKING:  # rich is imported when a view is drawn: `plan`, piped output and scripts never pay for it
    from rich.console import Console
    from rich.live import Live
    from rich.table import Table

Key = tuple[str, str]
MODES = ("auto", "tty", "plain")
ACTIVE = {"applying", "pulling", "building", "pushing", "starting", "settling", "waiting"}
STYLES = {
    "waiting": "dim",
    "applying": "cyan",
    "pulling": "cyan",
    "building": "cyan",
    "pushing": "cyan",
    "starting": "cyan",
    "settling": "cyan",
    "healthy": "green",
    "done": "green",
    "failed": "bold red",
    "blocked": "magenta",
    "skipped": "yellow",
}


def wants_live(mode: str, stream: Any = None) -> bool:
    """`--progress`: `tty` always, `plain` never, `auto` when stdout is a terminal."""
    if mode == "tty":
        return True
    if mode == "plain":
        return False
    stream = stream if stream is not None else sys.stdout
    return bool(getattr(stream, "isatty", lambda: False)())


@dataclass
class Row:
    symbol: str
    subject: str
    state: str = "waiting"
    detail: str = ""
    since: float = field(default_factory=time.monotonic)
    ended: float | None = None
    after: tuple[Key, ...] = ()  # the shown changes it waits for, while queued
    queued: bool = True  # not handed to a worker yet

    def elapsed(self, now: float) -> float:
        return (self.ended if self.ended is not None else now) - self.since


class LiveView:
    """One line per pending or blocked change of a plan; thread-safe (workers report from their threads)."""

    def __init__(self, console: Console | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        from rich.console import Console

        self.console = console or Console(file=sys.stdout, force_terminal=True)
        self.clock = clock
        self.rows: dict[Key, Row] = {}
        self._lock = threading.Lock()
        self._live: Live | None = None

    # --- feeding ---------------------------------------------------------------------------------------------

    def begin(self, plan: Plan) -> None:
        """Show the plan's pending and blocked changes as `waiting` (or `blocked`) and start redrawing."""
        now = self.clock()
        shown = {c.key: c for c in plan.changes if c.pending or c.blocked is not None}
        with self._lock:
            self.rows = {}
            for key, c in shown.items():
                self.rows[key] = Row(
                    "!" if c.blocked is not None else c.action.symbol,
                    c.subject,
                    "blocked" if c.blocked is not None else "waiting",
                    c.blocked or "",
                    now,
                    now if c.blocked is not None else None,
                    tuple(sorted(k for k in plan.edges.get(key, ()) if k in shown)),
                )
        if self.rows:
            from rich.live import Live

            self._live = Live(
                self,
                console=self.console,
                refresh_per_second=8,
                transient=False,
                redirect_stdout=False,
                redirect_stderr=sys.stderr.isatty(),  # logs on the same terminal print above the view
            )
            self._live.start()

    def progress(self, key: Key, state: str, detail: str = "") -> None:
        """What a change in flight does now (the `DriverContext.progress` sink)."""
        with self._lock:
            row = self.rows.get(key)
            if row is not None and row.ended is not None and row.state == "done" and state == "healthy":
                row.state = "healthy"  # a dependent saw it healthy after its own change was done
                return
            if row is None or row.ended is not None:
                return
            if row.queued:
                row.since = self.clock()  # elapsed counts from when the work began
            row.state, row.detail, row.queued = state, detail, False

    def result(self, result: Result) -> None:
        """The end state of one change."""
        with self._lock:
            row = self.rows.get(result.change.key)
            if row is None:
                return
            if row.ended is not None and row.state == "blocked":
                return
            if result.outcome is Outcome.APPLIED:
                row.state = "healthy" if row.state == "healthy" else "done"
                row.detail = f"{result.change.action.value}d"
            elif result.outcome is Outcome.UNCHANGED:
                row.state, row.detail = "done", "unchanged"
            else:
                row.state = {Outcome.FAILED: "failed", Outcome.BLOCKED: "blocked"}.get(result.outcome, "skipped")
                row.detail = (result.error or "").splitlines()[0] if result.error else ""
            if result.seconds and result.outcome is Outcome.APPLIED:
                row.since = self.clock() - result.seconds
            row.ended = self.clock()

    def end(self) -> None:
        """Draw the final state once more and stop redrawing (the lines stay on the terminal)."""
        if self._live is not None:
            self._live.refresh()
            self._live.stop()
            self._live = None

    # --- drawing ---------------------------------------------------------------------------------------------

    def __rich__(self) -> Table:
        from rich.spinner import Spinner
        from rich.table import Table
        from rich.text import Text

        now = self.clock()
        table = Table.grid(padding=(0, 1))
        table.add_column(width=2)
        table.add_column(no_wrap=True)
        table.add_column(no_wrap=True, min_width=8)  # the longest state: the lines do not jump as states change
        table.add_column(overflow="ellipsis", no_wrap=True, ratio=1)
        table.add_column(justify="right", no_wrap=True)
        with self._lock:
            rows = list(self.rows.values())
            for row in rows:
                if row.queued and row.ended is None:
                    pending = [f"{k[0]}/{k[1]}" for k in row.after if self.rows[k].ended is None]
                    row.detail = f"for {', '.join(pending)}" if pending else "queued"
        for row in rows:
            style = STYLES.get(row.state, "")
            marker: Any = Spinner("dots", style="cyan") if row.state in ACTIVE - {"waiting"} else Text(row.symbol)
            table.add_row(
                marker,
                Text(row.subject, style="bold" if row.ended is None else ""),
                Text(row.state, style=style),
                Text(row.detail, style="dim" if row.state != "failed" else "red"),
                Text(f"{row.elapsed(now):.1f}s", style="dim"),
            )
        return table


class WatchLiveView:
    """The live view of each `watch` pass that has something to do, followed by that pass's summary line; a
    pass observer of the controller (the same calls as the status page's board)."""

    def __init__(self, view: LiveView | None = None) -> None:
        self.view = view or LiveView()
        self._number = 0
        self._reasons: list[str] = []
        self._drawing = False

    def progress(self, key: Key, state: str, detail: str = "") -> None:
        self.view.progress(key, state, detail)

    def pass_started(self, number: int, reasons: list[str]) -> None:
        self._number, self._reasons = number, reasons

    def planned(self, plan: Plan) -> None:
        self._drawing = bool(plan.pending)
        if self._drawing:
            self.view.console.print(f"Pass {self._number} ({', '.join(self._reasons)}):", highlight=False)
            self.view.begin(plan)

    def result(self, result: Result) -> None:
        if self._drawing:
            self.view.result(result)

    def pass_done(self, results: list[Result], failures: dict[str, dict[str, Any]]) -> None:
        if self._drawing:
            self.view.end()
            self.view.console.print(render.results_summary(results), highlight=False, markup=False)
            self._drawing = False

    def pass_failed(self, error: str) -> None:
        if self._drawing:
            self.view.end()
            self._drawing = False
