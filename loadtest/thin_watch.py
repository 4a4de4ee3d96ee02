"""Thin etcd watchers: N gRPC watch streams on a prefix, one channel (TCP
connection) each, as N agents watching etcd (or the gRPC proxy) would.

    python -m loadtest.thin_watch --target H:P --count N --out F [--sample K]

Prints READY when every watch is created; SIGTERM writes results and exits.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import time
from array import array
from collections.abc import AsyncIterator
from typing import Any

import grpc.aio
import uvloop
from etcd3aio import prefix_range_end
from etcd3aio._protobuf import WatchCreateRequest, WatchRequest, WatchStub

from loadtest.progress import report_progress

PREFIX = b"/calico/"


class Watcher:
    """One gRPC watcher of the prefix (a stand-in for an agent of the proxy or of etcd)."""

    def __init__(self, index: int, record: bool) -> None:
        self.index = index
        self.record = record
        self.created = asyncio.Event()
        self.first_revision = 0
        self.revision = 0
        self.events = 0
        self.revs = array("q")
        self.times = array("d")

    async def run(self, target: str) -> None:
        """Watch `target` until cancelled, recording revisions."""
        channel = grpc.aio.insecure_channel(target, options=[("grpc.use_local_subchannel_pool", 1)])
        stub: Any = WatchStub(channel)

        async def requests() -> AsyncIterator[Any]:
            yield WatchRequest(
                create_request=WatchCreateRequest(key=PREFIX, range_end=prefix_range_end(PREFIX))
            )
            await asyncio.Future()

        try:
            async for resp in stub.Watch(requests()):
                now = time.monotonic()
                if resp.created:
                    self.first_revision = resp.header.revision
                    self.revision = resp.header.revision
                    self.created.set()
                    continue
                if resp.events:
                    self.events += len(resp.events)
                    rev = max(ev.kv.mod_revision for ev in resp.events)
                    self.revision = max(self.revision, rev)
                    if self.record:
                        self.revs.append(rev)
                        self.times.append(now)
        finally:
            await channel.close()


def results(watchers: list[Watcher]) -> dict[str, Any]:
    """The watchers' measurements, as JSON-ready data."""
    return {
        "agents": len(watchers),
        "events": sum(w.events for w in watchers),
        "final_revisions": [w.revision for w in watchers],
        "first_revisions": [w.first_revision for w in watchers],
        "samples": [{"revs": list(w.revs), "times": list(w.times)} for w in watchers if w.record],
    }


def dump_and_exit(path: str, watchers: list[Watcher]) -> None:
    """SIGTERM: write what we have and leave at once.  A watcher process that
    fell behind would otherwise spend minutes draining gRPC before exiting."""
    with open(path, "w") as f:
        json.dump(results(watchers), f)
    os._exit(0)


async def main_async(ns: argparse.Namespace) -> None:
    """Run the watchers until SIGTERM and print their results."""
    loop = asyncio.get_running_loop()
    watchers = [Watcher(i, i < ns.sample) for i in range(ns.count)]
    loop.add_signal_handler(signal.SIGTERM, dump_and_exit, ns.out, watchers)
    tasks = [asyncio.create_task(w.run(ns.target)) for w in watchers]
    await asyncio.gather(*(w.created.wait() for w in watchers))
    print("READY", flush=True)
    await report_progress(
        ns.out + ".progress", lambda: min((w.revision for w in watchers), default=0)
    )
    del tasks  # never reached: the process leaves through dump_and_exit


def main() -> None:
    """Entry point of `python -m loadtest.thin_watch`."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--target", required=True)
    p.add_argument("--count", type=int, required=True)
    p.add_argument("--sample", type=int, default=20)
    p.add_argument("--out", required=True)
    uvloop.run(main_async(p.parse_args()))


if __name__ == "__main__":
    main()
