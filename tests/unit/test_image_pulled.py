"""The record of pulled references: per project and engine, atomic, and forgiving of a damaged file."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.drivers.image.pulled import PulledImages, pulled_path


def test_record_and_forget(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Recorded references survive a reload; forgotten ones are gone; no temp files are left."""
    monkeypatch.setenv("RECONCILER_STATE_DIR", str(tmp_path))
    path = pulled_path("proj", "ENGINE:ID")
    assert path.parent == tmp_path / "proj" and pulled_path("proj", "OTHER") != path
    state = PulledImages(path)
    state.record("r:1", "app", "a.yaml", "sha256:1")
    state.record("r:2", "app", "a.yaml", "sha256:2")
    state.forget("r:1")
    assert PulledImages(path).load() == {"r:2": {"name": "app", "source": "a.yaml", "imageId": "sha256:2"}}
    assert [p.name for p in path.parent.iterdir()] == [path.name]


def test_damaged_file_means_nothing_was_pulled(tmp_path: Path) -> None:
    """An unreadable record is treated as empty, so nothing is ever removed by mistake."""
    path = tmp_path / "pulled.json"
    path.write_text("{not json")
    assert PulledImages(path).load() == {}
