"""Indexes over a whole catalog, built once per catalog instead of once per object.

Checks that compare one object with all the others (a published port taken twice, overlapping subnets, the Image
behind a container's reference) scanned the whole catalog for every object: quadratic in the size of the tree.
`per_catalog` builds such an index on first use and hands the same one to every later check of that catalog.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable
from typing import Any, TypeVar, cast

T = TypeVar("T")

_lock = threading.Lock()
_cache: dict[str, tuple[Any, int, Any]] = {}  # key -> (reference to the catalog, its size then, the index)


def per_catalog(catalog: Any, key: str, build: Callable[[Any], T]) -> T:
    """`build(catalog)`, computed once for this catalog (and again if objects were added since); one catalog is
    remembered per key, and only weakly."""
    size = len(catalog.desired)
    with _lock:
        entry = _cache.get(key)
    if entry is not None:
        ref, known_size, value = entry
        if ref() is catalog and known_size == size:
            return cast(T, value)  # what build() returned for this key
    value = build(catalog)
    try:
        ref = weakref.ref(catalog)
    except TypeError:  # an object that cannot be weakly referenced: not cached
        return value
    with _lock:
        _cache[key] = (ref, size, value)
    return value
