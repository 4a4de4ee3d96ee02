"""Validation of policies, profiles, tiers and their rules, as Calico's API
validates them (per field; the first problem found is reported)."""

from __future__ import annotations

import math
from typing import Any

from calico_model.errors import Reason
from calico_model.fields import (
    DNS_LABEL,
    annotation_map,
    cidr,
    fail,
    is_int,
    items,
    labels,
    obj,
    port,
    protocol,
    selector,
    string,
)
from calico_model.protocols import protocol_number
from calico_model.selector import parse as parse_selector

ACTIONS = frozenset({"Allow", "Deny", "Log", "Pass"})
_ICMP, _ICMPV6 = 1, 58
_PORT_PROTOCOLS = frozenset({6, 17, 132})
PERFORMANCE_HINTS = frozenset({"AssumeNeededOnEveryNode"})


# The tiers Calico and Kubernetes' admin network policy define, with the
# order and default action each must keep: moving one would reorder every
# policy in it relative to all the others.
WELL_KNOWN_TIERS = {
    "default": (1_000_000, "Deny"),
    "kube-admin": (1_000, "Pass"),
    "kube-baseline": (10_000_000, "Pass"),
}


def check_tier(spec: dict[str, Any], name: str) -> None:
    """A Tier's spec: a numeric order, a default action of Deny (the default)
    or Pass; a well-known tier with exactly its own order and action."""
    _order(spec.get("order"), "spec.order")
    action = spec.get("defaultAction", "Deny")
    if action not in ("Deny", "Pass"):
        raise fail(Reason.BAD_ACTION, "spec.defaultAction", "must be Deny or Pass")
    if name in WELL_KNOWN_TIERS:
        order, want = WELL_KNOWN_TIERS[name]
        if spec.get("order") != order:
            raise fail(Reason.BAD_FIELD, "spec.order", f"the {name!r} tier's order must be {order}")
        if action != want:
            raise fail(
                Reason.BAD_ACTION,
                "spec.defaultAction",
                f"the {name!r} tier's default action must be {want}",
            )


def check_policy(spec: dict[str, Any], *, global_: bool) -> None:
    """A (Global)NetworkPolicy's spec."""
    selector(spec.get("selector"), "spec.selector")
    selector(spec.get("serviceAccountSelector"), "spec.serviceAccountSelector")
    for f in ("selector", "serviceAccountSelector", "namespaceSelector"):
        if "global(" in string(spec.get(f), f"spec.{f}"):
            raise fail(Reason.BAD_SELECTOR, f"spec.{f}", "global() is only valid in a rule")
    if global_:
        selector(spec.get("namespaceSelector"), "spec.namespaceSelector")
    _order(spec.get("order"), "spec.order")
    tier = spec.get("tier")
    if tier is not None and (not isinstance(tier, str) or (tier and not DNS_LABEL.match(tier))):
        raise fail(Reason.BAD_NAME, "spec.tier", f"{tier!r:.40} is not a tier name")
    types = items(spec.get("types"), "spec.types")
    for i, t in enumerate(types):
        if t not in ("Ingress", "Egress"):
            raise fail(Reason.BAD_FIELD, f"spec.types[{i}]", f"{t!r:.20} is not Ingress or Egress")
    if len(set(map(str, types))) != len(types):
        raise fail(Reason.BAD_FIELD, "spec.types", "a type is given more than once")
    hints = items(spec.get("performanceHints"), "spec.performanceHints")
    for i, h in enumerate(hints):
        if h not in PERFORMANCE_HINTS:
            raise fail(Reason.BAD_FIELD, f"spec.performanceHints[{i}]", f"{h!r:.40} is not a hint")
    if len(set(hints)) != len(hints):
        raise fail(Reason.BAD_FIELD, "spec.performanceHints", "a hint is given more than once")
    for f in ("doNotTrack", "preDNAT", "applyOnForward"):
        if spec.get(f) is not None and not isinstance(spec.get(f), bool):
            raise fail(Reason.BAD_FIELD, f"spec.{f}", "must be true or false")
    if global_:
        _host_policy_flags(spec, types)
    check_rules(spec, global_=global_)


def _host_policy_flags(spec: dict[str, Any], types: list[Any]) -> None:
    dnt, pre = spec.get("doNotTrack") is True, spec.get("preDNAT") is True
    if dnt and pre:
        raise fail(Reason.BAD_FIELD, "spec.preDNAT", "preDNAT and doNotTrack cannot both be true")
    if (dnt or pre) and spec.get("applyOnForward") is not True:
        raise fail(
            Reason.BAD_FIELD,
            "spec.applyOnForward",
            "must be true when preDNAT or doNotTrack is true",
        )
    if pre and (spec.get("egress") or "Egress" in types):
        raise fail(Reason.BAD_FIELD, "spec.egress", "a preDNAT policy cannot have egress rules")


