"""Rewriting an Image's reference in manifest text (reconciler.gitsource.rewrite): only the scalars that name the
old reference change, every other character of every file stays, and the result reads as the original with only
those values changed (checked with PyYAML, the loader reconcile reads manifests with)."""

from __future__ import annotations

from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from reconciler.gitsource.rewrite import RewriteError, rewrite_tree, splice
from reconciler.updates import ImageUpdate

OLD = "127.0.0.1:5000/team/api:1.2.0"
NEW = "127.0.0.1:5000/team/api:1.3.1"


def update(file: str = "images.yaml", old: str = OLD, new: str = NEW) -> ImageUpdate:
    return ImageUpdate("api", file, 4, "commit", old, new, "1.2.0", "1.3.1")


def rewrite(text: str, **files: str) -> str:
    result = rewrite_tree({"images.yaml": text, **files}, update())
    assert result.skipped is None, result.skipped
    return result.files.get("images.yaml", text)


def test_only_the_reference_changes_and_comments_stay() -> None:
    """Comments before, beside and after the scalar, and the document's key order, are kept byte for byte."""
    text = (
        "# the API image\n"
        "apiVersion: reconciler/v1\n"
        "kind: Image\n"
        "metadata:\n"
        "  name: api   # referenced by web\n"
        "spec:\n"
        "  pullPolicy: Always\n"
        f"  reference: {OLD}    # bumped by hand before\n"
        "  # trailing comment\n"
    )
    assert rewrite(text) == text.replace(OLD, NEW)


@pytest.mark.parametrize("token", [f"'{OLD}'", f'"{OLD}"', OLD])
def test_each_quoting_style_is_kept(token: str) -> None:
    """Single-quoted, double-quoted and plain scalars stay in their style."""
    text = f"kind: Image\nmetadata: {{name: api}}\nspec:\n  reference: {token}\n"
    assert rewrite(text) == text.replace(OLD, NEW)


def test_flow_mappings_and_a_containers_image_in_the_same_file() -> None:
    """`{image: x}` in a flow mapping changes in place; a multi-document file changes in each document."""
    text = (
        f"kind: Image\nmetadata: {{name: api}}\nspec: {{reference: {OLD}, pullPolicy: Always}}\n"
        "---\n"
        f'kind: Container\nmetadata: {{name: web}}\nspec: {{image: "{OLD}", command: [sleep, "3600"]}}\n'
        "---\n"
        f"kind: Container\nmetadata: {{name: worker}}\nspec:\n  image: '{OLD}'\n"
    )
    result = rewrite_tree({"images.yaml": text}, update())
    assert result.files["images.yaml"] == text.replace(OLD, NEW)
    assert [(s.line, s.subject, s.field) for s in result.sites] == [
        (3, "Image/api", "spec.reference"),
        (7, "Container/web", "spec.image"),
        (12, "Container/worker", "spec.image"),
    ]


def test_crlf_line_endings_and_a_byte_order_mark_stay() -> None:
    """A file written on Windows keeps its CRLF line endings and its BOM."""
    text = f"\ufeffkind: Image\r\nmetadata: {{name: api}}\r\nspec:\r\n  reference: {OLD}  # c\r\n"
    assert rewrite(text) == text.replace(OLD, NEW)


def test_an_anchor_is_rewritten_once_and_its_aliases_follow() -> None:
    """The reference written once under an anchor and used through aliases: the anchor's scalar changes, the
    aliases stay aliases."""
    text = (
        f"kind: Image\nmetadata: {{name: api}}\nspec:\n  reference: &ref {OLD}\n"
        "---\n"
        f"x-image: &img '{OLD}'\nkind: Service\nmetadata: {{name: api}}\nspec:\n  image: *img\n"
    )
    result = rewrite_tree({"images.yaml": text}, update())
    assert result.files["images.yaml"] == text.replace(OLD, NEW)
    assert [s.subject for s in result.sites] == ["Image/api", "Service/api"]


