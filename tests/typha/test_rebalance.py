"""Replicas share the agents fairly; a rolling restart costs deltas."""

from __future__ import annotations

import asyncio
import socket

import pytest

from commands.demo.etcd import EmbeddedEtcd
from felix_client import SyncClient
from tests.cluster import apply_churn, seed_sample, serve_config
from tests.conftest import async_wait_until
from typha.app import TyphaApp
from typha.config import ServeConfig
from typha.datastore.etcd_state import read_etcd_state

pytestmark = pytest.mark.integration


def config(etcd: EmbeddedEtcd, port: int, name: str) -> ServeConfig:
    return serve_config(
        etcd.endpoint,
        name,
        port=port,
        rebalance_interval=0.5,
        shutdown_timeout=1.0,
        batch_window=0.005,
    )


def held_ports(n: int) -> list[socket.socket]:
    """Bound, not listening: connections are refused and nobody takes the port."""
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    return socks


@pytest.fixture
async def seeded(etcd: EmbeddedEtcd) -> EmbeddedEtcd:
    await seed_sample(etcd.endpoint, 20, 10)
    return etcd


async def churn(etcd: EmbeddedEtcd, stop: asyncio.Event, seed: int) -> int:
    return await apply_churn(etcd.endpoint, 1 << 30, nodes=20, seed=seed, stop=stop, pause=0.01)


async def start_clients(addrs: str, n: int) -> list[SyncClient]:
    clients = [SyncClient(addrs, node=f"n{i}", backoff_max=0.5) for i in range(n)]
    for c in clients:
        await c.start()
    await asyncio.wait_for(asyncio.gather(*(c.wait_in_sync() for c in clients)), 60)
    return clients


async def test_agents_spread_to_a_fair_share_and_keep_etcds_state(seeded: EmbeddedEtcd) -> None:
    holders = held_ports(3)
    ports = [s.getsockname()[1] for s in holders]
    addrs = ",".join(f"127.0.0.1:{p}" for p in ports)
    holders[0].close()
    a = TyphaApp(config(seeded, ports[0], "a"))
    await a.start()
    apps = [a]
    clients = await start_clients(addrs, 60)  # b and c refuse: all 60 land on a
    try:
        assert a.server is not None
        assert len(a.server.connections) == 60
        for i in (1, 2):
            holders[i].close()
            app = TyphaApp(config(seeded, ports[i], "bc"[i - 1]))
            await app.start()
            apps.append(app)

        def balanced() -> bool:
            counts = [len(x.server.connections) for x in apps if x.server]
            return sum(counts) == 60 and all(16 <= c <= 24 for c in counts)

        await async_wait_until(balanced, "every replica within fair share +-20%", limit=60)
        stop = asyncio.Event()
        writer = asyncio.create_task(churn(seeded, stop, 3))
        await asyncio.sleep(1.0)
        stop.set()
        await writer
        truth = await read_etcd_state([seeded.endpoint])
        await async_wait_until(
            lambda: all(c.in_sync and c.digest == truth.digest for c in clients),
            "every agent at etcd's digest",
        )
        moved = sum(c.stats.resumes for c in clients)
        snaps = sum(c.stats.snapshots for c in clients)
        shed = a.server.stats.closed["rebalance"]
        assert shed >= 36  # a handed at least 36 of its 60 agents over
        assert snaps == 60  # only the first syncs: every move was a resume
        assert moved >= shed
    finally:
        for c in clients:
            await c.close()
        for app in apps:
            await app.stop()


async def test_a_rolling_restart_during_churn_costs_deltas_not_snapshots(
    seeded: EmbeddedEtcd,
) -> None:
    holders = held_ports(3)
    ports = [s.getsockname()[1] for s in holders]
    for h in holders:
        h.close()
    addrs = ",".join(f"127.0.0.1:{p}" for p in ports)
    apps = [TyphaApp(config(seeded, p, f"r{i}")) for i, p in enumerate(ports)]
    for app in apps:
        await app.start()
    clients = await start_clients(addrs, 45)
    stop = asyncio.Event()
    writer = asyncio.create_task(churn(seeded, stop, 5))
    snapshot_bytes = 0  # snapshot bytes sent after the initial syncs
    moved = 0
    full_snapshot = 0
    try:
        for app in apps:
            assert app.server is not None
        first = [app.server.stats.snapshot_bytes_sent for app in apps if app.server]
        full_snapshot = max(
            sum(len(f) for f in app.cache.snapshot_frames(compressed=True)[1]) for app in apps
        )
        for i, ports_i in enumerate(ports):
            old = apps[i]
            assert old.server is not None
            moved += len(old.server.connections)
            await old.drain()  # SIGTERM's path: unready, GOODBYE spread over 1 s
            await old.stop()
            snapshot_bytes += old.server.stats.snapshot_bytes_sent - first[i]
            new = TyphaApp(config(seeded, ports_i, f"r{i}-new"))
            await new.start()
            apps[i] = new
            first[i] = 0
            await async_wait_until(
                lambda: all(c.in_sync for c in clients), "agents back in sync", limit=60
            )
        stop.set()
        await writer
        truth = await read_etcd_state([seeded.endpoint])
        await async_wait_until(
            lambda: all(c.digest == truth.digest for c in clients), "every agent at etcd's digest"
        )
        for app in apps:
            assert app.server is not None
            snapshot_bytes += app.server.stats.snapshot_bytes_sent
        assert moved >= 45  # every agent moved at least once
        assert snapshot_bytes < 0.05 * moved * full_snapshot
    finally:
        stop.set()
        for c in clients:
            await c.close()
        for app in apps:
            await app.stop()
