"""Policies, profiles and tiers: one reader for the server and the agent.

`read_policy`, `read_profile` and `read_tier` check a spec as Calico's API
validates it (the first problem found is raised as InvalidValue naming the
field) and return the typed value the agent compiles its rules from.  The
server calls them to decide what it serves; the agent calls the same
functions on what it receives, so the two cannot disagree on which rules
exist or what a field says.  What a rule *means* on a node (how its
selectors combine with the policy's namespace, which family's chain it
belongs in, the fields a node cannot enforce) is the agent's, which works
from these values and never from the JSON.

Empty strings and lists read as not given, as Calico reads them.  The
metadata (name, namespace, labels) is checked by the caller
(validation.check_resource) before these run.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from calico_model import k8s_policy
from calico_model.addresses import Net
from calico_model.errors import Reason
from calico_model.fields import (
    DNS_LABEL,
    annotation_map,
    fail,
    is_int,
    items,
    labels,
    net,
    obj,
    port,
    protocol,
    selector,
    string,
)
from calico_model.label_maps import LabelMap, intern
from calico_model.protocols import protocol_number
from calico_model.selector import Global, Selector

_ICMP, _ICMPV6 = 1, 58
_PORT_PROTOCOLS = frozenset({6, 17, 132})
PERFORMANCE_HINTS = frozenset({"AssumeNeededOnEveryNode"})


class RuleAction(StrEnum):
    """A rule's action as written (a tier's default action is Deny or Pass)."""

    ALLOW = "Allow"
    DENY = "Deny"
    LOG = "Log"
    PASS = "Pass"


ACTIONS = frozenset(a.value for a in RuleAction)


class PolicyType(StrEnum):
    """A direction a policy governs (`spec.types`)."""

    INGRESS = "Ingress"
    EGRESS = "Egress"


@dataclass(frozen=True, slots=True)
class ServiceAccountMatch:
    """A side's `serviceAccounts`: account names and/or a selector over the
    accounts' labels (at least one is given)."""

    names: frozenset[str]
    selector: Selector | None


@dataclass(frozen=True, slots=True)
class EntityRule:
    """One side (source or destination) of a rule, as written.  Ports are
    split into numbers or ranges (`"80"`, `"8080:8090"`) and port names."""

    nets: tuple[Net, ...] = ()
    not_nets: tuple[Net, ...] = ()
    ports: tuple[str, ...] = ()
    port_names: tuple[str, ...] = ()
    not_ports: tuple[str, ...] = ()
    not_port_names: tuple[str, ...] = ()
    selector: Selector | None = None
    not_selector: Selector | None = None
    namespace_selector: Selector | None = None
    service_accounts: ServiceAccountMatch | None = None
    services: bool = False  # a Kubernetes Service match is given


NO_ENTITY = EntityRule()
NO_ICMP: tuple[int | None, int | None] = (None, None)


@dataclass(frozen=True, slots=True)
class PolicyRule:
    """One rule of a policy or profile.  `icmp` and `not_icmp` are
    (type, code), None where not given; `http` is True when the rule carries
    a non-empty L7 HTTP match."""

    action: RuleAction
    ip_version: int | None = None
    protocol: int | None = None
    not_protocol: int | None = None
    icmp: tuple[int | None, int | None] = NO_ICMP
    not_icmp: tuple[int | None, int | None] = NO_ICMP
    source: EntityRule = NO_ENTITY
    destination: EntityRule = NO_ENTITY
    http: bool = False


@dataclass(frozen=True, slots=True)
class Policy:
    """A NetworkPolicy (`namespace` set) or GlobalNetworkPolicy.  The host
    flags (doNotTrack, preDNAT, applyOnForward) are read only for a global
    policy; `namespace_selector` likewise (Calico ignores both on a
    namespaced one)."""

    name: str
    namespace: str
    selector: Selector | None
    service_account_selector: Selector | None
    namespace_selector: Selector | None
    order: float | None
    tier: str  # "" when not given
    types: tuple[PolicyType, ...]  # () when not given
    ingress: tuple[PolicyRule, ...]
    egress: tuple[PolicyRule, ...]
    do_not_track: bool = False
    pre_dnat: bool = False
    apply_on_forward: bool = False


@dataclass(frozen=True, slots=True)
class Profile:
    """A Profile: its rules and the labels it applies to its endpoints."""

    name: str
    labels_to_apply: LabelMap
    ingress: tuple[PolicyRule, ...]
    egress: tuple[PolicyRule, ...]


