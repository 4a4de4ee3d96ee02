"""The same results computed from scratch over a whole state, with no
indexes: the reference the incremental calculation is tested against, and a
way to audit a running agent."""

from __future__ import annotations

import contextlib
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from calico_model.errors import SelectorError
from calico_model.keys import DEFAULT_PREFIX, KeyLayout, Kind
from calico_model.selector import parse as parse_selector
from felix_client.calc.model import Block, Endpoint, IPv4Net, Node, Pool
from felix_client.calc.rules import PolicyDef, ProfileDef, chain, effective_labels, ipsets_of
from felix_client.dataplane.batch import ChainKey, Route, Rule


@dataclass(frozen=True, slots=True)
class Tables:
    """A node's tables: routes by destination, IP sets by selector text, chains by (endpoint key,
    direction)."""

    routes: dict[str, Route]
    ipsets: dict[str, set[str]]
    chains: dict[ChainKey, tuple[Rule, ...]]


def compute(state: Mapping[str, Any], node: str, *, prefix: str = DEFAULT_PREFIX) -> Tables:
    """The node's tables computed from scratch over a whole state: the
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
    for key in sorted(state):
        value = state[key]
        if not isinstance(value, dict):
            continue
        rk = layout.parse(key)
        kind = rk.kind if rk is not None else None
        if rk is None:
            continue
        if kind is Kind.NODE:
            nodes[rk.name] = Node.parse(value)
        elif kind is Kind.IP_POOL:
            if (p := Pool.parse(value)) is not None:
                pools.append(p)
        elif kind is Kind.IPAM_BLOCK:
            if (b := Block.parse(value)) is not None:
                blocks.append((key, b))
        elif kind in (Kind.WORKLOAD_ENDPOINT, Kind.HOST_ENDPOINT):
            eps[key] = Endpoint.parse(value, host=kind is Kind.HOST_ENDPOINT)
            if kind is Kind.WORKLOAD_ENDPOINT:
                weps[key] = eps[key]
        elif kind in (Kind.NETWORK_POLICY, Kind.GLOBAL_NETWORK_POLICY):
            with contextlib.suppress(SelectorError):
                policies.append(PolicyDef.parse(value, namespaced=kind is Kind.NETWORK_POLICY))
        elif kind is Kind.PROFILE:
            with contextlib.suppress(SelectorError):
                profiles[rk.name] = ProfileDef.parse(value)

    me = nodes.get(node)

    def pool_for(net: IPv4Net) -> Pool | None:
        cands = [p for p in pools if net.subnet_of(p.cidr)]
        return max(cands, key=lambda p: p.cidr.prefixlen) if cands else None

    def tunnel(mode: str, ip: str) -> bool:
        if mode == "Always":
            return True
        if mode == "CrossSubnet":
            return me is None or me.subnet is None or ipaddress.ip_address(ip) not in me.subnet
        return False

    def remote(dst: str, net: IPv4Net, node_name: str) -> Route | None:
        n = nodes.get(node_name)
        if n is None or n.ip is None:
            return None
        p = pool_for(net)
        if p is not None and tunnel(p.vxlan, n.ip):
            return Route(dst, "vxlan", via=n.vxlan_addr or n.ip)
        if p is not None and tunnel(p.ipip, n.ip):
            return Route(dst, "ipip", via=n.ip)
        return Route(dst, "via", via=n.ip)

    claims: dict[str, dict[str, Route]] = {}
    for key, b in blocks:
        if b.node is None:
            continue
        dst = str(b.cidr)
        r = Route(dst, "blackhole") if b.node == node else remote(dst, b.cidr, b.node)
        if r is not None:
            claims.setdefault(dst, {})["b:" + key] = r
    for key, ep in weps.items():
        for net in ep.nets:
            dst = str(net)
            r = None
            if ep.node == node:
                r = Route(dst, "local", dev=ep.iface) if ep.iface else None
            elif not any(net.subnet_of(b.cidr) for _, b in blocks if b.node == ep.node):
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
        for direction in ("ingress", "egress"):
            chains[(key, direction)] = chain(direction, matching, ep, profiles)
    ipsets: dict[str, set[str]] = {}
    for rules in chains.values():
        for sid in ipsets_of(rules):
            if sid not in ipsets:
                sel = parse_selector(sid)
                ipsets[sid] = {
                    str(n) for k, ep in eps.items() if sel.matches(labels[k]) for n in ep.nets
                }
    return Tables(routes, ipsets, chains)
