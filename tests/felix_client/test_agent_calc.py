"""A felix-agent on a real server and etcd programs the routes and ACLs its
node should have, after churn."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import orjson
import pytest

from commands.demo.etcd import EmbeddedEtcd
from felix_client.calc import compute
from tests.cluster import apply_churn, seed_sample
from tests.conftest import (
    Proc,
    http_json,
    http_text,
    start_felix_agent,
    start_typha,
    wait_until,
)
from typha.datastore.etcd_client import EtcdConnection
from typha.datastore.etcd_state import read_entries, read_etcd_state

pytestmark = pytest.mark.integration


async def write(endpoint: str) -> None:
    await seed_sample(endpoint, 12, 6)
    await apply_churn(endpoint, 400, nodes=12, seed=7)


async def expected(endpoint: str, node: str) -> tuple[int, int, int]:
    conn = EtcdConnection([endpoint])
    try:
        got = await read_entries(conn, "/calico/")
    finally:
        await conn.close()
    tables = compute({k: orjson.loads(v) for k, v in got.entries.items()}, node)
    rules = sum(len(c) for c in tables.chains.values())
    return len(tables.routes), rules, len(tables.ipsets)


def test_agent_programs_its_nodes_routes_and_acls_after_churn(
    etcd: EmbeddedEtcd, procs: Callable[..., Proc]
) -> None:
    _, agent_port, _ = start_typha(procs, etcd)
    agent, status_port = start_felix_agent(procs, f"127.0.0.1:{agent_port}", "node-3")
    wait_until(lambda: http_json(f"http://127.0.0.1:{status_port}/status")["in_sync"], "sync")
    asyncio.run(write(etcd.endpoint))
    truth = asyncio.run(read_etcd_state([etcd.endpoint]))
    wait_until(
        lambda: http_json(f"http://127.0.0.1:{status_port}/status")["digest"] == truth.digest,
        "agent at etcd's digest",
    )
    routes, rules, ipsets = asyncio.run(expected(etcd.endpoint, "node-3"))
    st = http_json(f"http://127.0.0.1:{status_port}/status")
    # 12 nodes' blocks (1 blackhole + 11 via) plus local pods: a real table.
    assert routes > 12
    assert st["routes"] == routes
    assert st["acl_rules"] == rules
    assert st["ip_sets"] == ipsets
    assert st["calc_errors"] == {}
    dump = http_text(f"http://127.0.0.1:{status_port}/dump")
    assert "blackhole 10.244.3.0/26" in dump
    assert "10.244.4.0/26 via 192.168.0.5" in dump
    assert " dev cali" in dump
    assert agent.stop() == 0
