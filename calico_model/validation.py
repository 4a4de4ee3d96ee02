"""Validation of datastore values before they enter the synced state.

`validate(key, raw)` returns the value's canonical JSON bytes, or raises
InvalidValue with a short `reason` used as the metric label.  Anything that
fails is treated as absent from the state.

`validate` is total: whatever a value does to the code that reads it (nesting
past what the canonical encoder accepts, a number Python refuses to convert, a
bug of ours), the outcome is InvalidValue, never another exception.  The
syncer and everything that reads etcd directly (`admit`) rely on that: one
value must never stop the server following the datastore.  Sizes are bounded
explicitly (MAX_DEPTH, selector limits, port digits) so no recursion limit
decides what is valid.
"""

from __future__ import annotations

import functools
import ipaddress
from dataclasses import dataclass
from typing import Any

import orjson

from calico_model.errors import InvalidValue, SelectorError
from calico_model.keys import (
    BLOCK_PATH,
    BLOCK_PATH_V6,
    V3_PATH,
    V3_PLURALS,
    KeyLayout,
    Kind,
    ResourceKey,
)
from calico_model.selector import parse as parse_selector
from snapshot import canonical_json

# Deepest JSON nesting accepted.  Real Calico objects nest under 10 levels;
# the canonical encoder refuses anything past 254, and the agent's code
# recurses over rule structures.
MAX_DEPTH = 64


@dataclass(frozen=True, slots=True)
class Validated:
    """A value that passed validation: its canonical JSON bytes and the decoded object."""

    canonical: bytes
    value: dict[str, Any]


def validate(key: str, raw: bytes, prefix: str = "/calico/") -> Validated:
    """The value's canonical form, or InvalidValue (and nothing else)."""
    try:
        return _validate(key, raw, prefix)
    except InvalidValue:
        raise
    except Exception as exc:  # see the module docstring: validate is total
        raise InvalidValue("unprocessable", f"{type(exc).__name__}: {str(exc)[:120]}") from None


def admit(raw_key: bytes, raw_value: bytes, prefix: str) -> tuple[str, bytes]:
    """(key, canonical value) for a datastore entry, or InvalidValue.  The
    one gate every reader of etcd uses, so they all agree on the state."""
    try:
        key = raw_key.decode()
    except UnicodeDecodeError:
        raise InvalidValue("key_not_utf8", f"key {raw_key[:80]!r} is not UTF-8") from None
    return key, validate(key, raw_value, prefix).canonical


def _validate(key: str, raw: bytes, prefix: str) -> Validated:
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidValue("not_json", str(exc)[:120]) from None
    if not isinstance(value, dict):
        raise InvalidValue("not_object", f"value is a JSON {type(value).__name__}")
    _check_depth(value)
    layout = _layout(prefix)
    rk = layout.parse(key)
    if rk is None:
        _check_unparsed(key, layout)
    elif rk.kind is Kind.IPAM_BLOCK:
        _check_block(rk.name, value)
    else:
        _check_v3(rk, value)
    return Validated(canonical_json(value), value)


@functools.lru_cache(maxsize=8)
def _layout(prefix: str) -> KeyLayout:
    return KeyLayout(prefix)


def _check_unparsed(key: str, layout: KeyLayout) -> None:
    """A key of a kind we know that does not parse is refused: served, the
    agent could not tell which resource it is."""
    v3 = layout.prefix + V3_PATH
    if key.startswith(v3) and key[len(v3) :].partition("/")[0] in V3_PLURALS:
        raise InvalidValue("bad_key", f"not <plural>/[<namespace>/]<name>: {key[:200]!r}")
    if key.startswith((layout.prefix + BLOCK_PATH, layout.prefix + BLOCK_PATH_V6)):
        raise InvalidValue("bad_key", f"not a block key: {key[:200]!r}")


def _check_depth(value: dict[str, Any]) -> None:
    """Iteratively, so the check itself cannot hit the recursion limit."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise InvalidValue("too_deep", f"nested deeper than {MAX_DEPTH} levels")
        children = node.values() if isinstance(node, dict) else node
        stack.extend((c, depth + 1) for c in children if isinstance(c, dict | list))


def _check_v3(rk: ResourceKey, value: dict[str, Any]) -> None:
    kind = rk.kind.value
    if value.get("kind") != kind:
        raise InvalidValue("kind_mismatch", f"key says {kind}, value says {value.get('kind')!r}")
    meta = value.get("metadata")
    if not isinstance(meta, dict):
        raise InvalidValue("bad_metadata", "metadata must be an object")
    ns, name = rk.namespace, rk.name
    if ns and meta.get("namespace") != ns:
        raise InvalidValue(
            "namespace_mismatch", f"key namespace {ns!r} != {meta.get('namespace')!r}"
        )
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
        if _number(lo):
            _port(int(lo), what)
        elif any(c.isdigit() for c in lo[:1]) or len(lo) > 63:
            raise InvalidValue("bad_port", f"{what}: {port[:20]!r}")
        return  # a named port
    if not (_number(lo) and _number(hi) and int(lo) <= int(hi) <= 65535):
        raise InvalidValue("bad_port", f"{what}: range {port[:20]!r}")


def _number(text: str) -> bool:
    """ASCII digits only, at most 5 of them ('²' is a digit to str.isdigit)."""
    return 0 < len(text) <= 5 and text.isascii() and text.isdigit()


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
