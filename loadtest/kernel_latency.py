"""etcd put to kernel state, under the demo's churn (root only).

    python -m loadtest.kernel_latency [--keys 10000] [--rates 50,200] [--seconds 20]

A real etcd (embedded), a real `typha serve` process, and one agent in this
process whose `linux` dataplane programs a network namespace made to look
like node-1 (`dataplane_bench.node_namespace`).  The sample cluster of about
`--keys` keys is seeded, then for each rate the demo's churn
(`commands.demo.cluster.Churn`: pods, policies, node labels) is written at
that rate for `--seconds`, and one write in ten is instead a new remote
node with its IPAM block (a new route on node-1).

Each write's latency runs from just before the put to the moment the agent's
dataplane returns from applying a batch at or past the write's revision
(how much of it etcd took to acknowledge the put is reported beside it):
the nftables transaction has been committed and every netlink call
acknowledged, so the change is in the kernel's tables.  At the end the new
blocks' routes are read back from the kernel (`ip route show proto 80`) to
confirm they are there.  Writes loadtest/results/kernel_latency.json.
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import json
import os
import subprocess
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import orjson

from commands.demo.cluster import Churn, affinity, block, block_cidr, node, node_key
from commands.demo.etcd import EmbeddedEtcd
from dataplane.linux.driver import LinuxDataplane
from dataplane.linux.routes import RT_PROTO
from felix_client import SyncClient
from felix_client.agent import Agent
from loadtest.agent_bench import cluster
from loadtest.bench import start_typha, stop
from loadtest.dataplane_bench import NODE, node_namespace
from typha.datastore.etcd_client import EtcdConnection

BLOCK_EVERY = 10


def _kind(key: str) -> str:
    if "/networkpolicies/" in key:
        return "policy"
    if "/workloadendpoints/" in key:
        return "workload"
    return "node"


def _pct(values: list[float], q: float) -> float:
    s = sorted(values)
    return round(s[min(len(s) - 1, int(q * len(s)))] * 1e3, 2) if s else 0.0


class Writer:
    """Writes churn at a rate and records (revision, time, kind) per write."""

    def __init__(self, conn: EtcdConnection, nodes: int, seed: int) -> None:
        self.conn = conn
        self.churn = Churn(nodes, seed=seed)
        self.next_node = nodes  # new remote nodes get indexes past the cluster
        self.writes: list[tuple[int, float, str]] = []
        self.put_s: list[float] = []  # how long each write took etcd to acknowledge
        self.new_blocks: list[str] = []

    async def one(self, n: int) -> None:
        """The n-th write: churn, or every BLOCK_EVERY-th a new remote block."""
        t = time.perf_counter()
        if n % BLOCK_EVERY == 0:
            i, self.next_node = self.next_node, self.next_node + 1
            name = f"node-{i}"
            items = [(node_key(name), node(name, i)), block(name, i), affinity(name, i)]
            rev = await self.conn.put_many([(k, orjson.dumps(v)) for k, v in items])
            self.new_blocks.append(block_cidr(i))
            kind = "remote_block"
        else:
            op = self.churn.next()
            if op.value is None:
                rev = await self.conn.delete(op.key)
            else:
                rev = await self.conn.put(op.key, orjson.dumps(op.value))
            kind = _kind(op.key)
        self.put_s.append(time.perf_counter() - t)
        self.writes.append((rev, t, kind))

    async def run(self, rate: float, seconds: float) -> None:
        """Write at `rate` per second for `seconds`."""
        interval, start = 1.0 / rate, time.perf_counter()
        n = 0
        while time.perf_counter() - start < seconds:
            await self.one(n)
            n += 1
            delay = start + n * interval - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)


def measure(keys: int, rates: list[float], seconds: float) -> dict[str, Any]:
    """Seed, start typha and the agent, then churn at each rate; removes the
    namespace and stops etcd and typha at the end."""
    nodes, state = cluster(keys)
    ns = f"bench-{uuid.uuid4().hex[:6]}"
    tmp = Path(tempfile.mkdtemp(prefix="kernel-latency-"))
    etcd = EmbeddedEtcd().start()
    subprocess.run(["ip", "netns", "add", ns], check=True)
    typha = None
    try:
        node_namespace(ns, state)
        asyncio.run(_seed(etcd.endpoint, state))
        typha, port, _ = start_typha(etcd, tmp)
        results = asyncio.run(_churn(etcd.endpoint, port, ns, nodes, rates, seconds))
        shown = subprocess.run(
            ["ip", "netns", "exec", ns, "ip", "route", "show", "proto", str(RT_PROTO)],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        blocks = results.pop("new_blocks")
        results["new_block_routes_in_kernel"] = sum(cidr in shown for cidr in blocks)
        results["new_blocks_written"] = len(blocks)
    finally:
        if typha is not None:
            stop(typha)
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        etcd.stop()
    return {"keys": len(state), "nodes": nodes, **results}


async def _seed(endpoint: str, state: list[tuple[str, Any]]) -> None:
    conn = EtcdConnection([endpoint])
    try:
        await conn.put_many([(k, orjson.dumps(v)) for k, v in state])
    finally:
        await conn.close()


async def _churn(
    endpoint: str, port: int, ns: str, nodes: int, rates: list[float], seconds: float
) -> dict[str, Any]:
    dp = LinuxDataplane(netns=f"/run/netns/{ns}", node=NODE)
    client = SyncClient(f"127.0.0.1:{port}", node=NODE)
    agent = Agent(client, node=NODE, dataplane=dp)
    applied_revs: list[int] = []
    applied_at: list[float] = []
    target = [0]
    reached = asyncio.Event()

    # After the agent's listener: the batch is in the kernel by now.
    def applied(_: object, revision: int) -> None:
        applied_revs.append(revision)
        applied_at.append(time.perf_counter())
        if revision >= target[0]:
            reached.set()

    client.add_listener(applied)
    conn = EtcdConnection([endpoint])
    writer = Writer(conn, nodes, seed=11)
    runs = []
    try:
        await client.start()
        async with asyncio.timeout(120):
            await client.wait_in_sync()
            # The snapshot is calculated off the loop: measure only once it is in the kernel.
            await agent.wait_applied()
        for rate in rates:
            writer.writes, writer.put_s = [], []
            await writer.run(rate, seconds)
            target[0] = max(r for r, _, _ in writer.writes)
            if applied_revs[-1] < target[0]:
                reached.clear()
                async with asyncio.timeout(60):
                    await reached.wait()
            lat: dict[str, list[float]] = {}
            for rev, t, kind in writer.writes:
                k = bisect.bisect_left(applied_revs, rev)
                lat.setdefault(kind, []).append(applied_at[k] - t)
            every = [x for v in lat.values() for x in v]
            run = {
                "rate_per_s": rate,
                "writes": len(every),
                "p50_ms": _pct(every, 0.5),
                "p99_ms": _pct(every, 0.99),
                "etcd_put_p50_p99_ms": [_pct(writer.put_s, 0.5), _pct(writer.put_s, 0.99)],
                **{
                    f"{kind}_p50_p99_ms": [_pct(v, 0.5), _pct(v, 0.99), len(v)]
                    for kind, v in sorted(lat.items())
                },
                "kernel_errors": dp.kernel_stats["errors"],
            }
            runs.append(run)
            print(json.dumps(run), flush=True)
    finally:
        await client.close()
        await conn.close()
        dp.close()
    return {"runs": runs, "new_blocks": writer.new_blocks}


def main() -> None:
    """Run and write the results."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--keys", type=int, default=10_000)
    p.add_argument("--rates", default="50,200", help="writes per second, one run each")
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--out", default="loadtest/results/kernel_latency.json")
    ns = p.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("kernel_latency needs root (network namespaces, netlink, nftables)")
    rates = [float(r) for r in ns.rates.split(",")]
    results = measure(ns.keys, rates, ns.seconds)
    Path(ns.out).parent.mkdir(parents=True, exist_ok=True)
    Path(ns.out).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
