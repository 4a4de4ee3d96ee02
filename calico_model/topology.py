"""Nodes, IP pools and IPAM blocks: one reader for the server and the agent.

`read_node`, `read_pool` and `read_block` check a value as Calico's API
validates it (the first problem found is raised as InvalidValue naming the
field) and return the compact value the agent's route calculation keeps:
addresses in canonical text, networks as `Net`, encapsulation modes as
`EncapMode`.  The server calls them to decide what it serves; the agent
calls the same functions on what it receives.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from calico_model.addresses import Net, address_value, from_ipaddress, parse_net
from calico_model.errors import InvalidValue, Reason
from calico_model.fields import (
    cidr,
    fail,
    interface_cidr,
    ip,
    ip_of,
    is_int,
    items,
    mac,
    obj,
    selector,
    string,
)

POOL_USES = ("Workload", "Tunnel", "LoadBalancer")
POOL_ASSIGNMENT_MODES = ("Automatic", "Manual")
_ADDRESS_TYPES = ("CalicoNodeIP", "InternalIP", "ExternalIP")


class EncapMode(StrEnum):
    """A pool's `ipipMode` / `vxlanMode` (absent or empty: Never)."""

    NEVER = "Never"
    ALWAYS = "Always"
    CROSS_SUBNET = "CrossSubnet"


ENCAP_MODES = tuple(m.value for m in EncapMode)


@dataclass(frozen=True, slots=True)
class Node:
    """What routing needs of a Node: its address and subnet per family (from
    `bgp.ipv4Address`, else the first bare IPv4 InternalIP), its VXLAN
    tunnel addresses and MACs.  None where not given."""

    name: str
    ip: str | None
    subnet: Net | None
    vxlan_addr: str | None
    ip6: str | None = None
    subnet6: Net | None = None
    vxlan_addr6: str | None = None
    vxlan_mac: str | None = None
    vxlan_mac6: str | None = None

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
    """What routing and outgoing NAT need of an IPPool."""

    cidr: Net
    ipip: EncapMode
    vxlan: EncapMode
    nat_outgoing: bool = False


@dataclass(frozen=True, slots=True)
class Block:
    """An IPAM block: its CIDR and the node it is affine to (None: none, or
    an affinity that is not `host:<node>`)."""

    cidr: Net
    node: str | None


def read_block(name: str, value: dict[str, Any]) -> Block:
    """An IPAM block whose key names `name` (`10.0.0.0-26`): its CIDR must be
    the key's."""
    key_cidr = name.replace("-", "/", 1)
    block = cidr(value.get("cidr"), "cidr")
    if str(block) != str(cidr(key_cidr, "key")):
        raise InvalidValue(Reason.BLOCK_CIDR_MISMATCH, f"cidr: key says {key_cidr}, value {block}")
    aff = value.get("affinity")
    node = aff[5:] if isinstance(aff, str) and aff.startswith("host:") else None
    return Block(from_ipaddress(block), node)


def read_node(spec: dict[str, Any], meta: dict[str, Any]) -> Node:
    """A Node's spec: addresses of the right family, a VXLAN MAC."""
    bgp = obj(spec.get("bgp"), "spec.bgp")
    if spec.get("bgp") is not None and not any(bgp.values()):
        raise fail(Reason.BAD_FIELD, "spec.bgp", "must not be empty when given")
    if bgp.get("routeReflectorClusterID"):
        ip_of(bgp["routeReflectorClusterID"], "spec.bgp.routeReflectorClusterID", 4)
    wireguard = obj(spec.get("wireguard"), "spec.wireguard")
    for f, family in (("interfaceIPv4Address", 4), ("interfaceIPv6Address", 6)):
        if wireguard.get(f):
            ip_of(wireguard[f], f"spec.wireguard.{f}", family)
    for f, family in (("ipv4Address", 4), ("ipv6Address", 6)):
        given = bgp.get(f) is not None
        if given and interface_cidr(bgp[f], f"spec.bgp.{f}").version != family:
            raise fail(Reason.BAD_CIDR, f"spec.bgp.{f}", f"must be an IPv{family} address")
    for f, family in (
        ("ipv4VXLANTunnelAddr", 4),
        ("ipv6VXLANTunnelAddr", 6),
    ):
        if spec.get(f) and ip(spec[f], f"spec.{f}").version != family:
            raise fail(Reason.BAD_CIDR, f"spec.{f}", f"must be an IPv{family} address")
    ipip = bgp.get("ipv4IPIPTunnelAddr")
    if ipip and ip(ipip, "spec.bgp.ipv4IPIPTunnelAddr").version != 4:
        raise fail(Reason.BAD_CIDR, "spec.bgp.ipv4IPIPTunnelAddr", "must be an IPv4 address")
    for f in ("vxlanTunnelMACAddr", "vxlanTunnelMACAddrV6"):
        mac(spec.get(f), f"spec.{f}")
    internal: str | None = None
    for i, a in enumerate(items(spec.get("addresses"), "spec.addresses")):
        a = obj(a, f"spec.addresses[{i}]")
        text = a.get("address")
        n = interface_cidr(text, f"spec.addresses[{i}].address")  # so `text` is a string
        if a.get("type") is not None and a.get("type") not in _ADDRESS_TYPES:
            raise fail(
                Reason.BAD_FIELD, f"spec.addresses[{i}].type", f"not one of {_ADDRESS_TYPES}"
            )
        # The first bare IPv4 InternalIP: the node's address when BGP gives none.
        if internal is None and a.get("type") == "InternalIP" and n.version == 4:
            internal = None if "/" in str(text) else n.address
    ip4 = _interface(bgp.get("ipv4Address"))
    ip6 = _interface(bgp.get("ipv6Address"))
    return Node(
        name=meta["name"],
        ip=ip4[0] if ip4 else internal,
        subnet=ip4[1] if ip4 else None,
        vxlan_addr=_address(spec.get("ipv4VXLANTunnelAddr")),
        ip6=ip6[0] if ip6 else None,
        subnet6=ip6[1] if ip6 else None,
        vxlan_addr6=_address(spec.get("ipv6VXLANTunnelAddr")),
        vxlan_mac=spec.get("vxlanTunnelMACAddr") or None,
        vxlan_mac6=spec.get("vxlanTunnelMACAddrV6") or None,
    )


