"""Reading Compose YAML: YAML 1.2 scalars as docker compose reads them, lines of every key, merge keys, tags."""

from __future__ import annotations

import pytest

from reconciler.compose.source import ComposeError, Map, Override, Reset, Seq, parse_compose


def test_scalars_are_read_as_compose_reads_them():
    """`no`/`yes`/`on` stay strings (YAML 1.2), true/false/ints are typed, quoted values are strings."""
    top = parse_compose("a: no\nb: yes\nc: on\nd: true\ne: 8080\nf: '8080'\ng: 1.50\nh: ~\ni: 0755\n", "f.yml")
    assert top["a"] == "no" and top["b"] == "yes" and top["c"] == "on"
    assert top["d"] is True and top["e"] == 8080 and top["f"] == "8080" and top["h"] is None
    assert top.text("g") == "1.50" and top.text("d") == "true"  # the source text, as Compose would stringify it


def test_every_key_and_item_knows_its_file_and_line():
    """Locations survive nesting: mapping keys and sequence items."""
    top = parse_compose("services:\n  web:\n    ports:\n      - 80\n      - 81\n", "c.yml")
    web = top["services"]["web"]
    assert isinstance(web, Map) and str(top["services"].at("web")) == "c.yml:2"
    assert isinstance(web["ports"], Seq) and web["ports"].at(1).line == 5


def test_merge_keys_are_overridden_by_explicit_keys_and_keep_their_lines():
    """`<<: *anchor` fills keys not written explicitly; the line is the anchor's."""
    top = parse_compose("x: &d\n  restart: always\n  user: a\ns:\n  <<: *d\n  user: b\n", "c.yml")
    assert top["s"] == {"restart": "always", "user": "b"}
    assert top["s"].at("restart").line == 2 and top["s"].at("user").line == 6


def test_duplicate_keys_are_an_error_naming_both_lines():
    """YAML would keep one silently; Compose refuses."""
    with pytest.raises(ComposeError, match=r"^c.yml:3: duplicate key 'a' \(first at line 2\)$"):
        parse_compose("x:\n  a: 1\n  a: 2\n", "c.yml")


def test_reset_and_override_tags():
    """`!reset` and `!override` are kept for the merge."""
    top = parse_compose("a: !reset null\nb: !override [1]\n", "c.yml")
    assert isinstance(top["a"], Reset)
    assert isinstance(top["b"], Override) and top["b"].value == [1]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("- a\n", "c.yml:1: a Compose file must be a mapping at the top level"),
        ("a: [\n", "c.yml:2: invalid YAML"),
        ("a: 1\n---\nb: 2\n", "c.yml:3: a Compose file holds one YAML document"),
        ("? [a]\n: 1\n", "c.yml:1: mapping keys must be strings"),
    ],
)
def test_bad_files_are_one_line_errors(text, message):
    """Each shape Compose refuses is one line with file:line."""
    with pytest.raises(ComposeError) as err:
        parse_compose(text, "c.yml")
    assert str(err.value).startswith(message)


def test_alias_expansion_is_bounded():
    """A few lines of nested aliases cannot expand into billions of values."""
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * 10) + "]" for i in range(1, 8)]
    with pytest.raises(ComposeError, match="expands to more than"):
        parse_compose("\n".join(lines) + "\n", "c.yml")


def test_empty_file_is_an_empty_mapping():
    """An empty override file is allowed."""
    assert parse_compose("", "c.yml") == {}
