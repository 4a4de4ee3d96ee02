"""Validation of nodes, pools and Felix configuration, as Calico's API
validates them (per field; the first problem found is reported).  Endpoints
are read, and so validated, by `endpoints`."""

from __future__ import annotations

import ipaddress
from typing import Any

from calico_model.errors import Reason
from calico_model.felix_config_fields import FIELDS
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

ENCAP_MODES = ("Never", "Always", "CrossSubnet")
POOL_USES = ("Workload", "Tunnel", "LoadBalancer")
POOL_ASSIGNMENT_MODES = ("Automatic", "Manual")
_ADDRESS_TYPES = ("CalicoNodeIP", "InternalIP", "ExternalIP")


def check_node(spec: dict[str, Any]) -> None:
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
    for i, a in enumerate(items(spec.get("addresses"), "spec.addresses")):
        a = obj(a, f"spec.addresses[{i}]")
        interface_cidr(a.get("address"), f"spec.addresses[{i}].address")
        if a.get("type") is not None and a.get("type") not in _ADDRESS_TYPES:
            raise fail(
                Reason.BAD_FIELD, f"spec.addresses[{i}].type", f"not one of {_ADDRESS_TYPES}"
            )


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
    for f in ("natOutgoing", "disabled", "disableBGPExport"):
        if spec.get(f) is not None and not isinstance(spec.get(f), bool):
            raise fail(Reason.BAD_FIELD, f"spec.{f}", "must be true or false")
    _pool_selectors_and_uses(spec, modes)


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


def check_felix_config(spec: dict[str, Any], name: str) -> None:
    """A FelixConfiguration's spec: every field one Calico defines, each
    within its type, enumeration and range; the rules between fields."""
    for key, value in spec.items():
        field = FIELDS.get(key)
        if field is None:
            raise fail(Reason.UNKNOWN_FIELD, f"spec.{key[:60]}", "not a FelixConfiguration field")
        if (problem := field.problem(value)) is not None:
            raise fail(Reason.BAD_FIELD, f"spec.{key}", problem)
    if "routeTableRange" in spec and "routeTableRanges" in spec:
        raise fail(
            Reason.BAD_FIELD, "spec.routeTableRanges", "routeTableRange is set too: give one"
        )
    # The cluster-wide and per-node configurations apply by name; a selector
    # on them would say something else.
    if (name == "default" or name.startswith("node.")) and "nodeSelector" in spec:
        raise fail(Reason.BAD_FIELD, "spec.nodeSelector", f"not allowed on {name!r}")
