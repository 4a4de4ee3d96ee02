"""One shared object per distinct label map.

The pods of a deployment carry equal labels: a cluster of 100,000 endpoints
may hold 20 distinct maps.  `intern` returns the one `LabelMap` equal to the
given labels, so the calculation keeps one copy of each map however many
endpoints share it.  The table holds its maps weakly: a map no endpoint uses
any more leaves it by itself.  A `LabelMap` is shared: never change one.
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping

LabelKey = tuple[tuple[str, str], ...]


class LabelMap(dict[str, str]):
    """A label map that may be shared (and so must not be changed); `key`
    is its sorted items, which identify it."""

    __slots__ = ("__weakref__", "key")

    key: LabelKey


_TABLE: weakref.WeakValueDictionary[LabelKey, LabelMap] = weakref.WeakValueDictionary()


def intern(labels: Mapping[str, str]) -> LabelMap:
    """The shared map equal to `labels`."""
    key = tuple(sorted(labels.items()))
    found = _TABLE.get(key)
    if found is None:
        found = _TABLE[key] = LabelMap(labels)
        found.key = key
    return found
