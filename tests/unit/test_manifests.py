"""Loading manifests: file discovery, YAML with lines, envelope and schema errors, each as file:line."""

from __future__ import annotations

import os
from pathlib import Path
from textwrap import dedent

import pytest

from reconciler.core.manifests import MAX_FILE_BYTES, display_path, load_directory


def write(root: Path, rel: str, text: str | bytes) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(dedent(text))
    return path


VOLUME = """\
apiVersion: reconciler/v1
kind: Volume
metadata:
  name: {name}
spec:
  reclaimPolicy: Retain
"""


def messages(root: Path) -> list[str]:
    return [str(p) for p in load_directory(root)[1]]


def test_walks_recursively_multi_document_and_skips_hidden_and_stray(tmp_path: Path) -> None:
    """Files are found recursively; several documents per file; hidden files and editor leftovers are skipped."""
    write(tmp_path, "a.yaml", VOLUME.format(name="one") + "---\n" + VOLUME.format(name="two"))
    write(tmp_path, "sub/deeper/b.yml", VOLUME.format(name="three"))
    write(tmp_path, ".hidden/c.yaml", "not: [valid")
    write(tmp_path, ".d.yaml", "not: [valid")
    write(tmp_path, "a.yaml.swp", "not: [valid")
    write(tmp_path, "a.yaml~", "not: [valid")
    write(tmp_path, "4913", "x")
    write(tmp_path, "notes.txt", "x")
    resources, problems = load_directory(tmp_path)
    assert problems == []
    assert sorted(r.name for r in resources) == ["one", "three", "two"]
    assert {r.source.file for r in resources} == {"a.yaml", os.path.join("sub", "deeper", "b.yml")}
    assert [r.source.line for r in resources if r.source.file == "a.yaml"] == [1, 8]


def test_empty_file_and_empty_documents_are_ignored(tmp_path: Path) -> None:
    """An empty file and empty `---` documents declare nothing and are not errors."""
    write(tmp_path, "empty.yaml", "")
    write(tmp_path, "blank.yaml", "---\n---\n# only a comment\n")
    assert load_directory(tmp_path) == ([], [])


def test_yaml_syntax_error_names_file_and_line(tmp_path: Path) -> None:
    """A YAML syntax error is one problem at the line where the parser failed."""
    write(tmp_path, "bad.yaml", "apiVersion: reconciler/v1\nkind: Volume\nmetadata: {name: x\nspec: {}\n")
    [msg] = messages(tmp_path)
    assert msg.startswith("bad.yaml:4: ") and "invalid YAML" in msg


def test_document_not_a_mapping(tmp_path: Path) -> None:
    """A document that is a list or scalar is reported at its first line."""
    write(tmp_path, "list.yaml", VOLUME.format(name="ok") + "---\n- a\n- b\n")
    assert messages(tmp_path) == ["list.yaml:8: a manifest document must be a mapping"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("kind: Volume\nmetadata: {name: v1}\n", "m.yaml:1: Volume/v1: apiVersion: required field is missing"),
        (
            "apiVersion: reconciler/v2\nkind: Volume\nmetadata: {name: v1}\n",
            "m.yaml:1: Volume/v1: apiVersion: unknown apiVersion 'reconciler/v2' (expected reconciler/v1)",
        ),
        ("apiVersion: reconciler/v1\nmetadata: {name: v1}\n", "m.yaml:1: kind: required field is missing"),
    ],
)
def test_envelope_errors(tmp_path: Path, text: str, expected: str) -> None:
    """Missing or unknown apiVersion and kind are reported with the document's line."""
    write(tmp_path, "m.yaml", text)
    assert messages(tmp_path) == [expected]


def test_unknown_kind_lists_known_ones(tmp_path: Path) -> None:
    """An unknown kind names the field's line and the kinds that exist."""
    write(tmp_path, "m.yaml", "apiVersion: reconciler/v1\n\nkind: Pod\nmetadata: {name: p}\n")
    [msg] = messages(tmp_path)
    assert msg.startswith("m.yaml:3: Pod/p: kind: unknown kind 'Pod' (expected one of ")
    assert "Container" in msg and "Volume" in msg


@pytest.mark.parametrize("kind", ["[Volume]", "{a: 1}"])
def test_a_kind_that_is_not_a_string_is_an_unknown_kind(tmp_path: Path, kind: str) -> None:
    """A list or mapping as kind is one problem line, not a traceback."""
    write(tmp_path, "m.yaml", f"apiVersion: reconciler/v1\nkind: {kind}\nmetadata: {{name: p}}\n")
    [msg] = messages(tmp_path)
    assert msg.startswith("m.yaml:2:") and "kind: unknown kind" in msg


def test_schema_violations_point_at_the_offending_field(tmp_path: Path) -> None:
    """Schema errors carry the line of the field itself, and every error is reported at once."""
    write(
        tmp_path,
        "n.yaml",
        """\
        apiVersion: reconciler/v1
        kind: Network
        metadata:
          name: net
        spec:
          driver: bridge
          internal: "yes"
          colour: blue
        ---
        apiVersion: reconciler/v1
        kind: Volume
        metadata:
          name: vol
        spec:
          reclaimPolicy: Sometimes
        """,
    )
    msgs = messages(tmp_path)
    assert "n.yaml:7: Network/net: spec.internal: must be a boolean, not a string" in msgs
    assert "n.yaml:8: Network/net: spec.colour: unknown field" in msgs
    assert any(m.startswith("n.yaml:15: Volume/vol: spec.reclaimPolicy: ") for m in msgs)
    problems = load_directory(tmp_path)[1]
    assert problems == sorted(problems) and [p.line for p in problems] == [7, 8, 15]


