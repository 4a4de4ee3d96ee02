"""Workload and host endpoints: one reader for the server and the agent.

`read_workload` and `read_host_endpoint` check a spec the way validation
must (every problem raised as InvalidValue naming the field) and return the
compact value the agent's calculation keeps.  The server calls them to decide
what it serves; the agent calls the same functions on what it receives, so
the two cannot disagree on which endpoints exist or what addresses they
have.  The metadata (name, namespace, labels) is checked by the caller
(validation.check_resource) before these run.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from calico_model.addresses import Net, parse_net
from calico_model.errors import Reason
from calico_model.fields import (
    INTERFACE,
    cidr,
    endpoint_port_name,
    fail,
    ip,
    ip_of,
    items,
    mac,
    masked,
    name,
    obj,
    string,
)
from calico_model.label_maps import LabelMap, intern
from calico_model.protocols import protocol_number
from calico_model.shared_values import share

_CONTAINER_ID = re.compile(r"^[a-zA-Z0-9]([-a-zA-Z0-9]*[a-zA-Z0-9])?\Z")
_NAMED_FIELDS = ("orchestrator", "workload", "pod", "endpoint", "serviceAccountName")
_PORT_PROTOCOLS = ("TCP", "UDP", "SCTP", 6, 17, 132)


@dataclass(frozen=True, slots=True)
class NamedPort:
    """One entry of an endpoint's `spec.ports` that rules may name."""

    name: str
    protocol: int
    port: int


@dataclass(frozen=True, slots=True)
class Endpoint:
    """What a workload or host endpoint means to policy and routing.  `labels`
    is a shared map (never change it); `nets` are single addresses for a
    workload, a host endpoint's expected IPs for a host endpoint."""

    node: str
    namespace: str
    labels: LabelMap
    nets: tuple[Net, ...]
    iface: str
    profiles: tuple[str, ...]
    ports: tuple[NamedPort, ...] = ()
    host: bool = False

    def addresses(self, family: int) -> tuple[str, ...]:
        """The endpoint's networks of one family, as IP set members."""
        return tuple(n.text for n in self.nets if n.version == family)


def read_workload(spec: dict[str, Any], meta: dict[str, Any]) -> Endpoint:
    """A WorkloadEndpoint, or InvalidValue naming the first bad field."""
    nets = _nets(spec.get("ipNetworks"), "spec.ipNetworks", single=True)
    iface = string(spec.get("interfaceName"), "spec.interfaceName")
    if not iface:
        raise fail(Reason.BAD_NAME, "spec.interfaceName", "a workload endpoint needs one")
    if not INTERFACE.match(iface):
        raise fail(
            Reason.BAD_NAME, "spec.interfaceName", f"{iface[:30]!r} is not an interface name"
        )
    node = spec.get("node")
    if node is not None:
        name(node, "spec.node")
    profiles = _profiles(spec)
    for f in _NAMED_FIELDS:
        if spec.get(f):
            name(spec[f], f"spec.{f}")
    cid = string(spec.get("containerID"), "spec.containerID")
    if cid and not _CONTAINER_ID.match(cid):
        raise fail(Reason.BAD_NAME, "spec.containerID", f"{cid[:60]!r} is not a container ID")
    for f, family in (("ipv4Gateway", 4), ("ipv6Gateway", 6)):
        if spec.get(f):
            ip_of(spec[f], f"spec.{f}", family)
    mac(spec.get("mac"), "spec.mac")
    ports = _ports(spec, host_ports=True)
    for i, c in enumerate(
        items(spec.get("allowSpoofedSourcePrefixes"), "spec.allowSpoofedSourcePrefixes")
    ):
        _net(c, f"spec.allowSpoofedSourcePrefixes[{i}]")
    _ip_nats(spec, nets)
    return Endpoint(
        node=share(node or ""),
        namespace=share(meta.get("namespace") or ""),
        labels=_labels(meta),
        nets=nets,
        iface=iface,
        profiles=profiles,
        ports=ports,
    )


