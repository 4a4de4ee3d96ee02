"""Agents end with exactly etcd's state whatever etcd does."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import orjson
import pytest

from commands.demo.etcd import EmbeddedEtcd, EtcdCluster
from felix_client import SyncClient
from tests.cluster import apply_churn, seed_sample, serve_config
from tests.conftest import (
    Proc,
    async_wait_until,
    http_json,
    http_text,
    start_felix_agent,
    start_typha,
    wait_until,
)
from typha.app import TyphaApp
from typha.config import ServeConfig
from typha.datastore.etcd_client import EtcdConnection
from typha.datastore.etcd_state import read_etcd_state

pytestmark = pytest.mark.integration


def config(endpoints: list[str], **kw: object) -> ServeConfig:
    return serve_config(endpoints, "faults", **kw)


async def churn(endpoints: list[str], ops: int, seed: int) -> None:
    await apply_churn(endpoints, ops, nodes=10, seed=seed)


async def seed(endpoints: list[str]) -> None:
    await seed_sample(endpoints, 10, 5)


@pytest.fixture
async def clients_factory() -> AsyncIterator[
    Callable[[int, int], asyncio.Future[list[SyncClient]]]
]:
    made: list[SyncClient] = []

    async def make(port: int, n: int) -> list[SyncClient]:
        cs = [SyncClient(f"127.0.0.1:{port}", node=f"node-{i}") for i in range(n)]
        for c in cs:
            await c.start()
        for c in cs:
            await asyncio.wait_for(c.wait_in_sync(), 60)
        made.extend(cs)
        return cs

    yield make  # type: ignore[misc]
    for c in made:
        await c.close()


async def converge(app: TyphaApp, clients: list[SyncClient], endpoints: list[str]) -> str:
    truth = await read_etcd_state(endpoints)
    await async_wait_until(
        lambda: (
            app.cache.digest_hex == truth.digest and all(c.digest == truth.digest for c in clients)
        ),
        "server and agents at etcd's digest",
    )
    return truth.digest


async def test_etcd_killed_and_restarted_mid_stream(
    etcd: EmbeddedEtcd, clients_factory: Callable[..., asyncio.Future[list[SyncClient]]]
) -> None:
    eps = [etcd.endpoint]
    await seed(eps)
    app = TyphaApp(config(eps))
    await app.start()
    try:
        clients = await clients_factory(app.agent_port, 3)
        await churn(eps, 100, seed=1)
        await converge(app, clients, eps)

        etcd.kill()
        await async_wait_until(lambda: not app.ready(), "server reports not ready")
        # Wait for the server to have failed against the dead etcd, not for a time.
        await async_wait_until(lambda: app.syncer.stats.errors >= 2, "failed etcd retries")
        assert all(c.connected and c.in_sync for c in clients)  # agents keep the last state
        await asyncio.to_thread(etcd.start)

        await churn(eps, 150, seed=2)
        await converge(app, clients, eps)
        await async_wait_until(app.ready, "ready again")
        assert app.syncer.stats.errors >= 1
        assert app.syncer.stats.lists == 1  # caught up by re-watching, not by re-listing
        for c in clients:
            assert c.stats.connects == 1, "agents were never disconnected"
            assert c.stats.snapshots == 1
    finally:
        await app.stop()


async def test_compaction_while_the_watch_is_down_becomes_deltas(
    etcd: EmbeddedEtcd, clients_factory: Callable[..., asyncio.Future[list[SyncClient]]]
) -> None:
    eps = [etcd.endpoint]
    await seed(eps)
    app = TyphaApp(config(eps))
    await app.start()
    try:
        clients = await clients_factory(app.agent_port, 2)
        # Stop following etcd (as if this process hung), then churn and compact.
        await app.supervisor.cancel("syncer")
        await churn(eps, 300, seed=3)
        conn = EtcdConnection(eps)
        head = (await read_etcd_state(eps)).revision
        await conn.compact(head)
        await conn.close()
        app.supervisor.start("syncer", app.syncer.run)

        await converge(app, clients, eps)
        assert app.syncer.stats.compactions == 1
        assert app.syncer.stats.lists == 2
        assert app.syncer.stats.resync_updates > 0
        for c in clients:
            assert c.stats.snapshots == 1  # the difference came as deltas
            assert c.stats.deltas >= 1
    finally:
        await app.stop()


def test_server_sigstopped_while_etcd_churns_and_compacts(
    etcd: EmbeddedEtcd, procs: Callable[..., Proc]
) -> None:
    eps = [etcd.endpoint]
    asyncio.run(seed(eps))
    server, agent_port, http_port = start_typha(procs, etcd)
    started = [start_felix_agent(procs, f"127.0.0.1:{agent_port}", f"node-{i}") for i in range(2)]
    agents = [a for a, _ in started]
    agent_ports = [p for _, p in started]
    wait_until(
        lambda: all(http_json(f"http://127.0.0.1:{p}/status")["in_sync"] for p in agent_ports),
        "agents in sync",
    )
    os.kill(server.popen.pid, signal.SIGSTOP)
    try:
        asyncio.run(churn(eps, 400, seed=random.randrange(1 << 20)))

        async def compact() -> None:
            conn = EtcdConnection(eps)
            await conn.compact((await read_etcd_state(eps)).revision)
            await conn.close()

        asyncio.run(compact())
    finally:
        os.kill(server.popen.pid, signal.SIGCONT)
    truth = asyncio.run(read_etcd_state(eps))
    wait_until(
        lambda: (
            all(
                http_json(f"http://127.0.0.1:{p}/status")["digest"] == truth.digest
                for p in agent_ports
            )
            and http_json(f"http://127.0.0.1:{http_port}/status")["digest"] == truth.digest
        ),
        "agents and server at etcd's digest after SIGCONT",
    )
    for p in (*agents, server):
        assert p.stop() == 0, p.output()


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[EtcdCluster]:
    c = EtcdCluster(str(tmp_path / "cluster")).start()
    try:
        yield c
    finally:
        c.stop()


def watching_member(cluster: EtcdCluster) -> int:
    for i, m in enumerate(cluster.members):
        if m.proc is None:
            continue
        text = urllib.request.urlopen(f"http://{m.endpoint}/metrics", timeout=2).read().decode()
        for line in text.splitlines():
            if line.startswith("etcd_debugging_mvcc_watcher_total ") and float(line.split()[1]):
                return i
    raise AssertionError("no member has a watcher")


async def test_failover_when_the_watched_member_dies(
    cluster: EtcdCluster, clients_factory: Callable[..., asyncio.Future[list[SyncClient]]]
) -> None:
    eps = cluster.endpoints
    await seed(eps)
    app = TyphaApp(config(eps))
    await app.start()
    try:
        clients = await clients_factory(app.agent_port, 2)
        await churn(eps, 50, seed=4)
        await converge(app, clients, eps)
        victim = await asyncio.to_thread(watching_member, cluster)
        cluster.members[victim].kill()
        survivors = [m.endpoint for i, m in enumerate(cluster.members) if i != victim]
        await churn(survivors, 100, seed=5)
        await converge(app, clients, survivors)
        assert app.syncer.stats.watches >= 2  # the watch moved to another member
        assert await asyncio.to_thread(watching_member, cluster) != victim
        for c in clients:
            assert c.stats.connects == 1
    finally:
        await app.stop()


async def test_fifty_thousand_keys_are_listed_in_pages(
    etcd: EmbeddedEtcd, clients_factory: Callable[..., asyncio.Future[list[SyncClient]]]
) -> None:
    eps = [etcd.endpoint]
    conn = EtcdConnection(eps)
    items = [
        (f"/calico/felix/bulk/{i:06d}", orjson.dumps({"i": i, "h": f"{i * 2654435761 % 2**32:x}"}))
        for i in range(50_000)
    ]
    await conn.put_many(items)  # type: ignore[arg-type]
    await conn.close()
    # No backfill: this test is about the initial list, which would otherwise
    # start from an older (here empty) revision and replay the keys as events.
    app = TyphaApp(config(eps, list_page_size=1000, history_backfill_revisions=0))
    await app.start()
    try:
        (client,) = await clients_factory(app.agent_port, 1)
        truth = await read_etcd_state(eps)
        assert truth.keys == 50_000
        assert client.digest == truth.digest
        assert len(client.state) == 50_000
        assert app.syncer.stats.pages >= 50  # 50,000 keys at 1,000 a page
        metrics = await asyncio.to_thread(http_text, f"http://127.0.0.1:{app.http_port}/metrics")
        assert "typha_etcd_list_pages_total 5" in metrics  # 50 or 51
    finally:
        await app.stop()


async def test_invalid_values_of_each_kind_are_excluded_and_counted(
    etcd: EmbeddedEtcd, clients_factory: Callable[..., asyncio.Future[list[SyncClient]]]
) -> None:
    eps = [etcd.endpoint]
    await seed(eps)
    v3 = "/calico/resources/v3/projectcalico.org"
    node = {"apiVersion": "projectcalico.org/v3", "kind": "Node", "spec": {}}
    bad = {
        f"{v3}/nodes/a": {**node, "metadata": {"name": "b"}},  # name_mismatch
        f"{v3}/ippools/p": {
            "kind": "IPPool",
            "metadata": {"name": "p"},
            "spec": {"cidr": "10.0.0.0/99"},
        },  # bad_cidr
        f"{v3}/networkpolicies/ns/p": {
            "kind": "NetworkPolicy",
            "metadata": {"name": "p", "namespace": "other"},
            "spec": {},
        },  # namespace_mismatch
        f"{v3}/globalnetworkpolicies/g": {
            "kind": "GlobalNetworkPolicy",
            "metadata": {"name": "g"},
            "spec": {"selector": "app =="},
        },  # bad_selector
        f"{v3}/profiles/x": {
            "kind": "Profile",
            "metadata": {"name": "x"},
            "spec": {"ingress": [{"action": "Shrug"}]},
        },  # bad_action
        f"{v3}/hostendpoints/h": {
            "kind": "WorkloadEndpoint",
            "metadata": {"name": "h"},
            "spec": {},
        },  # kind_mismatch
        "/calico/ipam/v2/assignment/ipv4/block/10.9.0.0-26": {"cidr": "10.9.1.0/26"},
    }
    app = TyphaApp(config(eps))
    await app.start()
    try:
        (client,) = await clients_factory(app.agent_port, 1)
        before = dict(client.state)
        conn = EtcdConnection(eps)
        await conn.put_many([(k, orjson.dumps(v)) for k, v in bad.items()])
        await conn.put_many([("/calico/felix/raw", b"\xff\xfe not json")])
        await conn.put("/calico/felix/neighbour", b'{"fine": true}')
        await conn.close()
        await converge(app, [client], eps)
        assert set(client.state) == {*before, "/calico/felix/neighbour"}
        assert client.state["/calico/felix/neighbour"] == {"fine": True}
        invalid = app.syncer.stats.invalid
        for reason in (
            "name_mismatch",
            "bad_cidr",
            "namespace_mismatch",
            "bad_selector",
            "bad_action",
            "kind_mismatch",
            "block_cidr_mismatch",
            "not_json",
        ):
            assert invalid[reason] == 1, (reason, dict(invalid))
    finally:
        await app.stop()


async def test_the_source_check_repairs_a_corrupted_cache(
    etcd: EmbeddedEtcd, clients_factory: Callable[..., asyncio.Future[list[SyncClient]]]
) -> None:
    eps = [etcd.endpoint]
    await seed(eps)
    app = TyphaApp(config(eps, source_check_interval=0.5))
    await app.start()
    try:
        (client,) = await clients_factory(app.agent_port, 1)
        good = await converge(app, [client], eps)
        await async_wait_until(lambda: app.source_check.stats.matches >= 1, "a clean check")
        # Corrupt one cache entry behind the syncer's back (it also reaches the agent).
        victim = next(iter(app.cache.current.entries))
        app.cache.apply([(victim, b'{"corrupted":true}')], app.cache.revision)
        app.server.notify()  # type: ignore[union-attr]
        await async_wait_until(lambda: client.digest != good, "the corruption reaches the agent")
        await async_wait_until(lambda: app.source_check.stats.mismatches >= 1, "the check notices")
        assert await converge(app, [client], eps) == good
        assert client.state[victim] != {"corrupted": True}
        assert app.syncer.stats.resyncs_requested >= 1
        assert client.stats.snapshots == 1  # repaired by a delta, not a reset
    finally:
        await app.stop()


async def test_a_backfill_replay_larger_than_grpcs_default_message_limit(
    etcd: EmbeddedEtcd, clients_factory: Callable[..., asyncio.Future[list[SyncClient]]]
) -> None:
    """A new replica replays history through its watch; etcd sends that
    backlog in responses of many MiB, beyond gRPC's default 4 MiB limit."""
    eps = [etcd.endpoint]
    conn = EtcdConnection(eps)
    pad = "p" * 400
    await conn.put_many(
        [(f"/calico/felix/big/{i:05d}", orjson.dumps({"i": i, "pad": pad})) for i in range(15_000)]
    )
    await conn.close()
    app = TyphaApp(config(eps))  # default backfill: the 15,000 puts come back as events
    await app.start()
    try:
        (client,) = await clients_factory(app.agent_port, 1)
        truth = await read_etcd_state(eps)
        assert truth.keys == 15_000
        assert client.digest == truth.digest
        assert app.syncer.stats.errors == 0
        assert app.syncer.stats.watch_events == 15_000
    finally:
        await app.stop()
