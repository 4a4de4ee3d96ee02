"""The periodic one-line summary: what an operator tailing the log at 3 a.m.
needs to see at a glance, every `--log-summary-interval` seconds."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Protocol

from snapshot import SnapshotCache
from typha.fanout.server import AgentServer
from typha.readiness import Readiness
from typha.source import StateSource

log = logging.getLogger("typha.summary")


class Summarised(Protocol):
    """What the summary reads (TyphaApp provides it)."""

    cache: SnapshotCache
    syncer: StateSource
    server: AgentServer | None

    def readiness(self) -> Readiness:
        """Where the replica stands."""
        ...


@dataclass(slots=True)
class _Counts:
    accepted: int = 0
    snapshots: int = 0
    resumes: int = 0
    batches: int = 0
    etcd_errors: int = 0
    suppressed: int = 0
    closed: Counter[str] = field(default_factory=Counter)


def _counts(app: Summarised) -> _Counts:
    server = app.server
    c = _Counts(batches=app.cache.stats.batches, etcd_errors=app.syncer.stats.errors)
    if server is not None:
        st = server.stats
        c.accepted = st.accepted
        c.snapshots = st.snapshots_sent
        c.resumes = st.resumes
        c.suppressed = server.fanout.connlog.suppressed
        c.closed = Counter({str(k): v for k, v in st.closed.items()})
    return c


def summary_line(app: Summarised, before: _Counts, now: _Counts, seconds: float) -> str:
    """The line for the interval between two readings of the counters."""
    server = app.server
    conns = len(server.connections) if server is not None else 0
    streaming = server.fanout.streaming_count() if server is not None else 0
    closed = now.closed - before.closed
    why = ", ".join(f"{reason} {n}" for reason, n in closed.most_common(3))
    line = (
        f"summary: {app.readiness().value}, datastore {app.syncer.status.value}, "
        f"revision {app.cache.revision}, {len(app.cache.current)} keys; "
        f"{conns} agents ({streaming} streaming); last {seconds:.0f}s: "
        f"+{now.accepted - before.accepted} connected, -{sum(closed.values())} closed"
        f"{f' ({why})' if why else ''}, {now.snapshots - before.snapshots} snapshots, "
        f"{now.resumes - before.resumes} resumes, {now.batches - before.batches} batches, "
        f"{now.etcd_errors - before.etcd_errors} etcd errors"
    )
    if now.suppressed > before.suppressed:
        line += f", {now.suppressed - before.suppressed} connection lines suppressed"
    return line


async def log_summaries(app: Summarised, interval: float) -> None:
    """Log a summary every `interval` seconds.  Runs until cancelled; a
    failure here is logged and skipped (it must never make the replica look
    degraded)."""
    loop = asyncio.get_running_loop()
    before, since = _counts(app), loop.time()
    while True:
        await asyncio.sleep(interval)
        try:
            now, at = _counts(app), loop.time()
            log.info("%s", summary_line(app, before, now, at - since))
            before, since = now, at
        except Exception:
            log.exception("summary failed")
