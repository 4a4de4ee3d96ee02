"""Supervision of the server's long-running tasks.

A task that dies (raises, or returns when it should run forever) is logged
at ERROR with its traceback, counted, reported unhealthy (so `/readyz` fails
and the replica stops looking healthy), and restarted after a growing delay.
Nothing is left running as if it were fine.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Callable, Coroutine
from typing import Any

log = logging.getLogger(__name__)

TaskFactory = Callable[[], Coroutine[Any, Any, None]]


class Supervisor:
    """Owns named forever-tasks.  Call `start` inside a running loop; call
    `stop` to cancel them all.  `healthy` is False while any task is down."""

    def __init__(self, *, restart_initial: float = 0.5, restart_max: float = 30.0) -> None:
        self._restart_initial = restart_initial
        self._restart_max = restart_max
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._down: set[str] = set()
        self.failures: Counter[str] = Counter()
        self.on_failure: Callable[[str], None] | None = None

    @property
    def healthy(self) -> bool:
        """No task is down."""
        return not self._down

    @property
    def down(self) -> frozenset[str]:
        """The names of the tasks that are down now."""
        return frozenset(self._down)

    def start(self, name: str, factory: TaskFactory) -> None:
        """Run `factory()` as task `name`, restarting it whenever it ends."""
        self._tasks[name] = asyncio.create_task(self._keep(name, factory), name=name)

    async def _keep(self, name: str, factory: TaskFactory) -> None:
        loop = asyncio.get_running_loop()
        delay = self._restart_initial
        while True:
            started = loop.time()
            try:
                await factory()
                log.error("task %s returned; it should run until stopped: restarting", name)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("task %s failed; restarting in %.1fs", name, delay)
            if loop.time() - started > 2 * self._restart_max:
                delay = self._restart_initial  # it had been healthy: a fresh failure
            self.failures[name] += 1
            self._down.add(name)
            if self.on_failure is not None:
                self.on_failure(name)
            await asyncio.sleep(delay)
            delay = min(delay * 2, self._restart_max)
            self._down.discard(name)

    async def cancel(self, name: str) -> None:
        """Stop task `name` (deliberately: not a failure); `start` it again."""
        task = self._tasks.pop(name, None)
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        self._down.discard(name)

    async def stop(self) -> None:
        """Cancel every task and wait for them."""
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()
