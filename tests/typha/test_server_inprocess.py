"""Server and clients in one event loop, against a real etcd."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import orjson
import pytest

from commands.demo.etcd import EmbeddedEtcd, free_port
from felix_client import SyncClient
from syncproto import HEADER_SIZE, ClientHello, Codec, MsgType, encode_frame
from tests.cluster import serve_config
from tests.conftest import async_wait_until
from typha.app import TyphaApp
from typha.config import ServeConfig
from typha.datastore.etcd_client import EtcdConnection
from typha.datastore.etcd_state import read_etcd_state

pytestmark = pytest.mark.integration


def config(etcd: EmbeddedEtcd, port: int = 0) -> ServeConfig:
    return serve_config(etcd.endpoint, "t", port=port, handshake_timeout=2.0)


@pytest.fixture
async def kv(etcd: EmbeddedEtcd) -> AsyncIterator[EtcdConnection]:
    conn = EtcdConnection([etcd.endpoint])
    yield conn
    await conn.close()


async def put(kv: EtcdConnection, key: str, value: object) -> int:
    return await kv.put(key, orjson.dumps(value))


async def test_client_resyncs_after_server_restart_and_sweeps_deleted_keys(
    etcd: EmbeddedEtcd, kv: EtcdConnection
) -> None:
    for i in range(20):
        await put(kv, f"/calico/t/k{i}", {"i": i})
    port = free_port()
    app = TyphaApp(config(etcd, port))
    await app.start()
    seen: list[tuple[str, object]] = []
    async with SyncClient(f"127.0.0.1:{port}", node="n", backoff_max=0.5) as client:
        client.add_listener(lambda changes, rev: seen.extend(changes))
        await client.wait_in_sync()
        assert len(client.state) == 20
        await app.stop()
        await async_wait_until(lambda: not client.connected, "client notices the server went away")
        # While no server runs: deletes and changes the client cannot see.
        for i in range(10):
            await kv.delete(f"/calico/t/k{i}")
        await put(kv, "/calico/t/k10", {"i": "changed"})
        seen.clear()
        app = TyphaApp(config(etcd, port))
        await app.start()
        truth = await read_etcd_state([etcd.endpoint])
        await async_wait_until(
            lambda: client.in_sync and client.digest == truth.digest, "client converges"
        )
        assert len(client.state) == 10
        # Only the differences were reported to the agent: 10 deletes + 1 change.
        assert sorted(k for k, v in seen if v is None) == sorted(
            f"/calico/t/k{i}" for i in range(10)
        )
        assert [k for k, v in seen if v is not None] == ["/calico/t/k10"]
    await app.stop()


async def test_garbage_on_the_agent_port_harms_no_one(
    etcd: EmbeddedEtcd, kv: EtcdConnection
) -> None:
    await put(kv, "/calico/t/a", {"a": 1})
    app = TyphaApp(config(etcd))
    await app.start()
    assert app.server is not None
    try:
        async with SyncClient(f"127.0.0.1:{app.agent_port}", node="good") as good:
            await good.wait_in_sync()
            loop = asyncio.get_running_loop()

            async def raw(payload: bytes) -> bytes:
                s = socket.create_connection(("127.0.0.1", app.agent_port))
                s.setblocking(False)
                await loop.sock_sendall(s, payload)
                data = b""
                try:
                    while chunk := await asyncio.wait_for(loop.sock_recv(s, 65536), 10):
                        data += chunk
                except (ConnectionResetError, TimeoutError):
                    pass
                s.close()
                return data

            codec = Codec(max_frame=1 << 20)
            replies = await asyncio.gather(
                raw(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n"),  # not our protocol
                raw(b"\xff\xff\xff\xff" + bytes(12)),  # 4 GiB length prefix
                raw(encode_frame(MsgType.CLIENT_HELLO, b"\xc1")),  # bad msgpack
                raw(codec.encode(ClientHello(node="x"))[:10]),  # half a handshake, then silence
            )
            for reply in replies:
                # Each one was told why (a GOODBYE frame) and disconnected.
                assert len(reply) >= HEADER_SIZE
                assert reply[4] == MsgType.GOODBYE
            await put(kv, "/calico/t/b", {"b": 2})
            truth = await read_etcd_state([etcd.endpoint])
            await async_wait_until(lambda: good.digest == truth.digest, "good client keeps up")
            assert good.connected
            errors = app.server.stats.protocol_errors
            assert errors["malformed"] == 1
            assert errors["frame_too_large"] == 2
            assert app.server.stats.closed["handshake_timeout"] == 1
    finally:
        await app.stop()


async def test_progress_notifications_advance_the_revision(
    etcd: EmbeddedEtcd, kv: EtcdConnection
) -> None:
    await put(kv, "/calico/t/a", {"a": 1})
    app = TyphaApp(config(etcd))
    await app.start()
    try:
        async with SyncClient(f"127.0.0.1:{app.agent_port}", node="n") as client:
            await client.wait_in_sync()
            # A write outside the served prefix moves etcd's revision only.
            rev = await kv.put("/elsewhere/x", b"{}")
            await async_wait_until(lambda: client.revision >= rev, "revision via progress", 30)
            assert client.stats.progress >= 1
            assert client.stats.deltas == 0
    finally:
        await app.stop()
