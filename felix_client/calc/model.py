"""Typed views of the synced state.

Every value reaches the calculation through the server's own validation
(calico_model.validation.check_resource, called by the Calculator's input
gate): the agent accepts exactly what the server serves and treats anything
else as absent, counted.  Endpoints are the model that check returns
(calico_model.endpoints); nodes, pools and blocks are read here from values
already checked.  Networks are compact `Net` values (calico_model.addresses).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from calico_model.addresses import Net, address_value, parse_net
from calico_model.endpoints import Endpoint, NamedPort
from calico_model.label_maps import intern
from dataplane.batch import EndpointInfo, EndpointKind, PoolInfo, Vtep

__all__ = ["Block", "Endpoint", "IPNet", "NamedPort", "Node", "Pool"]

IPNet = Net


def _dict(v: Any) -> dict[str, Any]:
    return v if isinstance(v, dict) else {}


def _list(v: Any) -> list[Any]:
    return v if isinstance(v, list) else []


def _str(v: Any) -> str:
    return v if isinstance(v, str) else ""


# `text` as an IPv4 or IPv6 network (host bits dropped), or None (an address
# zone, which Python reads and Calico and nft do not, is None too).
net = parse_net


def net4(text: Any) -> Net | None:
    """`text` as an IPv4 network, or None if it is not one."""
    n = parse_net(text)
    return n if n is not None and n.version == 4 else None


def _interface(text: str, family: int) -> tuple[str, Net] | None:
    """(address, its subnet) of an `address/prefix` of one family."""
    subnet, addr = parse_net(text), parse_net(text.partition("/")[0])
    if subnet is None or addr is None or subnet.version != family:
        return None
    return addr.address, subnet


def labels_of(meta: dict[str, Any]) -> dict[str, str]:
    """The string-valued labels of a `metadata` object (a shared map: do not
    change it)."""
    return intern({k: v for k, v in _dict(meta.get("labels")).items() if isinstance(v, str)})


def endpoint_info(ep: Endpoint) -> EndpointInfo:
    """Where an endpoint's chains attach, for the dataplane."""
    kind = EndpointKind.HOST if ep.host else EndpointKind.WORKLOAD
    return EndpointInfo(kind, ep.iface, tuple(n.address for n in ep.nets))


@dataclass(frozen=True, slots=True)
class Node:
    """The fields of a Node resource the agent uses."""

    name: str
    ip: str | None
    subnet: Net | None
    vxlan_addr: str | None
    ip6: str | None = None
    subnet6: Net | None = None
    vxlan_addr6: str | None = None
    vxlan_mac: str | None = None
    vxlan_mac6: str | None = None

    def vtep(self) -> Vtep | None:
        """The node's VXLAN tunnel endpoints, if it has a complete one of
        either family."""
        v4 = (self.ip, self.vxlan_addr, self.vxlan_mac)
        v6 = (self.ip6, self.vxlan_addr6, self.vxlan_mac6)
        t4 = (v4[0] or "", v4[1] or "", (v4[2] or "").lower()) if all(v4) else ("", "", "")
        t6 = (v6[0] or "", v6[1] or "", (v6[2] or "").lower()) if all(v6) else ("", "", "")
        if not any(t4) and not any(t6):
            return None
        return Vtep(self.name, *t4, *t6)

    @staticmethod
    def parse(value: dict[str, Any]) -> Node:
        """Read a Node value; fields of the wrong type count as absent."""
        meta, spec = _dict(value.get("metadata")), _dict(value.get("spec"))
        bgp = _dict(spec.get("bgp"))
        ip, subnet = _interface(_str(bgp.get("ipv4Address")), 4) or (None, None)
        if ip is None:
            for a in _list(spec.get("addresses")):
                a = _dict(a)
                cand = _str(a.get("address"))
                if a.get("type") == "InternalIP" and net4(cand) is not None and "/" not in cand:
                    ip = cand
                    break
        vx = _str(spec.get("ipv4VXLANTunnelAddr")) or None
        ip6, subnet6 = _interface(_str(bgp.get("ipv6Address")), 6) or (None, None)
        vx6 = _str(spec.get("ipv6VXLANTunnelAddr")) or None
        mac = _str(spec.get("vxlanTunnelMACAddr")) or None
        mac6 = _str(spec.get("vxlanTunnelMACAddrV6")) or None
        return Node(_str(meta.get("name")), ip, subnet, vx, ip6, subnet6, vx6, mac, mac6)

    def address(self, family: int) -> str | None:
        """The node's address of one family."""
        return self.ip if family == 4 else self.ip6

    def in_subnet(self, family: int, addr: str) -> bool | None:
        """Whether `addr` is in this node's subnet of that family (None: unknown)."""
        subnet = self.subnet if family == 4 else self.subnet6
        found = address_value(addr)
        if subnet is None or found is None:
            return None
        return subnet.contains_address(*found)


@dataclass(frozen=True, slots=True)
class Pool:
    """The fields of an IPPool the agent uses."""

    cidr: Net
    ipip: str  # Never, Always, CrossSubnet
    vxlan: str
    nat_outgoing: bool = False

    def info(self) -> PoolInfo:
        """What the dataplane needs of it."""
        return PoolInfo(str(self.cidr), self.nat_outgoing)

    @staticmethod
    def parse(value: dict[str, Any]) -> Pool | None:
        """Read an IPPool value; None if its CIDR is unusable."""
        spec = _dict(value.get("spec"))
        cidr = net(spec.get("cidr"))
        if cidr is None:
            return None
        return Pool(
            cidr,
            _str(spec.get("ipipMode")) or "Never",
            _str(spec.get("vxlanMode")) or "Never",
            spec.get("natOutgoing") is True,
        )


@dataclass(frozen=True, slots=True)
class Block:
    """An IPAM block: its CIDR and the node it is affine to."""

    cidr: Net
    node: str | None

    @staticmethod
    def parse(value: dict[str, Any]) -> Block | None:
        """Read a block value; None if its CIDR is unusable."""
        cidr = net(value.get("cidr"))
        if cidr is None:
            return None
        aff = _str(value.get("affinity"))
        return Block(cidr, aff[5:] if aff.startswith("host:") else None)
