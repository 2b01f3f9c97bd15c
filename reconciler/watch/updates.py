"""watch's image update checks (issue 23): every `--update-interval`, on a thread of their own, ask the update
policies of the last valid manifests (`ProjectRunner.updates`) what is newer in the registries.

A check costs registry requests, so it is not part of a pass: a pass never waits for a registry, and a registry
that is down is a warning of the check (asked again at the next interval), never a failure of an object. What a
check finds goes to the status page, to a notification once per new version (remembered in the state directory,
so a restarted watch does not announce it again), and, for `mode: commit`, to `commit` (the git source's writer,
wired by the watch's caller) instead of a notification.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import structlog

from reconciler.contract import UpdateCheck
from reconciler.core.catalog import Catalog
from reconciler.core.project import ProjectRunner
from reconciler.statefile import read_json, state_dir, write_json
from reconciler.updates import ImageUpdate

log = structlog.get_logger()

DEFAULT_INTERVAL = 3600.0
MIN_INTERVAL = 1.0


def announced_path(runner: ProjectRunner) -> Path:
    """`<state dir>/<project>/updates-announced[-<engine>].json`: the updates already told of."""
    suffix = f"-{runner.ctx.state_key}" if runner.ctx.state_key else ""
    return state_dir() / runner.project / f"updates-announced{suffix}.json"


class Announced:
    """Which new reference of which Image was already announced; survives restarts. An Image whose update went
    (applied, or the policy changed) is forgotten, so a later update of it is told again."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def _load(self) -> dict[str, str]:
        data = read_json(self.path)
        return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}

    def fresh(self, updates: Sequence[ImageUpdate], unchecked: Iterable[str] = ()) -> list[ImageUpdate]:
        """The updates not announced yet; remembers them, and forgets Images with no update now, except those this
        check could not ask about (`unchecked`: a registry down for an hour must not make its update news again)."""
        told = self._load()
        new = [u for u in updates if told.get(u.image) != u.new_reference]
        kept = {name: told[name] for name in unchecked if name in told}
        now = kept | {u.image: u.new_reference for u in updates}
        if now != told:
            try:
                write_json(self.path, now)
            except OSError as exc:  # a read-only state dir: announce again after a restart rather than fail
                log.warning("updates.state_unwritable", path=str(self.path), error=str(exc))
        return new


class UpdateChecker:
    """The update check of one controller: `check_now()` once, or `start()` a thread checking every `interval`
    seconds once the first pass gave it a catalog (`catalog()`, None until then)."""

    def __init__(
        self,
        runner: ProjectRunner,
        catalog: Callable[[], Catalog | None],
        interval: float = DEFAULT_INTERVAL,
        *,
        board: Callable[[UpdateCheck], None] | None = None,
        announce: Callable[[ImageUpdate], None] | None = None,
        commit: Callable[[list[ImageUpdate]], None] | None = None,
        announced: Announced | None = None,
    ) -> None:
        self.runner = runner
        self.catalog = catalog
        self.interval = max(MIN_INTERVAL, interval)
        self.board = board
        self.announce = announce
        self.commit = commit
        self.announced = announced if announced is not None else Announced(announced_path(runner))
        self.last: UpdateCheck | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def check_now(self) -> UpdateCheck | None:
        """One check of the current catalog (None before the first pass): tells the board, hands `mode: commit`
        updates to `commit` (when wired) and announces the others once per new version. Never raises."""
        catalog = self.catalog()
        if catalog is None:
            return None
        check = self.runner.updates(catalog)
        self.last = check
        log.info("updates.checked", found=len(check.found), unchecked=len(check.problems))
        if self.board is not None:
            self.board(check)
        to_commit = [u for u in check.found if u.mode == "commit"] if self.commit is not None else []
        if to_commit and self.commit is not None:
            try:
                self.commit(to_commit)
            except Exception:  # the writer's failure is its own to report; the check goes on at the next interval
                log.exception("updates.commit_crashed")
        told = [u for u in check.found if u not in to_commit]
        unchecked = [name for (kind, name), _ in check.problems if kind == "Image"]
        for update in self.announced.fresh(told, unchecked):
            log.info("update.available", image=update.image, old=update.old_version, new=update.new_version)
            if self.announce is not None:
                self.announce(update)
        return check

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="update-check", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5.0)

    def _run(self) -> None:
        while not self._stop.is_set():
            if self.catalog() is None:  # the first pass has not read the manifests yet
                self._stop.wait(0.5)
                continue
            try:
                self.check_now()
            except Exception:  # a bug must not end the watch: the next interval tries again
                log.exception("updates.crashed")
            self._stop.wait(self.interval)


def update_rows(found: Iterable[ImageUpdate]) -> dict[tuple[str, str], dict[str, str]]:
    """(kind, name) -> the `updateAvailable` field of its status row."""
    return {
        ("Image", u.image): {"from": u.old_version, "to": u.new_version, "reference": u.new_reference} for u in found
    }
