"""Pausing Python's cyclic garbage collector while a snapshot is calculated.

A snapshot's calculation allocates millions of long-lived objects (endpoint
models, routes, index entries), none of them garbage.  With the collector
on, the growing heap is walked again and again: the young generations every
few hundred allocations, the whole heap a few times (measured at 100,000
keys: about a tenth of the calculation).  Paused, the new objects are walked
once, by the first collection after.  The collector is process-wide, so the
pause is counted: it ends when the last calculation that asked for it does,
and leaves the collector as it found it.
"""

from __future__ import annotations

import contextlib
import gc
import threading
from collections.abc import Iterator

_lock = threading.Lock()
_depth = 0
_restore = False


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Run the block with the cyclic collector off (it is turned back on
    after the outermost such block, if it was on before the first)."""
    global _depth, _restore
    with _lock:
        if _depth == 0:
            _restore = gc.isenabled()
            gc.disable()
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and _restore:
                gc.enable()
