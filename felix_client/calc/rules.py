"""Compiling Calico rules (pure functions), with Calico's semantics.

The rules arrive as `calico_model.policies.PolicyRule` values, read by the
same code that validates them for the server: this module never reads JSON.
What it adds is what a rule means on a node.  A rule side's selectors are
combined the way Calico's datastore layer does it before Felix sees them:

* `namespaceSelector` reads the namespace labels endpoints inherit from their
  `kns.<ns>` profile, which already carry the `pcns.` prefix; in it `all()`
  means "any namespaced endpoint" and `global()` "any endpoint with no
  namespace" (host endpoints);
* in a namespaced policy, a side that uses any selector field (`selector`,
  `notSelector`, `serviceAccounts`, `namespaceSelector`) is limited to the
  policy's namespace unless it gives a namespaceSelector: so a lone
  `notSelector` means "in this namespace and not ...", never "anywhere else";
* `serviceAccounts.names` matches the endpoint label
  `projectcalico.org/serviceaccount`, `serviceAccounts.selector` the `pcsa.`
  labels inherited from the `ksa.<ns>.<name>` profile.

A rule is compiled once into a `RuleSpec` and rendered per IP family: a rule
whose `ipVersion`, nets or ICMP flavour belong to the other family cannot
match there and is left out of that family's chain.  Two fields a node
cannot enforce make the rule match nothing, whatever its action, never
everything, and are counted: a `services` match (it needs Kubernetes
endpoint data that etcd does not hold) and an `http` match (L7; validation
admits it only on Allow rules, so matching nothing is narrower than Felix,
which ignores it at L3/L4).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from calico_model.policies import (
    NO_ENTITY,
    EntityRule,
    PolicyRule,
    RuleAction,
    ServiceAccountMatch,
)
from calico_model.selector import (
    All,
    And,
    Compare,
    Has,
    In,
    Not,
    Selector,
    conjoin,
    prefixed,
    replace_all,
)
from dataplane.batch import Action, IpSetId, Match, Rule, RuleRef
from felix_client.calc.model import IPNet

NS_LABEL = "projectcalico.org/namespace"
SA_LABEL = "projectcalico.org/serviceaccount"
NS_PREFIX = "pcns."
SA_PREFIX = "pcsa."
ICMP, ICMPV6 = 1, 58


class Unenforceable(StrEnum):
    """Why a rule was compiled to match nothing (the metric label)."""

    SERVICES = "services"
    HTTP = "http"


class _Skip(Exception):
    def __init__(self, reason: Unenforceable) -> None:
        self.reason = reason


def namespace_selector(sel: Selector) -> Selector:
    """A namespaceSelector as a selector over endpoint labels."""
    return replace_all(prefixed(sel, NS_PREFIX), Has(NS_LABEL), Not(Has(NS_LABEL)))


def service_account_selector(sam: ServiceAccountMatch | None) -> Selector | None:
    """A `serviceAccounts: {names, selector}` match as an endpoint selector."""
    if sam is None:
        return None
    parts: list[Selector] = []
    if sam.selector is not None:
        parts.append(prefixed(sam.selector, SA_PREFIX))
    if sam.names:
        parts.append(In(SA_LABEL, sam.names))
    if not parts:
        return None
    return parts[0] if len(parts) == 1 else And(tuple(parts))


@dataclass(frozen=True, slots=True)
class SideSpec:
    """One compiled rule side, before it is split by IP family."""

    nets: tuple[IPNet, ...] = ()
    not_nets: tuple[IPNet, ...] = ()
    ports: tuple[str, ...] = ()
    not_ports: tuple[str, ...] = ()
    port_names: tuple[str, ...] = ()
    not_port_names: tuple[str, ...] = ()
    selector: Selector | None = None
    not_selector: Selector | None = None

    def for_family(self, family: int, protocol: int | None) -> Match | None:
        """This side in one family's chain, or None if it cannot match there."""
        if self is _NO_SIDE:
            return _ANY
        nets = tuple(str(n) for n in self.nets if n.version == family)
        if self.nets and not nets:
            return None
        sel = str(self.selector) if self.selector is not None else None
        named_sel = sel or str(All())
        return Match(
            nets=nets,
            not_nets=tuple(str(n) for n in self.not_nets if n.version == family),
            ports=self.ports,
            not_ports=self.not_ports,
            named_ports=tuple(IpSetId(family, named_sel, p, protocol) for p in self.port_names),
            not_named_ports=tuple(
                IpSetId(family, named_sel, p, protocol) for p in self.not_port_names
            ),
            ipset=IpSetId(family, sel) if sel is not None else None,
            not_ipset=(
                IpSetId(family, str(self.not_selector)) if self.not_selector is not None else None
            ),
        )


