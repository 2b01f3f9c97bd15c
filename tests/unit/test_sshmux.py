"""The ssh control sockets reconcile makes for itself: private, and gone (masters told to end) at exit."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from reconciler.drivers.engine import sshmux


@pytest.fixture
def fresh(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """A fake `ssh` first in PATH logging its arguments; this process's control directory not made yet."""
    monkeypatch.setattr(sshmux, "_directory", None)
    log = tmp_path / "ssh.log"
    fake = tmp_path / "bin" / "ssh"
    fake.parent.mkdir()
    fake.write_text(f'#!/bin/sh\necho "$*" >> {log}\n')
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}:{os.environ['PATH']}")
    return log


def control_path(options: list[str]) -> Path:
    (value,) = [o.removeprefix("ControlPath=") for o in options if o.startswith("ControlPath=")]
    return Path(value)


def test_every_ssh_of_a_host_shares_one_master_in_a_private_directory(fresh):
    first, again = sshmux.options(), sshmux.options()
    assert first == again  # one directory per process
    assert "ControlMaster=auto" in first
    path = control_path(first)
    assert path.name == "%C"  # one socket per destination (host, port, user)
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    sshmux.close_all()


def test_at_exit_each_master_is_told_to_end_and_the_directory_goes(fresh):
    directory = control_path(sshmux.options()).parent
    (directory / "0123abcd").touch()  # where a master's socket would be
    sshmux.close_all()
    assert not directory.exists()
    assert fresh.read_text().splitlines() == [f"-o ControlPath={directory}/0123abcd -O exit reconcile-control"]
    sshmux.close_all()  # twice is harmless (atexit after an explicit close)


def test_a_long_tmpdir_gives_way_to_tmp(fresh, monkeypatch, tmp_path):
    """A unix socket's path is at most 104-108 bytes: under a long TMPDIR, %C (40 characters) would not fit."""
    deep = tmp_path / ("x" * 60)
    deep.mkdir()
    monkeypatch.setattr(sshmux.tempfile, "tempdir", str(deep))
    directory = control_path(sshmux.options()).parent
    assert directory.parent == Path("/tmp")
    assert len(str(directory / ("0" * 40))) < 104
    sshmux.close_all()
