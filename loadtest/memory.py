"""Peak memory and start-up time of `typha serve` and `felix-agent` at a
given state size, for each list page size.

    python -m loadtest.memory [--keys 200000] [--page-sizes 1000,5000,10000]

Seeds a real etcd with a Calico-shaped cluster of about `--keys` keys
(padded to a realistic value size), then for each page size starts
`typha serve` (no backfill: one paged list), waits for /readyz, starts one
`felix-agent` and waits until it holds etcd's digest.  Peak RSS is the
kernel's high-water mark (VmHWM) of each process.  Writes
loadtest/results/memory.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import orjson

from commands.demo.cluster import seed_cluster
from commands.demo.etcd import EmbeddedEtcd, free_port
from typha.datastore.etcd_client import EtcdConnection
from typha.datastore.etcd_state import read_etcd_state

MAX_NODES = 3071  # the sample cluster's pool has a block for nodes up to this
PAD = 240  # extra bytes per value: real objects carry annotations, owner refs, ...


def get(url: str) -> Any:
    """GET `url` and decode its JSON."""
    with urllib.request.urlopen(url, timeout=5) as resp:
        return json.loads(resp.read())


def hwm_mib(pid: int) -> float:
    """The peak RSS of a process, in MiB (VmHWM)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


async def seed(endpoint: str, keys: int) -> tuple[int, int]:
    """Write about `keys` Calico-shaped keys; returns (keys written, bytes written)."""
    nodes = min(MAX_NODES, max(2, keys // 49))
    pods = max(1, keys // nodes - 3)  # node, block and affinity keys per node
    conn = EtcdConnection([endpoint], timeout=60)
    items: list[tuple[str, bytes | None]] = []
    size = 0
    for key, value in seed_cluster(nodes, pods):
        value.setdefault("metadata", {})["annotations"] = {"pad": "x" * PAD}
        raw = orjson.dumps(value)
        size += len(raw)
        items.append((key, raw))
    try:
        await conn.put_many(items)
    finally:
        await conn.close()
    return len(items), size


def wait(pred: Any, limit: float = 600.0) -> float:
    """Seconds until `pred()` holds; raises TimeoutError after `limit`."""
    start = time.monotonic()
    while time.monotonic() - start < limit:
        try:
            if pred():
                return time.monotonic() - start
        except OSError:
            pass
        time.sleep(0.1)
    raise TimeoutError("gave up")


def measure(etcd: EmbeddedEtcd, page: int, digest: str) -> dict[str, float]:
    """Start typha and one agent at list page size `page`; their start-up times and peak memory."""
    bindir = Path(sys.executable).parent
    agent_port, http_port, status_port = free_port(), free_port(), free_port()
    typha = subprocess.Popen(
        [
            str(bindir / "typha"),
            "serve",
            "--etcd-endpoints",
            etcd.endpoint,
            "--listen",
            f"127.0.0.1:{agent_port}",
            "--http-listen",
            f"127.0.0.1:{http_port}",
            "--list-page-size",
            str(page),
            "--history-backfill-revisions",
            "0",
            "--log-level",
            "WARNING",
        ]
    )
    agent = None
    try:
        ready_s = wait(lambda: get(f"http://127.0.0.1:{http_port}/readyz")["ready"])
        agent = subprocess.Popen(
            [
                str(bindir / "felix-agent"),
                "--typha",
                f"127.0.0.1:{agent_port}",
                "--node",
                "node-1",
                "--http-listen",
                f"127.0.0.1:{status_port}",
                "--log-level",
                "WARNING",
            ]
        )
        sync_s = wait(lambda: get(f"http://127.0.0.1:{status_port}/status")["digest"] == digest)
        return {
            "page_size": page,
            "typha_ready_s": round(ready_s, 1),
            "agent_in_sync_s": round(sync_s, 1),
            "typha_peak_rss_mib": round(hwm_mib(typha.pid), 1),
            "agent_peak_rss_mib": round(hwm_mib(agent.pid), 1),
        }
    finally:
        for p in (agent, typha):
            if p is not None:
                p.send_signal(signal.SIGKILL)
                p.wait()


def main() -> int:
    """Entry point of `python -m loadtest.memory`."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--keys", type=int, default=200_000)
    ap.add_argument("--page-sizes", default="1000,5000,10000")
    ap.add_argument("--out", default="loadtest/results/memory.json")
    ns = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="typha-mem-") as tmp:
        etcd = EmbeddedEtcd(os.path.join(tmp, "etcd"))
        etcd.start()
        try:
            keys, json_bytes = asyncio.run(seed(etcd.endpoint, ns.keys))
            truth = asyncio.run(read_etcd_state([etcd.endpoint]))
            print(f"seeded {keys} keys, {json_bytes / 2**20:.1f} MiB of JSON", flush=True)
            runs = []
            for page in (int(p) for p in ns.page_sizes.split(",")):
                run = measure(etcd, page, truth.digest)
                print(run, flush=True)
                runs.append(run)
        finally:
            etcd.stop()
    result = {"keys": keys, "json_mib": round(json_bytes / 2**20, 1), "runs": runs}
    Path(ns.out).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
