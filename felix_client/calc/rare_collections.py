"""Collecting garbage rarely while a snapshot is calculated.

A snapshot's calculation allocates millions of long-lived objects (endpoint
models, routes, index entries), none of them garbage.  With the collector's
usual thresholds the growing heap is walked again and again: 738 young,
67 middle and 3 full collections in one load of 100,000 keys.  While a long
change list is calculated the youngest generation is collected every
RARE_THRESHOLD allocations instead of every 700, which removes nearly all
of those walks; the collector stays on, so cyclic garbage made meanwhile
(by the event loop, or other agents in the same process) is still freed.
The setting is process-wide, so it is counted: it ends when the last
calculation that asked for it does, and the thresholds found are restored.
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
            gc.set_threshold(max(_saved[0], RARE_THRESHOLD), _saved[1], _saved[2])
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0:
                gc.set_threshold(*_saved)
