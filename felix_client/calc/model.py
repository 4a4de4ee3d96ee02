"""Typed views of the synced state, parsed defensively.

The server validated values already; the agent still never trusts shapes: a
field of the wrong type is treated as absent rather than raising.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from typing import Any

from calico_model.protocols import protocol_number
from dataplane.batch import EndpointInfo, EndpointKind, PoolInfo, Vtep
from felix_client.calc.label_maps import intern

IPv4Net = ipaddress.IPv4Network
IPNet = ipaddress.IPv4Network | ipaddress.IPv6Network


def _dict(v: Any) -> dict[str, Any]:
    return v if isinstance(v, dict) else {}


def _list(v: Any) -> list[Any]:
    return v if isinstance(v, list) else []


def _str(v: Any) -> str:
    return v if isinstance(v, str) else ""


def net4(text: Any) -> IPv4Net | None:
    """`text` as an IPv4 network, or None if it is not one."""
    if not isinstance(text, str) or "%" in text:
        return None
    try:
        net = ipaddress.ip_network(text, strict=False)
    except ValueError:
        return None
    return net if isinstance(net, IPv4Net) else None


def net(text: Any) -> IPNet | None:
    """`text` as an IPv4 or IPv6 network (host bits dropped), or None.  An
    address zone (`fd00::1%eth0`), which Python reads and Calico and nft do
    not, is None too."""
    if not isinstance(text, str) or "%" in text:
        return None
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError:
        return None


def labels_of(meta: dict[str, Any]) -> dict[str, str]:
    """The string-valued labels of a `metadata` object (a shared map: do not
    change it)."""
    return intern({k: v for k, v in _dict(meta.get("labels")).items() if isinstance(v, str)})


@dataclass(frozen=True, slots=True)
class Node:
    """The fields of a Node resource the agent uses."""

    name: str
    ip: str | None
    subnet: IPv4Net | None
    vxlan_addr: str | None
    ip6: str | None = None
    subnet6: ipaddress.IPv6Network | None = None
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
        ip: str | None = None
        subnet: IPv4Net | None = None
        addr = _str(bgp.get("ipv4Address"))
        if addr:
            try:
                iface = ipaddress.ip_interface(addr)
                if iface.version == 4:
                    ip, subnet = str(iface.ip), IPv4Net(iface.network)
            except ValueError:
                pass
        if ip is None:
            for a in _list(spec.get("addresses")):
                a = _dict(a)
                cand = _str(a.get("address"))
                if a.get("type") == "InternalIP" and net4(cand) is not None and "/" not in cand:
                    ip = cand
                    break
        vx = _str(spec.get("ipv4VXLANTunnelAddr")) or None
        ip6: str | None = None
        subnet6: ipaddress.IPv6Network | None = None
        try:
            iface6 = ipaddress.ip_interface(_str(bgp.get("ipv6Address")))
            if iface6.version == 6:
                ip6, subnet6 = str(iface6.ip), ipaddress.IPv6Network(iface6.network)
        except ValueError:
            pass
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
        return None if subnet is None else ipaddress.ip_address(addr) in subnet


@dataclass(frozen=True, slots=True)
class Pool:
    """The fields of an IPPool the agent uses."""

    cidr: IPNet
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

    cidr: IPNet
    node: str | None

    @staticmethod
    def parse(value: dict[str, Any]) -> Block | None:
        """Read a block value; None if its CIDR is unusable."""
        cidr = net(value.get("cidr"))
        if cidr is None:
            return None
        aff = _str(value.get("affinity"))
        return Block(cidr, aff[5:] if aff.startswith("host:") else None)


@dataclass(frozen=True, slots=True)
class NamedPort:
    """One entry of an endpoint's `spec.ports`: a port name rules may use."""

    name: str
    protocol: int
    port: int


@dataclass(frozen=True, slots=True)
class Endpoint:
    """The fields of a workload or host endpoint the agent uses."""

    node: str
    namespace: str
    labels: dict[str, str]
    nets: tuple[IPNet, ...]
    iface: str
    profiles: tuple[str, ...]
    ports: tuple[NamedPort, ...] = ()
    host: bool = False
    # `nets` as IP set members, per family: rendered once here, since every
    # selector that matches the endpoint asks for them.
    members4: tuple[str, ...] = field(default=(), compare=False)
    members6: tuple[str, ...] = field(default=(), compare=False)

    def __post_init__(self) -> None:
        if self.nets and not (self.members4 or self.members6):
            object.__setattr__(self, "members4", tuple(str(n) for n in self.nets if n.version == 4))
            object.__setattr__(self, "members6", tuple(str(n) for n in self.nets if n.version == 6))

    @staticmethod
    def parse(value: dict[str, Any], *, host: bool = False) -> Endpoint:
        """Read an endpoint value (`host`: a HostEndpoint, whose addresses are `expectedIPs`);
        fields of the wrong type count as absent."""
        meta, spec = _dict(value.get("metadata")), _dict(value.get("spec"))
        raw = spec.get("expectedIPs") if host else spec.get("ipNetworks")
        nets = tuple(n for n in (net(x) for x in _list(raw)) if n is not None)
        ports = []
        for p in _list(spec.get("ports")):
            p = _dict(p)
            name, number = _str(p.get("name")), p.get("port")
            proto = protocol_number(p.get("protocol"))
            if name and proto is not None and isinstance(number, int) and 1 <= number <= 65535:
                ports.append(NamedPort(name, proto, number))
        return Endpoint(
            node=_str(spec.get("node")),
            namespace=_str(meta.get("namespace")),
            labels=labels_of(meta),
            nets=nets,
            iface=_str(spec.get("interfaceName")),
            profiles=tuple(p for p in _list(spec.get("profiles")) if isinstance(p, str)),
            ports=tuple(ports),
            host=host,
        )

    def info(self) -> EndpointInfo:
        """Where this endpoint's chains attach, for the dataplane."""
        kind = EndpointKind.HOST if self.host else EndpointKind.WORKLOAD
        return EndpointInfo(kind, self.iface, tuple(str(n.network_address) for n in self.nets))

    def addresses(self, family: int) -> tuple[str, ...]:
        """The endpoint's addresses of one family, as IP set members."""
        return self.members4 if family == 4 else self.members6
