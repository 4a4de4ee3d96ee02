"""Agents resolve a server name to every address it has, try them in a
per-agent shuffled order, and fall over to the next when one is dead."""

from __future__ import annotations

import asyncio
import socket
from collections import Counter

import orjson
import pytest

from felix_client import SyncClient
from typha.app import TyphaApp
from typha.config import HostPort, ServeConfig
from typha.embedded_etcd import EmbeddedEtcd
from typha.etcd_client import EtcdConnection

pytestmark = pytest.mark.integration


class FakeDNS(SyncClient):
    """A name with several A records, as a headless Service has."""

    records = ["127.0.0.2", "127.0.0.3", "127.0.0.1"]

    async def _resolve(self, host: str, port: int) -> list[str]:
        if host != "typha-headless":
            return await super()._resolve(host, port)
        ips = list(self.records)
        self._rng.shuffle(ips)
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
    clients = [FakeDNS(f"typha-headless:{port}", node=f"n{i}") for i in range(12)]
    try:
        for c in clients:
            await c.start()
        await asyncio.wait_for(asyncio.gather(*(c.wait_in_sync() for c in clients)), 60)
        assert all(c.server == f"typha-headless(127.0.0.1):{port}" for c in clients)
        # Each agent shuffles on its own: the order they tried differs.
        orders = Counter([tuple(await c._resolve("typha-headless", port)) for c in clients])
        assert len(orders) > 1
        # The real resolver returns every address of a name.
        real = await clients[0]._resolve("localhost", port)
        assert "127.0.0.1" in real
    finally:
        for c in clients:
            await c.close()
        await app.stop()
