"""`typha demo`: embedded etcd, seeded cluster, server, agents, churn, live view.

Everything runs in this process except etcd itself (a child process that is
always stopped on exit).  At the end the demo compares every agent's digest
with one computed straight from etcd and exits 1 if any differs.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import contextlib
import signal
import sys
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson

from commands.demo.cluster import Churn, seed_cluster
from commands.demo.etcd import EmbeddedEtcd
from felix_client import SyncClient
from felix_client.agent import Agent
from typha.app import TyphaApp
from typha.config import HostPort, ServeConfig, parse_etcd_endpoints
from typha.datastore.etcd_client import EtcdConnection
from typha.datastore.etcd_state import read_etcd_state


def add_demo_arguments(p: argparse.ArgumentParser) -> None:
    """The flags of `typha demo`."""
    p.add_argument(
        "--duration", type=float, default=0.0, help="seconds to run (default: until Ctrl-C)"
    )
    p.add_argument(
        "--dataplane",
        choices=["memory", "linux"],
        default="memory",
        help="memory: agents compute tables in memory (default); linux: builds network "
        "namespaces (root only), one agent per node programs each, and shows which pods "
        "reach which as policies change",
    )
    p.add_argument("--agents", type=int, default=20, help="agents to run (default 20; memory)")
    p.add_argument(
        "--nodes", type=int, default=None, help="nodes in the seeded cluster (50; linux: 3)"
    )
    p.add_argument("--pods-per-node", type=int, default=None, help="(10; linux: 2)")
    p.add_argument("--step", type=float, default=5.0, help="seconds between policy changes (linux)")
    p.add_argument("--vxlan", action="store_true", help="VXLAN instead of routing (linux)")
    p.add_argument("--rate", type=float, default=50.0, help="churn writes per second (memory)")
    p.add_argument(
        "--etcd-endpoints", default="", help="use this etcd instead of starting an embedded one"
    )
    p.add_argument("--log-level", default="WARNING")


@dataclass
class Latency:
    """Write time per etcd revision, and delivery latencies observed."""

    put_revs: list[int] = field(default_factory=list)
    put_times: list[float] = field(default_factory=list)
    window: list[float] = field(default_factory=list)
    deliveries: int = 0

    def delivered(self, last: int, revision: int, now: float) -> None:
        """An agent reached `revision`; record the latency of every write up to it."""
        i = bisect.bisect_right(self.put_revs, last)
        j = bisect.bisect_right(self.put_revs, revision)
        for k in range(i, j):
            self.window.append(now - self.put_times[k])
        self.deliveries += j - i


async def seed(endpoints: tuple[str, ...], items: Iterable[tuple[str, Any]]) -> int:
    """Write `items` (key, JSON value) into etcd; returns how many."""
    conn = EtcdConnection(endpoints)
    try:
        data = [(key, orjson.dumps(value)) for key, value in items]
        await conn.put_many(data)
    finally:
        await conn.close()
    return len(data)


@contextlib.asynccontextmanager
async def demo_stack(
    etcd_endpoints: str, items: Iterable[tuple[str, Any]], description: str
) -> AsyncIterator[tuple[tuple[str, ...], TyphaApp]]:
    """etcd (embedded unless `etcd_endpoints` is given) seeded with `items`,
    and a typha server on it, on 127.0.0.1; both stopped on exit."""
    etcd: EmbeddedEtcd | None = None
    if etcd_endpoints:
        endpoints = parse_etcd_endpoints(etcd_endpoints, tls=False)
    else:
        print("starting embedded etcd ...", flush=True)
        etcd = await asyncio.to_thread(EmbeddedEtcd().start)
        endpoints = (etcd.endpoint,)
    app: TyphaApp | None = None
    try:
        n = await seed(endpoints, items)
        print(f"etcd at {endpoints[0]}; seeded {n} keys ({description})", flush=True)
        app = TyphaApp(
            ServeConfig(
                etcd_endpoints=endpoints,
                listen=HostPort("127.0.0.1", 0),
                http_listen=HostPort("127.0.0.1", 0),
                server_id="demo",
            )
        )
        await app.start()
        print(
            f"typha: agents on 127.0.0.1:{app.agent_port}, "
            f"status on http://127.0.0.1:{app.http_port}/status",
            flush=True,
        )
        yield endpoints, app
    finally:
        if app is not None:
            await app.stop()
        if etcd is not None:
            etcd.stop()
            print("embedded etcd stopped", flush=True)


async def run_demo(ns: argparse.Namespace) -> int:
    """Run the whole demo; returns the exit status (1 if any agent's digest differs from etcd's
    at the end)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    clients: list[SyncClient] = []
    items = seed_cluster(ns.nodes, ns.pods_per_node)
    async with demo_stack(ns.etcd_endpoints, items, f"{ns.nodes} nodes") as (endpoints, app):
        try:
            lat = Latency()
            agents: list[Agent] = []
            for i in range(ns.agents):
                c = SyncClient(f"127.0.0.1:{app.agent_port}", node=f"node-{i % max(ns.nodes, 1)}")
                last = [0]

                def on_update(changes: object, revision: int, last: list[int] = last) -> None:
                    lat.delivered(last[0], revision, time.monotonic())
                    last[0] = revision

                c.add_listener(on_update)
                agents.append(Agent(c, node=c.node))  # routes and ACLs, as felix-agent does
                await c.start()
                clients.append(c)
            churn_task = asyncio.create_task(drive_churn(endpoints, ns, lat, stop))
            await live_view(app, clients, lat, ns, stop)
            stop.set()
            await churn_task
            return await final_check(endpoints, app, clients, agents)
        finally:
            for c in clients:
                await c.close()