def _interface(text: Any) -> tuple[str, Net] | None:
    """(address, its subnet) of a checked `address/prefix`, None if not given."""
    if not text:
        return None
    subnet, addr = parse_net(text), parse_net(text.partition("/")[0])
    if subnet is None or addr is None:  # the caller checked it: cannot happen
        return None
    return addr.address, subnet


def _address(text: Any) -> str | None:
    """A checked bare address in canonical form, None if not given."""
    n = parse_net(text) if text else None
    return n.address if n is not None else None


def read_pool(spec: dict[str, Any], _meta: dict[str, Any]) -> Pool:
    """An IPPool's spec: a CIDR with no host bits, a block size for its
    family, encapsulation modes, no IPIP on IPv6 nor IPIP with VXLAN."""
    net = cidr(spec.get("cidr"), "spec.cidr", strict=True)
    size = spec.get("blockSize")
    lo, hi, default = (20, 32, 26) if net.version == 4 else (116, 128, 122)
    if size not in (None, 0) and (not is_int(size) or not lo <= size <= hi):
        raise fail(
            Reason.BAD_FIELD,
            "spec.blockSize",
            f"must be {lo}-{hi} for an IPv{net.version} pool",
        )
    link_local = ipaddress.ip_network("169.254.0.0/16" if net.version == 4 else "fe80::/10")
    if net.overlaps(link_local):
        raise fail(
            Reason.BAD_CIDR, "spec.cidr", f"overlaps the IPv{net.version} link-local {link_local}"
        )
    if spec.get("disabled") is not True and net.prefixlen > (size or default):
        raise fail(Reason.BAD_CIDR, "spec.cidr", "the pool is smaller than one block")
    modes = {}
    for f in ("ipipMode", "vxlanMode"):
        m = spec.get(f)
        if m not in (None, "", *ENCAP_MODES):
            raise fail(Reason.BAD_FIELD, f"spec.{f}", f"{m!r:.20} is not one of {ENCAP_MODES}")
        modes[f] = m if m else "Never"
    if modes["ipipMode"] != "Never" and modes["vxlanMode"] != "Never":
        raise fail(Reason.BAD_FIELD, "spec.vxlanMode", "IPIP and VXLAN cannot both be enabled")
    if net.version == 6 and modes["ipipMode"] != "Never":
        raise fail(Reason.BAD_FIELD, "spec.ipipMode", "IPIP is not supported on IPv6 pools")
    for f in ("natOutgoing", "disabled", "disableBGPExport"):
        if spec.get(f) is not None and not isinstance(spec.get(f), bool):
            raise fail(Reason.BAD_FIELD, f"spec.{f}", "must be true or false")
    _pool_selectors_and_uses(spec, modes)
    return Pool(
        from_ipaddress(net),
        EncapMode(modes["ipipMode"]),
        EncapMode(modes["vxlanMode"]),
        spec.get("natOutgoing") is True,
    )


def _pool_selectors_and_uses(spec: dict[str, Any], modes: dict[str, str]) -> None:
    for f in ("nodeSelector", "namespaceSelector"):
        text = string(spec.get(f), f"spec.{f}")
        if len(text) > 1024:
            raise fail(Reason.BAD_SELECTOR, f"spec.{f}", "longer than 1024 characters")
        if "global(" in text:
            raise fail(Reason.BAD_SELECTOR, f"spec.{f}", "global() is not valid on a pool")
        selector(text, f"spec.{f}")
    mode = spec.get("assignmentMode")
    if mode is not None and mode not in POOL_ASSIGNMENT_MODES:
        raise fail(
            Reason.BAD_FIELD, "spec.assignmentMode", f"{mode!r:.20} is not Automatic or Manual"
        )
    uses = items(spec.get("allowedUses"), "spec.allowedUses")
    for i, u in enumerate(uses):
        if u not in POOL_USES:
            raise fail(Reason.BAD_FIELD, f"spec.allowedUses[{i}]", f"{u!r:.20} is not a pool use")
    if len(set(uses)) != len(uses) or len(uses) > len(POOL_USES):
        raise fail(Reason.BAD_FIELD, "spec.allowedUses", "a use is given more than once")
    if "LoadBalancer" in uses:
        # Load balancer addresses are announced from every node, never
        # tunnelled to one, and never handed to a workload.
        if len(uses) > 1:
            raise fail(Reason.BAD_FIELD, "spec.allowedUses", "LoadBalancer must be alone")
        if spec.get("disableBGPExport") is True:
            raise fail(Reason.BAD_FIELD, "spec.disableBGPExport", "not with LoadBalancer")
        if modes["ipipMode"] != "Never" or modes["vxlanMode"] != "Never":
            raise fail(Reason.BAD_FIELD, "spec.allowedUses", "LoadBalancer with IPIP or VXLAN")
        if spec.get("nodeSelector", "all()") != "all()":
            raise fail(Reason.BAD_FIELD, "spec.nodeSelector", "must be all() for LoadBalancer")
    if "Tunnel" in uses and spec.get("namespaceSelector"):
        raise fail(Reason.BAD_FIELD, "spec.namespaceSelector", "not allowed on a Tunnel pool")
