"""`typha demo --dataplane linux`: real kernels, real packets, live.

Builds a fabric of network namespaces (an underlay bridge, one namespace per
node, one per pod, plugged in as Calico's CNI plugin does), starts etcd and
typha on 127.0.0.1, and runs one agent per node in this process with the
Linux dataplane programming that node's namespace.  Then it probes every pod
pair with TCP connects, prints the reachability matrix whenever it changes,
and steps through policy changes (`scenario`), checking each settled matrix
against what the policies mean.  Every namespace it made is removed on exit,
Ctrl-C and SIGTERM included; namespaces left by a demo that was killed are
removed at the next start.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass

import orjson

from commands.demo.netns import Fabric, kernel_missing, remove_orphans
from commands.demo.reach import PodSockets, probe_all, serve
from commands.demo.run import demo_stack
from commands.demo.scenario import (
    PORT,
    DemoPod,
    Situation,
    Step,
    demo_cluster,
    demo_pods,
    node_address,
    steps,
)
from dataplane.linux.driver import LinuxDataplane
from felix_client import SyncClient
from felix_client.agent import Agent
from typha.datastore.etcd_client import EtcdConnection
from typha.datastore.etcd_state import read_etcd_state

NS_PREFIX = "tdemo"
PROBE_TIMEOUT = 0.5
Matrix = dict[tuple[int, int], bool]


@dataclass
class NodeAgent:
    """One node's agent and the highest revision its kernel has applied."""

    client: SyncClient
    agent: Agent
    dataplane: LinuxDataplane
    applied: int = 0


async def run_linux_demo(ns: argparse.Namespace) -> int:
    """Run the Linux-dataplane demo; returns the exit status: 0 if every
    settled matrix matched the policies and every kernel matched its agent,
    1 if not, 2 if this machine cannot run it."""
    why = kernel_missing()
    if why:
        print(
            f"typha demo --dataplane linux {why}; run it as root on Linux with nftables "
            "installed (tools/test-deps), or use the memory dataplane",
            file=sys.stderr,
        )
        return 2
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    for name in remove_orphans(NS_PREFIX):
        print(f"removed namespace {name}, left by a demo that was killed", flush=True)
    pods = demo_pods(ns.nodes, ns.pods_per_node)
    fabric = Fabric(prefix=NS_PREFIX, tag=str(os.getpid()))
    agents: list[NodeAgent] = []
    sockets: list[PodSockets] = []
    try:
        try:
            node_ns, pod_ns = build_fabric(fabric, ns.nodes, pods)
        except subprocess.CalledProcessError as exc:
            if stop.is_set():
                return 130  # Ctrl-C reached an `ip` command too
            why = f"{' '.join(exc.cmd)}: {(exc.stderr or '').strip()}"
            print(f"typha demo: building the fabric failed: {why}", file=sys.stderr)
            return 1
        print(
            f"fabric: {len(fabric.namespaces)} network namespaces ({NS_PREFIX}{fabric.tag}-*): "
            f"{ns.nodes} nodes on an underlay bridge, {len(pods)} pods; "
            f"{'VXLAN' if ns.vxlan else 'routed'}",
            flush=True,
        )
        items = list(demo_cluster(ns.nodes, pods, ns.vxlan))
        async with demo_stack(ns, items, f"{ns.nodes} nodes") as (endpoints, app):
            try:
                for i, path in enumerate(node_ns):
                    agents.append(await start_agent(app.agent_port, f"node-{i}", path))
                sockets = [PodSockets(p.name, path) for p, path in zip(pods, pod_ns, strict=True)]
                servers = [await serve(s.listener(PORT)) for s in sockets]
                try:
                    print_legend(pods)
                    bad = await cycle(endpoints, agents, pods, sockets, ns, stop)
                finally:
                    for srv in servers:
                        srv.close()
                return await final_check(endpoints, agents, bad)
            finally:
                for a in agents:
                    await a.client.close()
                    a.dataplane.close()
    finally:
        for s in sockets:
            s.close()
        made = len(fabric.namespaces)
        fabric.close()
        print(f"removed the {made} network namespaces the demo made", flush=True)


def build_fabric(fabric: Fabric, nodes: int, pods: list[DemoPod]) -> tuple[list[str], list[str]]:
    """Node namespaces on the underlay at their Node resources' addresses,
    and the pods in them; returns the nodes' and the pods' namespace paths."""
    names = [fabric.node(f"node-{i}", node_address(i)) for i in range(nodes)]
    pod_ns = [fabric.pod(names[p.node_index], p.name, p.interface, p.ip) for p in pods]
    return [fabric.path(n) for n in names], [fabric.path(n) for n in pod_ns]


async def start_agent(port: int, node: str, netns: str) -> NodeAgent:
    """An agent for `node` whose Linux dataplane programs `netns`; started."""
    client = SyncClient(f"127.0.0.1:{port}", node=node)
    dataplane = LinuxDataplane(netns=netns, node=node)
    na = NodeAgent(client, Agent(client, node=node, dataplane=dataplane), dataplane)

    # Added after the agent's own listener, so it runs once the kernel has the batch.
    def applied(_: object, revision: int) -> None:
        na.applied = revision

    client.add_listener(applied)
    await client.start()
    return na