@dataclass(frozen=True, slots=True)
class Tier:
    """A Tier's order (None: after every ordered tier) and what happens to
    traffic no policy in it decided (Deny or Pass)."""

    order: float | None
    default_action: RuleAction


# The tiers Calico and Kubernetes' admin network policy define, with the
# order and default action each must keep: moving one would reorder every
# policy in it relative to all the others.
WELL_KNOWN_TIERS = {
    "default": (1_000_000, "Deny"),
    "kube-admin": (1_000, "Pass"),
    "kube-baseline": (10_000_000, "Pass"),
}


def read_tier(spec: dict[str, Any], meta: dict[str, Any]) -> Tier:
    """A Tier's spec: a numeric order, a default action of Deny (the default)
    or Pass; a well-known tier with exactly its own order and action."""
    name = meta["name"]
    order = _order(spec.get("order"), "spec.order")
    action = spec.get("defaultAction", "Deny")
    if action not in ("Deny", "Pass"):
        raise fail(Reason.BAD_ACTION, "spec.defaultAction", "must be Deny or Pass")
    if name in WELL_KNOWN_TIERS:
        want_order, want = WELL_KNOWN_TIERS[name]
        if spec.get("order") != want_order:
            raise fail(
                Reason.BAD_FIELD, "spec.order", f"the {name!r} tier's order must be {want_order}"
            )
        if action != want:
            raise fail(
                Reason.BAD_ACTION,
                "spec.defaultAction",
                f"the {name!r} tier's default action must be {want}",
            )
    return Tier(order, RuleAction(action))


class StagedAction(StrEnum):
    """What a staged policy would do to the policy of its name once promoted."""

    SET = "Set"  # create or replace it with this spec
    DELETE = "Delete"  # remove it (the spec is empty but for its tier)
    LEARN = "Learn"
    IGNORE = "Ignore"


@dataclass(frozen=True, slots=True)
class StagedPolicy:
    """A staged policy: what it would do (`action`) and, for Set, the policy
    it would become.  Nothing enforces it; an agent counts what it would
    decide."""

    action: StagedAction
    policy: Policy


def _staged_action(spec: dict[str, Any]) -> StagedAction:
    raw = spec.get("stagedAction", StagedAction.SET.value)
    try:
        return StagedAction(raw) if isinstance(raw, str) else _no_action(raw)
    except ValueError:
        return _no_action(raw)


def _no_action(raw: Any) -> StagedAction:
    raise fail(Reason.BAD_FIELD, "spec.stagedAction", f"{raw!r:.40} is not a staged action")


def check_staged(spec: dict[str, Any], meta: dict[str, Any], *, global_: bool) -> StagedPolicy:
    """A Staged(Global)NetworkPolicy's spec, checked as Calico checks it: its
    `stagedAction` (absent: Set); with Delete, no field but the tier; else
    the spec of the policy it stages."""
    action = _staged_action(spec)
    policy_spec = {k: v for k, v in spec.items() if k != "stagedAction"}
    if action is StagedAction.DELETE:
        extra = sorted(
            k for k, v in policy_spec.items() if k != "tier" and v not in (None, "", [], {})
        )
        if extra:
            raise fail(
                Reason.BAD_FIELD, f"spec.{extra[0]}", "a Delete stages no fields but the tier"
            )
        policy_spec = {"tier": policy_spec["tier"]} if "tier" in policy_spec else {}
    return StagedPolicy(action, read_policy(policy_spec, meta, global_=global_))


def check_staged_kubernetes(spec: dict[str, Any], meta: dict[str, Any]) -> StagedPolicy:
    """A StagedKubernetesNetworkPolicy: its `stagedAction` and a Kubernetes
    NetworkPolicy spec (a Delete: nothing else), which becomes the Calico
    policy Calico makes of it (`k8s_policy`), named `knp.default.<name>`."""
    action = _staged_action(spec)
    k8s_spec = {k: v for k, v in spec.items() if k != "stagedAction"}
    if action is StagedAction.DELETE:
        extra = sorted(k for k, v in k8s_spec.items() if v not in (None, "", [], {}))
        if extra:
            raise fail(Reason.BAD_FIELD, f"spec.{extra[0]}", "a Delete stages no fields")
        k8s_spec = {}
    converted = k8s_policy.calico_spec(k8s_spec)
    named = {**meta, "name": k8s_policy.calico_name(meta["name"])}
    return StagedPolicy(action, read_policy(converted, named, global_=False))


