"""Policies, profiles and tiers as the agent holds them (parsed once per change).

Calico's rules, which these follow:

* A policy's `selector` in a NetworkPolicy selects only its own namespace; a
  GlobalNetworkPolicy's `namespaceSelector` reads the `pcns.` labels (its
  `all()` meaning "namespaced"); `serviceAccountSelector` reads the `pcsa.`
  labels.
* `spec.types` absent or empty: both Ingress and Egress, as Felix reads a
  stored policy ("no Types means Ingress and Egress").  Calico's API fills
  `types` in from the rule lists when a policy is written through it; a
  policy written straight to etcd without them governs both directions.
* Tiers: `spec.order` (absent: after every ordered tier), then name; tiers
  named by a policy but with no Tier resource come after every known tier.
  `spec.defaultAction` is `Deny` unless it says `Pass`.  The `default` tier
  exists with order 1,000,000 even when the datastore holds no Tier for it,
  as it always does in a Calico cluster.
* Within a tier: `order` (absent: after every ordered policy), then name.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from calico_model.label_maps import LabelMap, intern
from calico_model.policies import Policy, PolicyType, Profile, RuleAction, Tier
from calico_model.selector import All, And, Compare, Global, Has, Selector, prefixed, replace_all
from dataplane.batch import PROFILE_TIER, Action, Direction, Rule, RuleRef
from felix_client.calc.model import Endpoint
from felix_client.calc.rules import (
    NS_LABEL,
    NS_PREFIX,
    SA_LABEL,
    SA_PREFIX,
    RuleSpec,
    Unenforceable,
    compile_rules,
)

DEFAULT_TIER = "default"
DEFAULT_TIER_ORDER = 1_000_000.0
_BOTH_TYPES = (PolicyType.INGRESS, PolicyType.EGRESS)


@dataclass(frozen=True, slots=True)
class TierDef:
    """A tier's order (None: unordered) and its end-of-tier action."""

    order: float | None
    default_action: Action

    @staticmethod
    def of(tier: Tier) -> TierDef:
        """The tier as the chains use it."""
        action = Action.PASS if tier.default_action is RuleAction.PASS else Action.DENY
        return TierDef(tier.order, action)


BUILTIN_DEFAULT_TIER = TierDef(DEFAULT_TIER_ORDER, Action.DENY)
MISSING_TIER = TierDef(None, Action.DENY)


def tier_sort_key(name: str, tiers: dict[str, TierDef]) -> tuple[bool, bool, float, str]:
    """Sort key of a tier: known before unknown, ordered before unordered,
    then order, then name."""
    tier = tiers.get(name)
    if tier is None and name == DEFAULT_TIER:
        tier = BUILTIN_DEFAULT_TIER
    known = tier is not None
    order = tier.order if tier is not None else None
    return (not known, order is None, order if order is not None else 0.0, name)


def tier_of(name: str, tiers: dict[str, TierDef]) -> TierDef:
    """The tier's definition (built-in default, or Deny for an unknown tier)."""
    tier = tiers.get(name)
    if tier is None:
        return BUILTIN_DEFAULT_TIER if name == DEFAULT_TIER else MISSING_TIER
    return tier


@dataclass(frozen=True, slots=True)
class PolicyDef:
    """A (global) network policy compiled for the agent."""

    name: str  # "<namespace>/<name>" for a NetworkPolicy
    tier: str
    sort_key: tuple[float, str, bool]
    selector: Selector
    ingress: tuple[RuleSpec, ...] | None  # None: the policy does not govern ingress
    egress: tuple[RuleSpec, ...] | None
    do_not_track: bool = False
    pre_dnat: bool = False
    apply_on_forward: bool = False
    problems: tuple[Unenforceable, ...] = ()
    # A staged policy's rules count what it would decide and decide nothing.
    staged: bool = False
    # Rendered once per direction and family when parsed: chains are built
    # far more often than policies change.
    rendered: dict[tuple[Direction, int], tuple[Rule, ...]] = field(
        default_factory=dict, compare=False, repr=False
    )

    def rules(self, direction: Direction) -> tuple[RuleSpec, ...] | None:
        """The rules for one direction, or None if the policy does not govern it."""
        return self.ingress if direction is Direction.INGRESS else self.egress

    def rules_for(self, direction: Direction, family: int) -> tuple[Rule, ...]:
        """The rules for one direction as they appear in one family's chain."""
        return self.rendered.get((direction, family), ())

    @staticmethod
    def of(pol: Policy, *, staged: bool = False) -> PolicyDef:
        """Compile a policy read by `calico_model.policies.read_policy`;
        `staged`: it is what a staged policy would make it (its rules only
        count, and a staged Log rule, which decides nothing, is left out)."""
        ns = pol.namespace
        # No types means both directions, as Felix reads a stored policy.
        types = pol.types or _BOTH_TYPES
        origin = f"{ns}/{pol.name}" if ns else pol.name
        problems: list[Unenforceable] = []
        ingress = (
            compile_rules(pol.ingress, ns, origin, problems)
            if PolicyType.INGRESS in types
            else None
        )
        egress = (
            compile_rules(pol.egress, ns, origin, problems)
            if PolicyType.EGRESS in types and not pol.pre_dnat
            else None
        )
        kind = "GlobalNetworkPolicy" if not ns else "NetworkPolicy"
        tier = pol.tier or DEFAULT_TIER
        return PolicyDef(
            rendered=_render(ingress, egress, tier, origin, staged),
            name=origin,
            tier=tier,
            # Calico breaks order ties on "name/namespace/kind"; a staged
            # policy sits just before the policy it would replace, where it
            # would be once promoted.
            sort_key=(
                pol.order if pol.order is not None else math.inf,
                f"{pol.name}/{ns}/{kind}",
                not staged,
            ),
            selector=_policy_selector(pol),
            ingress=ingress,
            egress=egress,
            do_not_track=pol.do_not_track,
            pre_dnat=pol.pre_dnat,
            apply_on_forward=pol.apply_on_forward,
            problems=tuple(problems),
            staged=staged,
        )


