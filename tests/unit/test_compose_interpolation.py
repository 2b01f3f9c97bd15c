"""`${VAR}` interpolation and `.env` files, as docker compose reads them."""

from __future__ import annotations

import pytest

from reconciler.compose.interpolation import Interpolator, parse_dotenv
from reconciler.compose.source import ComposeError, Loc, parse_compose

ENV = {"SET": "value", "EMPTY": ""}
HERE = Loc("c.yml", 7)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("$SET", "value"),
        ("${SET}", "value"),
        ("a-${SET}-b", "a-value-b"),
        ("$$SET", "$SET"),
        ("$${SET}", "${SET}"),
        ("${UNSET:-dflt}", "dflt"),
        ("${EMPTY:-dflt}", "dflt"),
        ("${EMPTY-dflt}", ""),
        ("${UNSET-dflt}", "dflt"),
        ("${UNSET:-${SET}}", "value"),
        ("${UNSET:-a ${UNSET2:-b} c}", "a b c"),
        ("${SET:+alt}", "alt"),
        ("${EMPTY:+alt}", ""),
        ("${EMPTY+alt}", "alt"),
        ("${UNSET+alt}", ""),
        ("${SET:?must}", "value"),
        ("${EMPTY?must}", ""),
        ("no dollars", "no dollars"),
    ],
)
def test_forms(text, expected):
    """Every form docker compose understands."""
    assert Interpolator(ENV, lambda loc, msg: None).text(text, HERE) == expected


def test_unset_variable_is_empty_with_a_warning():
    """As Compose: blank, and the user hears which variable and where."""
    heard = []
    assert Interpolator(ENV, lambda loc, msg: heard.append((str(loc), msg))).text("x${NOPE}y", HERE) == "xy"
    assert heard == [("c.yml:7", "variable NOPE is not set; it defaults to an empty string")]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("${UNSET:?set it}", "c.yml:7: required variable UNSET is missing a value: set it"),
        ("${EMPTY:?}", "c.yml:7: required variable EMPTY is missing a value: is required"),
        ("${UNSET?}", "c.yml:7: required variable UNSET is missing a value"),
        ("${SET", "c.yml:7: invalid interpolation"),
        ("${1A}", "c.yml:7: invalid interpolation"),
        ("${SET!x}", "c.yml:7: invalid interpolation"),
    ],
)
def test_errors(text, message):
    """Required variables and broken templates are one-line errors at the value's line."""
    with pytest.raises(ComposeError) as err:
        Interpolator(ENV, lambda loc, msg: None).text(text, HERE)
    assert str(err.value).startswith(message)


def test_a_dollar_that_starts_no_variable_stays_as_written():
    """Compose leaves `$(...)`, `$5`, a lone `$` as they are; `$$` is still an escape."""
    run = Interpolator(ENV, lambda loc, msg: None).text
    assert run("for i in $(seq 1 60); do $$x; done", HERE) == "for i in $(seq 1 60); do $x; done"
    assert run("cost $5 or $", HERE) == "cost $5 or $"


def test_values_are_typed_after_interpolation_as_compose_types_them():
    """`privileged: ${PRIV}` is a boolean once PRIV=true; a number stays a number; the text is kept for strings."""
    top = parse_compose("a: ${T}\nb: $N\nc: '${V}'\nd: x${T}\nl: [$N]\n", "c.yml")
    out = Interpolator({"T": "true", "N": "5", "V": "1.10"}, lambda loc, msg: None).tree(top, top.loc)
    assert out["a"] is True and out["b"] == 5 and out["d"] == "xtrue" and out["l"] == ["5"]
    assert out["c"] == 1.1 and out.text("c") == "1.10" and out.text("a") == "true"


def test_tree_interpolates_values_not_keys_and_keeps_lines():
    """Keys stay as written; values are substituted; locations survive."""
    top = parse_compose("services:\n  ${SET}:\n    image: img:${SET}\n", "c.yml")
    out = Interpolator(ENV, lambda loc, msg: None).tree(top, top.loc)
    assert out["services"]["${SET}"]["image"] == "img:value"
    assert out["services"]["${SET}"].at("image").line == 3


def test_dotenv():
    """Quotes, export, comments, multi-line double quotes; bare names set nothing."""
    text = 'A=1\nexport B="two words"\nC=\'lit $X\'\nD=plain # comment\nE\n# note\nF="l1\nl2"\nG="a\\nb"\n'
    assert parse_dotenv(text, ".env") == {
        "A": "1",
        "B": "two words",
        "C": "lit $X",
        "D": "plain",
        "F": "l1\nl2",
        "G": "a\nb",
    }


def test_dotenv_errors_never_quote_the_line():
    """A bad line is named by number only: it may hold a secret."""
    with pytest.raises(ComposeError) as err:
        parse_dotenv("GOOD=1\nsecret value here\n", ".env")
    assert str(err.value) == ".env:2: expected KEY=VALUE"
    with pytest.raises(ComposeError, match=r"^\.env:1: unterminated"):
        parse_dotenv('A="open\n', ".env")
