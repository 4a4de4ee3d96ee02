"""The whole system on a fabric of namespaces (`fabric_cluster`): agents
inside their nodes reach typha over the underlay and program their own
namespaces; pods reach each other as the policy says."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import wait_until
from tests.dataplane.fabric_cluster import fabric_cluster
from tests.dataplane.test_linux_dataplane import V3

pytestmark = pytest.mark.integration

DENY_ICMP_KEY = f"{V3}/globalnetworkpolicies/deny-icmp"
# Pods a, c (n1) and e (n2) are in group "shared", which otherwise admits itself.
DENY_ICMP = {
    "kind": "GlobalNetworkPolicy",
    "metadata": {"name": "deny-icmp"},
    "spec": {
        "selector": "group == 'shared'",
        "types": ["Ingress"],
        "ingress": [{"action": "Deny", "protocol": "ICMP"}],
    },
}


@pytest.mark.parametrize("vxlan", [False, True], ids=["routed", "vxlan"])
def test_agents_inside_their_nodes_reach_typha_over_the_fabric(tmp_path: Path, vxlan: bool) -> None:
    with fabric_cluster(tmp_path, vxlan) as c:
        wait_until(lambda: c.reach("a", "e"), "a reaches e across the fabric")
        assert c.reach("a", "c")
        assert not c.reach("a", "b")
        assert not c.reach("a", "d")
        for n in c.nodes:
            assert c.status(n)["kernel"]["errors"] == 0

        c.put({DENY_ICMP_KEY: DENY_ICMP})
        wait_until(lambda: not c.reach("a", "e") and not c.reach("a", "c"), "the deny is in force")
        c.put({DENY_ICMP_KEY: None})
        wait_until(lambda: c.reach("a", "e"), "deleting the policy restores it")
