"""Shared helpers for tests that talk to a real etcd: server configs on
loopback, writing states, seeding the sample cluster, driving churn."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import orjson

from commands.demo.cluster import Churn, seed_cluster
from runtime.hostport import HostPort
from typha.config import ServeConfig
from typha.datastore.etcd_client import EtcdConnection
from typha.errors import DatastoreError


def serve_config(
    endpoints: str | Sequence[str], server_id: str, *, port: int = 0, **kw: Any
) -> ServeConfig:
    """A `typha serve` configuration on loopback (agent port `port`, 0 for
    any; HTTP on any port); `kw` sets further ServeConfig fields."""
    eps = (endpoints,) if isinstance(endpoints, str) else tuple(endpoints)
    return ServeConfig(
        etcd_endpoints=eps,
        listen=HostPort("127.0.0.1", port),
        http_listen=HostPort("127.0.0.1", 0),
        server_id=server_id,
        **kw,
    )


async def put_items(
    endpoints: str | Sequence[str], items: Iterable[tuple[str, bytes | None]]
) -> int:
    """Write raw values (None deletes) in one transaction; the revision."""
    conn = EtcdConnection([endpoints] if isinstance(endpoints, str) else list(endpoints))
    try:
        return await conn.put_many(list(items))
    finally:
        await conn.close()


async def write_state(endpoints: str | Sequence[str], state: Mapping[str, Any]) -> int:
    """Write every (key, JSON value) of `state`; the revision."""
    return await put_items(endpoints, ((k, orjson.dumps(v)) for k, v in state.items()))


async def seed_sample(endpoints: str | Sequence[str], nodes: int, pods_per_node: int) -> int:
    """Write the sample Calico cluster; the revision."""
    return await write_state(endpoints, dict(seed_cluster(nodes, pods_per_node)))


async def write_retrying(conn: EtcdConnection, key: str, value: bytes | None) -> None:
    """One write (None deletes) that rides out elections, as a real client does."""
    for attempt in range(100):
        try:
            if value is None:
                await conn.delete(key)
            else:
                await conn.put(key, value)
            return
        except DatastoreError:
            if attempt == 99:
                raise
            await asyncio.sleep(0.1)


async def apply_churn(
    endpoints: str | Sequence[str],
    ops: int,
    *,
    nodes: int,
    seed: int,
    stop: asyncio.Event | None = None,
    pause: float = 0.0,
) -> int:
    """Apply `ops` churn operations (or until `stop` is set), one write per
    operation so each is its own revision; returns how many were applied."""
    conn = EtcdConnection([endpoints] if isinstance(endpoints, str) else list(endpoints))
    churn = Churn(nodes=nodes, seed=seed)
    done = 0
    try:
        while done < ops and not (stop is not None and stop.is_set()):
            op = churn.next()
            await write_retrying(
                conn, op.key, orjson.dumps(op.value) if op.value is not None else None
            )
            done += 1
            if pause:
                await asyncio.sleep(pause)
    finally:
        await conn.close()
    return done
