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
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from commands.demo.cluster import Churn, seed_cluster
from commands.demo.etcd import EmbeddedEtcd
from commands.demo.fleet import AgentFleet, AgentView, processes_for
from commands.errors import DemoRefused
from runtime.hostport import HostPort
from snapshot.digest import format_digest
from typha.app import TyphaApp
from typha.config import ServeConfig, parse_etcd_endpoints
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
        "--agent-processes",
        type=int,
        default=0,
        help="worker processes the agents run in (default: one per core, at most one per "
        "10 agents; memory)",
    )
    p.add_argument(
        "--nodes", type=int, default=None, help="nodes in the seeded cluster (50; linux: 3)"
    )
    p.add_argument("--pods-per-node", type=int, default=None, help="(10; linux: 2)")
    p.add_argument("--step", type=float, default=5.0, help="seconds between policy changes (linux)")
    p.add_argument("--vxlan", action="store_true", help="VXLAN instead of routing (linux)")
    p.add_argument("--rate", type=float, default=50.0, help="churn writes per second (memory)")
    p.add_argument(
        "--etcd-endpoints",
        default="",
        help="use this etcd instead of starting an embedded one; the demo writes sample data "
        "and churn under /calico/ there, refuses if keys already exist (see --overwrite) and "
        "deletes what it wrote at the end (see --keep-data)",
    )
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="with --etcd-endpoints: write even if /calico/ already holds keys (they are then "
        "left in place at the end, mixed with the demo's)",
    )
    p.add_argument(
        "--keep-data",
        action="store_true",
        help="with --etcd-endpoints: leave the demo's keys in etcd at the end",
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


DEMO_PREFIX = "/calico/"


async def _claim_prefix(endpoints: tuple[str, ...], overwrite: bool) -> bool:
    """Check an existing etcd before writing into it.  Returns whether the
    prefix was empty (then the demo's keys are all its own to delete).
    Raises DemoRefused if it holds keys and `overwrite` is not set."""
    conn = EtcdConnection(endpoints)
    try:
        existing = await conn.count_prefix(DEMO_PREFIX)
    finally:
        await conn.close()
    if existing and not overwrite:
        raise DemoRefused(
            f"etcd at {endpoints[0]} already holds {existing} keys under {DEMO_PREFIX}; "
            "the demo would write sample data and churn among them. Use an empty etcd, "
            "or pass --overwrite to write there anyway"
        )
    return existing == 0


async def _remove_demo_data(endpoints: tuple[str, ...]) -> None:
    conn = EtcdConnection(endpoints)
    try:
        n = await conn.delete_prefix(DEMO_PREFIX)
    finally:
        await conn.close()
    print(f"deleted the demo's {n} keys under {DEMO_PREFIX} (--keep-data keeps them)", flush=True)


@contextlib.asynccontextmanager
async def demo_stack(
    ns: argparse.Namespace, items: Iterable[tuple[str, Any]], description: str
) -> AsyncIterator[tuple[tuple[str, ...], TyphaApp]]:
    """etcd (embedded unless `ns.etcd_endpoints` is given) seeded with
    `items`, and a typha server on it, on 127.0.0.1; both stopped on exit.
    An existing etcd is checked first (DemoRefused) and cleaned after."""
    etcd: EmbeddedEtcd | None = None
    cleanup = False
    if ns.etcd_endpoints:
        endpoints = parse_etcd_endpoints(ns.etcd_endpoints, tls=False)
        cleanup = await _claim_prefix(endpoints, ns.overwrite) and not ns.keep_data
    else:
        print("starting embedded etcd ...", flush=True)
        # Spawned from this (the main) thread so that it dies with the
        # process, even when the demo is killed with SIGKILL.
        etcd = EmbeddedEtcd(die_with_parent=True)
        etcd.spawn()
        endpoints = (etcd.endpoint,)
    app: TyphaApp | None = None
    try:
        if etcd is not None:
            await asyncio.to_thread(etcd.wait_ready)
        n = await seed(endpoints, items)
        print(f"etcd at {endpoints[0]}; seeded {n} keys ({description})", flush=True)
        app = TyphaApp(
            ServeConfig(
                etcd_endpoints=endpoints,
                listen=HostPort("127.0.0.1", 0),
                http_listen=HostPort("127.0.0.1", 0),
                server_id="demo",
                log_summary_interval=0.0,
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
        if cleanup:
            await _remove_demo_data(endpoints)
        if etcd is not None:
            etcd.stop()
            print("embedded etcd stopped", flush=True)


class StopSignals:
    """SIGINT/SIGTERM for the demos.  The first signal during the live phase
    ends it: the demo runs its final check, then removes what it made.  A
    signal before the live phase, a second signal, or a first one not acted
    on within `grace` seconds (a demo too busy to notice) cancels the demo,
    which still removes what it made on the way out."""

    def __init__(self, stop: asyncio.Event, grace: float = 30.0) -> None:
        self.stop = stop
        self.live = False
        self._grace = grace
        self._main = asyncio.current_task()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self._on_signal)

    def _on_signal(self) -> None:
        if self._main is None:
            return
        if self.stop.is_set() or not self.live:
            self._main.cancel()
            return
        self.stop.set()
        asyncio.get_running_loop().call_later(self._grace, self._main.cancel)


async def run_demo(ns: argparse.Namespace) -> int:
    """Run the whole demo; returns the exit status (1 if any agent's digest
    differs from etcd's at the end, 130 if cancelled by a signal)."""
    stop = asyncio.Event()
    signals = StopSignals(stop)
    items = seed_cluster(ns.nodes, ns.pods_per_node)
    try:
        async with demo_stack(ns, items, f"{ns.nodes} nodes") as (endpoints, app):
            nodes = [f"node-{i % max(ns.nodes, 1)}" for i in range(ns.agents)]
            fleet = AgentFleet(
                f"127.0.0.1:{app.agent_port}",
                nodes,
                processes_for(ns.agents, ns.agent_processes),
            )
            lat = Latency()
            fleet.on_delivery = lat.delivered
            try:
                await fleet.start()
                print(
                    f"{ns.agents} agents in {fleet.processes} worker processes",
                    flush=True,
                )
                signals.live = True
                churn_task = asyncio.create_task(drive_churn(endpoints, ns, lat, stop))
                watch = asyncio.create_task(_stop_when(fleet.failed, stop))
                await live_view(app, fleet.agents, lat, ns, stop)
                stop.set()
                watch.cancel()
                await churn_task
                if fleet.failures:
                    for failure in fleet.failures:
                        print(f"typha demo: {failure}", file=sys.stderr, flush=True)
                    return 1
                return await final_check(endpoints, app, fleet)
            finally:
                await fleet.stop()
    except asyncio.CancelledError:
        print("stopped by a signal; everything the demo started is stopped", flush=True)
        return 130


async def _stop_when(event: asyncio.Event, stop: asyncio.Event) -> None:
    await event.wait()
    stop.set()


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
    clients: Sequence[AgentView],
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
        "  digest: ok / wrong",
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
        # Agents report a moment late, so each is checked against the
        # server's digest at the revision it reports (from the history).
        ok, wrong = check_digests(app, clients)
        line = (
            f"{now - start:6.0f}  {connected:3d}/{len(clients):<3d} {synced:4d}  "
            f"{st['revision']:10d} "
            f"{st['keys']:5d}  {puts - last_puts:8d}  {lat.deliveries - last_deliv:12d}  "
            f"{_pct(window, 0.5):6.1f}  {_pct(window, 0.99):6.1f}  "
            f"{ok:10d} / {wrong:5d}"
        )
        print(("\r" + line) if tty else line, end="" if tty else "\n", flush=True)
        last_puts, last_deliv = puts, lat.deliveries
        if ns.duration and now - start >= ns.duration:
            break
    if tty:
        print()


def check_digests(app: TyphaApp, agents: Sequence[AgentView]) -> tuple[int, int]:
    """(agents whose digest equals the server's at their revision, agents
    whose digest differs from it); agents at a revision the history no
    longer holds count in neither."""
    cache = app.cache
    at = {b.revision: b.digest for b in cache.batches_after(cache.oldest_seq)}
    at[cache.revision] = cache.current.digest
    ok = wrong = 0
    for a in agents:
        expected = at.get(a.revision)
        if not a.in_sync or expected is None:
            continue
        if a.digest == format_digest(expected):
            ok += 1
        else:
            wrong += 1
    return ok, wrong


async def final_check(endpoints: tuple[str, ...], app: TyphaApp, fleet: AgentFleet) -> int:
    """Compare the server's and every agent's digest with one computed from etcd; print the
    result and return the exit status (0 if all match)."""
    clients = fleet.agents
    truth = await read_etcd_state(endpoints)
    revision, digest, keys = truth.revision, truth.digest, truth.keys
    # A large fleet on a small machine may still be catching up.
    waited = time.monotonic()
    deadline = waited + 300
    while time.monotonic() < deadline:
        if app.cache.revision >= revision and all(
            c.in_sync and c.revision >= revision for c in clients
        ):
            break
        await asyncio.sleep(0.1)
    waited = time.monotonic() - waited
    if waited >= 5.0:  # a large fleet on a small machine: say what it took
        print(f"every agent reached etcd's revision {waited:.0f}s after the churn stopped")
    ok = app.cache.digest_hex == digest and all(c.digest == digest for c in clients)
    good = sum(c.digest == digest for c in clients)
    print(f"etcd: revision {revision}, {keys} keys, digest {digest}")
    print(
        f"server digest {'matches' if app.cache.digest_hex == digest else 'DIFFERS'}; "
        f"{good}/{len(clients)} agents match etcd"
    )
    first = fleet.first
    if first:
        print(
            f"{first['node']}: {first['routes']} routes, {first['acl_rules']} ACL rules, "
            f"{first['ip_sets']} IP sets (felix-agent serves these at /dump)"
        )
    print("OK" if ok else "MISMATCH", flush=True)
    return 0 if ok else 1
