"""What a /metrics scrape of the verdict counters costs (root only).

    python -m loadtest.scrape_cost [--policies 1000] [--rules 10] [--endpoints 20] [--reads 30]

In a network namespace made for the run, one node's agent dataplane
(`linux`) holds `--endpoints` local workloads and `--policies` global
policies of `--rules` ingress rules each, every policy selecting one of the
workloads (so policies x rules policy rules apply on the node, each with its
verdict counter).  Then, `--reads` times each (median, wall and process
CPU, which includes the kernel's side of the netlink dump):

* `read`: the counters read from the kernel in one libnftables call and
  mapped to what they count (LinuxDataplane.policy_counters);
* `series`: that, turned into series under the default limit (1,000) and
  with no limit reached (every counter its own series): what the agent
  does in a worker thread before a scrape;
* `exposition`: the verdict part of /metrics formatted as Prometheus text
  from those series, with its size: what the scrape does on the agent's
  event loop.

The namespace is removed at the end.  Writes loadtest/results/scrape_cost.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import Metric
from prometheus_client.registry import Collector

from dataplane.linux.driver import LinuxDataplane
from felix_client.calc import Calculator
from felix_client.metrics import verdict_families
from felix_client.verdict_series import DEFAULT_COUNTER_SERIES, VerdictSeries

NODE = "n1"
V3 = "/calico/resources/v3/projectcalico.org"


def state(policies: int, rules: int, endpoints: int) -> list[tuple[str, Any]]:
    """The node, its workloads (one profile that allows everything) and the
    policies, each selecting one workload."""
    items: list[tuple[str, Any]] = [
        (
            f"{V3}/nodes/{NODE}",
            {
                "kind": "Node",
                "metadata": {"name": NODE},
                "spec": {"bgp": {"ipv4Address": "192.168.0.2/16"}},
            },
        ),
        (
            f"{V3}/profiles/p",
            {
                "kind": "Profile",
                "metadata": {"name": "p"},
                "spec": {"ingress": [{"action": "Allow"}], "egress": [{"action": "Allow"}]},
            },
        ),
    ]
    for e in range(endpoints):
        name = f"w{e}"
        items.append(
            (
                f"{V3}/workloadendpoints/default/{name}",
                {
                    "kind": "WorkloadEndpoint",
                    "metadata": {"name": name, "namespace": "default", "labels": {"app": name}},
                    "spec": {
                        "node": NODE,
                        "interfaceName": f"cali{name}",
                        "ipNetworks": [f"10.65.{e // 250}.{e % 250 + 1}/32"],
                        "profiles": ["p"],
                    },
                },
            )
        )
    for j in range(policies):
        ingress = [
            {
                "action": "Allow" if r % 2 else "Deny",
                "protocol": "TCP",
                "source": {"nets": [f"10.{j % 250}.{r}.0/24"]},
                "destination": {"ports": [1000 + r]},
            }
            for r in range(rules)
        ]
        items.append(
            (
                f"{V3}/globalnetworkpolicies/p{j}",
                {
                    "kind": "GlobalNetworkPolicy",
                    "metadata": {"name": f"p{j}"},
                    "spec": {
                        "selector": f"app == 'w{j % endpoints}'",
                        "order": j,
                        "types": ["Ingress"],
                        "ingress": ingress,
                    },
                },
            )
        )
    return items


def measure(fn: Callable[[], object], reads: int) -> dict[str, float]:
    """Median wall and CPU milliseconds of `reads` calls."""
    walls, cpus = [], []
    for _ in range(reads):
        w, c = time.perf_counter(), time.process_time()
        fn()
        walls.append((time.perf_counter() - w) * 1000)
        cpus.append((time.process_time() - c) * 1000)
    return {"wall_ms_p50": statistics.median(walls), "cpu_ms_p50": statistics.median(cpus)}


class _Verdicts(Collector):
    def __init__(self, vs: VerdictSeries) -> None:
        self.vs = vs

    def collect(self) -> Iterator[Metric]:
        yield from verdict_families(self.vs)


def run(policies: int, rules: int, endpoints: int, reads: int) -> dict[str, Any]:
    """Program the node in a namespace of its own, measure, remove it."""
    ns = f"scrape-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        subprocess.run(["ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up"], check=True)
        dp = LinuxDataplane(netns=f"/run/netns/{ns}", node=NODE)
        try:
            calc = Calculator(NODE)
            t0 = time.perf_counter()
            dp.apply(calc.apply(state(policies, rules, endpoints)))
            program_s = time.perf_counter() - t0
            counters = dp.policy_counters()
            out: dict[str, Any] = {
                "policies": policies,
                "rules_per_policy": rules,
                "endpoints": endpoints,
                "acl_rules": dp.acl_rules,
                "counters": len(counters),
                "program_s": round(program_s, 2),
                "read": measure(dp.policy_counters, reads),
            }
            for label, limit in (("default_limit", DEFAULT_COUNTER_SERIES), ("no_limit", 10**9)):
                vs = VerdictSeries(dp.policy_counters, limit, min_interval=0)
                out[f"series_{label}"] = measure(vs.series, reads)
                registry = CollectorRegistry(auto_describe=False)
                registry.register(_Verdicts(vs))
                out[f"exposition_{label}"] = measure(partial(generate_latest, registry), reads)
                out[f"exposition_{label}"]["bytes"] = len(generate_latest(registry))
            return out
        finally:
            dp.close()
    finally:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)


def main() -> None:
    """The command line."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--policies", type=int, default=1000)
    p.add_argument("--rules", type=int, default=10)
    p.add_argument("--endpoints", type=int, default=20)
    p.add_argument("--reads", type=int, default=30)
    p.add_argument("--out", default="loadtest/results/scrape_cost.json")
    a = p.parse_args()
    result = run(a.policies, a.rules, a.endpoints, a.reads)
    Path(a.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
