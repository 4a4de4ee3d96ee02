"""The whole system on a fabric of namespaces: etcd and typha in an `infra`
namespace on the underlay, a `felix-agent --dataplane linux` running inside
each node's namespace and programming it, pods as namespaces with veths.
The test writes to etcd from a process inside the infra namespace and reads
the agents' status ports from threads that enter their namespaces; nothing
runs in, or changes, the root namespace's network."""

from __future__ import annotations

import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Any

import orjson
import pytest

from commands.demo.etcd import etcd_binary
from dataplane.linux.kernel_thread import KernelThread
from tests.conftest import Proc, wait_until
from tests.dataplane.test_linux_dataplane import PODS, STATE, V3, VXLAN
from tests.netns import ROOT, Fabric, fabric

pytestmark = pytest.mark.integration

INFRA = "192.168.77.100"


def etcd_put(ns: str, items: dict[str, Any]) -> bool:
    """Write (None deletes) to the infra etcd from inside its namespace."""
    done = subprocess.run(
        ["ip", "netns", "exec", ns, sys.executable, "-m", "tests.etcd_write", f"{INFRA}:2379"],
        input=orjson.dumps(items),
        capture_output=True,
        cwd=ROOT,
        timeout=30,
    )
    return done.returncode == 0


def in_ns(f: Fabric, ns: str) -> KernelThread:
    return KernelThread(netns=f.path(ns), name=f"test-{ns}")


def status(thread: KernelThread) -> Any:
    def get() -> Any:
        with urllib.request.urlopen("http://127.0.0.1:9099/status", timeout=2) as r:
            return orjson.loads(r.read())

    try:
        return thread.call(get)
    except OSError:
        return {}


@pytest.mark.parametrize("vxlan", [False, True], ids=["routed", "vxlan"])
def test_agents_inside_their_nodes_reach_typha_over_the_fabric(tmp_path: Path, vxlan: bool) -> None:
    bindir = Path(sys.executable).parent
    procs: list[Proc] = []
    threads: list[KernelThread] = []
    with fabric() as f:
        try:
            infra = f.node("infra", f"{INFRA}/24")
            nodes = {"n1": f.node("n1", "192.168.77.1/24"), "n2": f.node("n2", "192.168.77.2/24")}
            pods = {p: f.pod(nodes[n], p, f"cali{p}", ip) for p, (n, ip, _) in PODS.items()}

            def run(ns: str, name: str, *cmd: str) -> Proc:
                p = Proc(["ip", "netns", "exec", ns, *cmd], tmp_path / f"{name}.log")
                procs.append(p)
                return p

            run(
                infra,
                "etcd",
                etcd_binary(),
                "--data-dir",
                str(tmp_path / "etcd"),
                "--listen-client-urls",
                f"http://{INFRA}:2379",
                "--advertise-client-urls",
                f"http://{INFRA}:2379",
                "--listen-peer-urls",
                "http://127.0.0.1:2380",
                "--log-level",
                "warn",
            )
            state = {**STATE, **(VXLAN if vxlan else {})}
            wait_until(lambda: etcd_put(infra, state), "etcd written over the fabric")
            run(
                infra,
                "typha",
                str(bindir / "typha"),
                "serve",
                "--etcd-endpoints",
                f"{INFRA}:2379",
                "--listen",
                f"{INFRA}:5473",
                "--http-listen",
                "127.0.0.1:9098",
            )
            agents = {}
            for n, ns in nodes.items():
                run(
                    ns,
                    f"agent-{n}",
                    str(bindir / "felix-agent"),
                    "--typha",
                    f"{INFRA}:5473",
                    "--node",
                    n,
                    "--dataplane",
                    "linux",
                    "--http-listen",
                    "127.0.0.1:9099",
                    "--resync-interval",
                    "2",
                )
                agents[n] = in_ns(f, ns)
                threads.append(agents[n])
            for n, t in agents.items():
                wait_until(lambda t=t: status(t).get("in_sync") is True, f"agent {n} in sync")

            def reach(src: str, dst: str) -> bool:
                return f.ping(pods[src], PODS[dst][1])

            wait_until(lambda: reach("a", "e"), "a reaches e across the fabric")
            assert reach("a", "c")
            assert not reach("a", "b")
            assert not reach("a", "d")
            for t in agents.values():
                assert status(t)["kernel"]["errors"] == 0

            deny = {
                "kind": "GlobalNetworkPolicy",
                "metadata": {"name": "deny-icmp"},
                "spec": {
                    "selector": "group == 'shared'",
                    "types": ["Ingress"],
                    "ingress": [{"action": "Deny", "protocol": "ICMP"}],
                },
            }
            key = f"{V3}/globalnetworkpolicies/deny-icmp"
            assert etcd_put(infra, {key: deny})
            wait_until(lambda: not reach("a", "e") and not reach("a", "c"), "the deny is in force")
            assert etcd_put(infra, {key: None})
            wait_until(lambda: reach("a", "e"), "deleting the policy restores it")
        finally:
            for p in reversed(procs):
                p.stop()
            for t in threads:
                t.close()
