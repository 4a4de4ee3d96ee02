"""Assembling one endpoint's chains from the policies that select it (pure).

A chain is evaluated top to bottom: the first Allow or Deny that matches is
the verdict, Log continues, Pass skips the rest of the rule's group; a chain
that runs out gives no verdict.  That is exactly Felix's layout:

* `normal` chains (every endpoint): per tier that holds a policy for this
  direction, in tier order, the policies' rules in policy order, then the
  tier's end: Deny, unless the tier's default action is Pass.  Then the
  endpoint's profiles, each its own group, then Deny.  Policies marked
  doNotTrack or preDNAT are not part of these chains.
* host endpoints also get `forward` chains (applyOnForward policies; with no
  such policy, forwarded traffic is allowed), `pre-dnat` chains (preDNAT
  policies, ingress only) and `untracked` chains (doNotTrack policies).
  The last two never end a tier with Deny and never consult profiles: what
  they do not decide goes on to the normal chains.

A staged policy sits in its tier where it would be once promoted (just
before a policy of the same name): its rules count what it would decide and
decide nothing.  In a tier where no enforced policy governs the direction,
each staged policy also counts what would meet the tier's end, as it would
if it were promoted alone.

Each chain exists per IP family; a rule that cannot match in a family is not
in that family's chain (rules.RuleSpec.for_family).
"""

from __future__ import annotations

import functools
from collections import defaultdict
from collections.abc import Iterable

from dataplane.batch import (
    DEFAULT_RULE,
    END_OF_PROFILES,
    END_OF_TIER,
    PROFILE_TIER,
    Action,
    ChainKey,
    Direction,
    IpSetId,
    Rule,
    RuleRef,
    Stage,
)
from felix_client.calc.model import Endpoint
from felix_client.calc.policy_defs import PolicyDef, ProfileDef, TierDef, tier_of, tier_sort_key

FAMILIES = (4, 6)


def _in_stage(pol: PolicyDef, stage: Stage) -> bool:
    if stage is Stage.UNTRACKED:
        return pol.do_not_track
    if stage is Stage.PRE_DNAT:
        return pol.pre_dnat and not pol.do_not_track
    normal = not pol.do_not_track and not pol.pre_dnat
    return normal and (stage is Stage.NORMAL or pol.apply_on_forward)


def endpoint_chains(
    key: str,
    ep: Endpoint,
    policies: Iterable[PolicyDef],
    tiers: dict[str, TierDef],
    profiles: dict[str, ProfileDef],
) -> dict[ChainKey, tuple[Rule, ...]]:
    """Every chain of one local endpoint, from the policies whose selector
    matches it."""
    by_tier: defaultdict[str, list[PolicyDef]] = defaultdict(list)
    for pol in policies:
        by_tier[pol.tier].append(pol)
    ordered = [
        (name, tier_of(name, tiers), sorted(pols, key=lambda p: p.sort_key))
        for name, pols in sorted(by_tier.items(), key=lambda kv: tier_sort_key(kv[0], tiers))
    ]
    stages = (Stage.NORMAL, Stage.FORWARD, Stage.PRE_DNAT, Stage.UNTRACKED)
    out: dict[ChainKey, tuple[Rule, ...]] = {}
    for stage in stages if ep.host else (Stage.NORMAL,):
        staged = [(n, t, [p for p in ps if _in_stage(p, stage)]) for n, t, ps in ordered]
        staged = [(n, t, ps) for n, t, ps in staged if ps]
        for direction in Direction:
            if stage is Stage.PRE_DNAT and direction is Direction.EGRESS:
                continue
            for family in FAMILIES:
                rules = _chain(stage, direction, family, staged, ep, profiles)
                if rules or stage is Stage.NORMAL:
                    out[ChainKey(key, direction, family, stage)] = rules
    return out


def _chain(
    stage: Stage,
    direction: Direction,
    family: int,
    tiers: list[tuple[str, TierDef, list[PolicyDef]]],
    ep: Endpoint,
    profiles: dict[str, ProfileDef],
) -> tuple[Rule, ...]:
    rules: list[Rule] = []
    ends_in_deny = stage in (Stage.NORMAL, Stage.FORWARD)
    for name, tier, pols in tiers:
        governing = [p for p in pols if p.rules(direction) is not None]
        if not governing:
            continue
        enforced = any(not p.staged for p in governing)
        tier_denies = ends_in_deny and tier.default_action is Action.DENY
        for pol in governing:
            rules.extend(pol.rules_for(direction, family))
            if pol.staged and tier_denies and not enforced:
                # Promoted, it would be the tier's only policy here: what it
                # does not match would meet the tier's end.
                ref = RuleRef(name, pol.name, DEFAULT_RULE, staged=True)
                rules.append(Rule(Action.DENY, group=name, origin=f"end of tier {name}", ref=ref))
        if enforced and tier_denies:
            rules.append(_tier_end(name))
    if stage is Stage.FORWARD and not any(not p.staged for _, _, ps in tiers for p in ps):
        rules.append(Rule(Action.ALLOW, origin="no applyOnForward policy: forwarding allowed"))
    if stage is Stage.NORMAL:
        for pname in ep.profiles:
            prof = profiles.get(pname)
            if prof is None:
                continue
            rules.extend(prof.rules_for(direction, family))
        rules.append(_PROFILES_END)
    return tuple(rules)


# The defaults, made once: every chain of every endpoint ends with them.
_PROFILES_END = Rule(
    Action.DENY,
    origin="end of profiles",
    ref=RuleRef(PROFILE_TIER, END_OF_PROFILES, DEFAULT_RULE),
)


@functools.lru_cache(maxsize=256)
def _tier_end(tier: str) -> Rule:
    ref = RuleRef(tier, END_OF_TIER, DEFAULT_RULE)
    return Rule(Action.DENY, group=tier, origin=f"end of tier {tier}", ref=ref)


def ipsets_of(rules: Iterable[Rule]) -> set[IpSetId]:
    """The IP sets a chain's rules reference."""
    out: set[IpSetId] = set()
    for r in rules:
        out.update(r.sets())
    return out
