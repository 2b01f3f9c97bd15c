"""The versioned spec hash: independent of key order, sensitive to values and labels."""

from __future__ import annotations

from reconciler.spechash import NORMALIZER_VERSION, hash_version, spec_hash


def test_key_order_does_not_matter() -> None:
    """Two specs with the same content in another order hash the same."""
    assert spec_hash("Volume", {"a": 1, "b": {"c": 2, "d": 3}}) == spec_hash("Volume", {"b": {"d": 3, "c": 2}, "a": 1})


def test_values_kind_and_labels_matter() -> None:
    """A changed value, kind or label changes the hash."""
    base = spec_hash("Volume", {"a": 1}, {"x": "1"})
    assert base != spec_hash("Volume", {"a": 2}, {"x": "1"})
    assert base != spec_hash("Network", {"a": 1}, {"x": "1"})
    assert base != spec_hash("Volume", {"a": 1}, {"x": "2"})


def test_version_is_readable_back() -> None:
    """The normalizer version is part of the stamp and read back; foreign stamps give None."""
    assert hash_version(spec_hash("Volume", {})) == NORMALIZER_VERSION
    assert hash_version("abc") is None and hash_version(None) is None
