"""The manifest directory watcher on a real filesystem: bursts debounced, stray files ignored, a swapped
directory symlink (git-sync style) noticed."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from reconciler.watch.triggers import Debouncer, DirectoryWatcher, absolute_dir


class Counter:
    def __init__(self) -> None:
        self.count = 0
        self.event = threading.Event()
        self.debouncer: CountingDebouncer | None = None

    def __call__(self) -> None:
        self.count += 1
        if self.debouncer is not None:
            self.debouncer.owed = 0
        self.event.set()


class CountingDebouncer(Debouncer):
    """Knows whether a burst it let fire still waits for its trigger call (`owed`): the watcher resets the
    burst under its lock and calls the trigger just after, in the same thread."""

    def __init__(self, quiet: float = 0.2, max_wait: float = 2.0) -> None:
        super().__init__(quiet=quiet, max_wait=max_wait)
        self.owed = 0

    def fire(self) -> bool:
        if super().fire():
            self.owed += 1
            return True
        return False


class Probe:
    """Sees every event the watcher's handler passes on (relevant or not), after the watcher has handled it.

    `settled(directory)` writes a hidden swap file there (which never triggers) and waits until the watcher has handled
    its event, so every earlier event of that directory has been handled too; then until no burst is pending and
    the trigger has run for every burst fired (a replaced directory's own trigger comes right after its new
    watch is set up, before any probe in it can be seen). It returns the number of triggers: what a fixed sleep
    guessed at, known without one."""

    def __init__(self, watcher: DirectoryWatcher, debouncer: CountingDebouncer, counter: Counter) -> None:
        self.debouncer, self.counter = debouncer, counter
        self.paths: list[str] = []
        self._cond = threading.Condition()
        self._serial = 0
        handle = watcher.on_event

        def on_event(event: object) -> None:
            handle(event)
            with self._cond:
                self.paths.append(os.fsdecode(event.src_path))  # type: ignore[attr-defined]
                self._cond.notify_all()

        watcher.on_event = on_event  # type: ignore[method-assign]

    def settled(self, directory: Path, timeout: float = 10.0) -> int:
        self._serial += 1
        probe = directory / f".probe-{self._serial}.swp"  # ignored as a manifest and as an input
        probe.write_text("probe\n")
        with self._cond:
            assert self._cond.wait_for(lambda: str(probe) in self.paths, timeout), f"{probe} was never seen"
        deadline = time.monotonic() + timeout
        while self.debouncer.due_at() is not None or self.debouncer.owed:
            assert time.monotonic() < deadline, "a pending burst never fired"
            time.sleep(0.01)
        return self.counter.count


def watching(root: Path, quiet: float = 0.2, max_wait: float = 2.0) -> tuple[DirectoryWatcher, Probe, Counter]:
    counter = Counter()
    debouncer = CountingDebouncer(quiet, max_wait)
    counter.debouncer = debouncer
    watcher = DirectoryWatcher(root, counter, debouncer)
    probe = Probe(watcher, debouncer, counter)
    return watcher.start(), probe, counter


def wait_count(counter: Counter, above: int, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while counter.count <= above:
        assert time.monotonic() < deadline, f"no trigger after {above} within {timeout}s"
        time.sleep(0.01)


@pytest.fixture
def watched(tmp_path: Path):
    root = tmp_path / "m"
    root.mkdir()
    watcher, probe, counter = watching(root)
    yield root, counter, probe
    watcher.stop()


def test_a_burst_of_writes_is_one_trigger(tmp_path: Path) -> None:
    """Twenty files written in a burst (a checkout) trigger one pass."""
    root = tmp_path / "m"
    root.mkdir()
    watcher, probe, counter = watching(root, quiet=1.0, max_wait=10.0)
    try:
        for i in range(20):  # spread over ~0.2 s, well within the quiet time: one pass, not one per file
            (root / f"f{i}.yaml").write_text("x: 1\n")
            time.sleep(0.01)
        assert counter.event.wait(5)
        assert probe.settled(root) == 1
    finally:
        watcher.stop()


def test_stray_files_trigger_nothing(watched) -> None:
    """Swap, backup, hidden and non-YAML files never trigger a pass."""
    root, counter, probe = watched
    for name in (".a.yaml.swp", "a.yaml~", "a.yaml.bak", "4913", ".#a.yaml", "notes.txt"):
        (root / name).write_text("x\n")
    (root / ".git").mkdir()
    (root / ".git" / "HEAD").write_text("ref\n")
    assert probe.settled(root) == 0
    (root / "a.yaml").write_text("x: 1\n")
    assert counter.event.wait(5)


def test_new_subdirectory_files_are_seen(watched) -> None:
    """Files in a directory created after the watch started count."""
    root, counter, probe = watched
    (root / "sub").mkdir()
    assert counter.event.wait(5)
    before = probe.settled(root)
    (root / "sub" / "a.yaml").write_text("x: 1\n")
    wait_count(counter, before)


def test_swapped_symlink_is_noticed(tmp_path: Path) -> None:
    """DIR as a symlink atomically re-pointed to a new checkout triggers a pass and is watched afterwards."""
    one, two = tmp_path / "rev1", tmp_path / "rev2"
    one.mkdir()
    two.mkdir()
    link = tmp_path / "current"
    link.symlink_to(one)
    watcher, probe, counter = watching(link)
    try:
        tmp_link = tmp_path / "current.tmp"
        tmp_link.symlink_to(two)
        os.replace(tmp_link, link)
        assert counter.event.wait(5)
        before = probe.settled(two)  # the new checkout is watched, and nothing more is pending
        (two / "a.yaml").write_text("x: 1\n")
        wait_count(counter, before)
    finally:
        watcher.stop()


def _replace_dir(root: Path) -> None:
    """Swap `root` for a new directory (rm -rf + a fresh clone), the old one kept aside under another name."""
    root.rename(root.with_name(root.name + ".old"))
    root.mkdir()


def test_relative_dir_follows_a_replaced_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`watch .` watches the directory's path, not the inode the process started in: a replaced DIR is noticed
    and files written into the new one trigger passes."""
    root = tmp_path / "m"
    root.mkdir()
    monkeypatch.chdir(root)
    monkeypatch.setenv("PWD", str(root))
    watcher, probe, counter = watching(Path("."))
    try:
        _replace_dir(root)
        assert counter.event.wait(5)
        # the rename's own events may fire a second pass: wait until the new directory is watched and all is quiet
        before = probe.settled(root)
        (root / "a.yaml").write_text("x: 1\n")
        wait_count(counter, before)
    finally:
        watcher.stop()


