"""Agents resolve a server name to every address it has, try them in a
per-agent shuffled order, and fall over to the next when one is dead."""

from __future__ import annotations

import asyncio
import random
import socket
from collections import Counter

import orjson
import pytest

from commands.demo.etcd import EmbeddedEtcd
from felix_client import SyncClient
from runtime.hostport import HostPort
from syncclient.addresses import resolve_all
from typha.app import TyphaApp
from typha.config import ServeConfig
from typha.datastore.etcd_client import EtcdConnection

pytestmark = pytest.mark.integration


RECORDS = ["127.0.0.2", "127.0.0.3", "127.0.0.1"]


async def fake_dns(host: str, port: int, rng: random.Random) -> list[str]:
    """A name with several A records, as a headless Service has."""
    if host != "typha-headless":
        return await resolve_all(host, port, rng)
    ips = list(RECORDS)
    rng.shuffle(ips)
    return ips


async def test_a_name_with_several_records_spreads_agents_and_skips_dead_ones(
    etcd: EmbeddedEtcd,
) -> None:
    conn = EtcdConnection([etcd.endpoint])
    await conn.put("/calico/felix/x", orjson.dumps({"x": 1}))
    await conn.close()
    # One live replica on 127.0.0.1; 127.0.0.2 and .3 refuse (nothing listens there).
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    app = TyphaApp(
        ServeConfig(
            etcd_endpoints=(etcd.endpoint,),
            listen=HostPort("127.0.0.1", port),
            http_listen=HostPort("127.0.0.1", 0),
            server_id="only",
        )
    )
    await app.start()
    rngs = [random.Random(i) for i in range(12)]
    clients = [
        SyncClient(f"typha-headless:{port}", node=f"n{i}", resolver=fake_dns, rng=rngs[i])
        for i in range(12)
    ]
    try:
        for c in clients:
            await c.start()
        await asyncio.wait_for(asyncio.gather(*(c.wait_in_sync() for c in clients)), 60)
        assert all(c.server == f"typha-headless(127.0.0.1):{port}" for c in clients)
        # Each agent shuffles on its own: the order they tried differs.
        orders = Counter([tuple(await fake_dns("typha-headless", port, r)) for r in rngs])
        assert len(orders) > 1
        # The real resolver returns every address of a name.
        real = await resolve_all("localhost", port, random.Random())
        assert "127.0.0.1" in real
    finally:
        for c in clients:
            await c.close()
        await app.stop()