def _order(v: Any, path: str) -> None:
    if v is None:
        return
    if not isinstance(v, int | float) or isinstance(v, bool) or not math.isfinite(v):
        raise fail(Reason.BAD_FIELD, path, "must be a number")


def check_profile(spec: dict[str, Any]) -> None:
    """A Profile's spec: rules and the labels it applies."""
    labels(spec.get("labelsToApply"), "spec.labelsToApply")
    check_rules(spec, global_=True)


def check_rules(spec: dict[str, Any], *, global_: bool) -> None:
    """Both rule lists of a policy or profile."""
    for direction in ("ingress", "egress"):
        for i, rule in enumerate(items(spec.get(direction), f"spec.{direction}", Reason.BAD_RULE)):
            path = f"spec.{direction}[{i}]"
            if not isinstance(rule, dict):
                raise fail(Reason.BAD_RULE, path, "must be an object")
            check_rule(rule, path, direction=direction, global_=global_)


def check_rule(rule: dict[str, Any], path: str, *, direction: str, global_: bool) -> None:
    """One rule."""
    action = rule.get("action")
    if action not in ACTIONS:
        raise fail(Reason.BAD_ACTION, f"{path}.action", f"{action!r:.20} is not {sorted(ACTIONS)}")
    protocol(rule.get("protocol"), f"{path}.protocol")
    protocol(rule.get("notProtocol"), f"{path}.notProtocol")
    # Compared as numbers: Calico reads "6" and 6 alike.
    proto, not_proto = (
        protocol_number(rule.get("protocol")),
        protocol_number(rule.get("notProtocol")),
    )
    ipv = rule.get("ipVersion")
    if ipv is not None and ipv not in (4, 6):
        raise fail(Reason.BAD_IP_VERSION, f"{path}.ipVersion", "must be 4 or 6")
    for p, f in ((proto, "protocol"), (not_proto, "notProtocol")):
        if (p == _ICMP and ipv == 6) or (p == _ICMPV6 and ipv == 4):
            raise fail(
                Reason.BAD_IP_VERSION, f"{path}.{f}", f"{rule.get(f)} does not exist in IPv{ipv}"
            )
    meta = obj(rule.get("metadata"), f"{path}.metadata", Reason.BAD_RULE)
    annotation_map(meta.get("annotations"), f"{path}.metadata.annotations")
    _icmp(rule.get("icmp"), proto, f"{path}.icmp")
    # Calico accepts a notICMP with no protocol: "anything but that ICMP type".
    _icmp(rule.get("notICMP"), proto, f"{path}.notICMP", protocol_optional=True)
    http = rule.get("http")
    if http is not None:
        if action != "Allow" or proto not in (None, 6):
            raise fail(Reason.BAD_RULE, f"{path}.http", "only valid on Allow rules over TCP")
        if direction == "egress":
            raise fail(Reason.BAD_RULE, f"{path}.http", "not allowed in egress rules")
        _http(obj(http, f"{path}.http", Reason.BAD_RULE), f"{path}.http")
    versions: set[int] = set()
    for side in ("source", "destination"):
        ent = obj(rule.get(side), f"{path}.{side}", Reason.BAD_RULE)
        _entity(ent, f"{path}.{side}", (proto, rule.get("protocol")), ipv, versions)
        services = ent.get("services")
        if services is not None:
            _services(ent, services, f"{path}.{side}", direction, side, global_)


def _http(http: dict[str, Any], path: str) -> None:
    """Methods given once each; each path exactly one of `exact` or `prefix`,
    an absolute path with no query, fragment or space."""
    methods = items(http.get("methods"), f"{path}.methods", Reason.BAD_RULE)
    if not all(isinstance(m, str) for m in methods):
        raise fail(Reason.BAD_RULE, f"{path}.methods", "must be a list of strings")
    if len(set(methods)) != len(methods):
        raise fail(Reason.BAD_RULE, f"{path}.methods", "a method is given more than once")
    for i, p in enumerate(items(http.get("paths"), f"{path}.paths", Reason.BAD_RULE)):
        where = f"{path}.paths[{i}]"
        p = obj(p, where, Reason.BAD_RULE)
        exact, prefix = (
            string(p.get("exact"), f"{where}.exact"),
            string(p.get("prefix"), f"{where}.prefix"),
        )
        if bool(exact) == bool(prefix):
            raise fail(Reason.BAD_RULE, where, "give exactly one of exact and prefix")
        text = exact or prefix
        if not text.startswith("/") or any(c in text for c in "? #"):
            raise fail(
                Reason.BAD_RULE, where, f"{text[:60]!r} must start with / and have no ? # or space"
            )


