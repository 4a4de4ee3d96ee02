"""Collecting garbage rarely while a snapshot is calculated.

A snapshot's calculation allocates millions of long-lived objects (endpoint
models, routes, index entries), none of them garbage.  With the collector's
usual thresholds the growing heap is walked again and again: 738 young,
67 middle and 3 full collections in one load of 100,000 keys.  While a long
change list is calculated the youngest generation is collected every
RARE_THRESHOLD allocations instead of every 700, and each such collection
goes on to the older generations (thresholds 1 and 1; Python still runs a
full collection only once the heap has grown by a quarter), which removes
nearly all of those walks.  The collector stays on and the older
generations keep their pace relative to the young one, so cyclic garbage
made meanwhile (by the event loop, or the other agents of a process) is
still freed: a process whose calculation thread is never idle does not
grow for it.  The setting is process-wide, so it is counted: it ends when
the last calculation that asked for it does, and the thresholds found are
restored.
"""

from __future__ import annotations

import contextlib
import gc
import threading
from collections.abc import Iterator

RARE_THRESHOLD = 100_000

_lock = threading.Lock()
_depth = 0
_saved: tuple[int, int, int] = gc.get_threshold()


@contextlib.contextmanager
def rare_collections() -> Iterator[None]:
    """Run the block with the youngest generation collected rarely."""
    global _depth, _saved
    with _lock:
        if _depth == 0:
            _saved = gc.get_threshold()
            gc.set_threshold(max(_saved[0], RARE_THRESHOLD), 1, 1)
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                gc.set_threshold(*_saved)
