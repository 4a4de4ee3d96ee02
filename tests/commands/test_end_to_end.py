"""The whole path on real processes: etcd -> `typha serve` -> 5 `felix-agent`s."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable

import orjson
import pytest

from commands.demo.cluster import Churn, seed_cluster
from commands.demo.etcd import EmbeddedEtcd
from tests.conftest import Proc, free_port, http_json, http_text, start_typha, wait_until
from typha.datastore.etcd_client import EtcdConnection
from typha.datastore.etcd_state import read_etcd_state

pytestmark = pytest.mark.integration


async def _write(endpoint: str, ops: int, seed: int) -> None:
    conn = EtcdConnection([endpoint])
    try:
        for key, value in seed_cluster(nodes=20, pods_per_node=5):
            await conn.put(key, orjson.dumps(value))
        churn = Churn(nodes=20, seed=seed)
        for _ in range(ops):
            op = churn.next()
            if op.value is None:
                await conn.delete(op.key)
            else:
                await conn.put(op.key, orjson.dumps(op.value))
    finally:
        await conn.close()


def _start_server(procs: Callable[..., Proc], etcd: EmbeddedEtcd) -> tuple[Proc, int, int]:
    # The endpoints come from the environment, to exercise TYPHA_* variables.
    return start_typha(procs, etcd, "--ping-interval", "2", endpoints_via_env=True)


def test_agents_converge_to_etcd_digest(etcd: EmbeddedEtcd, procs: Callable[..., Proc]) -> None:
    server, agent_port, http_port = _start_server(procs, etcd)
    agent_ports = [free_port() for _ in range(5)]
    agents = [
        procs(
            "felix-agent",
            "--typha",
            f"127.0.0.1:{agent_port}",
            "--node",
            f"node-{i}",
            "--http-listen",
            f"127.0.0.1:{port}",
        )
        for i, port in enumerate(agent_ports)
    ]
    # Agents connect before the churn, so they follow it as deltas.
    wait_until(
        lambda: all(http_json(f"http://127.0.0.1:{p}/status")["in_sync"] for p in agent_ports),
        "agents in sync",
    )
    asyncio.run(_write(etcd.endpoint, ops=2000, seed=random.randrange(1 << 30)))
    truth = asyncio.run(read_etcd_state([etcd.endpoint]))
    assert truth.keys > 100

    def converged() -> bool:
        st = http_json(f"http://127.0.0.1:{http_port}/status")
        if st["digest"] != truth.digest:
            return False
        return all(
            http_json(f"http://127.0.0.1:{p}/status")["digest"] == truth.digest for p in agent_ports
        )

    wait_until(converged, "every agent and the server at etcd's digest")
    st = http_json(f"http://127.0.0.1:{http_port}/status")
    assert st["keys"] == truth.keys
    assert st["revision"] >= truth.revision
    assert st["connections"] == 5
    for i, p in enumerate(agent_ports):
        ast = http_json(f"http://127.0.0.1:{p}/status")
        assert ast["node"] == f"node-{i}"
        assert ast["keys"] == truth.keys
        assert ast["connected"]
        assert ast["in_sync"]
        assert ast["deltas"] > 0, "agents should have followed the churn as deltas"
        assert {"routes", "acl_rules"} <= ast.keys()
    # One snapshot per agent, shared: encoded once for all five.
    metrics = http_text(f"http://127.0.0.1:{http_port}/metrics")
    assert "typha_etcd_watches_total 1.0" in metrics
    for a in agents:
        assert a.stop() == 0, a.output()
    assert server.stop() == 0, server.output()


def test_malformed_values_are_excluded_and_counted(
    etcd: EmbeddedEtcd, procs: Callable[..., Proc]
) -> None:
    async def write_bad(phase: int) -> None:
        conn = EtcdConnection([etcd.endpoint])
        try:
            await conn.put(f"/calico/felix/good-{phase}", b'{"ok": true}')
            await conn.put(f"/calico/felix/notjson-{phase}", b"{nope")
            await conn.put(f"/calico/felix/array-{phase}", b"[1, 2]")
            await conn.put(f"/calico/felix/string-{phase}", b'"just a string"')
            await conn.put(
                "/calico/resources/v3/projectcalico.org/nodes/n1",
                orjson.dumps({"kind": "IPPool", "metadata": {"name": "n1"}, "spec": {}}),
            )
        finally:
            await conn.close()

    asyncio.run(write_bad(0))  # present at the initial list
    server, _agent_port, http_port = _start_server(procs, etcd)
    asyncio.run(write_bad(1))  # arrives through the watch
    truth = asyncio.run(read_etcd_state([etcd.endpoint]))
    assert truth.invalid == 7  # 3 per phase + the node with the wrong kind
    wait_until(
        lambda: http_json(f"http://127.0.0.1:{http_port}/status")["digest"] == truth.digest,
        "server at etcd's valid digest",
    )
    st = http_json(f"http://127.0.0.1:{http_port}/status")
    assert st["keys"] == 2  # good-0 and good-1
    metrics = http_text(f"http://127.0.0.1:{http_port}/metrics")
    assert 'typha_invalid_values_total{reason="not_json"} 2.0' in metrics
    assert 'typha_invalid_values_total{reason="not_object"} 4.0' in metrics
    assert 'typha_invalid_values_total{reason="kind_mismatch"}' in metrics
    # A key that was valid and turns invalid is deleted from the state.
    asyncio.run(_put(etcd.endpoint, "/calico/felix/good-0", b"garbage"))
    wait_until(
        lambda: http_json(f"http://127.0.0.1:{http_port}/status")["keys"] == 1,
        "good-0 removed once it turned invalid",
    )
    assert server.stop() == 0, server.output()


async def _put(endpoint: str, key: str, value: bytes) -> None:
    conn = EtcdConnection([endpoint])
    try:
        await conn.put(key, value)
    finally:
        await conn.close()
