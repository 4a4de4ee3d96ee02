"""The whole system on a fabric of namespaces, for the tests that need it:
etcd and typha in an `infra` namespace on the underlay, a `felix-agent
--dataplane linux` inside each node's namespace programming it, pods as
namespaces with veths (the cluster of `test_linux_dataplane`: nodes n1 and
n2, pods a to e).  Writes go to etcd from a process inside the infra
namespace; status ports are read from threads that enter the agents'
namespaces.  Nothing runs in, or changes, the root namespace's network."""

from __future__ import annotations

import subprocess
import sys
import urllib.request
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from commands.demo.etcd import etcd_binary
from dataplane.linux.kernel_thread import KernelThread
from tests.conftest import Proc, wait_until
from tests.dataplane.test_linux_dataplane import PODS, STATE, VXLAN
from tests.netns import ROOT, Fabric, fabric

INFRA = "192.168.77.100"
TYPHA_HTTP = "127.0.0.1:9098"  # inside the infra namespace
AGENT_HTTP = "127.0.0.1:9099"  # inside each node's namespace
BIN = Path(sys.executable).parent


@dataclass
class FabricCluster:
    """A running fabric cluster; `fabric_cluster()` makes and removes it."""

    fabric: Fabric
    infra: str  # the infra namespace
    nodes: dict[str, str]  # node name -> its namespace
    pods: dict[str, str]  # pod name -> its namespace
    agents: dict[str, KernelThread] = field(default_factory=dict)  # node -> thread in its ns
    infra_thread: KernelThread | None = None  # for typha's side port, made when first asked

    def put(self, items: dict[str, Any]) -> int:
        """Write (None deletes) to etcd in one transaction; its revision."""
        done = subprocess.run(
            [*self.exec_infra(), sys.executable, "-m", "tests.etcd_write", f"{INFRA}:2379"],
            input=orjson.dumps(items),
            capture_output=True,
            cwd=ROOT,
            timeout=30,
        )
        if done.returncode != 0:
            raise OSError(f"etcd write failed: {done.stderr.decode(errors='replace')}")
        return int(done.stdout)

    def exec_infra(self) -> list[str]:
        """The prefix that runs a command inside the infra namespace."""
        return ["ip", "netns", "exec", self.infra]

    def convergence(self, revision: int) -> Any:
        """typha's `/convergence?revision=R`, asked inside the infra namespace."""
        if self.infra_thread is None:
            self.infra_thread = KernelThread(netns=self.fabric.path(self.infra), name="test-infra")

        def get() -> Any:
            url = f"http://{TYPHA_HTTP}/convergence?revision={revision}"
            with urllib.request.urlopen(url, timeout=2) as r:
                return orjson.loads(r.read())

        return self.infra_thread.call(get)

    def reach(self, src: str, dst: str) -> bool:
        """One ping from pod `src` to pod `dst`, one second to answer."""
        return self.fabric.ping(self.pods[src], PODS[dst][1])

    def status(self, node: str) -> Any:
        """The agent's /status on `node` ({} if it does not answer)."""

        def get() -> Any:
            with urllib.request.urlopen(f"http://{AGENT_HTTP}/status", timeout=2) as r:
                return orjson.loads(r.read())

        try:
            return self.agents[node].call(get)
        except OSError:
            return {}


def _put_retrying(cluster: FabricCluster, items: dict[str, Any]) -> bool:
    try:
        cluster.put(items)
    except OSError:
        return False
    return True


@contextmanager
def fabric_cluster(
    tmp_path: Path, vxlan: bool = False, agent_args: dict[str, Sequence[str]] | None = None
) -> Iterator[FabricCluster]:
    """Start etcd, typha and one Linux-dataplane agent per node (with
    `agent_args[node]` added to its command line); yields once every agent
    is in sync.  Everything is stopped and the fabric removed on exit."""
    procs: list[Proc] = []
    with fabric() as f:
        infra = f.node("infra", f"{INFRA}/24")
        nodes = {"n1": f.node("n1", "192.168.77.1/24"), "n2": f.node("n2", "192.168.77.2/24")}
        pods = {p: f.pod(nodes[n], p, f"cali{p}", ip) for p, (n, ip, _) in PODS.items()}
        cluster = FabricCluster(f, infra, nodes, pods)

        def run(ns: str, name: str, *cmd: str) -> None:
            procs.append(Proc(["ip", "netns", "exec", ns, *cmd], tmp_path / f"{name}.log"))

        try:
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
            wait_until(lambda: _put_retrying(cluster, state), "etcd written over the fabric")
            run(
                infra,
                "typha",
                str(BIN / "typha"),
                "serve",
                "--etcd-endpoints",
                f"{INFRA}:2379",
                "--listen",
                f"{INFRA}:5473",
                "--http-listen",
                TYPHA_HTTP,
            )
            for n, ns in nodes.items():
                run(
                    ns,
                    f"agent-{n}",
                    str(BIN / "felix-agent"),
                    "--typha",
                    f"{INFRA}:5473",
                    "--node",
                    n,
                    "--dataplane",
                    "linux",
                    "--http-listen",
                    AGENT_HTTP,
                    "--resync-interval",
                    "2",
                    *(agent_args or {}).get(n, ()),
                )
                cluster.agents[n] = KernelThread(netns=f.path(ns), name=f"test-{ns}")
            for n in nodes:
                wait_until(lambda n=n: cluster.status(n).get("in_sync") is True, f"{n} in sync")
            yield cluster
        finally:
            for p in reversed(procs):
                p.stop()
            for t in cluster.agents.values():
                t.close()
            if cluster.infra_thread is not None:
                cluster.infra_thread.close()