def test_absolute_dir_keeps_the_logical_path_of_a_symlinked_cwd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A relative DIR is made absolute from $PWD when that is the cwd (so a symlink switch is still followed),
    else from the physical cwd; absolute paths are kept as they are."""
    (tmp_path / "rev1").mkdir()
    link = tmp_path / "current"
    link.symlink_to(tmp_path / "rev1")
    monkeypatch.chdir(link)
    monkeypatch.setenv("PWD", str(link))
    assert absolute_dir(Path(".")) == link
    assert absolute_dir(Path("sub")) == link / "sub"
    monkeypatch.setenv("PWD", str(tmp_path))  # stale: not the cwd
    assert absolute_dir(Path(".")) == Path(os.getcwd()) == (tmp_path / "rev1").resolve()
    assert absolute_dir(tmp_path / "x") == tmp_path / "x"


def test_referenced_files_trigger_inside_and_outside_the_directory(tmp_path: Path) -> None:
    """Defect: edits of files the manifests reference (env files, build contexts, configuration) waited for
    the resync. Inputs are watched wherever they are; their neighbours are not."""
    root = tmp_path / "m"
    root.mkdir()
    outside = tmp_path / "etc"
    (outside / "ctx" / "src").mkdir(parents=True)
    env_out, env_in = outside / "web.env", root / "web.env"
    for path in (env_out, env_in, outside / "other.env", outside / "ctx" / "src" / "main.c"):
        path.write_text("A=1\n")
    watcher, probe, counter = watching(root, quiet=0.1, max_wait=1.0)
    try:
        watcher.watch_inputs([env_out, env_in, outside / "ctx", outside / "later.env"])
        changes = [
            (outside, lambda: env_out.write_text("A=2\n")),
            (root, lambda: env_in.write_text("A=2\n")),  # not YAML, but referenced: counts
            (outside / "ctx" / "src", lambda: (outside / "ctx" / "src" / "main.c").write_text("int x;\n")),
            (outside, lambda: (outside / "later.env").write_text("B=1\n")),  # a referenced file that appears
        ]
        for number, (where, change) in enumerate(changes, 1):
            change()
            wait_count(counter, number - 1)
            assert probe.settled(where) == number, f"change {number} triggered more than once"
        (outside / "other.env").write_text("A=3\n")  # a neighbour of a referenced file
        assert probe.settled(outside) == len(changes)
        (root / "notes.txt").write_text("x\n")
        assert probe.settled(root) == len(changes)
        watcher.watch_inputs([])  # no longer referenced: no longer watched
        mark = len(probe.paths)
        env_out.write_text("A=4\n")
        # outside is no longer watched, so no probe there can be seen: the root's shows the watcher is idle
        assert probe.settled(root) == len(changes)
        assert str(env_out) not in probe.paths[mark:]
    finally:
        watcher.stop()
