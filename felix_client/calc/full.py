"""The same results computed from scratch over a whole state, with no
indexes: the reference the incremental calculation is tested against, and a
way to audit a running agent."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from calico_model.errors import InvalidValue
from calico_model.keys import DEFAULT_PREFIX, KeyLayout, Kind
from calico_model.policies import Policy, Profile, StagedAction, StagedPolicy, Tier
from calico_model.selector import parse as parse_selector
from calico_model.validation import check_resource
from dataplane.batch import (
    ChainKey,
    DataplaneBatch,
    EndpointInfo,
    IpSetId,
    Route,
    RouteKind,
    Rule,
    Vtep,
)
from dataplane.memory import MemoryDataplane
from dataplane.ownership import Ownership
from felix_client.calc.chain_build import endpoint_chains, ipsets_of
from felix_client.calc.ipset_members import members_of
from felix_client.calc.model import (
    Block,
    Endpoint,
    IPNet,
    Node,
    Pool,
    endpoint_info,
    vtep_of,
)
from felix_client.calc.policy_defs import PolicyDef, ProfileDef, TierDef, effective_labels
from felix_client.calc.routes import in_pool, remote_route, within


@dataclass(frozen=True, slots=True)
class Tables:
    """A node's tables: routes by destination, IP sets, chains, and where each
    local endpoint's chains attach."""

    routes: dict[str, Route]
    ipsets: dict[IpSetId, set[str]]
    chains: dict[ChainKey, tuple[Rule, ...]]
    endpoints: dict[str, EndpointInfo]
    vteps: dict[str, Vtep]


def compute(
    state: Mapping[str, Any],
    node: str,
    *,
    prefix: str = DEFAULT_PREFIX,
    ownership: Ownership | None = None,
) -> Tables:
    """The node's tables computed from scratch over a whole state, as the
    agent would program them (what it does not own left out): the
    reference the incremental Calculator is tested against, and what
    `felix-agent compute` prints."""
    layout = KeyLayout(prefix)
    nodes: dict[str, Node] = {}
    pools: list[Pool] = []
    blocks: list[tuple[str, Block]] = []
    eps: dict[str, Endpoint] = {}
    weps: dict[str, Endpoint] = {}
    policies: list[PolicyDef] = []
    profiles: dict[str, ProfileDef] = {}
    tiers: dict[str, TierDef] = {}
    for key in sorted(state):
        value = state[key]
        if not isinstance(value, dict):
            continue
        rk = layout.parse(key)
        if rk is None:
            continue
        kind = rk.kind
        try:
            # As the Calculator: what validation refuses is not in the state.
            model = check_resource(rk, value)
        except InvalidValue:
            continue
        if isinstance(model, Node):
            nodes[rk.name] = model
        elif isinstance(model, Pool):
            pools.append(model)
        elif isinstance(model, Block):
            blocks.append((key, model))
        elif kind in (Kind.WORKLOAD_ENDPOINT, Kind.HOST_ENDPOINT):
            if isinstance(model, Endpoint):
                eps[key] = model
                if kind is Kind.WORKLOAD_ENDPOINT:
                    weps[key] = model
        elif isinstance(model, Policy):
            policies.append(PolicyDef.of(model))
        elif isinstance(model, StagedPolicy) and model.action is StagedAction.SET:
            policies.append(PolicyDef.of(model.policy, staged=True))
        elif isinstance(model, Profile):
            profiles[rk.name] = ProfileDef.of(model)
        elif isinstance(model, Tier):
            tiers[rk.name] = TierDef.of(model)

    me = nodes.get(node)

    def remote(dst: str, net: IPNet, node_name: str) -> Route | None:
        return remote_route(dst, net, nodes.get(node_name), me, pools)

    claims: dict[str, dict[str, Route]] = {}
    for key, b in blocks:
        if b.node is None or not in_pool(b.cidr, pools):
            continue
        dst = str(b.cidr)
        r = Route(dst, RouteKind.BLACKHOLE) if b.node == node else remote(dst, b.cidr, b.node)
        if r is not None:
            claims.setdefault(dst, {})["b:" + key] = r
    for key, ep in weps.items():
        for net in ep.nets:
            dst = str(net)
            r = None
            if ep.node == node:
                r = Route(dst, RouteKind.LOCAL, dev=ep.iface) if ep.iface else None
            elif in_pool(net, pools) and not any(
                within(net, b.cidr) for _, b in blocks if b.node == ep.node
            ):
                r = remote(dst, net, ep.node)
            if r is not None:
                claims.setdefault(dst, {})["w:" + key] = r
    routes = {dst: c[min(c)] for dst, c in claims.items()}

    labels = {k: effective_labels(ep, profiles) for k, ep in eps.items()}
    chains: dict[ChainKey, tuple[Rule, ...]] = {}
    for key, ep in eps.items():
        if ep.node != node:
            continue
        matching = [p for p in policies if p.selector.matches(labels[key])]
        chains.update(endpoint_chains(key, ep, matching, tiers, profiles))
    ipsets: dict[IpSetId, set[str]] = {}
    for rules in chains.values():
        for sid in ipsets_of(rules):
            if sid not in ipsets:
                sel = parse_selector(sid.selector)
                ipsets[sid] = {
                    m
                    for k, ep in eps.items()
                    if sel.matches(labels[k])
                    for m in members_of(sid, ep)
                }
    endpoints = {key: endpoint_info(ep) for key, ep in eps.items() if ep.node == node}
    vteps = {name: v for name, n in nodes.items() if (v := vtep_of(n)) is not None}
    return owned(Tables(routes, ipsets, chains, endpoints, vteps), ownership or Ownership())


def owned(t: Tables, ownership: Ownership) -> Tables:
    """What of `t` the agent may program: the tables through a fresh
    ownership gate, as one batch."""
    dp = MemoryDataplane(ownership=ownership)
    dp.apply(
        DataplaneBatch(
            routes_set=dict(t.routes),
            ipsets_create=set(t.ipsets),
            ipset_add={sid: set(m) for sid, m in t.ipsets.items()},
            chains_set=dict(t.chains),
            endpoints_set=dict(t.endpoints),
            vteps_set=dict(t.vteps),
        )
    )
    return Tables(dp.routes, dp.ipsets, dp.chains, dp.endpoints, dp.vteps)
