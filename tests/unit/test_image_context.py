"""Build-input hashing: content of what docker-py would send (honouring .dockerignore), Dockerfile, args, target."""

from __future__ import annotations

import os
from pathlib import Path

from reconciler.drivers.image.context import build_inputs, context_files, context_hash


def make_context(root: Path) -> Path:
    ctx = root / "ctx"
    (ctx / "src").mkdir(parents=True)
    (ctx / "Dockerfile").write_text("FROM scratch\nCOPY src /src\n")
    (ctx / "src" / "app.txt").write_text("v1\n")
    (ctx / "notes.md").write_text("ignored\n")
    (ctx / "build").mkdir()
    (ctx / "build" / "out.bin").write_bytes(b"\0" * 10)
    (ctx / ".dockerignore").write_text("# comment\n*.md\nbuild\n")
    return ctx


def test_ignored_files_are_not_part_of_the_context(tmp_path: Path) -> None:
    """Files matched by .dockerignore are left out, exactly as docker-py's build() leaves them out."""
    files = context_files(make_context(tmp_path), "Dockerfile")
    assert "src/app.txt" in files and "Dockerfile" in files
    assert "notes.md" not in files and "build/out.bin" not in files


def test_edit_to_an_ignored_file_changes_nothing(tmp_path: Path) -> None:
    """An edit to an ignored file keeps the hash; an edit to a sent file changes it."""
    ctx = make_context(tmp_path)
    before = context_hash(ctx)
    (ctx / "notes.md").write_text("edited\n")
    (ctx / "build" / "out.bin").write_bytes(b"\1" * 20)
    assert context_hash(ctx) == before
    (ctx / "src" / "app.txt").write_text("v2\n")
    assert context_hash(ctx) != before


def test_content_not_timestamps(tmp_path: Path) -> None:
    """Touching a file (same bytes, new mtime) is no change; a rename or a mode change is."""
    ctx = make_context(tmp_path)
    before = context_hash(ctx)
    app = ctx / "src" / "app.txt"
    os.utime(app, (1, 1))
    assert context_hash(ctx) == before
    app.chmod(0o755)
    assert context_hash(ctx) != before
    app.chmod(0o644)
    app.rename(ctx / "src" / "renamed.txt")
    assert context_hash(ctx) != before


def test_every_input_counts(tmp_path: Path) -> None:
    """Dockerfile bytes, args and target each change the total hash; equal inputs give equal hashes."""
    ctx = make_context(tmp_path)
    base = build_inputs(ctx, "Dockerfile", {"V": "1"}, None)
    assert build_inputs(ctx, "Dockerfile", {"V": "1"}, None).total == base.total
    assert build_inputs(ctx, "Dockerfile", {"V": "2"}, None).args != base.args
    assert build_inputs(ctx, "Dockerfile", {"V": "1"}, "runtime").total != base.total
    (ctx / "Dockerfile").write_text("FROM scratch\n")
    changed = build_inputs(ctx, "Dockerfile", {"V": "1"}, None)
    assert changed.dockerfile != base.dockerfile and changed.total != base.total
