"""What one Calico resource can do to a node, with real processes: etcd and
typha in the infra namespace, `felix-agent --dataplane linux` inside each
node's namespace, values written to etcd as a namespace admin, a CNI plugin
or an IPAM writer could (each passes typha's validation).  Node n1 is shaped
as a node: eth0 on the LAN with the connected and default routes, its own
`inet hostfw` table.  The agent must leave the host alone, refuse what is
not its own (listed in its /status), drop what comes from an unknown
workload interface, and read `"010"` as port 10."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.conftest import wait_until
from tests.dataplane.fabric_cluster import FabricCluster, fabric_cluster
from tests.dataplane.test_linux_dataplane import PODS, V3, block, wep
from tests.dataplane.test_ownership_linux import (
    HOSTFW,
    OCTAL_PORT_POLICY,
    host_view,
    route_dsts,
)
from tests.netns import sh

pytestmark = pytest.mark.integration


def applied(c: FabricCluster, revision: int) -> None:
    for node in c.nodes:
        wait_until(
            lambda node=node: c.status(node).get("applied_revision", 0) >= revision,
            f"{node} applies revision {revision}",
        )


def endpoint(name: str, ns: str, node: str, iface: str, ip: str) -> tuple[str, Any]:
    key, value = wep(name, node, ip, "shared")
    value["metadata"]["namespace"] = ns
    value["spec"]["interfaceName"] = iface
    return key.replace("/default/", f"/{ns}/"), value


def test_datastore_values_cannot_turn_the_agent_against_its_node(tmp_path: Path) -> None:
    with fabric_cluster(tmp_path) as c:
        n1 = c.nodes["n1"]
        assert sh(n1, "sh", "-c", f"echo '{HOSTFW}' | nft -f -").returncode == 0
        before = host_view(n1)

        # 1. Endpoints on the node's own interfaces.
        eth0 = endpoint("evil-eth0", "default", "n1", "eth0", "192.168.77.50")
        lo = endpoint("evil-lo", "default", "n1", "lo", "192.168.77.100")
        # 2. Blocks over the node's LAN (outside every pool), and one inside
        #    a pool that covers the LAN, which would replace the connected route.
        lan_blocks = [block("192.168.77.0/26", "n2"), block("192.168.77.0/24", "n1")]
        lan_pool = (
            f"{V3}/ippools/lan",
            {"kind": "IPPool", "metadata": {"name": "lan"}, "spec": {"cidr": "192.168.77.0/24"}},
        )
        # 6. Another namespace's endpoint naming pod a's interface.
        thief = endpoint("thief", "zz", "n1", "calia", "10.65.1.66")
        ten = OCTAL_PORT_POLICY  # 7. a port that nft would read as octal
        revision = c.put(dict([eth0, lo, *lan_blocks, thief, ten]))
        applied(c, revision)
        refused = c.status("n1")["refused"]
        assert eth0[0] in refused
        assert lo[0] in refused
        assert "belongs to" in refused[thief[0]]
        assert not {"192.168.77.0/26", "192.168.77.0/24", "192.168.77.50"} & route_dsts(n1)
        assert "10.65.1.66" not in route_dsts(n1)
        assert host_view(n1) == before
        # The LAN still works: the agent reaches typha and etcd over eth0.
        assert c.fabric.ping(n1, "192.168.77.100")
        revision = c.put(dict([lan_pool]))
        applied(c, revision)
        assert "route 192.168.77.0/24" in c.status("n1")["refused"]
        assert host_view(n1) == before

        # 7. "010" is port 10.
        pod_a, pod_b = c.pods["a"], c.pods["b"]
        listeners = [c.fabric.listen(pod_b, port, 20) for port in (8, 10)]
        try:
            wait_until(lambda: c.fabric.connect(pod_a, PODS["b"][1], 10), "port 10 allowed")
            assert not c.fabric.connect(pod_a, PODS["b"][1], 8)
        finally:
            for p in listeners:
                p.kill()

        # 5. A workload interface with no endpoint gets nowhere.
        ghost = c.fabric.pod(n1, "ghost", "caliGhost", "10.65.1.9")
        sh(n1, "ip", "link", "set", "caliGhost", "up")
        sh(n1, "sysctl", "-qw", "net.ipv4.conf.caliGhost.proxy_arp=1")
        sh(n1, "ip", "route", "add", "10.65.1.9", "dev", "caliGhost")
        assert not c.fabric.ping(ghost, PODS["a"][1])
        assert not c.fabric.ping(ghost, PODS["e"][1])
        assert c.reach("c", "a")
        assert c.reach("a", "e")
