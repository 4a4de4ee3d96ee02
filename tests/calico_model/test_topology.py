"""The one reader of nodes, IP pools and IPAM blocks: what validation returns
is the value the agent's routes are calculated from."""

from __future__ import annotations

from typing import Any

import pytest

from calico_model.addresses import parse_net
from calico_model.errors import InvalidValue, Reason
from calico_model.keys import DEFAULT_PREFIX, KeyLayout
from calico_model.topology import Block, EncapMode, Node, Pool
from calico_model.validation import Resource, check_resource

V3 = "/calico/resources/v3/projectcalico.org"
LAYOUT = KeyLayout(DEFAULT_PREFIX)


def read(key: str, value: dict[str, Any]) -> Resource | None:
    rk = LAYOUT.parse(key)
    assert rk is not None, key
    return check_resource(rk, value)


def node(**spec: Any) -> Resource | None:
    return read(f"{V3}/nodes/n1", {"kind": "Node", "metadata": {"name": "n1"}, "spec": spec})


def pool(**spec: Any) -> Resource | None:
    return read(f"{V3}/ippools/p", {"kind": "IPPool", "metadata": {"name": "p"}, "spec": spec})


def test_a_node_is_read_with_its_addresses_canonical() -> None:
    n = node(
        bgp={"ipv4Address": "192.168.0.7/24", "ipv6Address": "FD00:0::7/64"},
        ipv4VXLANTunnelAddr="10.65.0.1",
        ipv6VXLANTunnelAddr="FD00:1::1",
        vxlanTunnelMACAddr="EE:EE:EE:EE:EE:01",
    )
    assert n == Node(
        name="n1",
        ip="192.168.0.7",
        subnet=parse_net("192.168.0.0/24"),
        vxlan_addr="10.65.0.1",
        ip6="fd00::7",
        subnet6=parse_net("fd00::/64"),
        vxlan_addr6="fd00:1::1",  # canonical, as the kernel and the VTEP tables write it
        vxlan_mac="EE:EE:EE:EE:EE:01",
    )


def test_without_a_bgp_address_the_first_bare_ipv4_internal_ip_is_the_nodes() -> None:
    n = node(
        addresses=[
            {"address": "fd00::9", "type": "InternalIP"},
            {"address": "10.0.0.8/24", "type": "InternalIP"},
            {"address": "10.0.0.5", "type": "ExternalIP"},
            {"address": "10.0.0.9", "type": "InternalIP"},
            {"address": "10.0.0.10", "type": "InternalIP"},
        ]
    )
    assert isinstance(n, Node)
    assert (n.ip, n.subnet, n.ip6) == ("10.0.0.9", None, None)
    assert node(addresses=[{"address": "10.0.0.8/24", "type": "InternalIP"}]) == Node(
        "n1", None, None, None
    )


def test_a_pool_is_read_with_its_modes_as_enums() -> None:
    p = pool(cidr="10.244.0.0/16", vxlanMode="CrossSubnet", natOutgoing=True)
    assert p == Pool(parse_net("10.244.0.0/16"), EncapMode.NEVER, EncapMode.CROSS_SUBNET, True)
    p = pool(cidr="fd00:10::/48", ipipMode="")
    assert p == Pool(parse_net("fd00:10::/48"), EncapMode.NEVER, EncapMode.NEVER, False)


@pytest.mark.parametrize(
    ("affinity", "owner"),
    [("host:n1", "n1"), ("virtual:x", None), (None, None), (7, None)],
)
def test_a_block_is_read_with_the_node_it_is_affine_to(affinity: Any, owner: str | None) -> None:
    value = {"cidr": "10.65.1.0/26", "affinity": affinity}
    b = read("/calico/ipam/v2/assignment/ipv4/block/10.65.1.0-26", value)
    assert b == Block(parse_net("10.65.1.0/26"), owner)


def test_a_block_whose_cidr_is_not_its_keys_is_refused() -> None:
    with pytest.raises(InvalidValue) as info:
        read("/calico/ipam/v2/assignment/ipv4/block/10.65.1.0-26", {"cidr": "10.65.2.0/26"})
    assert info.value.reason == Reason.BLOCK_CIDR_MISMATCH