def test_a_reference_that_only_shares_a_prefix_and_other_fields_stay() -> None:
    """`…:1.2.0-rc`, `…:1.2`, a label or a command holding the very reference, another Image's reference, and
    the reference in a comment are not image fields of this Image: unchanged."""
    text = (
        f"kind: Image\nmetadata: {{name: api}}\nspec:\n  reference: {OLD}\n"
        "---\n"
        f"kind: Image\nmetadata: {{name: other}}\nspec:\n  reference: {OLD}-rc  # was {OLD}\n"
        "---\n"
        "kind: Container\nmetadata:\n  name: web\n"
        f"  labels: {{pinned: {OLD}}}\nspec:\n  image: {OLD}-rc\n  command: [echo, {OLD}]\n"
        "---\n"
        f"kind: Container\nmetadata: {{name: old}}\nspec:\n  image: {OLD[:-2]}\n"
    )
    expected = text.replace(f"reference: {OLD}\n", f"reference: {NEW}\n", 1)
    assert rewrite(text) == expected


def test_the_same_reference_in_several_files() -> None:
    """Every manifest file naming the reference changes; a file that does not is left out of the result."""
    images = f"kind: Image\nmetadata: {{name: api}}\nspec:\n  reference: {OLD}\n"
    web = f"kind: Container\nmetadata: {{name: web}}\nspec:\n  image: {OLD}  # follows the Image\n"
    swarm = f'kind: Service\nmetadata: {{name: api}}\nspec:\n  image: "{OLD}"\n  replicas: 2\n'
    other = "kind: Network\nmetadata: {name: backend}\nspec: {}\n"
    files = {"images.yaml": images, "apps/web.yml": web, "swarm/api.yaml": swarm, "net.yaml": other}
    result = rewrite_tree(files, update())
    assert result.files == {
        "images.yaml": images.replace(OLD, NEW),
        "apps/web.yml": web.replace(OLD, NEW),
        "swarm/api.yaml": swarm.replace(OLD, NEW),
    }
    assert sorted(s.file for s in result.sites) == ["apps/web.yml", "images.yaml", "swarm/api.yaml"]


def test_a_reference_the_user_changed_is_not_overwritten() -> None:
    """The Image's reference no longer reads the old one: skipped with the reason, no file changed (not even the
    Containers that still name the old reference)."""
    images = f"kind: Image\nmetadata: {{name: api}}\nspec:\n  reference: {OLD[:-1]}9\n"
    web = f"kind: Container\nmetadata: {{name: web}}\nspec:\n  image: {OLD}\n"
    result = rewrite_tree({"images.yaml": images, "web.yaml": web}, update())
    assert result.files == {} and result.skipped is not None
    assert "images.yaml:4 Image/api spec.reference is now" in result.skipped and "not overwritten" in result.skipped


@pytest.mark.parametrize(
    ("files", "reason"),
    [
        ({}, "images.yaml is gone"),
        ({"images.yaml": "kind: Network\nmetadata: {name: api}\n"}, "is gone, not"),  # moved to another file
        ({"images.yaml": "kind: Image\n  bad: [\n"}, "not valid YAML"),
    ],
)
def test_an_image_that_is_no_longer_there_is_skipped(files: dict[str, str], reason: str) -> None:
    """The declaring file removed, the Image moved elsewhere, or the file broken meanwhile: skipped."""
    result = rewrite_tree(files, update())
    assert result.files == {} and result.skipped is not None and reason in result.skipped


def test_already_at_the_new_reference_changes_nothing() -> None:
    """The branch already holds the new reference (an earlier round pushed it): nothing to commit."""
    images = f"kind: Image\nmetadata: {{name: api}}\nspec:\n  reference: {NEW}\n"
    result = rewrite_tree({"images.yaml": images}, update())
    assert result.already and result.files == {} and result.skipped is None


def test_a_reference_written_with_escapes_is_not_rewritten() -> None:
    """A double-quoted scalar spelled with an escape or a plain scalar over two lines cannot be spliced in its
    style: refused, never rewritten another way."""
    escaped = 'kind: Image\nmetadata: {name: api}\nspec:\n  reference: "127.0.0.1:5000/team/api\\x3a1.2.0"\n'
    result = rewrite_tree({"images.yaml": escaped}, update())
    assert result.skipped is not None and "cannot be changed in place" in result.skipped


def test_a_new_value_that_is_no_reference_is_refused() -> None:
    """What the registry said is written into YAML only when it is an image reference (no quotes, spaces or
    newlines that would change the document)."""
    with pytest.raises(RewriteError):
        splice("a: x\n", [], "x", "x\nkind: Host")


