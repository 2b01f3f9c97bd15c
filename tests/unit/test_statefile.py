"""The one state-file helper: atomic replace, no temporary left behind, damaged files read as nothing."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from reconciler.statefile import read_json, write_json


def test_write_then_read_round_trips_and_leaves_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "state.json"
    write_json(path, {"b": 1, "a": [1, 2]})
    assert read_json(path) == {"a": [1, 2], "b": 1}
    write_json(path, {"c": 3})
    assert read_json(path) == {"c": 3}
    assert sorted(p.name for p in path.parent.iterdir()) == ["state.json"]


def test_a_failed_write_keeps_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A crash between writing and renaming (here: fsync fails) leaves the previous content whole."""
    path = tmp_path / "state.json"
    write_json(path, {"old": True})

    def broken_fsync(fd: int) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="disk full"):
        write_json(path, {"new": True})
    assert read_json(path) == {"old": True}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state.json"]


@pytest.mark.parametrize("content", [b"{half", b"\xff\xfe", b""])
def test_damaged_or_missing_files_read_as_nothing(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "state.json"
    assert read_json(path) is None
    path.write_bytes(content)
    assert read_json(path) is None


def test_adoption_records_of_several_kinds_written_at_once_are_all_kept(tmp_path: Path, monkeypatch) -> None:
    """Volumes and networks are adopted concurrently into one file: no record may overwrite another."""
    import threading

    from reconciler.drivers.engine.adoption import Adopted

    monkeypatch.setenv("RECONCILER_STATE_DIR", str(tmp_path))
    writers = [
        threading.Thread(target=Adopted("p").record, args=(kind, f"n{i}", f"id{i}"))
        for i in range(20)
        for kind in ("Volume", "Network")
    ]
    for t in writers:
        t.start()
    for t in writers:
        t.join()
    data = Adopted("p").load()
    assert len(data["Volume"]) == 20 and len(data["Network"]) == 20
    assert Adopted("p").holds("Volume", "n3", "id3") and not Adopted("p").holds("Volume", "n3", "other")
