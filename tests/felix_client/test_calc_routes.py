"""Exact route tables for crafted clusters."""

from __future__ import annotations

from typing import Any

from dataplane import MemoryDataplane
from felix_client.calc.calculator import Calculator
from felix_client.calc.full import compute

V3 = "/calico/resources/v3/projectcalico.org"


def node(name: str, ip: str, vxlan: str | None = None) -> tuple[str, dict[str, Any]]:
    spec: dict[str, Any] = {"bgp": {"ipv4Address": ip}}
    if vxlan:
        spec["ipv4VXLANTunnelAddr"] = vxlan
    return f"{V3}/nodes/{name}", {"kind": "Node", "metadata": {"name": name}, "spec": spec}


def pool(cidr: str, ipip: str = "Never", vxlan: str = "Never") -> tuple[str, dict[str, Any]]:
    name = cidr.replace("/", "-")
    return f"{V3}/ippools/{name}", {
        "kind": "IPPool",
        "metadata": {"name": name},
        "spec": {"cidr": cidr, "ipipMode": ipip, "vxlanMode": vxlan},
    }


def block(cidr: str, node_name: str) -> tuple[str, dict[str, Any]]:
    return f"/calico/ipam/v2/assignment/ipv4/block/{cidr.replace('/', '-')}", {
        "cidr": cidr,
        "affinity": f"host:{node_name}",
    }


def wep(
    name: str, node_name: str, ip: str, iface: str, **labels: str
) -> tuple[str, dict[str, Any]]:
    return f"{V3}/workloadendpoints/ns/{name}", {
        "kind": "WorkloadEndpoint",
        "metadata": {"name": name, "namespace": "ns", "labels": labels},
        "spec": {
            "node": node_name,
            "interfaceName": iface,
            "ipNetworks": [f"{ip}/32"],
            "profiles": ["kns.ns"],
        },
    }


def routes_for(items: list[tuple[str, dict[str, Any]]], me: str = "n1") -> list[str]:
    calc = Calculator(me)
    dp = MemoryDataplane()
    dp.apply(calc.apply(items))
    got = sorted(str(r) for r in dp.routes.values())
    # The from-scratch reference agrees.
    assert got == sorted(str(r) for r in compute(dict(items), me).routes.values())
    return got


CLUSTER = [
    node("n1", "192.168.0.1/24"),
    node("n2", "192.168.0.2/24"),  # same subnet as n1
    node("n3", "192.168.1.3/24", vxlan="10.244.3.0"),  # another subnet
    block("10.244.1.0/26", "n1"),
    block("10.244.2.0/26", "n2"),
    block("10.244.3.0/26", "n3"),
    wep("a", "n1", "10.244.1.5", "cali0000000a"),
    wep("b", "n1", "10.244.1.6", "cali0000000b"),
    wep("c", "n2", "10.244.2.7", "cali0000000c"),
    wep("borrowed", "n2", "10.244.3.9", "cali000000bb"),  # an IP from n3's block
]


def test_plain_routing_without_tunnels() -> None:
    assert routes_for([pool("10.244.0.0/16"), *CLUSTER]) == [
        "10.244.1.5/32 dev cali0000000a scope link",
        "10.244.1.6/32 dev cali0000000b scope link",
        "10.244.2.0/26 via 192.168.0.2",
        "10.244.3.0/26 via 192.168.1.3",
        "10.244.3.9/32 via 192.168.0.2",
        "blackhole 10.244.1.0/26",
    ]


def test_ipip_always() -> None:
    assert routes_for([pool("10.244.0.0/16", ipip="Always"), *CLUSTER]) == [
        "10.244.1.5/32 dev cali0000000a scope link",
        "10.244.1.6/32 dev cali0000000b scope link",
        "10.244.2.0/26 via 192.168.0.2 dev tunl0 onlink",
        "10.244.3.0/26 via 192.168.1.3 dev tunl0 onlink",
        "10.244.3.9/32 via 192.168.0.2 dev tunl0 onlink",
        "blackhole 10.244.1.0/26",
    ]


def test_cross_subnet_tunnels_only_to_other_subnets() -> None:
    routes = routes_for([pool("10.244.0.0/16", ipip="CrossSubnet"), *CLUSTER])
    assert "10.244.2.0/26 via 192.168.0.2" in routes  # same /24: direct
    assert "10.244.3.0/26 via 192.168.1.3 dev tunl0 onlink" in routes


def test_vxlan_goes_to_the_tunnel_address() -> None:
    routes = routes_for([pool("10.244.0.0/16", vxlan="Always"), *CLUSTER])
    assert "10.244.3.0/26 via 10.244.3.0 dev vxlan.calico onlink" in routes
    assert "10.244.2.0/26 via 192.168.0.2 dev vxlan.calico onlink" in routes  # no tunnel addr


def test_a_block_moving_between_nodes_updates_incrementally() -> None:
    calc = Calculator("n1")
    dp = MemoryDataplane()
    dp.apply(calc.apply([pool("10.244.0.0/16"), *CLUSTER]))
    key, value = block("10.244.2.0/26", "n1")  # n2's block is now ours
    batch = calc.apply([(key, value)])
    assert {str(r) for r in batch.routes_set.values()} == {
        "blackhole 10.244.2.0/26",
        "10.244.2.7/32 via 192.168.0.2",  # c's IP is now borrowed from our block
    }
    assert batch.routes_del == set()
    dp.apply(batch)
    batch = calc.apply([(wep("c", "n2", "10.244.2.7", "x")[0], None)])
    assert batch.routes_del == {"10.244.2.7/32"}
    assert not batch.routes_set


def test_unknown_node_address_means_no_route_yet() -> None:
    items = [pool("10.244.0.0/16"), node("n1", "192.168.0.1/24"), block("10.244.9.0/26", "n9")]
    assert routes_for(items) == []
    assert "10.244.9.0/26 via 192.168.0.9" in routes_for([*items, node("n9", "192.168.0.9/24")])


def test_pools_reach_the_dataplane_with_nat_outgoing_and_only_when_they_change() -> None:
    from dataplane.batch import PoolInfo

    calc = Calculator("n1")
    key, value = pool("10.65.0.0/16")
    value["spec"]["natOutgoing"] = True
    first = calc.apply([(key, value)])
    assert first.pools_set == {key: PoolInfo("10.65.0.0/16", True)}
    assert calc.apply([(key, value)]).pools_set == {}  # nothing changed
    value["spec"]["natOutgoing"] = False
    assert calc.apply([(key, value)]).pools_set == {key: PoolInfo("10.65.0.0/16", False)}
    value["spec"]["natOutgoing"] = "yes"  # not a boolean: refused whole, never a guess
    refused = calc.apply([(key, value)])
    assert (refused.pools_set, refused.pools_del) == ({}, {key})
    assert calc.errors["invalid_ip_pool"] == 1
    dp = MemoryDataplane()
    dp.apply(first)
    assert dp.pools == {key: PoolInfo("10.65.0.0/16", True)}
    dp.apply(refused)
    assert dp.pools == {}