def test_a_file_that_is_not_yaml_elsewhere_in_the_tree_is_left_alone() -> None:
    """Another file reconcile cannot read either: not touched, the update still lands where it can."""
    images = f"kind: Image\nmetadata: {{name: api}}\nspec:\n  reference: {OLD}\n"
    result = rewrite_tree({"images.yaml": images, "broken.yaml": f"image: [{OLD}\n"}, update())
    assert set(result.files) == {"images.yaml"}


# ----------------------------------------------------------------------------------------------- property test

styles = st.sampled_from(["plain", "single", "double"])


def token(value: str, style: str) -> str:
    return {"plain": value, "single": f"'{value}'", "double": f'"{value}"'}[style]


comment = st.one_of(st.just(""), st.text("abc #:-'\"", max_size=12).map(lambda t: f"  # {t}"))


@st.composite
def manifest_files(draw: Any) -> tuple[dict[str, list[Any]], str]:
    """Files as fragments: a fragment is text, or ("ref", style, moves) for a scalar holding OLD that must move
    (`moves`) or stay. Returns the fragments of each file and the line ending."""
    nl = draw(st.sampled_from(["\n", "\r\n"]))
    indent = " " * draw(st.sampled_from([2, 4]))
    files: dict[str, list[Any]] = {}
    count = draw(st.integers(1, 3))
    for number in range(count):
        parts: list[Any] = []
        documents = draw(st.integers(1, 3))
        for index in range(documents):
            if index or draw(st.booleans()):
                parts.append(f"---{draw(comment)}{nl}")
            if number == 0 and index == 0:
                kind, name, field = "Image", "api", "reference"
            else:
                kind = draw(st.sampled_from(["Container", "Service", "Image", "Network"]))
                name = draw(st.sampled_from(["web", "worker", "other"]))
                field = "reference" if kind == "Image" else "image"
            moves = kind != "Network" and (kind != "Image" or name == "api")
            value_kind = draw(st.sampled_from(["old", "prefix", "other"])) if (number, index) != (0, 0) else "old"
            style = draw(styles)
            parts.append(f"{draw(comment)}{nl}" if draw(st.booleans()) else "")
            parts.append(f"kind: {kind}{draw(comment)}{nl}")
            if draw(st.booleans()):
                parts.append(f"metadata: {{name: {name}}}{draw(comment)}{nl}")
            else:
                parts.append(f"metadata:{nl}{indent}name: {name}{draw(comment)}{nl}")
            if value_kind == "old":
                value: Any = ("ref", style, moves)
            elif value_kind == "prefix":
                value = token(OLD + draw(st.sampled_from(["-rc", "1", ".1"])), style)
            else:
                value = token("busybox:1.36", style)
            extra = [f"labels: {{note: {token(OLD, draw(styles))}}}"] if draw(st.booleans()) else []
            if draw(st.booleans()):
                inner: list[Any] = [f"{{{field}: ", value]
                for item in extra:
                    inner += [", ", item]
                parts += ["spec: ", *inner, f"}}{draw(comment)}{nl}"]
            else:
                parts += [f"spec:{nl}", f"{indent}{field}: ", value, f"{draw(comment)}{nl}"]
                parts += [f"{indent}{item}{nl}" for item in extra]
        files[f"dir{number}/m{number}.yaml" if number else "images.yaml"] = parts
    return files, nl


def render(parts: list[Any], reference_if_moved: str) -> str:
    out = []
    for part in parts:
        if isinstance(part, tuple):
            _, style, moves = part
            out.append(token(reference_if_moved if moves else OLD, style))
        else:
            out.append(part)
    return "".join(out)


@settings(max_examples=150, deadline=None)
@given(manifest_files())
def test_property_only_the_image_fields_change(drawn: tuple[dict[str, list[Any]], str]) -> None:
    """For any mix of quoting, flow and block styles, comments, line endings, documents and files: the result is
    exactly the original with the moving scalars' tokens replaced (every other byte identical, the prefix-sharing
    and non-image values untouched), and PyYAML reads it as the original with only those values changed."""
    fragments, _nl = drawn
    originals = {name: render(parts, OLD) for name, parts in fragments.items()}
    expected = {name: render(parts, NEW) for name, parts in fragments.items()}
    result = rewrite_tree(originals, update())
    assert result.skipped is None, result.skipped
    written = {**originals, **result.files}
    assert written == expected
    assert set(result.files) == {name for name in originals if originals[name] != expected[name]}
    for name in originals:
        assert list(yaml.safe_load_all(written[name])) == list(yaml.safe_load_all(expected[name]))
