"""Fan-out behaviour against a real etcd: resume across replicas,
stalled clients, TLS allow lists."""

from __future__ import annotations

import asyncio
import os
import socket
import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import orjson
import pytest

from commands.demo.etcd import EmbeddedEtcd
from felix_client import Replica, SyncClient
from snapshot import canonical_json, digest_of
from syncproto import ClientHello, Codec
from tests.certs import CertAuthority, Issued
from tests.cluster import serve_config
from tests.conftest import async_wait_until
from typha.app import TyphaApp
from typha.config import ServeConfig
from typha.datastore.etcd_client import EtcdConnection
from typha.datastore.etcd_state import read_etcd_state

pytestmark = pytest.mark.integration


def config(etcd: EmbeddedEtcd, server_id: str, **kw: object) -> ServeConfig:
    return serve_config(etcd.endpoint, server_id, **kw)


@pytest.fixture
async def kv(etcd: EmbeddedEtcd) -> AsyncIterator[EtcdConnection]:
    conn = EtcdConnection([etcd.endpoint])
    yield conn
    await conn.close()


async def seed(kv: EtcdConnection, n: int, size: int = 200) -> None:
    for i in range(n):
        pad = os.urandom(size // 2).hex()  # realistic: does not compress to nothing
        await kv.put(f"/calico/t/k{i:05d}", orjson.dumps({"i": i, "pad": pad}))


async def test_resume_on_another_replica_costs_only_the_missed_updates(
    etcd: EmbeddedEtcd, kv: EtcdConnection
) -> None:
    await seed(kv, 500)
    a, b = TyphaApp(config(etcd, "a")), TyphaApp(config(etcd, "b"))
    await a.start()
    await b.start()
    try:
        replica = Replica()  # the agent's state, kept across connections
        async with SyncClient(f"127.0.0.1:{a.agent_port}", node="n", replica=replica) as client:
            await client.wait_in_sync()
            snapshot_bytes = client.stats.bytes_received
            await client.close()  # leaves replica a; keeps its state and revision
        for i in range(5):  # a few updates while the agent is away
            await kv.put(f"/calico/t/k{i:05d}", orjson.dumps({"i": -i}))
        truth = await read_etcd_state([etcd.endpoint])
        await async_wait_until(lambda: b.cache.revision >= truth.revision, "replica b caught up")

        # The same agent, reconnecting elsewhere.
        mover = SyncClient(f"127.0.0.1:{b.agent_port}", node="n", replica=replica)
        async with mover:
            await async_wait_until(
                lambda: mover.in_sync and mover.digest == truth.digest, "resumed client converges"
            )
            assert mover.stats.resumes == 1
            assert mover.stats.snapshots == 0
            assert mover.stats.bytes_received < snapshot_bytes / 20
        assert b.server is not None
        assert b.server.stats.resumes == 1
        assert b.server.stats.snapshots_sent == 0
    finally:
        await a.stop()
        await b.stop()


async def test_a_client_with_a_wrong_digest_gets_a_full_snapshot(
    etcd: EmbeddedEtcd, kv: EtcdConnection
) -> None:
    await seed(kv, 20)
    app = TyphaApp(config(etcd, "a"))
    await app.start()
    try:
        async with SyncClient(f"127.0.0.1:{app.agent_port}", node="n") as client:
            await client.wait_in_sync()
            await client.close()
        # The agent's state diverged: it lacks a key, at the same revision.
        diverged = {k: v for k, v in client.state.items() if k != "/calico/t/k00003"}
        assert len(diverged) == len(client.state) - 1
        replica = Replica()
        replica.begin_snapshot()
        replica.add_chunk((k, canonical_json(v)) for k, v in diverged.items())
        replica.end_snapshot(client.revision, digest_of(diverged))
        again = SyncClient(f"127.0.0.1:{app.agent_port}", node="n", replica=replica)
        async with again:
            await again.wait_in_sync()
            assert again.stats.snapshots == 1
            assert again.stats.resumes == 0
        assert app.server is not None
        assert app.server.stats.resume_refused == 1
    finally:
        await app.stop()


async def test_a_client_that_stops_reading_is_cut_off_and_harms_no_one(
    etcd: EmbeddedEtcd, kv: EtcdConnection
) -> None:
    await seed(kv, 50)
    app = TyphaApp(config(etcd, "a", max_client_buffer_bytes=256 * 1024, max_client_lag=2.0))
    await app.start()
    assert app.server is not None
    loop = asyncio.get_running_loop()
    # A client that says hello and then never reads: its receive buffer fills.
    stuck = socket.socket()
    stuck.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    stuck.connect(("127.0.0.1", app.agent_port))
    stuck.sendall(Codec(max_frame=1 << 20).encode(ClientHello(node="stuck")))
    try:
        async with SyncClient(f"127.0.0.1:{app.agent_port}", node="good") as good:
            await good.wait_in_sync()
            big = "y" * 20_000
            for round_ in range(6):
                for i in range(40):
                    await kv.put(f"/calico/t/k{i:05d}", orjson.dumps({"r": round_, "pad": big}))
                truth = await read_etcd_state([etcd.endpoint])
                await async_wait_until(
                    lambda t=truth: good.digest == t.digest, "the good client keeps up"
                )
            await async_wait_until(
                lambda: app.server is not None and app.server.stats.closed["slow_client"] == 1,
                "the stuck client is cut off",
            )
            assert len(app.server.connections) == 1
            assert good.connected
        # Its socket was aborted: reading it now ends in EOF or a reset.
        stuck.setblocking(False)
        assert await read_until_closed(loop, stuck) in ("eof", "reset")
    finally:
        stuck.close()
        await app.stop()


async def read_until_closed(loop: asyncio.AbstractEventLoop, sock: socket.socket) -> str:
    """Read what is left; say how the connection ended ("timeout" if it did not)."""
    try:
        while await asyncio.wait_for(loop.sock_recv(sock, 1 << 16), 10):
            pass
    except ConnectionResetError:
        return "reset"
    except TimeoutError:
        return "timeout"
    return "eof"


async def test_tls_admits_only_allowed_client_certificates(
    etcd: EmbeddedEtcd, kv: EtcdConnection, tmp_path: Path
) -> None:
    await seed(kv, 5)
    ca = CertAuthority(tmp_path)
    server = ca.issue(dns=("typha.local",))
    app = TyphaApp(
        config(
            etcd,
            "tls",
            tls_cert_file=server.cert_file,
            tls_key_file=server.key_file,
            tls_ca_file=ca.ca_file,
            tls_allowed_cns=frozenset({"felix"}),
            tls_allowed_uri_sans=frozenset({"spiffe://cluster/ns/calico/sa/felix"}),
        )
    )
    await app.start()
    assert app.server is not None

    async def attempt(cert: Issued | None) -> SyncClient:
        ctx = ssl.create_default_context(cafile=ca.ca_file)
        if cert is not None:
            ctx.load_cert_chain(cert.cert_file, cert.key_file)
        c = SyncClient(
            f"127.0.0.1:{app.agent_port}", node="n", ssl_context=ctx, server_name="typha.local"
        )
        await c.start()
        return c

    try:
        by_cn = await attempt(ca.issue(cn="felix"))
        by_uri = await attempt(ca.issue(uris=("spiffe://cluster/ns/calico/sa/felix",)))
        outsider = await attempt(ca.issue(cn="mallory", uris=("spiffe://cluster/sa/other",)))
        no_cert = await attempt(None)
        await asyncio.wait_for(by_cn.wait_in_sync(), 30)
        await asyncio.wait_for(by_uri.wait_in_sync(), 30)
        await async_wait_until(
            lambda: (
                app.server is not None and app.server.stats.protocol_errors["tls_forbidden"] >= 2
            ),
            "the outsider is refused, repeatedly",
        )
        assert not outsider.in_sync
        assert outsider.stats.snapshots == 0
        assert not no_cert.in_sync  # the TLS handshake itself fails without a certificate
        assert no_cert.stats.snapshots == 0
        for c in (by_cn, by_uri, outsider, no_cert):
            await c.close()
    finally:
        await app.stop()


async def test_a_reconnect_storm_shares_one_snapshot_encoding(
    etcd: EmbeddedEtcd, kv: EtcdConnection
) -> None:
    await seed(kv, 300)
    app = TyphaApp(config(etcd, "storm", snapshot_chunk_bytes=8192))
    await app.start()
    assert app.server is not None
    clients = [SyncClient(f"127.0.0.1:{app.agent_port}", node=f"n{i}") for i in range(30)]
    try:
        await asyncio.gather(*(c.start() for c in clients))
        await asyncio.wait_for(asyncio.gather(*(c.wait_in_sync() for c in clients)), 60)
        truth = await read_etcd_state([etcd.endpoint])
        assert {c.digest for c in clients} == {truth.digest}
        assert app.server.stats.snapshots_sent == 30
        assert app.cache.stats.snapshots_encoded == 1  # shared by all thirty
        assert app.cache.stats.snapshots_reused == 29
        # Several chunks per snapshot, compressed: fewer bytes than raw.
        assert app.encoder.stats.snapshot_wire_bytes < app.encoder.stats.snapshot_raw_bytes
    finally:
        for c in clients:
            await c.close()
        await app.stop()
