"""Thin etcd watchers: N watch streams on a prefix, one TCP connection each,
as N agents watching etcd (or the gRPC proxy) would.

    python -m loadtest.thin_watch --target H:P --count N --out F [--sample K]

Each watcher speaks HTTP/2 and gRPC itself (loadtest.h2grpc): it reads frame
headers and two fields of each response, so the load generator costs a small
fraction of the server it measures; watchers that are not sampled read every
50 ms instead of on every response.  A watch the server ends (the gRPC proxy
cancels a client that is 50 ms slow to take a response) is re-created from
the next revision on a new connection, as an etcd client library does, and
counted.  Prints READY when every watch is created; SIGTERM writes results
and exits.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import time
from array import array
from typing import Any

import uvloop

from commands.limits import raise_open_files
from loadtest.h2grpc import H2WatchReader, StreamEnded, opening, scan_watch_response
from loadtest.progress import LoopLag, report_progress
from typha.datastore.etcd_api import WatchCreateRequest, WatchRequest, prefix_range_end

PREFIX = b"/calico/"
# Watchers whose latency is not sampled read their socket every POLL_S, not on
# every response: the kernel holds what arrives meanwhile, the server's work is
# the same, and the load generator wakes 20 times a second per watcher rather
# than 200.  Sampled watchers read at once, so latency is measured on them.
POLL_S = 0.05
WATCH_PATH = "/etcdserverpb.Watch/Watch"
RECONNECTING: set[asyncio.Task[None]] = set()


def watch_request(start_revision: int) -> bytes:
    """An encoded WatchRequest creating a watch of PREFIX from `start_revision` (0: now)."""
    return bytes(
        WatchRequest(
            create_request=WatchCreateRequest(
                key=PREFIX, range_end=prefix_range_end(PREFIX), start_revision=start_revision
            )
        ).SerializeToString()
    )


class Watcher(asyncio.Protocol):
    """One watcher of the prefix (a stand-in for an agent of the proxy or of etcd)."""

    def __init__(self, index: int, record: bool, target: str) -> None:
        self.index = index
        self.record = record
        self.polled = not record
        self.target = target
        self.created = asyncio.Event()
        self.failed: str | None = None
        self.ended = 0  # watches the server ended; each was re-created
        self.first_revision = 0
        self.revision = 0
        self.responses = 0
        self.revs = array("q")
        self.times = array("d")
        self.reader = H2WatchReader()
        self.transport: asyncio.Transport | None = None

    async def connect(self) -> None:
        """Open a connection and a watch from the revision after ours."""
        host, port = self.target.rsplit(":", 1)
        self.reader = H2WatchReader()
        start = self.revision + 1 if self.created.is_set() else 0
        hello = opening(self.target, WATCH_PATH, watch_request(start))
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_connection(lambda: self, host, int(port))
        self.transport = transport
        self.transport.write(hello)

    def data_received(self, data: bytes) -> None:
        """Record the revision the server's responses reached."""
        now = time.monotonic()
        try:
            msgs, reply = self.reader.feed(data)
        except StreamEnded as e:
            self._ended(str(e))
            return
        if reply and self.transport is not None:
            self.transport.write(reply)
        self.responses += len(msgs)
        if self.polled and self.created.is_set() and self.transport is not None:
            self.transport.pause_reading()  # until the next poll
            # Revisions only grow: the last response says where we are.
            msgs = msgs[-1:]
        for msg in msgs:
            resp = scan_watch_response(msg)
            if resp.canceled:
                self._ended("watch canceled")
                return
            if resp.created:
                if not self.created.is_set():
                    self.first_revision = self.revision = resp.revision
                    self.created.set()
                continue
            # An event response's header revision is the revision of its
            # events (etcd sends one response per revision).
            if resp.revision > self.revision:
                self.revision = resp.revision
                if self.record:
                    self.revs.append(resp.revision)
                    self.times.append(now)

    def connection_lost(self, exc: Exception | None) -> None:
        """A watch whose connection drops is re-created, as a client library would."""
        if self.transport is not None:
            self._ended(f"connection lost: {exc}")

    def _ended(self, why: str) -> None:
        transport, self.transport = self.transport, None
        if transport is not None:
            transport.abort()
        if not self.created.is_set():
            self.failed = why
            self.created.set()  # never leave the READY wait hanging
            return
        self.ended += 1
        # The loop holds tasks weakly: keep the reconnect alive until done.
        task = asyncio.get_running_loop().create_task(self.connect_retrying())
        RECONNECTING.add(task)
        task.add_done_callback(RECONNECTING.discard)

    async def connect_retrying(self) -> None:
        """connect(), retried while the server refuses (it may be starting);
        raises SystemExit if it never answers."""
        for attempt in range(100):
            try:
                await self.connect()
                return
            except OSError:
                await asyncio.sleep(min(0.05 * (attempt + 1), 1.0))
        raise SystemExit(f"cannot connect to {self.target}")


async def poll(watchers: list[Watcher]) -> None:
    """Let every polled watcher read once per POLL_S, a fifth of them every
    POLL_S / 5: waking all at once would make one long loop iteration a
    tick, delaying the sampled watchers behind it."""
    groups = 5
    tick = 0
    while True:
        await asyncio.sleep(POLL_S / groups)
        for w in watchers[tick % groups :: groups]:
            if w.polled and w.transport is not None:
                w.transport.resume_reading()
        tick += 1


def results(watchers: list[Watcher], lag: LoopLag) -> dict[str, Any]:
    """The watchers' measurements, as JSON-ready data."""
    return {
        "agents": len(watchers),
        "responses": sum(w.responses for w in watchers),
        "watches_ended": sum(w.ended for w in watchers),
        "final_revisions": [w.revision for w in watchers],
        "first_revisions": [w.first_revision for w in watchers],
        "samples": [{"revs": list(w.revs), "times": list(w.times)} for w in watchers if w.record],
        "loop_lag": lag.results(),
    }


def dump_and_exit(path: str, watchers: list[Watcher], lag: LoopLag) -> None:
    """SIGTERM: write what we have and leave at once."""
    with open(path, "w") as f:
        json.dump(results(watchers, lag), f)
    os._exit(0)


async def main_async(ns: argparse.Namespace) -> None:
    """Run the watchers until SIGTERM and print their results."""
    loop = asyncio.get_running_loop()
    watchers = [Watcher(i, i < ns.sample, ns.target) for i in range(ns.count)]
    lag = LoopLag()
    loop.add_signal_handler(signal.SIGTERM, dump_and_exit, ns.out, watchers, lag)
    for w in watchers:
        await w.connect_retrying()
    await asyncio.gather(*(w.created.wait() for w in watchers))
    failed = [w.failed for w in watchers if w.failed]
    if failed:
        print(f"FAILED {len(failed)} watchers: {failed[0]}", flush=True)
        return
    lag.start()
    poller = loop.create_task(poll(watchers))
    print("READY", flush=True)
    await report_progress(
        ns.out + ".progress", lambda: min((w.revision for w in watchers), default=0)
    )
    del poller  # never reached: the process leaves through dump_and_exit


def main() -> None:
    """Entry point of `python -m loadtest.thin_watch`."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--target", required=True)
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--sample", type=int, default=20)
    p.add_argument("--out", required=True)
    ns = p.parse_args()
    raise_open_files(ns.count + 64)
    uvloop.run(main_async(ns))


if __name__ == "__main__":
    main()
