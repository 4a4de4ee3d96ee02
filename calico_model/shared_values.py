"""One object for equal small values that thousands of endpoints repeat.

The pods of a cluster name a few nodes, namespaces, profile lists and port
lists; each decoded value carries its own copies.  `share` returns the first
object seen equal to the one given, so the calculation keeps one of each.
Strings go through `sys.intern` (the interpreter drops an interned string no
one uses any more); other values (tuples of strings, of named ports) through
a table that is emptied when full, so values a datastore writer invents
cannot grow it without bound: emptying it only costs sharing.  Thread-safe
as far as the calculation needs: a race at worst shares less.
"""

from __future__ import annotations

import sys
from collections.abc import Hashable
from typing import TypeVar, cast

T = TypeVar("T", bound=Hashable)

TABLE_CAP = 1 << 14

_table: dict[Hashable, Hashable] = {}


def share(value: T) -> T:
    """The one shared object equal to `value` (which must be immutable)."""
    if type(value) is str:  # exactly str: sys.intern refuses subclasses
        return cast(T, sys.intern(cast(str, value)))
    found = _table.get(value)
    if found is None:
        if len(_table) >= TABLE_CAP:
            _table.clear()
        _table[value] = value
        return value
    return cast(T, found)