def read_policy(spec: dict[str, Any], meta: dict[str, Any], *, global_: bool) -> Policy:
    """A (Global)NetworkPolicy's spec."""
    sel = selector(spec.get("selector"), "spec.selector")
    sa_sel = selector(spec.get("serviceAccountSelector"), "spec.serviceAccountSelector")
    for f in ("selector", "serviceAccountSelector", "namespaceSelector"):
        if "global(" in string(spec.get(f), f"spec.{f}"):
            raise fail(Reason.BAD_SELECTOR, f"spec.{f}", "global() is only valid in a rule")
    ns_sel = selector(spec.get("namespaceSelector"), "spec.namespaceSelector") if global_ else None
    order = _order(spec.get("order"), "spec.order")
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
        if not isinstance(h, str) or h not in PERFORMANCE_HINTS:
            raise fail(Reason.BAD_FIELD, f"spec.performanceHints[{i}]", f"{h!r:.40} is not a hint")
    if len(set(hints)) != len(hints):
        raise fail(Reason.BAD_FIELD, "spec.performanceHints", "a hint is given more than once")
    for f in ("doNotTrack", "preDNAT", "applyOnForward"):
        if spec.get(f) is not None and not isinstance(spec.get(f), bool):
            raise fail(Reason.BAD_FIELD, f"spec.{f}", "must be true or false")
    if global_:
        _host_policy_flags(spec, types)
    ingress, egress = _rules(spec, global_=global_)
    return Policy(
        name=meta["name"],
        namespace="" if global_ else meta.get("namespace") or "",
        selector=sel,
        service_account_selector=sa_sel,
        namespace_selector=ns_sel,
        order=order,
        tier=tier or "",
        types=tuple(PolicyType(t) for t in types),
        ingress=ingress,
        egress=egress,
        do_not_track=global_ and spec.get("doNotTrack") is True,
        pre_dnat=global_ and spec.get("preDNAT") is True,
        apply_on_forward=global_ and spec.get("applyOnForward") is True,
    )


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


def _order(v: Any, path: str) -> float | None:
    if v is None:
        return None
    if not isinstance(v, int | float) or isinstance(v, bool) or not math.isfinite(v):
        raise fail(Reason.BAD_FIELD, path, "must be a number")
    return float(v)


def read_profile(spec: dict[str, Any], meta: dict[str, Any]) -> Profile:
    """A Profile's spec: rules and the labels it applies."""
    to_apply = spec.get("labelsToApply")
    labels(to_apply, "spec.labelsToApply")
    ingress, egress = _rules(spec, global_=True)
    return Profile(meta["name"], intern(to_apply or {}), ingress, egress)


def _rules(
    spec: dict[str, Any], *, global_: bool
) -> tuple[tuple[PolicyRule, ...], tuple[PolicyRule, ...]]:
    """Both rule lists of a policy or profile."""
    out: list[tuple[PolicyRule, ...]] = []
    for direction in ("ingress", "egress"):
        rules = []
        for i, rule in enumerate(items(spec.get(direction), f"spec.{direction}", Reason.BAD_RULE)):
            path = f"spec.{direction}[{i}]"
            if not isinstance(rule, dict):
                raise fail(Reason.BAD_RULE, path, "must be an object")
            rules.append(read_rule(rule, path, direction=direction, global_=global_))
        out.append(tuple(rules))
    return out[0], out[1]


def read_rule(rule: dict[str, Any], path: str, *, direction: str, global_: bool) -> PolicyRule:
    """One rule."""
    action = rule.get("action")
    if not isinstance(action, str) or action not in ACTIONS:
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
    icmp = _icmp(rule.get("icmp"), proto, f"{path}.icmp")
    # Calico accepts a notICMP with no protocol: "anything but that ICMP type".
    not_icmp = _icmp(rule.get("notICMP"), proto, f"{path}.notICMP", protocol_optional=True)
    http = rule.get("http")
    if http is not None:
        if action != "Allow" or proto not in (None, 6):
            raise fail(Reason.BAD_RULE, f"{path}.http", "only valid on Allow rules over TCP")
        if direction == "egress":
            raise fail(Reason.BAD_RULE, f"{path}.http", "not allowed in egress rules")
        _http(obj(http, f"{path}.http", Reason.BAD_RULE), f"{path}.http")
    versions: set[int] = set()
    sides = []
    for side in ("source", "destination"):
        ent = obj(rule.get(side), f"{path}.{side}", Reason.BAD_RULE)
        read = _entity(ent, f"{path}.{side}", (proto, rule.get("protocol")), ipv, versions)
        services = ent.get("services")
        if services is not None:
            _services(ent, services, f"{path}.{side}", direction, side, global_)
        sides.append(read)
    return PolicyRule(
        action=RuleAction(action),
        ip_version=int(ipv) if ipv is not None else None,
        protocol=proto,
        not_protocol=not_proto,
        icmp=icmp,
        not_icmp=not_icmp,
        source=sides[0],
        destination=sides[1],
        http=bool(http),
    )


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


