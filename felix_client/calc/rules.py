"""Compiling policies and profiles into rules (pure functions).

Rule selectors are scoped the way Calico scopes them: in a namespaced
NetworkPolicy a selector matches endpoints of the same namespace unless the
rule gives a namespaceSelector; namespaceSelectors match the namespace labels
endpoints inherit (under the `pcns.` prefix) from their `kns.<ns>` profile.
Each distinct scoped selector is one IP set, shared by every rule using it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from calico_model.selector import All, Compare, Selector, conjoin, prefixed
from calico_model.selector import parse as parse_selector
from felix_client.calc.model import Endpoint, labels_of
from felix_client.dataplane.batch import Match, Rule

NS_LABEL = "projectcalico.org/namespace"
NS_PREFIX = "pcns."
DEFAULT_TIER = "default"


def _dict(v: Any) -> dict[str, Any]:
    return v if isinstance(v, dict) else {}


def _strs(v: Any) -> tuple[str, ...]:
    return tuple(str(x) for x in v) if isinstance(v, list) else ()


def scoped(sel_text: Any, ns_sel_text: Any, namespace: str | None) -> Selector | None:
    """The effective selector of a rule side, or None if it has none.
    Raises SelectorError."""
    if not isinstance(sel_text, str) and not isinstance(ns_sel_text, str):
        return None
    sel: Selector = parse_selector(sel_text) if isinstance(sel_text, str) else All()
    if isinstance(ns_sel_text, str):
        return conjoin(sel, prefixed(parse_selector(ns_sel_text), NS_PREFIX))
    if namespace:
        return conjoin(sel, Compare(NS_LABEL, "==", namespace))
    return sel


def compile_side(ent: Any, namespace: str | None) -> Match:
    """Compile one rule side (`source` or `destination`) into a Match, scoping its selectors.
    Raises SelectorError."""
    ent = _dict(ent)
    sel = scoped(ent.get("selector"), ent.get("namespaceSelector"), namespace)
    not_sel = scoped(ent.get("notSelector"), None, namespace)
    return Match(
        nets=_strs(ent.get("nets")),
        not_nets=_strs(ent.get("notNets")),
        ports=_strs(ent.get("ports")),
        not_ports=_strs(ent.get("notPorts")),
        ipset=str(sel) if sel is not None else "",
        not_ipset=str(not_sel) if not_sel is not None else "",
    )


def compile_rules(raw: Any, namespace: str | None, origin: str) -> tuple[Rule, ...]:
    """Compile a rule list; `origin` names the policy or profile in each rule.  Raises
    SelectorError."""
    rules = raw if isinstance(raw, list) else []
    out = []
    for r in rules:
        r = _dict(r)
        proto = r.get("protocol")
        out.append(
            Rule(
                action=str(r.get("action", "")),
                protocol=str(proto) if proto is not None else "",
                src=compile_side(r.get("source"), namespace),
                dst=compile_side(r.get("destination"), namespace),
                origin=origin,
            )
        )
    return tuple(out)


@dataclass(frozen=True, slots=True)
class PolicyDef:
    """A policy compiled for the agent: its sort key, its (scoped) selector, and its rules per
    direction (None: not applied in that direction)."""

    sort_key: tuple[int, str, float, str]
    selector: Selector
    ingress: tuple[Rule, ...] | None  # None: the policy does not apply to ingress
    egress: tuple[Rule, ...] | None

    @staticmethod
    def parse(value: dict[str, Any], *, namespaced: bool) -> PolicyDef:
        """Raises SelectorError for a bad selector anywhere in the policy."""
        meta, spec = _dict(value.get("metadata")), _dict(value.get("spec"))
        name = str(meta.get("name", ""))
        ns = str(meta.get("namespace", "")) if namespaced else None
        sel = parse_selector(spec.get("selector") if isinstance(spec.get("selector"), str) else "")
        if ns:
            sel = conjoin(sel, Compare(NS_LABEL, "==", ns))
        elif isinstance(spec.get("namespaceSelector"), str):
            sel = conjoin(sel, prefixed(parse_selector(spec["namespaceSelector"]), NS_PREFIX))
        types = spec.get("types")
        if not isinstance(types, list):
            types = ["Ingress"] + (["Egress"] if spec.get("egress") else [])
        tier = str(spec["tier"]) if isinstance(spec.get("tier"), str) else DEFAULT_TIER
        order = spec.get("order")
        order_f = (
            float(order)
            if isinstance(order, int | float) and not isinstance(order, bool)
            else float("inf")
        )
        origin = f"{ns}/{name}" if ns else name
        return PolicyDef(
            # Named tiers first (by name), the default tier last; then order, then name.
            sort_key=(1 if tier == DEFAULT_TIER else 0, tier, order_f, origin),
            selector=sel,
            ingress=compile_rules(spec.get("ingress"), ns, origin) if "Ingress" in types else None,
            egress=compile_rules(spec.get("egress"), ns, origin) if "Egress" in types else None,
        )


@dataclass(frozen=True, slots=True)
class ProfileDef:
    """A profile compiled for the agent: its rules and the labels it applies."""

    ingress: tuple[Rule, ...]
    egress: tuple[Rule, ...]
    labels: dict[str, str]  # labelsToApply

    @staticmethod
    def parse(value: dict[str, Any]) -> ProfileDef:
        """Compile a Profile value.  Raises SelectorError."""
        meta, spec = _dict(value.get("metadata")), _dict(value.get("spec"))
        name = f"profile {meta.get('name', '')}"
        return ProfileDef(
            ingress=compile_rules(spec.get("ingress"), None, name),
            egress=compile_rules(spec.get("egress"), None, name),
            labels=labels_of({"labels": spec.get("labelsToApply")}),
        )


END_OF_TIER = Rule("Deny", origin="end of policies: no policy allowed it")


def effective_labels(ep: Endpoint, profiles: dict[str, ProfileDef]) -> dict[str, str]:
    """The endpoint's own labels plus those its profiles apply (namespace
    profiles' under the pcns. prefix); its own labels win."""
    labels = dict(ep.labels)
    if ep.namespace:
        labels.setdefault(NS_LABEL, ep.namespace)
    for name in ep.profiles:
        prof = profiles.get(name)
        if prof is None:
            continue
        prefix = NS_PREFIX if name.startswith("kns.") else ""
        for k, v in prof.labels.items():
            labels.setdefault(prefix + k, v)
    return labels


def chain(
    direction: str,
    policies: list[PolicyDef],
    ep: Endpoint,
    profiles: dict[str, ProfileDef],
) -> tuple[Rule, ...]:
    """The rule chain of one endpoint and direction: the rules of the
    policies that select it, in order, closed by a deny; or, if no policy
    applies in this direction, its profiles' rules."""
    rules: list[Rule] = []
    applied = False
    for pol in sorted(policies, key=lambda p: p.sort_key):
        rs = pol.ingress if direction == "ingress" else pol.egress
        if rs is None:
            continue
        applied = True
        rules.extend(rs)
    if applied:
        rules.append(END_OF_TIER)
        return tuple(rules)
    for name in ep.profiles:
        prof = profiles.get(name)
        if prof is not None:
            rules.extend(prof.ingress if direction == "ingress" else prof.egress)
    return tuple(rules)


def ipsets_of(rules: tuple[Rule, ...]) -> set[str]:
    """The IP sets (selector texts) a chain's rules reference."""
    out: set[str] = set()
    for r in rules:
        for side in (r.src, r.dst):
            if side.ipset:
                out.add(side.ipset)
            if side.not_ipset:
                out.add(side.not_ipset)
    return out