def print_legend(pods: list[DemoPod]) -> None:
    """Which number is which pod."""
    print("pods (each listens on TCP 8080; rows connect to columns):")
    for i, p in enumerate(pods, 1):
        print(f"  {i:2d}  {p.name:10s} {p.namespace:8s} {p.node:8s} {p.ip:15s} {p.interface}")
    print(flush=True)


def render(pods: list[DemoPod], m: Matrix) -> list[str]:
    """The matrix as text: ✓ connected, · refused or dropped."""
    n = len(pods)
    lines = ["      to " + " ".join(f"{j:2d}" for j in range(1, n + 1))]
    for i in range(n):
        cells = [" -" if i == j else (" ✓" if m[(i, j)] else " ·") for j in range(n)]
        lines.append(f"  from {i + 1:2d}" + " ".join(cells))
    return lines


def mismatches(pods: list[DemoPod], m: Matrix, s: Situation) -> list[str]:
    """Pairs where the kernels disagree with the policies."""
    out = []
    for (i, j), ok in sorted(m.items()):
        want = s.allows(pods[i], pods[j])
        if ok != want:
            verb = "reached" if ok else "did not reach"
            out.append(f"{pods[i].name} {verb} {pods[j].name}")
    return out


async def cycle(
    endpoints: tuple[str, ...],
    agents: list[NodeAgent],
    pods: list[DemoPod],
    sockets: list[PodSockets],
    ns: argparse.Namespace,
    stop: asyncio.Event,
) -> int:
    """Probe continuously; print the matrix when it changes; apply the next
    step every `ns.step` seconds, first checking the settled matrix against
    the current situation.  Returns how many settled matrices were wrong."""
    targets = [(s, p.ip) for s, p in zip(sockets, pods, strict=True)]
    plan = steps(pods)
    conn = EtcdConnection(endpoints)
    start = time.monotonic()
    situation, k, bad = Situation(), 0, 0
    async with asyncio.timeout(30):
        for a in agents:
            await a.client.wait_in_sync()
    await wait_applied(agents, max(a.client.revision for a in agents), 30.0)
    next_step = time.monotonic() + ns.step
    shown: Matrix | None = None
    try:
        while not stop.is_set():
            m = await probe_all(targets, PORT, PROBE_TIMEOUT)
            now = time.monotonic()
            if m != shown:
                reach = sum(m.values())
                print(f"[{now - start:5.1f}s] {reach}/{len(m)} pairs connect")
                print("\n".join(render(pods, m)), flush=True)
                shown = m
            if now >= next_step or (ns.duration and now - start >= ns.duration):
                wrong = mismatches(pods, m, situation)
                bad += bool(wrong)
                print(
                    "  as the policies say"
                    if not wrong
                    else "  DIFFERS from the policies: " + "; ".join(wrong),
                    flush=True,
                )
                if ns.duration and now - start >= ns.duration:
                    break
                step = plan[k % len(plan)]
                await apply_step(conn, agents, step, now - start)
                situation, k = step.after, k + 1
                next_step = time.monotonic() + ns.step
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.2)
    finally:
        await conn.close()
    return bad


async def apply_step(
    conn: EtcdConnection, agents: list[NodeAgent], step: Step, elapsed: float
) -> None:
    """Write one step in one transaction and report when every node's kernel has it."""
    writes = [(k, None if v is None else orjson.dumps(v)) for k, v in step.writes]
    t0 = time.monotonic()
    revision = await conn.put_many(writes)
    print(f"[{elapsed:5.1f}s] {step.description} (etcd revision {revision})", flush=True)
    took = await wait_applied(agents, revision, 10.0)
    where = f"{sum(a.applied >= revision for a in agents)}/{len(agents)} nodes' kernels"
    if took is None:
        print(f"         not in {where} after 10 s", flush=True)
    else:
        print(f"         in {where} {(took - t0) * 1000:.0f} ms after the write", flush=True)


async def wait_applied(agents: list[NodeAgent], revision: int, within: float) -> float | None:
    """Wait until every agent's kernel has applied `revision`; returns when
    (monotonic time), or None after `within` seconds."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if all(a.applied >= revision for a in agents):
            return time.monotonic()
        await asyncio.sleep(0.002)
    return None


async def final_check(endpoints: tuple[str, ...], agents: list[NodeAgent], bad: int) -> int:
    """Every agent at etcd's digest, every kernel holding exactly what its
    agent computed (a resync finds nothing to repair), no kernel errors."""
    truth = await read_etcd_state(endpoints)
    await wait_applied(agents, truth.revision, 15.0)
    ok = bad == 0
    for a in agents:
        repaired = a.dataplane.resync()
        errors = a.dataplane.kernel_status()["errors"]
        same = a.client.digest == truth.digest
        drift = sum(repaired.values())
        ok = ok and same and drift == 0 and errors == 0
        print(
            f"{a.agent.node}: digest {'matches etcd' if same else 'DIFFERS'}, "
            f"kernel {'matches the agent' if drift == 0 else f'needed {repaired}'}, "
            f"{errors} kernel errors, {len(a.dataplane.routes)} routes, "
            f"{a.dataplane.acl_rules} ACL rules"
        )
    if bad:
        print(f"{bad} settled matrices differed from the policies")
    print("OK" if ok else "MISMATCH", flush=True)
    return 0 if ok else 1
