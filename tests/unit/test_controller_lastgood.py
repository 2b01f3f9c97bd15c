"""Last valid manifests: a broken file keeps its last valid version; a deleted file is a removal."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.errors import Problem
from reconciler.watch.lastgood import LastValid, Use


def vol(name: str) -> str:
    return f"apiVersion: reconciler/v1\nkind: Volume\nmetadata:\n  name: vol-{name}\nspec: {{}}\n"


def no_cross_problems(resources: list) -> list[Problem]:
    return []


def names(assembly) -> list[str]:
    return sorted(r.name.removeprefix("vol-") for r in assembly.resources)


def test_valid_files_are_used_as_they_are(tmp_path: Path) -> None:
    """Every valid file is used; the assembly is complete."""
    (tmp_path / "a.yaml").write_text(vol("a"))
    (tmp_path / "b.yml").write_text(vol("b") + "---\n" + vol("b2"))
    assembly = LastValid(tmp_path).assemble(no_cross_problems)
    assert names(assembly) == ["a", "b", "b2"] and assembly.complete and assembly.problems == []


def test_broken_file_keeps_its_last_valid_version(tmp_path: Path) -> None:
    """A YAML error in a file that was valid keeps its previous documents and names file:line."""
    sources = LastValid(tmp_path)
    (tmp_path / "a.yaml").write_text(vol("a"))
    sources.assemble(no_cross_problems)
    (tmp_path / "a.yaml").write_text(vol("renamed") + "  bad: [\n")
    assembly = sources.assemble(no_cross_problems)
    assert names(assembly) == ["a"] and assembly.use == {"a.yaml": Use.LAST_VALID}
    assert assembly.complete
    assert [p.file for p in assembly.problems] == ["a.yaml"] and assembly.problems[0].line > 0
    (tmp_path / "a.yaml").write_text(vol("renamed"))
    assert names(sources.assemble(no_cross_problems)) == ["renamed"]


def test_schema_error_keeps_last_valid_version(tmp_path: Path) -> None:
    """A schema violation counts like a YAML error."""
    sources = LastValid(tmp_path)
    (tmp_path / "a.yaml").write_text(vol("a"))
    sources.assemble(no_cross_problems)
    (tmp_path / "a.yaml").write_text(vol("a").replace("spec: {}", "spec: {unknownField: 1}"))
    assembly = sources.assemble(no_cross_problems)
    assert names(assembly) == ["a"] and "unknown field" in str(assembly.problems[0])


def test_never_valid_file_is_left_out_and_makes_assembly_incomplete(tmp_path: Path) -> None:
    """A file broken since the start contributes nothing and forbids pruning (its objects may exist)."""
    (tmp_path / "a.yaml").write_text(vol("a"))
    (tmp_path / "b.yaml").write_text("kind: [\n")
    assembly = LastValid(tmp_path).assemble(no_cross_problems)
    assert names(assembly) == ["a"] and assembly.use["b.yaml"] is Use.LEFT_OUT
    assert assembly.ok and not assembly.complete


def test_deleted_file_is_forgotten(tmp_path: Path) -> None:
    """A file gone from disk is a deliberate removal: its objects leave the desired state."""
    sources = LastValid(tmp_path)
    (tmp_path / "a.yaml").write_text(vol("a"))
    (tmp_path / "b.yaml").write_text(vol("b"))
    sources.assemble(no_cross_problems)
    (tmp_path / "b.yaml").unlink()
    assembly = sources.assemble(no_cross_problems)
    assert names(assembly) == ["a"] and assembly.complete and set(sources.files) == {"a.yaml"}


def test_cross_file_problem_falls_back_for_the_blamed_file(tmp_path: Path) -> None:
    """A problem the whole-project check blames on one file reverts only that file to its last valid version."""
    sources = LastValid(tmp_path)
    (tmp_path / "a.yaml").write_text(vol("a"))
    (tmp_path / "b.yaml").write_text(vol("b"))
    sources.assemble(no_cross_problems)
    (tmp_path / "b.yaml").write_text(vol("b-new"))

    def check(resources: list) -> list[Problem]:
        bad = [r for r in resources if r.name == "vol-b-new"]
        return [Problem("b.yaml", 4, "Volume/b-new", "spec", "refers to undeclared thing")] if bad else []

    assembly = sources.assemble(check)
    assert names(assembly) == ["a", "b"] and assembly.use["b.yaml"] is Use.LAST_VALID
    assert "b.yaml:4" in str(assembly.problems[0])


def test_unattributable_problem_gives_up(tmp_path: Path) -> None:
    """A problem no file can be blamed for yields no desired state at all (the pass changes nothing)."""
    (tmp_path / "a.yaml").write_text(vol("a"))
    assembly = LastValid(tmp_path).assemble(lambda rs: [Problem("", 0, "", "", "mystery")])
    assert not assembly.ok and assembly.resources == []


def test_missing_directory_is_empty(tmp_path: Path) -> None:
    """A vanished directory yields no files (the caller then refuses to prune)."""
    assembly = LastValid(tmp_path / "gone").assemble(no_cross_problems)
    assert assembly.ok and assembly.files == 0 and assembly.resources == []


def test_stray_files_are_not_read(tmp_path: Path) -> None:
    """Swap, backup and hidden files are never loaded."""
    (tmp_path / "a.yaml").write_text(vol("a"))
    for stray in (".a.yaml.swp", "a.yaml~", "a.yaml.bak", "4913", ".#a.yaml"):
        (tmp_path / stray).write_text(vol("stray"))
    assert names(LastValid(tmp_path).assemble(no_cross_problems)) == ["a"]


def test_relative_root_reads_the_directory_now_at_that_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With a relative root (`watch .`), a replaced directory's new files are read, not the old inode's."""
    root = tmp_path / "m"
    root.mkdir()
    (root / "a.yaml").write_text(vol("a"))
    monkeypatch.chdir(root)
    monkeypatch.setenv("PWD", str(root))
    lv = LastValid(Path("."))
    assert names(lv.assemble(no_cross_problems)) == ["a"]
    root.rename(tmp_path / "m.old")
    root.mkdir()
    (root / "b.yaml").write_text(vol("b"))
    assert names(lv.assemble(no_cross_problems)) == ["b"]


