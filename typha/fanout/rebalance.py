"""Replicas share the agents fairly, and shed connections gently to do so.

Each replica registers under `<registry prefix><server id>` with its
connection count, on a lease that expires if it dies; every `interval` it
reads all registrations, and if it holds more than its fair share (total
agents / replicas, plus a tolerance) it says GOODBYE("rebalance") to a few
connections (at most a tenth of its excess per round).  Those agents
reconnect to another address and resume there, which costs them a delta.
Works wherever etcd is: no Kubernetes API needed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass

import orjson

from syncproto import CloseReason
from typha.datastore.etcd_client import EtcdConnection
from typha.errors import DatastoreError
from typha.fanout.server import AgentServer

log = logging.getLogger(__name__)


@dataclass(slots=True)
class RebalanceStats:
    """Counters of the rebalancer, for metrics."""

    rounds: int = 0
    shed: int = 0
    replicas_seen: int = 0
    fair_share: int = 0
    errors: int = 0


def to_shed(mine: int, total: int, replicas: int, tolerance: float) -> int:
    """Connections to close this round (pure, for the tests)."""
    if replicas <= 1 or total <= 0:
        return 0
    fair = math.ceil(total / replicas)
    limit = math.floor(fair * (1 + tolerance))
    excess = mine - limit
    if excess <= 0:
        return 0
    # Gently: a slice of the excess per round, so the moved agents spread out.
    return max(1, math.ceil((mine - fair) / 4))


class Rebalancer:
    """Registers this replica with its connection count and sheds connections above the fair
    share; `run()` it supervised."""

    def __init__(
        self,
        connect: Callable[[], EtcdConnection],
        server: AgentServer,
        *,
        server_id: str,
        registry_prefix: str,
        interval: float,
        tolerance: float,
    ) -> None:
        self._connect = connect
        self._server = server
        self._key = registry_prefix + server_id
        self._prefix = registry_prefix
        self._interval = interval
        self._tolerance = tolerance
        self.stats = RebalanceStats()

    async def run(self) -> None:
        """Register, then rebalance every `interval` until cancelled."""
        lease = 0
        while True:
            conn = self._connect()
            try:
                await conn.authenticate()
                lease = await self._register(conn, lease)
                await self._balance(conn)
            except DatastoreError as exc:
                self.stats.errors += 1
                log.info("rebalance round skipped: %s", exc)
            finally:
                await conn.close()
            await asyncio.sleep(self._interval)

    async def _register(self, conn: EtcdConnection, old_lease: int) -> int:
        lease = await conn.grant(max(2, math.ceil(self._interval * 3)))
        value = orjson.dumps(
            {"connections": len(self._server.connections), "draining": self._server.fanout.draining}
        )
        await conn.put(self._key, value, lease=lease)
        if old_lease:
            with contextlib.suppress(DatastoreError):  # it expires by itself anyway
                await conn.revoke(old_lease)
        return lease

    async def _balance(self, conn: EtcdConnection) -> None:
        _, items, _ = await conn.list_prefix(self._prefix, page_size=1000)
        counts = {}
        for kv in items:
            try:
                reg = orjson.loads(kv.value)
                if not reg.get("draining"):
                    counts[kv.key.decode()] = int(reg.get("connections", 0))
            except (orjson.JSONDecodeError, ValueError, AttributeError, UnicodeDecodeError):
                continue
        mine = len(self._server.connections)
        counts[self._key] = mine
        total = sum(counts.values())
        self.stats.rounds += 1
        self.stats.replicas_seen = len(counts)
        self.stats.fair_share = math.ceil(total / len(counts)) if counts else 0
        n = to_shed(mine, total, len(counts), self._tolerance)
        if n and not self._server.fanout.draining:
            log.info(
                "holding %d of %d agents across %d replicas: moving %d elsewhere",
                mine,
                total,
                len(counts),
                n,
            )
            self.stats.shed += self._server.shed(n, CloseReason.REBALANCE)
