"""SyncClient's lifecycle as a caller sees it."""

from __future__ import annotations

import asyncio
import socket

import pytest

from felix_client import NotConnected, SyncClient
from tests.conftest import async_wait_until


def unused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_wait_in_sync_raises_not_connected_when_closed_while_waiting() -> None:
    client = SyncClient(f"127.0.0.1:{unused_port()}", node="n1", backoff_initial=0.01)
    await client.start()
    waiter = asyncio.create_task(client.wait_in_sync())
    # Nothing listens there: wait until the client has tried and failed.
    await async_wait_until(lambda: client.stats.connect_failures >= 2, "connect attempts")
    assert not waiter.done()
    await client.close()
    async with asyncio.timeout(10):
        with pytest.raises(NotConnected):
            await waiter


async def test_wait_in_sync_on_a_closed_client_raises_at_once() -> None:
    client = SyncClient(f"127.0.0.1:{unused_port()}", node="n1")
    await client.start()
    await client.close()
    with pytest.raises(NotConnected):
        await client.wait_in_sync()