def _render(
    ingress: tuple[RuleSpec, ...] | None,
    egress: tuple[RuleSpec, ...] | None,
    group: str,
    name: str,
    staged: bool = False,
    tier: str | None = None,
) -> dict[tuple[Direction, int], tuple[Rule, ...]]:
    """Each direction's rules per family, each counting for its own RuleRef
    (`tier`, default `group`, and `name`)."""
    out: dict[tuple[Direction, int], tuple[Rule, ...]] = {}
    label = group if tier is None else tier
    for direction, specs in ((Direction.INGRESS, ingress), (Direction.EGRESS, egress)):
        kept = [s for s in specs or () if not (staged and s.action is Action.LOG)]
        refs = [RuleRef(label, name, str(s.index), staged) for s in kept]
        for family in (4, 6):
            rules = (s.for_family(family, group, ref) for s, ref in zip(kept, refs, strict=True))
            out[(direction, family)] = tuple(r for r in rules if r is not None)
    return out


def _policy_selector(pol: Policy) -> Selector:
    """The endpoints a policy applies to, combined as Calico combines it."""
    sel = pol.selector
    sa = pol.service_account_selector
    if pol.namespace:
        sel = _append(sel, Compare(NS_LABEL, "==", pol.namespace))
        if sa is not None:
            sel = _append(sel, prefixed(sa, SA_PREFIX))
        return sel if sel is not None else All()
    # As Calico does it: `all()` anywhere in the combined selector then means
    # "namespaced" (or "has a service account").
    if pol.namespace_selector is not None:
        sel = _append(sel, prefixed(pol.namespace_selector, NS_PREFIX))
        sel = replace_all(sel, Has(NS_LABEL), Global())
    if sa is not None:
        sel = replace_all(_append(sel, prefixed(sa, SA_PREFIX)), Has(SA_LABEL), Global())
    return sel if sel is not None else All()


def _append(current: Selector | None, new: Selector) -> Selector:
    return new if current is None else And((current, new))


@dataclass(frozen=True, slots=True)
class ProfileDef:
    """A profile compiled for the agent: its rules and the labels it applies."""

    name: str
    ingress: tuple[RuleSpec, ...]
    egress: tuple[RuleSpec, ...]
    labels: LabelMap  # labelsToApply (shared: never change it)
    problems: tuple[Unenforceable, ...] = ()
    rendered: dict[tuple[Direction, int], tuple[Rule, ...]] = field(
        default_factory=dict, compare=False, repr=False
    )

    def rules(self, direction: Direction) -> tuple[RuleSpec, ...]:
        """The rules for one direction."""
        return self.ingress if direction is Direction.INGRESS else self.egress

    def rules_for(self, direction: Direction, family: int) -> tuple[Rule, ...]:
        """The rules for one direction as they appear in one family's chain
        (each profile is its own group)."""
        return self.rendered.get((direction, family), ())

    @staticmethod
    def of(prof: Profile) -> ProfileDef:
        """Compile a profile read by `calico_model.policies.read_profile`."""
        origin = f"profile {prof.name}"
        problems: list[Unenforceable] = []
        ingress = compile_rules(prof.ingress, "", origin, problems)
        egress = compile_rules(prof.egress, "", origin, problems)
        return ProfileDef(
            rendered=_render(ingress, egress, origin, prof.name, tier=PROFILE_TIER),
            name=prof.name,
            ingress=ingress,
            egress=egress,
            labels=prof.labels_to_apply,
            problems=tuple(problems),
        )


def effective_labels(ep: Endpoint, profiles: dict[str, ProfileDef]) -> dict[str, str]:
    """The endpoint's own labels, then what its profiles apply (first profile
    first); its own labels win.  Profile labels are taken as they are: real
    `kns.`/`ksa.` profiles carry them already prefixed `pcns.`/`pcsa.`.  A
    workload's namespace label is implied by its key, as Calico's workload
    endpoints always carry it."""
    labels = dict(ep.labels)
    if ep.namespace:
        labels.setdefault(NS_LABEL, ep.namespace)
    for name in ep.profiles:
        prof = profiles.get(name)
        if prof is not None:
            for k, v in prof.labels.items():
                labels.setdefault(k, v)
    return intern(labels)
