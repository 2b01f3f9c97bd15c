"""watch's image update checks: each new version announced once (also across a restart, through the state file),
`mode: commit` updates handed to the git source's writer, the status page's rows and section, the notification's
text, and a check that finds the registry down or the manifests not read yet."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from reconciler.contract import UpdateCheck
from reconciler.model import Action, Change, Desired, Plan, Resource, Source
from reconciler.updates import ImageUpdate
from reconciler.watch.notify import Message, Notifier
from reconciler.watch.statuspage import StatusBoard, render_html
from reconciler.watch.updates import Announced, UpdateChecker, update_rows


def update(image: str = "web", new: str = "1.3.1", mode: str = "report") -> ImageUpdate:
    return ImageUpdate(image, "images.yaml", 4, mode, "reg/web:1.2.0", f"reg/web:{new}", "1.2.0", new)


class Runner:
    """What the checker asks of a ProjectRunner: `updates(catalog)`, answering what the test sets."""

    def __init__(self, check: UpdateCheck) -> None:
        self.check = check
        self.asked = 0

    def updates(self, catalog: Any) -> UpdateCheck:
        self.asked += 1
        return self.check


def checker(runner: Runner, state: Path, **kwargs: Any) -> tuple[UpdateChecker, list[ImageUpdate]]:
    told: list[ImageUpdate] = []
    made = UpdateChecker(runner, lambda: "catalog", announced=Announced(state), announce=told.append, **kwargs)  # type: ignore[arg-type]
    return made, told


def test_each_new_version_is_announced_once_even_after_a_restart(tmp_path: Path) -> None:
    state = tmp_path / "updates-announced.json"
    runner = Runner(UpdateCheck((update(),)))
    first, told = checker(runner, state)
    first.check_now()
    first.check_now()
    assert told == [update()]
    restarted, told_again = checker(runner, state)
    restarted.check_now()
    assert told_again == []
    runner.check = UpdateCheck((update(new="1.4.0"),))
    restarted.check_now()
    assert told_again == [update(new="1.4.0")]
    runner.check = UpdateCheck()  # applied meanwhile: forgotten, so a later update of the same image is told
    restarted.check_now()
    runner.check = UpdateCheck((update(new="1.4.0"),))
    restarted.check_now()
    assert told_again == [update(new="1.4.0")] * 2


def test_a_registry_down_for_a_while_does_not_make_a_told_version_news_again(tmp_path: Path) -> None:
    runner = Runner(UpdateCheck((update(),)))
    made, told = checker(runner, tmp_path / "s.json")
    made.check_now()
    runner.check = UpdateCheck(problems=((("Image", "web"), "cannot check for updates: registry x is unreachable"),))
    made.check_now()
    runner.check = UpdateCheck((update(),))
    made.check_now()
    assert told == [update()]


def test_commit_mode_updates_go_to_the_writer_and_are_not_announced(tmp_path: Path) -> None:
    commit_one, report_one = update("api", mode="commit"), update("web")
    handed: list[list[ImageUpdate]] = []
    made, told = checker(Runner(UpdateCheck((commit_one, report_one))), tmp_path / "a.json", commit=handed.append)
    made.check_now()
    assert handed == [[commit_one]] and told == [report_one]
    unwired, told = checker(Runner(UpdateCheck((commit_one,))), tmp_path / "b.json")
    unwired.check_now()
    assert told == [commit_one]  # no writer (no git source wired): reported instead of lost


def test_nothing_is_checked_before_the_first_pass_and_the_thread_checks_on_its_interval(tmp_path: Path) -> None:
    runner = Runner(UpdateCheck((update(),)))
    catalog: list[Any] = [None]
    boards: list[UpdateCheck] = []
    made = UpdateChecker(
        runner,  # type: ignore[arg-type]
        lambda: catalog[0],
        interval=1.0,
        board=boards.append,
        announced=Announced(tmp_path / "s.json"),
    )
    assert made.check_now() is None and runner.asked == 0
    made.start()
    try:
        catalog[0] = "catalog"
        deadline = time.monotonic() + 30
        while runner.asked < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        made.stop()
    assert runner.asked >= 2 and boards[0].found == (update(),)


def test_the_status_page_shows_the_updates_found() -> None:
    board = StatusBoard("demo", "unix:///run/docker.sock")
    desired = Desired(Resource("Image", "web", {}, {}, Source("images.yaml", 1, Path("/x"))), {}, "h")
    board.pass_started(1, ["startup"])
    board.planned(Plan("demo", (Change("Image", "web", Action.NONE, desired=desired),)))
    assert board.snapshot()["objects"][0]["updateAvailable"] is None
    assert "id=updates" not in render_html(board.snapshot())
    board.updates_found(update_rows([update()]))
    snap = board.snapshot()
    assert snap["objects"][0]["updateAvailable"] == {"from": "1.2.0", "to": "1.3.1", "reference": "reg/web:1.3.1"}
    assert snap["updates"] == [
        {"kind": "Image", "name": "web", "from": "1.2.0", "to": "1.3.1", "reference": "reg/web:1.3.1"}
    ]
    page = render_html(snap)
    assert "update available: 1.2.0 -&gt; 1.3.1" in page and "<table id=updates>" in page
    board.updates_found({}, unchecked=[("Image", "web")])  # the registry down at the next check: still shown
    assert board.snapshot()["objects"][0]["updateAvailable"] is not None
    board.updates_found({})  # asked, and nothing newer any more
    assert board.snapshot()["objects"][0]["updateAvailable"] is None


def test_the_notification_names_the_image_the_versions_and_the_manifest() -> None:
    sent: list[Message] = []
    notifier = Notifier(lambda m: sent.append(m) or True, "demo")
    try:
        notifier.update_available(update())
        notifier.update_available(update())  # the same version again: told once
        notifier.close()
    finally:
        notifier.close()
    assert len(sent) == 1
    assert sent[0].title == "reconcile demo: update available: 1.2.0 -> 1.3.1: Image/web"
    assert "reg/web:1.2.0 -> reg/web:1.3.1" in sent[0].body and "images.yaml:4" in sent[0].body