def test_valid_file_conflicting_in_both_versions_is_suspended_not_left_out(tmp_path: Path) -> None:
    """A file valid before whose current and last valid versions both conflict with the other files (what it
    refers to was deleted) is suspended: nothing of it is used, its last valid version is kept, nothing pruned."""
    sources = LastValid(tmp_path)
    (tmp_path / "a.yaml").write_text(vol("a"))
    (tmp_path / "n.yaml").write_text(vol("n"))
    sources.assemble(no_cross_problems)
    (tmp_path / "n.yaml").unlink()

    def check(resources: list) -> list[Problem]:
        gone = not any(r.name == "vol-n" for r in resources)
        uses = any(r.name == "vol-a" for r in resources)
        return [Problem("a.yaml", 4, "Volume/a", "spec", "refers to undeclared Volume/vol-n")] if gone and uses else []

    assembly = sources.assemble(check)
    assert assembly.use == {"a.yaml": Use.SUSPENDED} and assembly.ok and not assembly.complete
    assert "a.yaml" in sources.files and "n.yaml" not in sources.files
    (tmp_path / "n.yaml").write_text(vol("n"))
    assert sources.assemble(check).use == {"a.yaml": Use.CURRENT, "n.yaml": Use.CURRENT}


def test_emptied_file_keeps_its_last_valid_version_until_written_or_deleted(tmp_path: Path) -> None:
    """A file truncated to nothing (an editor mid-save, a failed write) keeps its last valid objects; written
    again it is used as it is, a comment-only file is an intended empty one, and deleting it is a removal."""
    sources = LastValid(tmp_path)
    (tmp_path / "a.yaml").write_text(vol("a"))
    (tmp_path / "b.yaml").write_text(vol("b"))
    sources.assemble(no_cross_problems)
    (tmp_path / "a.yaml").write_text("")
    (tmp_path / "b.yaml").write_text("\n  \n")
    assembly = sources.assemble(no_cross_problems)
    assert names(assembly) == ["a", "b"] and assembly.complete and assembly.problems == []
    assert assembly.use == {"a.yaml": Use.LAST_VALID, "b.yaml": Use.LAST_VALID}
    assert assembly.emptied == ["a.yaml", "b.yaml"]
    (tmp_path / "a.yaml").write_text(vol("a2"))
    (tmp_path / "b.yaml").write_text("# nothing here any more\n")
    assembly = sources.assemble(no_cross_problems)
    assert names(assembly) == ["a2"] and assembly.emptied == []
    (tmp_path / "a.yaml").write_text("")
    assert names(sources.assemble(no_cross_problems)) == ["a2"]
    (tmp_path / "a.yaml").unlink()
    assert names(sources.assemble(no_cross_problems)) == []
