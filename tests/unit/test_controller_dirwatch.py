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

    def __call__(self) -> None:
        self.count += 1
        self.event.set()


def settle(counter: Counter, seconds: float = 1.0) -> int:
    time.sleep(seconds)
    return counter.count


@pytest.fixture
def watched(tmp_path: Path):
    root = tmp_path / "m"
    root.mkdir()
    counter = Counter()
    watcher = DirectoryWatcher(root, counter, Debouncer(quiet=0.2, max_wait=2.0)).start()
    yield root, counter
    watcher.stop()


def test_a_burst_of_writes_is_one_trigger(watched) -> None:
    """Twenty files written at once (a checkout) trigger one pass."""
    root, counter = watched
    for i in range(20):
        (root / f"f{i}.yaml").write_text("x: 1\n")
    assert counter.event.wait(5)
    assert settle(counter) == 1


def test_stray_files_trigger_nothing(watched) -> None:
    """Swap, backup, hidden and non-YAML files never trigger a pass."""
    root, counter = watched
    for name in (".a.yaml.swp", "a.yaml~", "a.yaml.bak", "4913", ".#a.yaml", "notes.txt"):
        (root / name).write_text("x\n")
    (root / ".git").mkdir()
    (root / ".git" / "HEAD").write_text("ref\n")
    assert settle(counter) == 0
    (root / "a.yaml").write_text("x: 1\n")
    assert counter.event.wait(5)


def test_new_subdirectory_files_are_seen(watched) -> None:
    """Files in a directory created after the watch started count."""
    root, counter = watched
    (root / "sub").mkdir()
    assert counter.event.wait(5)
    time.sleep(0.5)
    before = counter.count
    (root / "sub" / "a.yaml").write_text("x: 1\n")
    time.sleep(1)
    assert counter.count > before


def test_swapped_symlink_is_noticed(tmp_path: Path) -> None:
    """DIR as a symlink atomically re-pointed to a new checkout triggers a pass and is watched afterwards."""
    one, two = tmp_path / "rev1", tmp_path / "rev2"
    one.mkdir()
    two.mkdir()
    link = tmp_path / "current"
    link.symlink_to(one)
    counter = Counter()
    watcher = DirectoryWatcher(link, counter, Debouncer(quiet=0.2, max_wait=2.0)).start()
    try:
        tmp_link = tmp_path / "current.tmp"
        tmp_link.symlink_to(two)
        os.replace(tmp_link, link)
        assert counter.event.wait(5)
        counter.event.clear()
        time.sleep(0.5)
        (two / "a.yaml").write_text("x: 1\n")
        assert counter.event.wait(5)
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
    counter = Counter()
    watcher = DirectoryWatcher(Path("."), counter, Debouncer(quiet=0.2, max_wait=2.0)).start()
    try:
        _replace_dir(root)
        assert counter.event.wait(5)
        counter.event.clear()
        time.sleep(0.5)
        (root / "a.yaml").write_text("x: 1\n")
        assert counter.event.wait(5)
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
    counter = Counter()
    watcher = DirectoryWatcher(root, counter, Debouncer(quiet=0.1, max_wait=1.0)).start()
    try:
        watcher.watch_inputs([env_out, env_in, outside / "ctx", outside / "later.env"])
        changes = [
            lambda: env_out.write_text("A=2\n"),
            lambda: env_in.write_text("A=2\n"),  # not YAML, but referenced: counts
            lambda: (outside / "ctx" / "src" / "main.c").write_text("int x;\n"),
            lambda: (outside / "later.env").write_text("B=1\n"),  # a referenced file that appears
        ]
        for number, change in enumerate(changes, 1):
            counter.event.clear()
            change()
            assert counter.event.wait(5), f"change {number} was not noticed"
            assert settle(counter, 0.4) == number
        (outside / "other.env").write_text("A=3\n")
        (root / "notes.txt").write_text("x\n")
        assert settle(counter, 0.6) == len(changes)
        watcher.watch_inputs([])  # no longer referenced: no longer watched
        env_out.write_text("A=4\n")
        assert settle(counter, 0.6) == len(changes)
    finally:
        watcher.stop()
