"""How long Python's cyclic garbage collector stops the process, per
generation: a full (generation 2) collection walks every tracked object and
holds the event loop, and so every agent's next delta, while it runs.

`GcPauses.install()` adds a `gc.callbacks` hook; `uninstall()` removes it.
The hook runs in whichever thread triggered the collection, so it takes a
lock around the histogram (uncontended, and only once per collection).
"""

from __future__ import annotations

import gc
import threading
import time
from typing import Any

from runtime.histogram import Histogram

# 0.1 ms to 1 s: young collections take well under a millisecond, a full
# one over a large heap tens to hundreds.
GC_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0)


class GcPauses:
    """Histograms of collection durations, one per generation."""

    def __init__(self) -> None:
        self.by_generation = tuple(Histogram(GC_BUCKETS) for _ in range(3))
        self._lock = threading.Lock()
        self._started: dict[int, float] = {}  # thread id -> start of its collection

    def install(self) -> None:
        """Start timing collections (idempotent)."""
        if self._callback not in gc.callbacks:
            gc.callbacks.append(self._callback)

    def uninstall(self) -> None:
        """Stop timing collections."""
        if self._callback in gc.callbacks:
            gc.callbacks.remove(self._callback)

    def _callback(self, phase: str, info: dict[str, Any]) -> None:
        now = time.perf_counter()
        tid = threading.get_ident()
        if phase == "start":
            self._started[tid] = now
            return
        started = self._started.pop(tid, None)
        generation = info.get("generation", 2)
        if started is not None and 0 <= generation <= 2:
            with self._lock:
                self.by_generation[generation].observe(now - started)
