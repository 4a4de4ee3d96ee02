"""Load-generator workers report the lowest revision their agents reached,
so the bench can tell when every write has been delivered everywhere."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Callable


def write_atomic(path: str, text: str) -> None:
    """Write `text` to `path` atomically (write a temporary file, then rename)."""
    with open(path + ".tmp", "w") as f:
        f.write(text)
    os.replace(path + ".tmp", path)


async def report_progress(path: str, lowest: Callable[[], int], every: float = 0.25) -> None:
    """Every `every` seconds, write `lowest()` to `path` (atomically)."""
    while True:
        await asyncio.sleep(every)
        await asyncio.to_thread(write_atomic, path, str(lowest()))


class LoopLag:
    """How late the worker's event loop runs a timer: the load generator's own
    backlog.  While it stays small, a receiver's latency is the server's, not
    the load generator's."""

    def __init__(self, every: float = 0.02) -> None:
        self.every = every
        self.times: list[float] = []
        self.lag_ms: list[float] = []
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start sampling on the running loop; the caller keeps it running."""
        self.task = asyncio.get_running_loop().create_task(self._run())

    def results(self) -> dict[str, list[float]]:
        """(monotonic time, lag in ms) samples; the bench picks its window."""
        return {"times": self.times, "lag_ms": self.lag_ms}

    async def _run(self) -> None:
        while True:
            # time.monotonic, not loop.time(): uvloop caches the latter per
            # loop iteration, which would hide exactly the delay we measure.
            t0 = time.monotonic()
            await asyncio.sleep(self.every)
            t1 = time.monotonic()
            self.times.append(t1)
            self.lag_ms.append(round(max(0.0, (t1 - t0 - self.every) * 1000), 2))
