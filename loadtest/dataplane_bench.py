"""The `linux` dataplane programming a real kernel (root only).

    python -m loadtest.dataplane_bench [--small 10000] [--large 100000] [--updates 300]

For each cluster size (the sample cluster, node-1's view): in a network
namespace made for the run, with node-1's workload interfaces present (veth
pairs), measures

* initial programming: one batch holding the whole state, from nothing to
  the kernel holding every route, set member and chain: wall time and
  process CPU;
* a restart: a second driver over the same kernel, which must change
  nothing: wall time and CPU of reading the kernel and comparing;
* updates: the demo's churn, one update at a time, through the calculation
  and the driver into the kernel: wall time per update, p50 and p99 (each
  update is in the kernel when `apply` returns: one nftables transaction and
  its netlink calls).

The namespace is removed at the end.  Writes
loadtest/results/dataplane_bench.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any

from commands.demo.cluster import Churn
from dataplane.linux.driver import LinuxDataplane
from felix_client.calc import Calculator
from loadtest.agent_bench import cluster

NODE = "node-1"


def _ns(name: str, *cmd: str) -> None:
    subprocess.run(["ip", "netns", "exec", name, *cmd], check=True, capture_output=True)


def _cpu() -> float:
    t = os.times()
    return t.user + t.system


def node_namespace(ns: str, state: list[tuple[str, Any]]) -> set[str]:
    """Make namespace `ns` look like node-1: an underlay interface holding
    one /16 (IPv4) and /64 (IPv6) with every sample node's address, so routes
    via any of them are on-link, and node-1's workload interfaces (veth
    pairs).  Returns those interfaces' names."""
    _ns(ns, "ip", "link", "set", "lo", "up")
    _ns(ns, "ip", "link", "add", "eth0", "type", "veth", "peer", "name", "uplink")
    _ns(ns, "ip", "link", "set", "uplink", "up")
    _ns(ns, "ip", "addr", "add", "192.168.0.2/16", "dev", "eth0")
    _ns(ns, "ip", "addr", "add", "fd00:192:168::2/64", "dev", "eth0", "nodad")
    _ns(ns, "ip", "link", "set", "eth0", "up")
    _ns(ns, "ip", "route", "add", "default", "via", "192.168.0.254")
    _ns(ns, "ip", "-6", "route", "add", "default", "via", "fd00:192:168::fe")
    ifaces = {
        v["spec"]["interfaceName"]
        for k, v in state
        if "/workloadendpoints/" in k and v["spec"]["node"] == NODE
    }
    for i, iface in enumerate(sorted(ifaces)):
        _ns(ns, "ip", "link", "add", iface, "type", "veth", "peer", "name", f"p{i}")
        _ns(ns, "ip", "link", "set", f"p{i}", "up")
    return ifaces


def measure(keys: int, updates: int) -> dict[str, Any]:
    """One size: initial programming, restart, churn updates."""
    nodes, state = cluster(keys)
    ns = f"bench-{uuid.uuid4().hex[:6]}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        ifaces = node_namespace(ns, state)
        calc = Calculator(NODE)
        dp = LinuxDataplane(netns=f"/run/netns/{ns}", node=NODE)
        batch = calc.apply(state)
        w0, c0 = time.perf_counter(), _cpu()
        dp.apply(batch)
        initial = (time.perf_counter() - w0, _cpu() - c0)
        pending = dp.kernel_status()["pending_routes"]
        sizes = {
            "routes": len(dp.routes),
            "routes_pending": pending,
            "ip_set_members": sum(len(m) for m in dp.ipsets.values()),
            "chains": len(dp.chains),
            "acl_rules": dp.acl_rules,
            "kernel_changes": dp.kernel_changes(),
        }
        dp.close()
        again = LinuxDataplane(netns=f"/run/netns/{ns}", node=NODE)
        batch = Calculator(NODE).apply(state)
        w0, c0 = time.perf_counter(), _cpu()
        again.apply(batch)
        restart = (time.perf_counter() - w0, _cpu() - c0, again.kernel_changes())
        churn = Churn(nodes, seed=7)
        lat: list[float] = []
        c0 = _cpu()
        calc2 = Calculator(NODE)
        calc2.apply(state)  # the restarted driver's calculation, in step with it
        for _ in range(updates):
            op = churn.next()
            t0 = time.perf_counter()
            b = calc2.apply([(op.key, op.value)])
            if not b.empty():
                again.apply(b)
            lat.append(time.perf_counter() - t0)
        upd_cpu = (_cpu() - c0) / updates
        errors = again.kernel_stats["errors"]
        again.close()
    finally:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)
    lat.sort()
    return {
        "keys": len(state),
        "nodes": nodes,
        "local_interfaces": len(ifaces),
        **sizes,
        "initial_wall_s": round(initial[0], 3),
        "initial_cpu_s": round(initial[1], 3),
        "restart_wall_s": round(restart[0], 3),
        "restart_cpu_s": round(restart[1], 3),
        "restart_kernel_changes": restart[2],
        "updates": updates,
        "update_p50_ms": round(lat[len(lat) // 2] * 1e3, 2),
        "update_p99_ms": round(lat[int(len(lat) * 0.99)] * 1e3, 2),
        "update_cpu_ms": round(upd_cpu * 1e3, 3),
        "kernel_errors": errors,
    }


def main() -> None:
    """Run both sizes and write the results."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--small", type=int, default=10_000)
    p.add_argument("--large", type=int, default=100_000)
    p.add_argument("--updates", type=int, default=300)
    p.add_argument("--out", default="loadtest/results/dataplane_bench.json")
    ns = p.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("dataplane_bench needs root (network namespaces, netlink, nftables)")
    results = {}
    for label, keys in (("small", ns.small), ("large", ns.large)):
        r = results[label] = measure(keys, ns.updates)
        print(
            f"{label:5s} {r['keys']:>7d} keys: initial {r['initial_wall_s']} s wall "
            f"{r['initial_cpu_s']} s CPU ({r['routes']} routes, {r['ip_set_members']} set members, "
            f"{r['chains']} chains); restart {r['restart_wall_s']} s, "
            f"{r['restart_kernel_changes']} changes; update p50 {r['update_p50_ms']} ms "
            f"p99 {r['update_p99_ms']} ms",
            flush=True,
        )
    Path(ns.out).parent.mkdir(parents=True, exist_ok=True)
    Path(ns.out).write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