def _icmp(
    v: Any, proto: int | None, path: str, *, protocol_optional: bool = False
) -> tuple[int | None, int | None]:
    if v is None:
        return NO_ICMP
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
    return t, c


def _entity(
    ent: dict[str, Any], path: str, protocol: tuple[int | None, Any], ipv: Any, versions: set[int]
) -> EntityRule:
    if not ent:
        return NO_ENTITY
    sel = selector(ent.get("selector"), f"{path}.selector")
    not_sel = selector(ent.get("notSelector"), f"{path}.notSelector")
    ns_sel = selector(ent.get("namespaceSelector"), f"{path}.namespaceSelector")
    for f in ("selector", "notSelector"):
        if "global(" in string(ent.get(f), f"{path}.{f}"):
            raise fail(
                Reason.BAD_SELECTOR,
                f"{path}.{f}",
                "global() is only valid alone in a namespaceSelector",
            )
    ns_text = string(ent.get("namespaceSelector"), f"{path}.namespaceSelector")
    if "global(" in ns_text and not isinstance(ns_sel, Global):
        raise fail(Reason.BAD_SELECTOR, f"{path}.namespaceSelector", "global() must be alone")
    accounts = _service_accounts(ent.get("serviceAccounts"), path)
    nets = _nets(ent.get("nets"), f"{path}.nets", ipv, versions)
    not_nets = _nets(ent.get("notNets"), f"{path}.notNets", ipv, versions, negated=True)
    ports, port_names = _ports(ent.get("ports"), f"{path}.ports", protocol)
    not_ports, not_port_names = _ports(ent.get("notPorts"), f"{path}.notPorts", protocol)
    return EntityRule(
        nets=nets,
        not_nets=not_nets,
        ports=ports,
        port_names=port_names,
        not_ports=not_ports,
        not_port_names=not_port_names,
        selector=sel,
        not_selector=not_sel,
        namespace_selector=ns_sel,
        service_accounts=accounts,
        services=ent.get("services") is not None,
    )


def _service_accounts(sam: Any, path: str) -> ServiceAccountMatch | None:
    if sam is None:
        return None
    sam = obj(sam, f"{path}.serviceAccounts")
    sel = selector(sam.get("selector"), f"{path}.serviceAccounts.selector")
    names = items(sam.get("names"), f"{path}.serviceAccounts.names")
    for i, n in enumerate(names):
        if not isinstance(n, str) or not n:
            raise fail(Reason.BAD_NAME, f"{path}.serviceAccounts.names[{i}]", "must be a name")
    if sel is None and not names:
        return None
    return ServiceAccountMatch(frozenset(names), sel)


def _nets(
    v: Any, path: str, ipv: Any, versions: set[int], *, negated: bool = False
) -> tuple[Net, ...]:
    out = []
    for i, text in enumerate(items(v, path, Reason.BAD_CIDR)):
        where = f"{path}[{i}]"
        n = net(text, where)
        if negated and n.prefixlen == 0:
            raise fail(Reason.BAD_CIDR, where, "a catch-all net in notNets matches nothing")
        if ipv is not None and n.version != ipv:
            raise fail(Reason.BAD_IP_VERSION, where, f"IPv{n.version} net in an IPv{ipv} rule")
        versions.add(n.version)
        if len(versions) > 1:
            raise fail(Reason.BAD_IP_VERSION, where, "the rule mixes IPv4 and IPv6 nets")
        out.append(n)
    return tuple(out)


def _ports(
    v: Any, path: str, protocol: tuple[int | None, Any]
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(numbers and ranges, port names)."""
    proto, written = protocol
    numeric: list[str] = []
    names: list[str] = []
    for i, p in enumerate(items(v, path, Reason.BAD_PORT)):
        named = port(p, f"{path}[{i}]")
        if proto is None and not named:
            raise fail(
                Reason.BAD_PORT, f"{path}[{i}]", "a numeric port needs protocol TCP, UDP or SCTP"
            )
        if proto is not None and proto not in _PORT_PROTOCOLS:
            raise fail(Reason.BAD_PORT, f"{path}[{i}]", f"protocol {written} has no ports")
        (names if named else numeric).append(str(p))
    return tuple(numeric), tuple(names)


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