async def drive_churn(
    endpoints: tuple[str, ...], ns: argparse.Namespace, lat: Latency, stop: asyncio.Event
) -> None:
    """Write churn at `ns.rate` operations per second until `stop` is set, recording when
    each revision was written."""
    conn = EtcdConnection(endpoints)
    churn = Churn(ns.nodes, seed=int(time.time()))
    interval = 1.0 / ns.rate if ns.rate > 0 else 1.0
    next_t = time.monotonic()
    try:
        while not stop.is_set() and ns.rate > 0:
            op = churn.next()
            t = time.monotonic()
            if op.value is None:
                revision = await conn.delete(op.key)
            else:
                revision = await conn.put(op.key, orjson.dumps(op.value))
            lat.put_revs.append(revision)
            lat.put_times.append(t)
            next_t += interval
            delay = next_t - time.monotonic()
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)
    finally:
        await conn.close()


def _pct(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))] * 1000


async def live_view(
    app: TyphaApp,
    clients: list[SyncClient],
    lat: Latency,
    ns: argparse.Namespace,
    stop: asyncio.Event,
) -> None:
    """Print one line per second: agents, sync, revision, throughput and latency."""
    start = time.monotonic()
    last_puts, last_deliv = 0, 0
    tty = sys.stdout.isatty()
    print(
        "  time  agents  in-sync   revision  keys  writes/s  deliveries/s  p50 ms  p99 ms"
        "  digest: same / behind / wrong",
        flush=True,
    )
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 1.0)
        now = time.monotonic()
        window, lat.window = lat.window, []
        puts = len(lat.put_revs)
        st = app.status()
        connected = sum(c.connected for c in clients)
        synced = sum(c.in_sync for c in clients)
        same = sum(c.digest == st["digest"] for c in clients)
        # An agent a batch behind the server legitimately has another digest;
        # one at the same revision with a different digest is a real mismatch.
        wrong = sum(c.revision == st["revision"] and c.digest != st["digest"] for c in clients)
        line = (
            f"{now - start:6.0f}  {connected:3d}/{len(clients):<3d} {synced:4d}  "
            f"{st['revision']:10d} "
            f"{st['keys']:5d}  {puts - last_puts:8d}  {lat.deliveries - last_deliv:12d}  "
            f"{_pct(window, 0.5):6.1f}  {_pct(window, 0.99):6.1f}  "
            f"{same:14d} / {len(clients) - same - wrong:6d} / {wrong:5d}"
        )
        print(("\r" + line) if tty else line, end="" if tty else "\n", flush=True)
        last_puts, last_deliv = puts, lat.deliveries
        if ns.duration and now - start >= ns.duration:
            break
    if tty:
        print()


async def final_check(
    endpoints: tuple[str, ...],
    app: TyphaApp,
    clients: list[SyncClient],
    agents: list[Agent],
) -> int:
    """Compare the server's and every agent's digest with one computed from etcd; print the
    result and return the exit status (0 if all match)."""
    truth = await read_etcd_state(endpoints)
    revision, digest, keys = truth.revision, truth.digest, truth.keys
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if app.cache.revision >= revision and all(
            c.in_sync and c.revision >= revision for c in clients
        ):
            break
        await asyncio.sleep(0.1)
    ok = app.cache.digest_hex == digest and all(c.digest == digest for c in clients)
    good = sum(c.digest == digest for c in clients)
    print(f"etcd: revision {revision}, {keys} keys, digest {digest}")
    print(
        f"server digest {'matches' if app.cache.digest_hex == digest else 'DIFFERS'}; "
        f"{good}/{len(clients)} agents match etcd"
    )
    for a in agents[:1]:
        print(
            f"{a.node}: {len(a.dataplane.routes)} routes, {a.dataplane.acl_rules} ACL rules, "
            f"{len(a.dataplane.ipsets)} IP sets (felix-agent serves these at /dump)"
        )
    print("OK" if ok else "MISMATCH", flush=True)
    return 0 if ok else 1