def _icmp(v: Any, proto: int | None, path: str, *, protocol_optional: bool = False) -> None:
    if v is None:
        return
    v = obj(v, path, Reason.BAD_ICMP)
    if proto not in (_ICMP, _ICMPV6) and not (protocol_optional and proto is None):
        raise fail(Reason.BAD_ICMP, path, "ICMP fields need protocol ICMP or ICMPv6")
    t, c = v.get("type"), v.get("code")
    if t is not None and not (is_int(t) and 0 <= t <= 254):
        raise fail(Reason.BAD_ICMP, f"{path}.type", f"{t!r:.20} is not in 0-254")
    if c is not None and not (is_int(c) and 0 <= c <= 255):
        raise fail(Reason.BAD_ICMP, f"{path}.code", f"{c!r:.20} is not in 0-255")
    if c is not None and t is None:
        raise fail(Reason.BAD_ICMP, f"{path}.code", "an ICMP code needs an ICMP type")


def _entity(
    ent: dict[str, Any], path: str, protocol: tuple[int | None, Any], ipv: Any, versions: set[int]
) -> None:
    proto, written = protocol
    for f in ("selector", "notSelector", "namespaceSelector"):
        selector(ent.get(f), f"{path}.{f}")
    for f in ("selector", "notSelector"):
        if "global(" in string(ent.get(f), f"{path}.{f}"):
            raise fail(
                Reason.BAD_SELECTOR,
                f"{path}.{f}",
                "global() is only valid alone in a namespaceSelector",
            )
    ns_sel = string(ent.get("namespaceSelector"), f"{path}.namespaceSelector")
    if "global(" in ns_sel and str(parse_selector(ns_sel)) != "global()":
        raise fail(Reason.BAD_SELECTOR, f"{path}.namespaceSelector", "global() must be alone")
    sam = ent.get("serviceAccounts")
    if sam is not None:
        sam = obj(sam, f"{path}.serviceAccounts")
        selector(sam.get("selector"), f"{path}.serviceAccounts.selector")
        for i, n in enumerate(items(sam.get("names"), f"{path}.serviceAccounts.names")):
            if not isinstance(n, str) or not n:
                raise fail(Reason.BAD_NAME, f"{path}.serviceAccounts.names[{i}]", "must be a name")
    for f in ("nets", "notNets"):
        for i, text in enumerate(items(ent.get(f), f"{path}.{f}", Reason.BAD_CIDR)):
            where = f"{path}.{f}[{i}]"
            net = cidr(text, where)
            if f == "notNets" and net.prefixlen == 0:
                raise fail(Reason.BAD_CIDR, where, "a catch-all net in notNets matches nothing")
            if ipv is not None and net.version != ipv:
                raise fail(
                    Reason.BAD_IP_VERSION, where, f"IPv{net.version} net in an IPv{ipv} rule"
                )
            versions.add(net.version)
            if len(versions) > 1:
                raise fail(Reason.BAD_IP_VERSION, where, "the rule mixes IPv4 and IPv6 nets")
    for f in ("ports", "notPorts"):
        for i, p in enumerate(items(ent.get(f), f"{path}.{f}", Reason.BAD_PORT)):
            named = port(p, f"{path}.{f}[{i}]")
            if proto is None and not named:
                raise fail(
                    Reason.BAD_PORT,
                    f"{path}.{f}[{i}]",
                    "a numeric port needs protocol TCP, UDP or SCTP",
                )
            if proto is not None and proto not in _PORT_PROTOCOLS:
                raise fail(Reason.BAD_PORT, f"{path}.{f}[{i}]", f"protocol {written} has no ports")


def _services(
    ent: dict[str, Any], services: Any, path: str, direction: str, side: str, global_: bool
) -> None:
    where = f"{path}.services"
    services = obj(services, where)
    if not isinstance(services.get("name"), str) or not services.get("name"):
        raise fail(Reason.BAD_FIELD, f"{where}.name", "must name a service")
    if (direction, side) in (("egress", "source"), ("ingress", "destination")):
        raise fail(Reason.BAD_FIELD, where, f"not allowed in an {direction} rule's {side}")
    if global_ and not services.get("namespace"):
        raise fail(Reason.BAD_FIELD, f"{where}.namespace", "a global policy must give it")
    for f in ("selector", "notSelector", "namespaceSelector", "serviceAccounts", "nets", "notNets"):
        if ent.get(f):
            raise fail(Reason.BAD_FIELD, where, f"cannot be combined with {f}")
    if side == "destination" and (ent.get("ports") or ent.get("notPorts")):
        raise fail(Reason.BAD_FIELD, where, "cannot be combined with ports")
