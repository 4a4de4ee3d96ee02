"""DefaultEndpointToHostAction with a real kernel: a pod's connection to a
service on its own host, once its egress policy allowed it, is dropped by
default (Felix's Drop), let in with Accept, and left to the host's own
firewall with Return; the host's own table keeps deciding in every case,
and IPv6 neighbour discovery to the pod's gateway works even under Drop."""

from __future__ import annotations

import pytest

from dataplane.endpoint_to_host import EndpointToHostAction
from dataplane.host_settings import HostSettings
from tests.conftest import wait_until
from tests.dataplane.test_linux_dataplane import Cluster
from tests.netns import fabric, sh

HOST = "192.168.77.1"  # node n1's LAN address
# The node's own firewall, which the agent must leave alone: it refuses 8001.
HOSTFW = (
    "add table inet hostfw; add chain inet hostfw input"
    " { type filter hook input priority 0; policy accept; };"
    ' add rule inet hostfw input iifname != "lo" tcp dport 8001 drop'
)


@pytest.mark.parametrize(
    ("action", "reaches_8000"),
    [
        (None, False),
        (EndpointToHostAction.DROP, False),
        (EndpointToHostAction.RETURN, True),
        (EndpointToHostAction.ACCEPT, True),
    ],
    ids=["default", "drop", "return", "accept"],
)
def test_a_pods_connection_to_its_host(
    action: EndpointToHostAction | None, reaches_8000: bool
) -> None:
    with fabric() as f:
        cluster = Cluster(f)
        try:
            n1 = cluster.nodes["n1"]
            sh(n1, "nft", HOSTFW)
            if action is not None:
                cluster.restart("n1", HostSettings(endpoint_to_host=action))
            listeners = [f.listen(n1, port, 6) for port in (8000, 8001)]
            try:
                # Both listen (the host reaching itself is not the agent's business).
                for port in (8000, 8001):
                    wait_until(lambda port=port: f.connect(n1, HOST, port), f"listening on {port}")
                assert f.connect(cluster.pods["a"], HOST, 8000) is reaches_8000
                # The host's own table decides too, whatever the action.
                assert not f.connect(cluster.pods["a"], HOST, 8001)
                # Pod to pod is not the host's business: unchanged.
                assert cluster.reach("a", "c")
            finally:
                for p in listeners:
                    p.kill()
                    p.wait()
            assert "tcp dport 8001 drop" in sh(n1, "nft", "list", "table", "inet", "hostfw").stdout
        finally:
            cluster.close()
