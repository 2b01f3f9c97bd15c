"""The ssh control sockets reconcile shares among the user's commands: in the user's own directory, checked before
use; a private one, whose masters end at exit, when that directory is not safely the user's alone."""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from pathlib import Path

import pytest

from reconciler.drivers.engine import sshmux


@pytest.fixture
def fresh(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A fake `ssh` first in PATH logging its arguments; no control directory chosen yet; XDG_RUNTIME_DIR a short
    directory of the test's own."""
    monkeypatch.setattr(sshmux, "_directory", None)
    monkeypatch.setattr(sshmux, "_private", False)
    log = tmp_path / "ssh.log"
    fake = tmp_path / "bin" / "ssh"
    fake.parent.mkdir()
    fake.write_text(f'#!/bin/sh\necho "$*" >> {log}\n')
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}:{os.environ['PATH']}")
    runtime = Path(tempfile.mkdtemp(prefix="rxt", dir="/tmp"))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    yield log
    sshmux.close_all()
    shutil.rmtree(runtime, ignore_errors=True)


def control_path(options: list[str]) -> Path:
    (value,) = [o.removeprefix("ControlPath=") for o in options if o.startswith("ControlPath=")]
    return Path(value)


def test_every_ssh_of_a_host_shares_one_master_in_the_users_directory(fresh):
    first, again = sshmux.options(), sshmux.options()
    assert first == again
    assert "ControlMaster=auto" in first
    path = control_path(first)
    assert path.name == "%C"  # one socket per destination (host, port, user)
    assert path.parent == Path(os.environ["XDG_RUNTIME_DIR"]) / "reconciler-ssh"
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert sshmux.shared()


def test_at_exit_the_users_masters_are_left_to_end_on_their_own(fresh):
    directory = control_path(sshmux.options()).parent
    (directory / "0123abcd").touch()  # where a master's socket would be
    sshmux.close_all()
    assert (directory / "0123abcd").exists() and not fresh.exists()  # no master told to end


@pytest.mark.parametrize("unsafe", ["open to others", "a symbolic link"])
def test_a_directory_not_safely_the_users_gives_way_to_a_private_one_ended_at_exit(fresh, tmp_path, unsafe):
    users = Path(os.environ["XDG_RUNTIME_DIR"]) / "reconciler-ssh"
    if unsafe == "open to others":
        users.mkdir(mode=0o755)
        users.chmod(0o755)
    else:
        (tmp_path / "elsewhere").mkdir(mode=0o700)
        users.symlink_to(tmp_path / "elsewhere")
    directory = control_path(sshmux.options()).parent
    assert directory != users and directory.name.startswith("rcssh-") and not sshmux.shared()
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    (directory / "0123abcd").touch()
    sshmux.close_all()
    assert not directory.exists()
    assert fresh.read_text().splitlines() == [f"-o ControlPath={directory}/0123abcd -O exit reconcile-control"]
    sshmux.close_all()  # twice is harmless (atexit after an explicit close)


def test_a_long_runtime_directory_gives_way_to_tmp(fresh, monkeypatch, tmp_path):
    """A unix socket's path is at most 104-108 bytes: under a long directory, %C (40 characters) would not fit."""
    deep = tmp_path / ("x" * 60)
    deep.mkdir()
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(deep))
    monkeypatch.setattr(sshmux.tempfile, "tempdir", str(deep))
    directory = control_path(sshmux.options()).parent
    assert directory == Path("/tmp") / f"reconciler-ssh-{os.geteuid()}"
    assert len(str(directory / ("0" * 40))) < 104
