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
        ("cost $5", "c.yml:7: invalid interpolation"),
    ],
)
def test_errors(text, message):
    """Required variables and broken templates are one-line errors at the value's line."""
    with pytest.raises(ComposeError) as err:
        Interpolator(ENV, lambda loc, msg: None).text(text, HERE)
    assert str(err.value).startswith(message)


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
