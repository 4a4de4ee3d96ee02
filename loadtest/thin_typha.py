"""Thin agents: many typha connections in one process, reading frame headers.

    python -m loadtest.thin_typha --target H:P[,H:P] --count N --out F [--sample K]

Each connection sends a real CLIENT_HELLO and then only parses the 16-byte
frame headers (the revision is in the header), so the load generator is
never the bottleneck.  It prints READY once every connection has reached
SNAPSHOT_END.  SIGUSR1 makes every connection reconnect at once (with
revision 0: a storm of full snapshots); SIGUSR2 makes every connection
reconnect to the *next* target offering its revision (a resume).  SIGTERM
writes the results to F and exits.

With THIN_APPLIED=1 in the environment every connection also offers the
`applied` capability and reports each revision as applied the moment it
arrives, on the schedule a real agent keeps (syncclient.applied_reports,
at the interval the server names): what acknowledgements cost the server.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import struct
import time
from array import array
from typing import Any

import uvloop

from commands.limits import raise_open_files
from loadtest.progress import LoopLag, report_progress
from runtime.hostport import parse_hostports
from syncclient.applied_reports import AppliedReports, server_interval
from syncproto import (
    CAP_APPLIED,
    CAP_RESUME,
    CAP_ZSTD,
    Applied,
    AppliedInterval,
    ClientHello,
    Codec,
    Frame,
    MsgType,
    Ping,
    Pong,
    ServerHello,
)

HEADER = struct.Struct(">IBBHQ")


class ThinAgent(asyncio.Protocol):
    """A cheap agent: reads frame headers only (the revision is in the header) and records when
    each revision arrived."""

    def __init__(self, owner: Fleet, index: int, record: bool) -> None:
        self.owner = owner
        self.index = index
        self.record = record
        self.buf = bytearray()
        self.revision = 0
        self.synced = False
        self.bytes = 0
        self.transport: asyncio.Transport | None = None
        self.revs = array("q")
        self.times = array("d")
        self.first_revision = 0
        self.phase_bytes = 0
        self.reports: AppliedReports | None = AppliedReports() if owner.applied else None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        """Send the hello."""
        self.transport = transport  # type: ignore[assignment]
        self.buf.clear()
        caps = {CAP_ZSTD, CAP_RESUME}
        if self.reports is not None:
            self.reports.connected()
            caps.add(CAP_APPLIED)
        hello = ClientHello(
            node=f"thin-{self.index}",
            caps=frozenset(caps),
            revision=self.owner.offer_revision(self),
            client="thin",
        )
        transport.write(self.owner.codec.encode(hello))  # type: ignore[attr-defined]

    def data_received(self, data: bytes) -> None:
        """Parse frame headers; record revisions; answer pings."""
        now = time.monotonic()
        self.bytes += len(data)
        self.phase_bytes += len(data)
        buf = self.buf
        buf += data
        pos = 0
        n = len(buf)
        while n - pos >= 16:
            length, mtype, _, _, revision = HEADER.unpack_from(buf, pos)
            if n - pos < 16 + length:
                break
            pos += 16 + length
            if mtype == MsgType.SERVER_HELLO:
                body = bytes(buf[pos - length : pos])
                hello = self.owner.codec.decode(Frame(MsgType.SERVER_HELLO, 0, 0, body))
                if isinstance(hello, ServerHello) and self.reports is not None:
                    self.reports.interval = server_interval(hello.applied_interval_ms)
                if isinstance(hello, ServerHello) and hello.sync == "resume" and not self.synced:
                    self.synced = True
                    self.owner.synced(self, now)
            elif mtype == MsgType.SNAPSHOT_END:
                if not self.synced:
                    self.synced = True
                    self.owner.synced(self, now)
                self.revision = revision
                if not self.first_revision:
                    self.first_revision = revision
            elif mtype in (MsgType.DELTA, MsgType.PROGRESS):
                self.revision = revision
                if self.record:
                    self.revs.append(revision)
                    self.times.append(now)
                if self.reports is not None and self.reports.applied(revision):
                    self.owner.pending_reports.add(self)
            elif mtype == MsgType.APPLIED_INTERVAL and self.reports is not None:
                body = bytes(buf[pos - length : pos])
                told = self.owner.codec.decode(Frame(MsgType.APPLIED_INTERVAL, 0, 0, body))
                if isinstance(told, AppliedInterval):
                    self.reports.interval = server_interval(told.interval_ms)
            elif mtype == MsgType.PING and self.transport is not None:
                # The one body we decode: the server drops connections that
                # stay silent past its idle timeout.
                frame = Frame(MsgType.PING, 0, 0, bytes(buf[pos - length : pos]))
                ping = self.owner.codec.decode(frame)
                if isinstance(ping, Ping):
                    self.transport.write(self.owner.codec.encode(Pong(ping.token)))
        if pos:
            del buf[:pos]
        if self.reports is not None and self in self.owner.pending_reports:
            self.send_report(now)

    def send_report(self, now: float) -> None:
        """Send the pending APPLIED report if it is due (the owner's ticker
        retries those that are not)."""
        reports = self.reports
        if reports is None or self.transport is None or self.transport.is_closing():
            return
        due = reports.due(now)
        revision = reports.pending()
        if due is None or revision is None:
            self.owner.pending_reports.discard(self)
        elif due == 0.0:
            self.transport.write(self.owner.codec.encode(Applied(revision)))
            reports.sent(revision, now)
            self.owner.applied_frames += 1
            self.owner.pending_reports.discard(self)

    def connection_lost(self, exc: Exception | None) -> None:
        """Count the agent as out of sync."""
        self.synced = False
        self.owner.lost(self)


class Fleet:
    """Many thin agents in one process, with the phases of a benchmark run."""

    def __init__(self, targets: list[tuple[str, int]], count: int, sample: int) -> None:
        self.targets = targets
        self.target_index = 0
        self.codec = Codec(max_frame=64 << 20)
        self.synced_count = 0
        self.resuming = False
        self.storm_start = 0.0
        self.storms: list[float] = []
        self.phase = "connect"
        self.phase_bytes: dict[str, list[int]] = {}
        self.resume_gap = float(os.environ.get("THIN_RESUME_GAP", "0"))
        self.ready = asyncio.Event()
        self.lag = LoopLag()
        self.applied = os.environ.get("THIN_APPLIED") == "1"
        self.pending_reports: set[ThinAgent] = set()  # a report waits for its interval
        self.applied_frames = 0
        self.agents = [ThinAgent(self, i, i < sample) for i in range(count)]

    async def report_ticker(self, tick: float = 0.02) -> None:
        """Send the reports whose interval has passed (a real agent arms a
        timer each; one ticker is cheaper for thousands of connections)."""
        while True:
            await asyncio.sleep(tick)
            now = time.monotonic()
            for agent in list(self.pending_reports):
                agent.send_report(now)

    def offer_revision(self, agent: ThinAgent) -> int:
        """The revision `agent` offers in its hello (0 unless resuming)."""
        return agent.revision if self.resuming else 0

    def synced(self, agent: ThinAgent, now: float) -> None:
        """An agent is in sync; the phase ends once all are."""
        self.synced_count += 1
        if self.synced_count == len(self.agents):
            if self.storm_start:
                self.storms.append(now - self.storm_start)
                self.storm_start = 0.0
            # Bytes each agent needed to get in sync in this phase.
            self.phase_bytes.setdefault(self.phase, [a.phase_bytes for a in self.agents])
            self.ready.set()

    def lost(self, agent: ThinAgent) -> None:
        """An agent lost its connection."""
        if agent.synced:
            self.synced_count -= 1

    async def connect(self, agent: ThinAgent) -> None:
        """Connect one agent to the current target."""
        host, port = self.targets[self.target_index % len(self.targets)]
        loop = asyncio.get_running_loop()
        for attempt in range(200):
            try:
                await loop.create_connection(lambda: agent, host, port)
                return
            except OSError:
                await asyncio.sleep(min(0.05 * (attempt + 1), 1.0))
        raise SystemExit(f"cannot connect to {host}:{port}")

    async def connect_all(self) -> None:
        """Connect every agent, a few at a time."""
        sem = asyncio.Semaphore(200)  # bounded concurrency for the connect() calls

        async def one(a: ThinAgent) -> None:
            async with sem:
                await self.connect(a)

        await asyncio.gather(*(one(a) for a in self.agents))

    async def reconnect_all(self, *, resume: bool) -> None:
        """Drop every connection and reconnect all at once: to the same
        target for a full snapshot each (a storm), or, after the resume gap,
        to the next target offering our revisions (a resume)."""
        self.ready.clear()
        self.resuming = resume
        self.phase = "resume" if resume else "storm"
        self.phase_bytes.pop(self.phase, None)
        if resume:
            self.target_index += 1
        for a in self.agents:
            if a.transport is not None:
                a.transport.abort()
        await asyncio.sleep(self.resume_gap if resume else 0.2)
        for a in self.agents:
            a.synced = False
            a.phase_bytes = 0
        self.synced_count = 0
        self.storm_start = time.monotonic()
        await self.connect_all()
        await self.ready.wait()

    def results(self) -> dict[str, Any]:
        """The fleet's measurements, as JSON-ready data."""
        return {
            "agents": len(self.agents),
            "synced": self.synced_count,
            "bytes": sum(a.bytes for a in self.agents),
            "final_revisions": [a.revision for a in self.agents],
            "first_revisions": [a.first_revision for a in self.agents],
            "samples": [
                {"revs": list(a.revs), "times": list(a.times)} for a in self.agents if a.record
            ],
            "loop_lag": self.lag.results(),
            "storm_s": self.storms,
            "connect_bytes": self.phase_bytes.get("connect", []),
            "storm_bytes": self.phase_bytes.get("storm", []),
            "resume_bytes": self.phase_bytes.get("resume", []),
            "applied_frames": self.applied_frames,
        }


