"""After a digest mismatch and the resync that follows, an agent's tables are
exactly what a from-scratch computation over its replica gives: a delta that
failed verification must not reach the replica unannounced."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from commands.demo.cluster import seed_cluster, workload
from felix_client import SyncClient
from felix_client.agent import Agent
from felix_client.calc import compute
from snapshot import canonical_json, digest_of
from syncproto import (
    DEFAULT_MAX_FRAME,
    Codec,
    Delta,
    ServerConnection,
    SnapshotChunk,
    SnapshotEnd,
    SyncMode,
)
from tests.conftest import async_wait_until

NODE = "node-1"


def states() -> tuple[dict[str, Any], list[tuple[str, Any]], dict[str, Any]]:
    before = dict(seed_cluster(4, 4))
    mine = NODE.replace("-", "--") + "-k8s-"
    local = sorted(k for k in before if "/workloadendpoints/" in k and mine in k)
    assert local, "the sample cluster has workloads on node-1"
    key, value = workload(NODE, 1, "default", "extra", 9, "web")
    change: list[tuple[str, Any]] = [(local[0], None), (key, value)]
    after = dict(before)
    for k, v in change:
        if v is None:
            after.pop(k)
        else:
            after[k] = v
    return before, change, after


class ScriptedServer:
    """First connection: snapshot of `before`, then the change with a wrong
    digest.  Every later connection: a snapshot of `after`."""

    def __init__(
        self, before: dict[str, Any], change: list[tuple[str, Any]], after: dict[str, Any]
    ) -> None:
        self.before, self.change, self.after = before, change, after
        self.connections = 0
        self.codec = Codec(max_frame=DEFAULT_MAX_FRAME)

    def snapshot(self, state: dict[str, Any], revision: int) -> list[bytes]:
        entries = [(k, canonical_json(v)) for k, v in state.items()]
        return [
            self.codec.encode(SnapshotChunk(revision, entries)),
            self.codec.encode(SnapshotEnd(revision, len(state), digest_of(state))),
        ]

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        first = self.connections == 1
        loop = asyncio.get_running_loop()
        core = ServerConnection(server_id="scripted", now=loop.time())
        try:
            while core.hello is None:
                data = await reader.read(65536)
                if not data:
                    return
                core.receive_data(data, loop.time())
            core.accept(sync=SyncMode.SNAPSHOT)
            if first:
                core.send_frames(self.snapshot(self.before, 10))
                updates = [(k, None if v is None else canonical_json(v)) for k, v in self.change]
                wrong = digest_of(self.before)  # not the digest of the state after the change
                core.send_frames([self.codec.encode(Delta(10, 11, updates, wrong))])
            else:
                core.send_frames(self.snapshot(self.after, 11))
            writer.write(b"".join(core.data_to_send()))
            await writer.drain()
            while await reader.read(65536):
                pass
        finally:
            writer.close()


async def test_tables_match_the_replica_after_a_mismatch_and_resync() -> None:
    before, change, after = states()
    scripted = ScriptedServer(before, change, after)
    server = await asyncio.start_server(scripted.handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with SyncClient(f"127.0.0.1:{port}", node=NODE, backoff_initial=0.01) as client:
            agent = Agent(client, node=NODE)
            await async_wait_until(
                lambda: scripted.connections >= 2 and client.in_sync and client.revision == 11,
                "resynced at revision 11",
            )
            assert client.stats.digest_mismatches == 1
            assert dict(client.state) == after
            expected = compute(client.state, NODE)
            assert agent.dataplane.routes == expected.routes
            assert agent.dataplane.ipsets == expected.ipsets
            assert agent.dataplane.chains == expected.chains
    finally:
        server.close()
        await server.wait_closed()


def test_a_delta_that_fails_verification_changes_nothing() -> None:
    from felix_client import DigestMismatch, Replica

    before, change, after = states()
    r = Replica()
    r.begin_snapshot()
    r.add_chunk([(k, canonical_json(v)) for k, v in before.items()])
    r.end_snapshot(10, digest_of(before))
    updates = [(k, None if v is None else canonical_json(v)) for k, v in change]
    with pytest.raises(DigestMismatch):
        r.apply_delta(11, updates, digest_of(before))
    assert dict(r.state) == before
    assert r.revision == 10
    assert r.digest == digest_of(before)
    assert sorted(k for k, _ in r.apply_delta(11, updates, digest_of(after))) == sorted(
        k for k, _ in change
    )