_NO_SIDE = SideSpec()
_ANY = Match()


def compile_side(ent: EntityRule, namespace: str) -> SideSpec:
    """One rule side with its selectors combined as Calico combines them.
    Raises _Skip."""
    if ent is NO_ENTITY:
        return _NO_SIDE
    if ent.services:
        raise _Skip(Unenforceable.SERVICES)
    ns_sel: Selector | None = None
    if ent.namespace_selector is not None:
        ns_sel = namespace_selector(ent.namespace_selector)
    elif namespace:
        ns_sel = Compare(NS_LABEL, "==", namespace)
    parts: list[Selector] = []
    if (sa := service_account_selector(ent.service_accounts)) is not None:
        parts.append(sa)
    if ent.selector is not None:
        parts.append(ent.selector)
    selector: Selector | None = None
    if parts:
        selector = parts[0] if len(parts) == 1 else And(tuple(parts))
    not_sel = ent.not_selector
    if ns_sel is not None and (
        selector is not None or not_sel is not None or ent.namespace_selector is not None
    ):
        selector = ns_sel if selector is None else conjoin(ns_sel, selector)
    return SideSpec(
        nets=ent.nets,
        not_nets=ent.not_nets,
        ports=ent.ports,
        not_ports=ent.not_ports,
        port_names=ent.port_names,
        not_port_names=ent.not_port_names,
        selector=selector,
        not_selector=not_sel,
    )


@dataclass(frozen=True, slots=True)
class RuleSpec:
    """One compiled rule, before it is split by IP family."""

    action: Action
    ip_version: int | None
    protocol: int | None
    not_protocol: int | None
    icmp: tuple[int | None, int | None]
    not_icmp: tuple[int | None, int | None]
    src: SideSpec
    dst: SideSpec
    origin: str
    index: int = 0  # its position in the policy's rules for its direction

    def for_family(self, family: int, group: str, ref: RuleRef | None = None) -> Rule | None:
        """The rule in one family's chain (counting for `ref`), or None if it
        cannot match there."""
        if self.ip_version is not None and self.ip_version != family:
            return None
        if self.protocol == (ICMPV6 if family == 4 else ICMP):
            return None  # the other family's ICMP never occurs here
        src = self.src.for_family(family, self.protocol)
        dst = self.dst.for_family(family, self.protocol)
        if src is None or dst is None:
            return None
        return Rule(
            action=self.action,
            protocol=self.protocol,
            not_protocol=self.not_protocol,
            icmp_type=self.icmp[0],
            icmp_code=self.icmp[1],
            not_icmp_type=self.not_icmp[0],
            not_icmp_code=self.not_icmp[1],
            src=src,
            dst=dst,
            group=group,
            origin=self.origin,
            ref=ref,
        )


def compile_rule(rule: PolicyRule, namespace: str, origin: str, index: int = 0) -> RuleSpec:
    """One rule; raises _Skip (with the reason) if it must match nothing."""
    if rule.http:
        raise _Skip(Unenforceable.HTTP)
    return RuleSpec(
        action=_ACTIONS[rule.action],
        ip_version=rule.ip_version,
        protocol=rule.protocol,
        not_protocol=rule.not_protocol,
        icmp=rule.icmp,
        not_icmp=rule.not_icmp,
        src=compile_side(rule.source, namespace),
        dst=compile_side(rule.destination, namespace),
        origin=origin,
        index=index,
    )


_ACTIONS = {a: Action(a.value) for a in RuleAction}


def compile_rules(
    rules: tuple[PolicyRule, ...], namespace: str, origin: str, problems: list[Unenforceable]
) -> tuple[RuleSpec, ...]:
    """A rule list; rules that must match nothing are left out and their
    reasons appended to `problems`."""
    out = []
    for i, r in enumerate(rules):
        try:
            out.append(compile_rule(r, namespace, origin, i))
        except _Skip as skip:
            problems.append(skip.reason)
    return tuple(out)
