"""The demo's agents, run in worker processes (`agent_worker`) and seen
from the demo through their reports."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

log = logging.getLogger(__name__)

# Called for every delivery a worker reports: (from revision, to revision, time).
OnDelivery = Callable[[int, int, float], None]


@dataclass(slots=True)
class AgentView:
    """One agent as its worker last reported it."""

    node: str
    connected: bool = False
    in_sync: bool = False
    revision: int = 0
    digest: str = ""


@dataclass(slots=True)
class _Worker:
    proc: asyncio.subprocess.Process
    agents: list[AgentView]
    reader: asyncio.Task[None] | None = None
    first: dict[str, Any] = field(default_factory=dict)


def processes_for(agents: int, requested: int) -> int:
    """How many worker processes: `requested`, or (0) one per core, but no
    more than one per 10 agents."""
    if requested > 0:
        return min(requested, max(agents, 1))
    per_core = os.cpu_count() or 1
    return max(1, min(per_core, -(-agents // 10)))


class AgentFleet:
    """`start()` the workers, read `agents` (updated as reports arrive),
    `stop()` them.  Workers die with the demo whatever happens to it."""

    def __init__(self, typha: str, nodes: Sequence[str], processes: int) -> None:
        self.agents = [AgentView(node) for node in nodes]
        self._typha = typha
        self._processes = max(1, min(processes, len(self.agents) or 1))
        self._workers: list[_Worker] = []
        self._stopping = False
        self.on_delivery: OnDelivery | None = None
        self.failed = asyncio.Event()  # a worker exited before stop()
        self.failures: list[str] = []

    @property
    def processes(self) -> int:
        """Worker processes running the agents."""
        return self._processes

    @property
    def first(self) -> dict[str, Any]:
        """Tables of the first agent: node, routes, acl_rules, ip_sets."""
        return self._workers[0].first if self._workers else {}

    async def start(self) -> None:
        """Spawn the workers (from this thread: they die with it)."""
        share = -(-len(self.agents) // self._processes)
        for i in range(self._processes):
            views = self.agents[i * share : (i + 1) * share]
            if not views:
                break
            proc = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "commands.demo.agent_worker",
                str(os.getpid()),
                self._typha,
                ",".join(v.node for v in views),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                limit=64 << 20,
            )
            worker = _Worker(proc, views)
            worker.reader = asyncio.create_task(self._read(worker))
            self._workers.append(worker)

    async def _read(self, worker: _Worker) -> None:
        stdout = worker.proc.stdout
        assert stdout is not None
        while line := await stdout.readline():
            try:
                report = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            for view, (connected, in_sync, revision, digest) in zip(
                worker.agents, report["agents"], strict=False
            ):
                view.connected, view.in_sync = connected, in_sync
                view.revision, view.digest = revision, digest
            if self.on_delivery is not None:
                for start, end, at in report["deliveries"]:
                    self.on_delivery(start, end, at)
            worker.first = report.get("first", worker.first)
        for view in worker.agents:  # the worker is gone: so are its agents
            view.connected = view.in_sync = False
        status = await worker.proc.wait()
        if not self._stopping:
            self.failures.append(
                f"the worker running agents {worker.agents[0].node}..{worker.agents[-1].node} "
                f"exited with status {status} (its error is above)"
            )
            self.failed.set()

    async def stop(self) -> None:
        """Close the workers' stdin and wait for them (killed after 10 s)."""
        self._stopping = True
        for w in self._workers:
            if w.proc.stdin is not None:
                w.proc.stdin.close()
        for w in self._workers:
            try:
                async with asyncio.timeout(10):
                    await w.proc.wait()
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    w.proc.kill()
                await w.proc.wait()
            if w.reader is not None:
                w.reader.cancel()
                await asyncio.gather(w.reader, return_exceptions=True)
        self._workers = []
