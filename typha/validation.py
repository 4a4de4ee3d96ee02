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
        nets = spec.get("ipNetworks", [])
        if not isinstance(nets, list):
            raise InvalidValue("bad_cidr", "ipNetworks must be a list")
        for net in nets:
            _cidr(net, "ipNetworks")


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
