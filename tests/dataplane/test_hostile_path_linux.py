"""Hostile strings through the whole path, on real kernels: hypothesis
writes them into etcd inside Calico resources (interface names, addresses,
CIDRs, ports, labels, selectors, log policies), typha serves what passes its
validation, and `felix-agent --dataplane linux` processes program their
nodes.  After each example, on node n1 (shaped as a node: eth0 on a LAN,
default route, its own `inet hostfw` table): the host's routes, its other
nftables tables and its host interfaces' settings are exactly as before,
and the agent has applied the example's revision (nothing froze it) with
no kernel error.  Bounded: a fixed number of examples, each waited on for
at most 30 s."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import wait_until
from tests.dataplane.fabric_cluster import fabric_cluster
from tests.dataplane.test_ownership_linux import HOSTFW, host_view
from tests.netns import sh

pytestmark = pytest.mark.integration

V3 = "/calico/resources/v3/projectcalico.org"
NASTY = [
    'x" : accept }; flush table inet hostfw #',
    "cali\n",
    "eth0",
    "lo",
    "cali0123456789abc",
    "fd00::1%x",
    "10.65.1.9%eth0",
    "0.0.0.0/0",
    "::/0",
    "192.168.77.0/24",
    "010",
    "99999",
    "1:0",
    "}",
    "; flush ruleset",
    '\\"',
    "cali*",
    "",
    "a" * 300,
]
text = st.one_of(st.sampled_from(NASTY), st.text(max_size=40))
maybe = st.one_of(text, st.integers(-1, 70000), st.none())


def resources(i: int, draw: Any) -> dict[str, Any]:
    iface, ip, cidr, port, label, sel, name = (draw(text) for _ in range(7))
    return {
        f"{V3}/workloadendpoints/default/h{i}": {
            "kind": "WorkloadEndpoint",
            "metadata": {"name": f"h{i}", "namespace": "default", "labels": {"group": label}},
            "spec": {
                "node": "n1",
                "interfaceName": iface,
                "ipNetworks": [ip],
                "profiles": ["shared"],
                "ports": [{"name": name, "protocol": "TCP", "port": draw(maybe)}],
            },
        },
        f"{V3}/globalnetworkpolicies/h{i}": {
            "kind": "GlobalNetworkPolicy",
            "metadata": {"name": f"h{i}"},
            "spec": {
                "selector": sel or "all()",
                "ingress": [
                    {"action": "Log", "source": {"nets": [cidr]}},
                    {"action": "Deny", "protocol": "TCP", "destination": {"ports": [port]}},
                    {"action": "Allow", "notICMP": {"type": draw(maybe)}},
                ],
            },
        },
        f"{V3}/hostendpoints/h{i}": {
            "kind": "HostEndpoint",
            "metadata": {"name": f"h{i}"},
            "spec": {"node": "n1", "interfaceName": draw(text), "expectedIPs": [draw(text)]},
        },
        f"/calico/ipam/v2/assignment/ipv4/block/10.66.{i % 250}.0-26": {
            "cidr": cidr,
            "affinity": "host:n2",
        },
        f"{V3}/ippools/h{i}": {
            "kind": "IPPool",
            "metadata": {"name": f"h{i}"},
            "spec": {"cidr": cidr},
        },
    }


def other_tables(ns: str) -> list[str]:
    listed = sh(ns, "nft", "list", "tables").stdout.split("\n")
    return sorted(t for t in listed if t and "felix_typha" not in t)


def test_hostile_values_change_nothing_outside_the_agents_table_and_routes(
    tmp_path: Path,
) -> None:
    with fabric_cluster(tmp_path) as c:
        n1 = c.nodes["n1"]
        assert sh(n1, "sh", "-c", f"echo '{HOSTFW}' | nft -f -").returncode == 0
        before, tables = host_view(n1), other_tables(n1)
        counter = iter(range(10**6))

        @settings(
            max_examples=25,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
        )
        @given(st.data())
        def example(data: st.DataObject) -> None:
            i = next(counter)
            items: dict[str, Any] = resources(i, data.draw)
            # A valid change in the same transaction: the revision every agent
            # must reach (and apply) whatever typha made of the rest.
            items[f"{V3}/profiles/marker"] = {
                "kind": "Profile",
                "metadata": {"name": "marker"},
                "spec": {"labelsToApply": {"example": str(i)}},
            }
            revision = c.put(items)
            for node in c.nodes:
                wait_until(
                    lambda node=node: c.status(node).get("applied_revision", 0) >= revision,
                    f"{node} applies revision {revision}",
                    limit=30,
                )
            assert host_view(n1) == before
            assert other_tables(n1) == tables
            for node in c.nodes:
                assert c.status(node)["kernel"]["errors"] == 0, c.status(node)["kernel"]
            c.put({k: None for k in items if "marker" not in k})

        example()
        assert c.reach("a", "c")  # the cluster still works
        assert c.reach("a", "e")
