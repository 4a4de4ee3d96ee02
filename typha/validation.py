"""Validation of datastore values before they enter the synced state.

`validate(key, raw)` returns the value's canonical JSON bytes, or raises
InvalidValue with a short `reason` used as the metric label.  Anything that
fails is treated as absent from the state.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Any

import orjson

from snapshot import canonical_json
from typha.errors import SelectorError
from typha.selector import parse as parse_selector

V3 = "resources/v3/projectcalico.org/"

# plural resource name in the key -> (kind, namespaced)
V3_KINDS: dict[str, tuple[str, bool]] = {
    "nodes": ("Node", False),
    "ippools": ("IPPool", False),
    "workloadendpoints": ("WorkloadEndpoint", True),
    "hostendpoints": ("HostEndpoint", False),
    "networkpolicies": ("NetworkPolicy", True),
    "globalnetworkpolicies": ("GlobalNetworkPolicy", False),
    "profiles": ("Profile", False),
    "felixconfigurations": ("FelixConfiguration", False),
}
BLOCK_PREFIX = "ipam/v2/assignment/ipv4/block/"


class InvalidValue(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class Validated:
    canonical: bytes
    value: dict[str, Any]


def validate(key: str, raw: bytes, prefix: str = "/calico/") -> Validated:
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidValue("not_json", str(exc)[:120]) from None
    if not isinstance(value, dict):
        raise InvalidValue("not_object", f"value is a JSON {type(value).__name__}")
    rel = key[len(prefix) :] if key.startswith(prefix) else key
    if rel.startswith(V3):
        _check_v3(rel[len(V3) :], value)
    elif rel.startswith(BLOCK_PREFIX):
        _check_block(rel[len(BLOCK_PREFIX) :], value)
    return Validated(canonical_json(value), value)


def _check_v3(rest: str, value: dict[str, Any]) -> None:
    plural, _, name_part = rest.partition("/")
    known = V3_KINDS.get(plural)
    if known is None:
        return  # unknown resource kinds pass through as plain JSON objects
    kind, namespaced = known
    if value.get("kind") != kind:
        raise InvalidValue("kind_mismatch", f"key says {kind}, value says {value.get('kind')!r}")
    meta = value.get("metadata")
    if not isinstance(meta, dict):
        raise InvalidValue("bad_metadata", "metadata must be an object")
    if namespaced:
        ns, _, name = name_part.partition("/")
        if meta.get("namespace") != ns:
            raise InvalidValue(
                "namespace_mismatch", f"key namespace {ns!r} != {meta.get('namespace')!r}"
            )
    else:
        name = name_part
    if meta.get("name") != name:
        raise InvalidValue("name_mismatch", f"key name {name!r} != {meta.get('name')!r}")
    spec = value.get("spec")
    if not isinstance(spec, dict):
        raise InvalidValue("bad_spec", "spec must be an object")
    if kind == "IPPool":
        _cidr(spec.get("cidr"), "IPPool spec.cidr")
    elif kind == "WorkloadEndpoint":
        for net in _list(spec, "ipNetworks", "bad_cidr"):
            _cidr(net, "ipNetworks")
    elif kind in ("NetworkPolicy", "GlobalNetworkPolicy"):
        _selector(spec.get("selector"), "spec.selector")
        if kind == "GlobalNetworkPolicy":
            _selector(spec.get("namespaceSelector"), "spec.namespaceSelector")
        _rules(spec)
    elif kind == "Profile":
        _rules(spec)
    elif kind == "Node":
        bgp = spec.get("bgp")
        if isinstance(bgp, dict) and bgp.get("ipv4Address") is not None:
            _cidr(bgp.get("ipv4Address"), "spec.bgp.ipv4Address")


ACTIONS = frozenset({"Allow", "Deny", "Log", "Pass"})
PROTOCOLS = frozenset({"TCP", "UDP", "ICMP", "SCTP", "UDPLite", "ICMPv6"})


def _list(d: dict[str, Any], name: str, reason: str) -> list[Any]:
    value = d.get(name, [])
    if value is None:
        return []
    if not isinstance(value, list):
        raise InvalidValue(reason, f"{name} must be a list")
    return value


def _selector(text: Any, what: str) -> None:
    if text is None:
        return
    if not isinstance(text, str):
        raise InvalidValue("bad_selector", f"{what} must be a string")
    try:
        parse_selector(text)
    except SelectorError as exc:
        raise InvalidValue("bad_selector", f"{what}: {exc}") from None


def _rules(spec: dict[str, Any]) -> None:
    for direction in ("ingress", "egress"):
        for i, rule in enumerate(_list(spec, direction, "bad_rule")):
            where = f"{direction}[{i}]"
            if not isinstance(rule, dict):
                raise InvalidValue("bad_rule", f"{where} must be an object")
            if rule.get("action") not in ACTIONS:
                raise InvalidValue("bad_action", f"{where}: action {rule.get('action')!r}")
            proto = rule.get("protocol")
            if (
                proto is not None
                and proto not in PROTOCOLS
                and not (
                    isinstance(proto, int) and not isinstance(proto, bool) and 1 <= proto <= 255
                )
            ):
                raise InvalidValue("bad_protocol", f"{where}: protocol {proto!r}")
            for side in ("source", "destination"):
                ent = rule.get(side)
                if ent is None:
                    continue
                if not isinstance(ent, dict):
                    raise InvalidValue("bad_rule", f"{where}.{side} must be an object")
                for sel in ("selector", "notSelector", "namespaceSelector"):
                    _selector(ent.get(sel), f"{where}.{side}.{sel}")
                for nets in ("nets", "notNets"):
                    for net in _list(ent, nets, "bad_cidr"):
                        _cidr(net, f"{where}.{side}.{nets}")
                for ports in ("ports", "notPorts"):
                    for port in _list(ent, ports, "bad_port"):
                        _port(port, f"{where}.{side}.{ports}")


def _port(port: Any, what: str) -> None:
    if isinstance(port, int) and not isinstance(port, bool):
        if not 0 <= port <= 65535:
            raise InvalidValue("bad_port", f"{what}: {port} out of range")
        return
    if not isinstance(port, str) or not port:
        raise InvalidValue("bad_port", f"{what}: {port!r}")
    lo, sep, hi = port.partition(":")
    if not sep:
        if lo.isdigit():
            _port(int(lo), what)
        return  # a named port
    if not (lo.isdigit() and hi.isdigit() and int(lo) <= int(hi) <= 65535):
        raise InvalidValue("bad_port", f"{what}: range {port!r}")


def _check_block(name: str, value: dict[str, Any]) -> None:
    key_cidr = name.replace("-", "/", 1)
    cidr = _cidr(value.get("cidr"), "block cidr")
    if str(cidr) != str(_cidr(key_cidr, "block key")):
        raise InvalidValue("block_cidr_mismatch", f"key {key_cidr} != value {cidr}")


def _cidr(text: Any, what: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    if not isinstance(text, str):
        raise InvalidValue("bad_cidr", f"{what} must be a string")
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError as exc:
        raise InvalidValue("bad_cidr", f"{what}: {exc}") from None