async def main_async(ns: argparse.Namespace) -> dict[str, Any]:
    """Run a fleet until SIGTERM; returns its results."""
    targets = [(a.host, a.port) for a in parse_hostports(ns.target)]
    fleet = Fleet(targets, ns.count, ns.sample)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    actions: asyncio.Queue[str] = asyncio.Queue()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGUSR1, actions.put_nowait, "storm")
    loop.add_signal_handler(signal.SIGUSR2, actions.put_nowait, "resume")
    ticker = asyncio.create_task(fleet.report_ticker()) if fleet.applied else None
    await fleet.connect_all()
    await fleet.ready.wait()
    fleet.lag.start()
    print("READY", flush=True)

    async def act() -> None:
        while True:
            what = await actions.get()
            await fleet.reconnect_all(resume=what == "resume")
            print("READY", flush=True)

    actor = asyncio.create_task(act())
    reporter = asyncio.create_task(
        report_progress(
            ns.out + ".progress", lambda: min((a.revision for a in fleet.agents), default=0)
        )
    )
    await stop.wait()
    reporter.cancel()
    actor.cancel()
    if ticker is not None:
        ticker.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await actor
    return fleet.results()


def main() -> None:
    """Entry point of `python -m loadtest.thin_typha`."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--target", required=True)
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--sample", type=int, default=20, help="connections recording per-frame times")
    p.add_argument("--out", required=True)
    ns = p.parse_args()
    raise_open_files(ns.count + 64)
    results = uvloop.run(main_async(ns))
    with open(ns.out, "w") as f:
        json.dump(results, f)


if __name__ == "__main__":
    main()
