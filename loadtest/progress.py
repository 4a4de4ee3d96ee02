"""Load-generator workers report the lowest revision their agents reached,
so the bench can tell when every write has been delivered everywhere."""

from __future__ import annotations

import asyncio
import os
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