def read_host_endpoint(spec: dict[str, Any], meta: dict[str, Any]) -> Endpoint:
    """A HostEndpoint, or InvalidValue naming the first bad field."""
    name(spec.get("node"), "spec.node")
    node = string(spec.get("node"), "spec.node")
    if not spec.get("interfaceName") and not spec.get("expectedIPs"):
        raise fail(Reason.BAD_FIELD, "spec.interfaceName", "give interfaceName or expectedIPs")
    nets = _nets(spec.get("expectedIPs"), "spec.expectedIPs", single=True, bare=True)
    iface = spec.get("interfaceName")
    if iface not in (None, "", "*") and (not isinstance(iface, str) or not INTERFACE.match(iface)):
        raise fail(Reason.BAD_NAME, "spec.interfaceName", f"{iface!r:.30} is not an interface name")
    profiles = _profiles(spec)
    ports = _ports(spec, host_ports=False)
    return Endpoint(
        node=share(node),
        namespace="",
        labels=_labels(meta),
        nets=nets,
        iface=iface or "",
        profiles=profiles,
        ports=ports,
        host=True,
    )


def _labels(meta: dict[str, Any]) -> LabelMap:
    return intern(meta.get("labels") or {})


def _net(v: Any, path: str) -> Net:
    """`v` as a network; what `parse_net` refuses `fields.cidr` refuses too,
    with the message it gives."""
    n = parse_net(v)
    if n is None:
        cidr(v, path)
        raise fail(Reason.BAD_CIDR, path, f"{v!r:.60} is not a CIDR or address")
    return n


def _nets(v: Any, path: str, *, single: bool, bare: bool = False) -> tuple[Net, ...]:
    out = []
    for i, text in enumerate(items(v, path, Reason.BAD_CIDR)):
        where = f"{path}[{i}]"
        n = _net(text, where)
        if bare and "/" in text:
            ip(text, where)  # the message ipaddress gives for a prefix on an address
        if single and not n.single:
            raise fail(Reason.BAD_CIDR, where, "must be a single address")
        out.append(n)
    return tuple(out)


def _profiles(spec: dict[str, Any]) -> tuple[str, ...]:
    profiles = items(spec.get("profiles"), "spec.profiles")
    for i, p in enumerate(profiles):
        name(p, f"spec.profiles[{i}]")
    return share(tuple(profiles))


def _ports(spec: dict[str, Any], *, host_ports: bool) -> tuple[NamedPort, ...]:
    out = []
    for i, p in enumerate(items(spec.get("ports"), "spec.ports", Reason.BAD_PORT)):
        where = f"spec.ports[{i}]"
        p = obj(p, where, Reason.BAD_PORT)
        named = bool(p.get("name")) or not host_ports or not p.get("hostPort")
        if named:
            endpoint_port_name(p.get("name"), f"{where}.name")
        proto = p.get("protocol")
        if proto not in _PORT_PROTOCOLS:
            raise fail(Reason.BAD_PROTOCOL, f"{where}.protocol", "must be TCP, UDP or SCTP")
        for f in ("port", "hostPort"):
            v = p.get(f)
            if f == "hostPort" and v in (None, 0):
                continue
            if not isinstance(v, int) or isinstance(v, bool) or not 1 <= v <= 65535:
                raise fail(Reason.BAD_PORT, f"{where}.{f}", f"{v!r:.20} is not in 1-65535")
        if host_ports and p.get("hostIP"):
            masked(p["hostIP"], f"{where}.hostIP")
        number = protocol_number(proto)
        if p.get("name") and number is not None:
            out.append(NamedPort(p["name"], number, p["port"]))
    return share(tuple(out))


def _ip_nats(spec: dict[str, Any], nets: tuple[Net, ...]) -> None:
    """Each NAT maps an address of the endpoint to one of the same family."""
    for i, nat in enumerate(items(spec.get("ipNATs"), "spec.ipNATs", Reason.BAD_CIDR)):
        where = f"spec.ipNATs[{i}]"
        nat = obj(nat, where, Reason.BAD_CIDR)
        internal = ip(nat.get("internalIP"), f"{where}.internalIP")
        external = ip(nat.get("externalIP"), f"{where}.externalIP")
        if internal.version != external.version:
            raise fail(Reason.BAD_CIDR, where, "internal and external addresses of two families")
        value = int(internal)
        if not any(n.contains_address(value, internal.version) for n in nets):
            raise fail(Reason.BAD_CIDR, f"{where}.internalIP", "not one of the endpoint's networks")
