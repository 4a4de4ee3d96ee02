"""Validation of nodes, pools, endpoints and Felix configuration, as Calico's
API validates them (per field; the first problem found is reported)."""

from __future__ import annotations

import ipaddress
from typing import Any

from calico_model.errors import Reason
from calico_model.felix_config_fields import FIELDS
from calico_model.fields import (
    INTERFACE,
    cidr,
    endpoint_port_name,
    fail,
    interface_cidr,
    ip,
    is_int,
    items,
    name,
    obj,
    string,
)

ENCAP_MODES = ("Never", "Always", "CrossSubnet")
_ADDRESS_TYPES = ("CalicoNodeIP", "InternalIP", "ExternalIP")


def check_node(spec: dict[str, Any]) -> None:
    """A Node's spec: addresses of the right family, a VXLAN MAC."""
    bgp = obj(spec.get("bgp"), "spec.bgp")
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
        _mac(spec.get(f), f"spec.{f}")
    for i, a in enumerate(items(spec.get("addresses"), "spec.addresses")):
        a = obj(a, f"spec.addresses[{i}]")
        interface_cidr(a.get("address"), f"spec.addresses[{i}].address")
        if a.get("type") is not None and a.get("type") not in _ADDRESS_TYPES:
            raise fail(
                Reason.BAD_FIELD, f"spec.addresses[{i}].type", f"not one of {_ADDRESS_TYPES}"
            )


def _mac(v: Any, path: str) -> None:
    if v is None or v == "":
        return
    parts = v.split(":") if isinstance(v, str) else []
    if len(parts) != 6 or not all(len(p) == 2 and _hex(p) for p in parts):
        raise fail(Reason.BAD_FIELD, path, f"{v!r:.30} is not a MAC address")


def _hex(text: str) -> bool:
    return all(c in "0123456789abcdefABCDEF" for c in text)


def check_pool(spec: dict[str, Any]) -> None:
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
    for f in ("natOutgoing", "disabled"):
        if spec.get(f) is not None and not isinstance(spec.get(f), bool):
            raise fail(Reason.BAD_FIELD, f"spec.{f}", "must be true or false")


def check_workload(spec: dict[str, Any]) -> None:
    """A WorkloadEndpoint's spec: single addresses, interface and node names,
    profiles, named ports."""
    for i, n in enumerate(items(spec.get("ipNetworks"), "spec.ipNetworks", Reason.BAD_CIDR)):
        net = cidr(n, f"spec.ipNetworks[{i}]")
        if net.num_addresses != 1:
            raise fail(Reason.BAD_CIDR, f"spec.ipNetworks[{i}]", "must be a single address")
    _endpoint_common(spec)
    for i, p in enumerate(items(spec.get("ports"), "spec.ports", Reason.BAD_PORT)):
        where = f"spec.ports[{i}]"
        p = obj(p, where, Reason.BAD_PORT)
        if p.get("name") or not p.get("hostPort"):
            endpoint_port_name(p.get("name"), f"{where}.name")
        _endpoint_port(p, where)


def check_host_endpoint(spec: dict[str, Any]) -> None:
    """A HostEndpoint's spec: a node, an interface name or expected IPs."""
    name(spec.get("node"), "spec.node")
    if not spec.get("interfaceName") and not spec.get("expectedIPs"):
        raise fail(Reason.BAD_FIELD, "spec.interfaceName", "give interfaceName or expectedIPs")
    for i, a in enumerate(items(spec.get("expectedIPs"), "spec.expectedIPs", Reason.BAD_CIDR)):
        ip(a, f"spec.expectedIPs[{i}]")
    iface = spec.get("interfaceName")
    if iface not in (None, "", "*") and (not isinstance(iface, str) or not INTERFACE.match(iface)):
        raise fail(Reason.BAD_NAME, "spec.interfaceName", f"{iface!r:.30} is not an interface name")
    for f in ("profiles",):
        for i, p in enumerate(items(spec.get(f), f"spec.{f}")):
            name(p, f"spec.{f}[{i}]")
    for i, p in enumerate(items(spec.get("ports"), "spec.ports", Reason.BAD_PORT)):
        where = f"spec.ports[{i}]"
        p = obj(p, where, Reason.BAD_PORT)
        endpoint_port_name(p.get("name"), f"{where}.name")
        _endpoint_port(p, where)


def _endpoint_common(spec: dict[str, Any]) -> None:
    if spec.get("node") is not None:
        name(spec.get("node"), "spec.node")
    iface = string(spec.get("interfaceName"), "spec.interfaceName")
    if iface and not INTERFACE.match(iface):
        raise fail(
            Reason.BAD_NAME, "spec.interfaceName", f"{iface[:30]!r} is not an interface name"
        )
    for i, p in enumerate(items(spec.get("profiles"), "spec.profiles")):
        name(p, f"spec.profiles[{i}]")


def _endpoint_port(p: dict[str, Any], where: str) -> None:
    if p.get("protocol") not in ("TCP", "UDP", "SCTP", 6, 17, 132):
        raise fail(Reason.BAD_PROTOCOL, f"{where}.protocol", "must be TCP, UDP or SCTP")
    for f in ("port", "hostPort"):
        v = p.get(f)
        if f == "hostPort" and v in (None, 0):
            continue
        if not isinstance(v, int) or isinstance(v, bool) or not 1 <= v <= 65535:
            raise fail(Reason.BAD_PORT, f"{where}.{f}", f"{v!r:.20} is not in 1-65535")


def check_felix_config(spec: dict[str, Any]) -> None:
    """A FelixConfiguration's spec: every field one Calico defines, each
    within its type, enumeration and range."""
    for key, value in spec.items():
        field = FIELDS.get(key)
        if field is None:
            raise fail(Reason.UNKNOWN_FIELD, f"spec.{key[:60]}", "not a FelixConfiguration field")
        if (problem := field.problem(value)) is not None:
            raise fail(Reason.BAD_FIELD, f"spec.{key}", problem)
