"""Agent CPU per update at two cluster sizes.

    python -m loadtest.agent_bench [--small 10000] [--large 100000] [--updates 5000]

Builds a Calico-shaped cluster of about N keys (nodes, blocks, affinities,
pods, policies, profiles), loads it into one node's Calculator, then applies
the same mix of churn (pod adds/deletes/relabels, policy edits, node label
changes) one update at a time and measures process CPU per update.  The
figure of interest is the ratio large/small (the target is at most 1.2).  Writes
loadtest/results/agent_bench.json.
"""

from __future__ import annotations

import argparse
import gc
import json
import time
from pathlib import Path
from typing import Any

from commands.demo.cluster import Churn, seed_cluster
from dataplane import MemoryDataplane
from felix_client.calc import Calculator

PODS_PER_NODE = 45  # with node, IPv4 and IPv6 blocks and affinity: ~49 keys per node


def cluster(keys: int) -> tuple[int, list[tuple[str, Any]]]:
    """The sample cluster sized to about `keys` keys: (nodes, items)."""
    nodes = max(2, keys // (PODS_PER_NODE + 4))
    return nodes, list(seed_cluster(nodes, PODS_PER_NODE))


class Bench:
    """One cluster loaded into one node's calculator."""

    def __init__(self, keys: int) -> None:
        self.nodes, state = cluster(keys)
        self.keys = len(state)
        self.calc = Calculator("node-1")
        self.dp = MemoryDataplane()
        t0 = time.process_time()
        self.dp.apply(self.calc.apply(state))
        # The calculation pauses the cyclic collector; what it deferred is
        # part of the load's cost.
        gc.collect()
        self.load_cpu_s = time.process_time() - t0

    def run(self, updates: int, seed: int) -> float:
        """CPU microseconds per update over `updates` churn operations."""
        churn = Churn(self.nodes, seed=seed)
        ops = [churn.next() for _ in range(updates)]
        calc, dp = self.calc, self.dp
        gc.collect()
        gc.disable()  # a collection of a big heap landing in one run would dominate
        try:
            t0 = time.process_time()
            for op in ops:
                dp.apply(calc.apply([(op.key, op.value)]))
            return (time.process_time() - t0) / updates * 1e6
        finally:
            gc.enable()

    def summary(self) -> dict[str, Any]:
        """The tables' sizes after the run, for the results."""
        dp = self.dp
        return {
            "keys": self.keys,
            "nodes": self.nodes,
            "load_cpu_s": round(self.load_cpu_s, 3),
            "routes": len(dp.routes),
            "acl_rules": dp.acl_rules,
            "ip_sets": len(dp.ipsets),
            "ip_set_members": sum(len(m) for m in dp.ipsets.values()),
        }


def main() -> None:
    """Run the agent benchmark and print its results as JSON."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--small", type=int, default=10_000)
    p.add_argument("--large", type=int, default=100_000)
    p.add_argument("--updates", type=int, default=10_000)
    p.add_argument("--repeat", type=int, default=5, help="runs per size; the median is kept")
    p.add_argument("--out", default="loadtest/results/agent_bench.json")
    ns = p.parse_args()
    benches = {"small": Bench(ns.small), "large": Bench(ns.large)}
    runs: dict[str, list[float]] = {"small": [], "large": []}
    # Alternate the sizes, same seeds for both, so drift on a shared machine
    # hits both alike; keep the median.
    for i in range(ns.repeat):
        for label, bench in benches.items():
            runs[label].append(round(bench.run(ns.updates, seed=100 + i), 2))
    results: dict[str, Any] = {}
    for label, bench in benches.items():
        med = sorted(runs[label])[len(runs[label]) // 2]
        results[label] = {
            **bench.summary(),
            "updates": ns.updates,
            "cpu_us_per_update": med,
            "runs_us": runs[label],
        }
        r = results[label]
        print(
            f"{label:5s} {r['keys']:>7d} keys: {med:8.2f} us CPU per update "
            f"(runs {r['runs_us']}), routes {r['routes']}, acl rules {r['acl_rules']}, "
            f"ip set members {r['ip_set_members']}",
            flush=True,
        )
    ratio = results["large"]["cpu_us_per_update"] / results["small"]["cpu_us_per_update"]
    out = {**results, "ratio": round(ratio, 3), "budget": 1.2, "met": ratio <= 1.2}
    print(f"ratio large/small = {ratio:.3f} (budget 1.2: {'met' if ratio <= 1.2 else 'NOT met'})")
    Path(ns.out).parent.mkdir(parents=True, exist_ok=True)
    Path(ns.out).write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