def test_missing_required_field_and_bad_name(tmp_path: Path) -> None:
    """A missing required field and an invalid metadata.name are each one line."""
    write(tmp_path, "i.yaml", "apiVersion: reconciler/v1\nkind: Image\nmetadata:\n  name: -bad\nspec: {}\n")
    msgs = messages(tmp_path)
    assert "i.yaml:5: Image/-bad: spec.reference: required field is missing" in msgs
    assert any(m.startswith("i.yaml:4: Image/-bad: metadata.name: ") for m in msgs)


def test_duplicate_keys_are_errors(tmp_path: Path) -> None:
    """A key given twice in one mapping is an error at the second occurrence (YAML would silently keep one)."""
    write(tmp_path, "d.yaml", VOLUME.format(name="v1") + "  reclaimPolicy: Delete\n")
    msgs = messages(tmp_path)
    assert msgs == ["d.yaml:7: Volume/v1: spec.reclaimPolicy: duplicate key (first at line 6)"]


def test_non_utf8_and_huge_files(tmp_path: Path) -> None:
    """A file that is not UTF-8 and a file over the size limit are reported, never a traceback."""
    write(tmp_path, "latin.yaml", "name: caf\xe9\n".encode("latin-1"))
    big = write(tmp_path, "big.yaml", "")
    with big.open("wb") as fh:
        fh.truncate(MAX_FILE_BYTES + 1)
    msgs = messages(tmp_path)
    assert any(m.startswith("latin.yaml:0: not UTF-8 text") for m in msgs)
    assert any(m.startswith("big.yaml:0: file is ") for m in msgs)


def test_a_fifo_named_like_a_manifest_is_reported_not_read(tmp_path: Path) -> None:
    """A FIFO would block the read for ever: it is reported as not a regular file."""
    os.mkfifo(tmp_path / "x.yaml")
    assert messages(tmp_path) == ["x.yaml:0: not a regular file"]


def test_symlink_loop_is_reported_not_followed(tmp_path: Path) -> None:
    """A directory symlink pointing to its parent is reported once and the walk terminates."""
    write(tmp_path, "sub/v.yaml", VOLUME.format(name="v1"))
    (tmp_path / "sub" / "loop").symlink_to(tmp_path)
    resources, problems = load_directory(tmp_path)
    assert [r.name for r in resources] == ["v1"]
    assert any("symbolic link loop" in p.message for p in problems)


def test_lines_are_kept_for_nested_fields(tmp_path: Path) -> None:
    """Every spec field keeps its line, including list items."""
    write(
        tmp_path,
        "n.yaml",
        """\
        apiVersion: reconciler/v1
        kind: Network
        metadata: {name: net}
        spec:
          ipam:
            config:
              - subnet: 10.1.0.0/24
              - subnet: 10.2.0.0/24
                gateway: 10.2.0.1
        """,
    )
    [res] = load_directory(tmp_path)[0]
    assert res.line_of("spec.ipam.config.1.gateway") == 9
    assert res.line_of("spec.ipam.config.0.subnet") == 7
    assert res.line_of("spec.ipam.config.5.subnet") == 6  # falls back to the closest parent


def test_display_path() -> None:
    """Dotted paths with list indexes are shown the way users write them."""
    assert display_path("spec.ports.0.hostPort") == "spec.ports[0].hostPort"
    assert display_path("") == ""


def test_merge_keys_can_be_overridden(tmp_path: Path) -> None:
    """`<<:` merges a mapping and explicit keys override it, in any order, as YAML intends."""
    write(
        tmp_path,
        "m.yaml",
        """\
        apiVersion: reconciler/v1
        kind: Volume
        metadata:
          name: v1
          labels:
            tier: b
            <<: {tier: a, team: x}
        """,
    )
    resources, problems = load_directory(tmp_path)
    assert problems == []
    assert resources[0].labels == {"tier": "b", "team": "x"}


def test_alias_bomb_is_refused_quickly(tmp_path: Path) -> None:
    """A few lines of nested aliases that would expand to billions of values are one problem, not a hang."""
    lines = ['a: &a ["x", "x", "x", "x", "x", "x", "x", "x", "x"]']
    for prev, name in zip("abcdefg", "bcdefgh", strict=True):
        lines.append(f"{name}: &{name} [" + ", ".join([f"*{prev}"] * 9) + "]")
    write(tmp_path, "bomb.yaml", "\n".join(lines) + "\n")
    [msg] = messages(tmp_path)
    assert msg.startswith("bomb.yaml:1: document expands to more than")


def test_type_errors_speak_yaml(tmp_path: Path) -> None:
    """A wrong type names what was expected and what was written, in YAML terms."""
    write(tmp_path, "v.yaml", "apiVersion: reconciler/v1\nkind: Volume\nmetadata: {name: v1, labels: {a: true}}\n")
    [msg] = messages(tmp_path)
    assert msg == "v.yaml:3: Volume/v1: metadata.labels.a: must be a string, not a boolean (true)"


def test_an_unknown_field_names_the_nearest_known_one(tmp_path: Path) -> None:
    """A typo names the field it most resembles; a key like no known field is just unknown. Still one line."""
    write(
        tmp_path,
        "c.yaml",
        """\
        apiVersion: reconciler/v1
        kind: Container
        metadata:
          name: web
        spec:
          imagee: nginx:1.27
          restartPolicy: always
          zzzzzz: 1
        """,
    )
    msgs = messages(tmp_path)
    assert "c.yaml:6: Container/web: spec.imagee: unknown field (did you mean image?)" in msgs
    assert "c.yaml:8: Container/web: spec.zzzzzz: unknown field" in msgs
