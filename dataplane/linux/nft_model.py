"""The agent's nftables table as data, and the difference between two of them.

`NftModel` is what the table holds: chains (declaration and rules), sets
(declaration and elements) and dispatch maps (interface to chain).  Every
rule carries a comment that is a hash of its text and position, so a table
read back from the kernel (`from_kernel_json`) compares with the one the
agent wants without parsing nft's rule syntax back.  `diff(old, new)` is the
one transaction that turns `old` into `new`, touching nothing that is equal:
an agent that restarts on a node whose table is right writes nothing.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from dataplane import kernel_values as V
from dataplane.batch import ChainKey, EndpointInfo, EndpointKind, IpSetId, PoolInfo, Rule, Stage
from dataplane.endpoint_to_host import EndpointToHostAction
from dataplane.errors import UnsafeValue
from dataplane.failsafe import Failsafes
from dataplane.linux import nft_render as R
from dataplane.log_prefix import DEFAULT_LOG_PREFIX
from dataplane.ownership import Ownership
from dataplane.policy_counters import CounterKey, chain_counters


@dataclass(frozen=True, slots=True)
class ChainDef:
    """One chain: its declaration (hook, if any) and its rules as (comment,
    text); an endpoint chain also names the counters its own and its group
    chains' rules count into (not part of what compares: the comments are
    hashes of the text, which names them)."""

    decl: str
    rules: tuple[tuple[str, str], ...]
    counters: frozenset[str] = field(default=frozenset(), compare=False)

    def comments(self) -> tuple[str, ...]:
        """What identifies the rules in the kernel."""
        return tuple(c for c, _ in self.rules)


@dataclass
class NftModel:
    """What the agent's table holds (or must hold)."""

    chains: dict[str, ChainDef] = field(default_factory=dict)
    sets: dict[str, tuple[str, frozenset[str]]] = field(default_factory=dict)
    maps: dict[str, dict[str, str]] = field(default_factory=dict)
    table: bool = True
    # Named counters, with what each counts (None: read from the kernel).
    counters: dict[str, CounterKey | None] = field(default_factory=dict)
    # How many endpoint chains count into each (kept by set_chain and
    # remove_chain: a counter goes when the last chain using it goes).
    counter_refs: dict[str, int] = field(default_factory=dict)

    def copy(self) -> NftModel:
        """A copy that can change independently."""
        return NftModel(
            dict(self.chains),
            dict(self.sets),
            {k: dict(v) for k, v in self.maps.items()},
            self.table,
            dict(self.counters),
            dict(self.counter_refs),
        )


def _comment(name: str, index: int, text: str) -> str:
    return hashlib.blake2b(f"{name}|{index}|{text}".encode(), digest_size=8).hexdigest()


def chain_def(name: str, decl: str, statements: list[str]) -> ChainDef:
    """A chain from its rule bodies (the text after `add rule inet T <name>`)."""
    return ChainDef(decl, tuple((_comment(name, i, s), s) for i, s in enumerate(statements)))


def base_model(
    fs: Failsafes | None = None,
    own: Ownership | None = None,
    to_host: EndpointToHostAction = EndpointToHostAction.DROP,
    *,
    nat_excludes_hosts: bool = False,
) -> NftModel:
    """The table with its dispatch maps, hooked base chains, (empty)
    all-interfaces chains and anti-spoofing chain and sets, nothing else."""
    m = NftModel()
    set_base_chains(m, fs, own, to_host, nat_excludes_hosts=nat_excludes_hosts)
    for name in R.map_names():
        m.maps[name] = {}
    for name in R.host_map_names():
        m.chains[R.any_chain(name)] = chain_def(R.any_chain(name), "", [])
    m.chains[R.SOURCE_CHAIN] = chain_def(R.SOURCE_CHAIN, "", R.source_chain_rules())
    for family, name in R.SOURCE_SETS.items():
        m.sets[name] = (R.source_set_spec(family), frozenset())
    for family in (4, 6):
        for name in (R.ALL_POOLS[family], R.NAT_POOLS[family], R.HOST_SETS[family]):
            m.sets[name] = (R.pool_set_spec(family), frozenset())
    return m


def set_pools(m: NftModel, pools: Iterable[PoolInfo]) -> tuple[set[str], list[str]]:
    """Recompute the outgoing-NAT sets from the IP pools: every pool's CIDR,
    and those of natOutgoing pools, collapsed (nft refuses overlapping
    intervals; nested or adjacent pools are one range).  A CIDR that cannot
    be written exactly is left out of both (never masquerading to or from
    what we could not parse) and reported.  Returns (set names, problems)."""
    nets: dict[int, list[ipaddress.IPv4Network | ipaddress.IPv6Network]] = {4: [], 6: []}
    nat: dict[int, list[ipaddress.IPv4Network | ipaddress.IPv6Network]] = {4: [], 6: []}
    problems: list[str] = []
    for pool in pools:
        try:
            cidr = ipaddress.ip_network(V.network(pool.cidr))
        except (UnsafeValue, ValueError) as exc:
            problems.append(f"pool {pool.cidr!r}: {exc}")
            continue
        nets[cidr.version].append(cidr)
        if pool.nat_outgoing:
            nat[cidr.version].append(cidr)
    for family in (4, 6):
        for name, found in ((R.ALL_POOLS[family], nets), (R.NAT_POOLS[family], nat)):
            collapsed = ipaddress.collapse_addresses(found[family])  # type: ignore[type-var]
            m.sets[name] = (R.pool_set_spec(family), frozenset(_interval(n) for n in collapsed))
    return set(R.ALL_POOLS.values()) | set(R.NAT_POOLS.values()), problems


def set_hosts(m: NftModel, addresses: Iterable[str]) -> tuple[set[str], list[str]]:
    """Recompute the node-address sets (outgoing NAT's exclusions under
    IPPoolsAndHostIPs) from every node's addresses.  An address that cannot
    be written exactly is left out and reported.  Returns (set names,
    problems)."""
    found: dict[int, set[str]] = {4: set(), 6: set()}
    problems: list[str] = []
    for text in addresses:
        try:
            addr = V.address(text)  # canonical, as nft prints it back
        except UnsafeValue as exc:
            problems.append(f"node address {text!r}: {exc}")
            continue
        found[6 if ":" in addr else 4].add(addr)
    for family in (4, 6):
        m.sets[R.HOST_SETS[family]] = (R.pool_set_spec(family), frozenset(found[family]))
    return set(R.HOST_SETS.values()), problems


def _interval(n: ipaddress.IPv4Network | ipaddress.IPv6Network) -> str:
    """A CIDR as nft prints an interval set's element back (a single
    address without its length)."""
    return str(n.network_address) if n.prefixlen == n.max_prefixlen else str(n)


def set_base_chains(
    m: NftModel,
    fs: Failsafes | None = None,
    own: Ownership | None = None,
    to_host: EndpointToHostAction = EndpointToHostAction.DROP,
    *,
    nat_excludes_hosts: bool = False,
) -> set[str]:
    """Put the hooked base chains for these settings into the model;
    returns their names."""
    names = set()
    for name, decl, stmts in R.base_chains(fs, own, to_host, nat_excludes_hosts=nat_excludes_hosts):
        m.chains[name] = chain_def(name, decl, stmts)
        names.add(name)
    return names


def set_sources(
    m: NftModel, endpoints: dict[str, EndpointInfo], own: Ownership | None = None
) -> set[str]:
    """Recompute the anti-spoofing sets from the local workloads: each
    workload interface with each of its addresses.  An address or interface
    that cannot be written exactly is left out, so its packets are dropped,
    never let through.  Returns the names of the sets."""
    own = own or Ownership()
    pairs: dict[int, set[str]] = {4: set(), 6: set()}
    for ep in endpoints.values():
        if ep.kind is not EndpointKind.WORKLOAD or not own.workload_interface(ep.interface):
            continue
        for addr in ep.addresses:
            try:
                pairs[6 if ":" in addr else 4].add(R.source_element(ep.interface, addr))
            except UnsafeValue:
                continue
    for family, name in R.SOURCE_SETS.items():
        m.sets[name] = (R.source_set_spec(family), frozenset(pairs[family]))
    return set(R.SOURCE_SETS.values())


# What a chain holds when one of its rules cannot be rendered exactly: the
# endpoint's traffic in that direction is dropped, never let through.
REFUSED_CHAIN = ["counter drop"]


def set_chain(
    m: NftModel, ck: ChainKey, rules: tuple[Rule, ...], log_prefix: str = DEFAULT_LOG_PREFIX
) -> str | None:
    """Put one endpoint chain (and its group chains) into the model, where
    there is none (`remove_chain` first), with the counters its rules count
    into.  A chain with a rule that cannot be rendered exactly becomes a
    drop; returns why, or None."""
    try:
        bodies = R.chain_bodies(ck, rules, log_prefix)
    except UnsafeValue as exc:
        name = R.chain_name(ck)
        m.chains[name] = chain_def(name, "", REFUSED_CHAIN)
        return str(exc)
    counters = chain_counters(rules, ck.direction)
    for name, key in counters.items():
        m.counters[name] = key
        m.counter_refs[name] = m.counter_refs.get(name, 0) + 1
    for i, (name, stmts) in enumerate(bodies):
        c = chain_def(name, "", stmts)
        m.chains[name] = ChainDef(c.decl, c.rules, frozenset(counters)) if i == 0 else c
    return None


def chain_names(m: NftModel, ck: ChainKey) -> set[str]:
    """The names of an endpoint chain and its group chains in the model."""
    prefix = R.chain_name(ck)
    return {n for n in m.chains if n == prefix or n.startswith(prefix + "_")}


def chain_counters_in(m: NftModel, ck: ChainKey) -> frozenset[str]:
    """The counters an endpoint chain in the model counts into."""
    c = m.chains.get(R.chain_name(ck))
    return c.counters if c is not None else frozenset()


def remove_chain(m: NftModel, ck: ChainKey) -> None:
    """Remove one endpoint chain and its group chains from the model, and
    the counters no other chain counts into."""
    for name in chain_counters_in(m, ck):
        left = m.counter_refs.get(name, 0) - 1
        if left > 0:
            m.counter_refs[name] = left
        else:
            m.counter_refs.pop(name, None)
            m.counters.pop(name, None)
    for name in chain_names(m, ck):
        del m.chains[name]


def _elements(sid: IpSetId, members: Iterable[str], unsafe: list[str]) -> set[str]:
    out = set()
    for x in members:
        try:
            out.add(R.element(sid, x))
        except UnsafeValue as exc:
            unsafe.append(str(exc))
    return out


def set_set(m: NftModel, sid: IpSetId, members: set[str]) -> list[str]:
    """Put one IP set with its members into the model; returns why members
    were left out (the calculation only produces canonical addresses, so
    any is a bug to report)."""
    unsafe: list[str] = []
    m.sets[R.set_name(sid)] = (R.set_spec(sid), frozenset(_elements(sid, members, unsafe)))
    return unsafe


def update_set(m: NftModel, sid: IpSetId, add: Iterable[str], remove: Iterable[str]) -> list[str]:
    """Change one IP set's members in the model by difference; returns why
    members were left out."""
    unsafe: list[str] = []
    spec, members = m.sets[R.set_name(sid)]
    gone = _elements(sid, remove, unsafe)
    new = _elements(sid, add, unsafe)
    m.sets[R.set_name(sid)] = (spec, (members - gone) | new)
    return unsafe


def set_dispatch(
    m: NftModel,
    chains: Iterable[ChainKey],
    endpoints: dict[str, EndpointInfo],
    host_ifaces: Callable[[EndpointInfo], list[str]],
    own: Ownership | None = None,
) -> set[str]:
    """Recompute the dispatch maps (each local workload's interface, each
    named host endpoint's interfaces, to their chains) and the
    all-interfaces chains; `host_ifaces` names a host endpoint's interfaces
    (its `interface`, or those holding its expected addresses).  Returns the
    names of the all-interfaces chains, rewritten here."""
    for name in m.maps:
        m.maps[name] = {}
    # As Felix decides: each interface belongs to the first host endpoint
    # (by key) that names it or holds one of its addresses; the first
    # all-interfaces endpoint takes every other non-workload interface.
    owner: dict[str, str] = {}
    star_key = ""
    for key in sorted(endpoints):
        ep = endpoints[key]
        if ep.kind is not EndpointKind.HOST:
            continue
        if ep.interface == "*":
            star_key = star_key or key
            continue
        for iface in host_ifaces(ep):
            if _safe_host_iface(iface, own):
                owner.setdefault(iface, key)
    star: dict[str, str] = {}
    for ck in chains:
        info = endpoints.get(ck.endpoint)
        if info is None:
            continue
        if info.kind is EndpointKind.WORKLOAD:
            # Only what the gate admitted reaches here; checked again because
            # a map entry is what steers a host's traffic into a chain.
            if R.dispatched(ck) and (own or Ownership()).workload_interface(info.interface):
                m.maps[R.dispatch_map(ck.direction, ck.family)][info.interface] = R.chain_name(ck)
            continue
        mp = R.dispatch_map(ck.direction, ck.family, EndpointKind.HOST, ck.stage)
        if mp not in m.maps:
            continue
        if info.interface == "*":
            # As in Calico, an all-interfaces endpoint has no untracked policy.
            if ck.endpoint == star_key and ck.stage is not Stage.UNTRACKED:
                star[mp] = R.chain_name(ck)
            continue
        for iface in host_ifaces(info):
            if owner.get(iface) == ck.endpoint:
                m.maps[mp][iface] = R.chain_name(ck)
    named = sorted(owner)
    rewritten = set()
    for mp in R.host_map_names():
        name = R.any_chain(mp)
        rules = R.any_chain_rules(mp, star.get(mp, ""), named, own or Ownership())
        m.chains[name] = chain_def(name, "", rules)
        rewritten.add(name)
    return rewritten


def diff(old: NftModel, new: NftModel) -> list[str]:
    """Statements turning `old` into `new` as one transaction; empty if equal."""
    t = f"inet {R.TABLE}"
    out: list[str] = []
    if not old.table:
        out.append(f"add table {t}")
    for name, (spec, members) in new.sets.items():
        have = old.sets.get(name)
        if have is None or have[0] != spec:
            if have is not None:
                out.append(f"flush set {t} {name}")
            out.append(f"add set {t} {name} {{ {spec} }}")
            add = members
        else:
            add = members - have[1]
        if add:
            out.append(f"add element {t} {name} {{ {', '.join(sorted(add))} }}")
    for name in new.maps:
        if name not in old.maps:
            out.append(f"add map {t} {name} {{ type ifname : verdict; }}")
    out += [f"add counter {t} {n}" for n in sorted(new.counters.keys() - old.counters.keys())]
    changed = [
        n
        for n, c in new.chains.items()
        if old.chains.get(n) != c and chain_differs(old.chains.get(n), c)
    ]
    # Declare every chain before any rule jumps to one.
    for name in changed:
        c = new.chains[name]
        out.append(f"add chain {t} {name}" + (f" {{ {c.decl} }}" if c.decl else ""))
    for name in changed:
        out.append(f"flush chain {t} {name}")
        out += [f'add rule {t} {name} {s} comment "{k}"' for k, s in new.chains[name].rules]
    for name, targets in new.maps.items():
        had = old.maps.get(name, {})
        gone = [i for i, c in had.items() if targets.get(i) != c]
        if gone:
            out.append(f"delete element {t} {name} {{ {', '.join(_q(i) for i in sorted(gone))} }}")
        fresh = {i: c for i, c in targets.items() if had.get(i) != c}
        if fresh:
            items = ", ".join(f"{_q(i)} : jump {c}" for i, c in sorted(fresh.items()))
            out.append(f"add element {t} {name} {{ {items} }}")
    removed = [n for n in old.chains if n not in new.chains]
    out += [f"flush chain {t} {n}" for n in removed]
    out += [f"delete chain {t} {n}" for n in sorted(removed, key=len)]
    for name, (_, members) in new.sets.items():
        have = old.sets.get(name)
        if have is not None and have[0] == new.sets[name][0] and (gone_m := have[1] - members):
            out.append(f"delete element {t} {name} {{ {', '.join(sorted(gone_m))} }}")
    out += [f"delete set {t} {n}" for n in old.sets if n not in new.sets]
    out += [f"delete map {t} {n}" for n in old.maps if n not in new.maps]
    # Last: a counter a rule still uses cannot be deleted.
    out += [f"delete counter {t} {n}" for n in sorted(old.counters.keys() - new.counters.keys())]
    return out


def chain_differs(have: ChainDef | None, want: ChainDef) -> bool:
    """Whether the kernel's chain (None: absent) must be rewritten to `want`."""
    return have is None or have.comments() != want.comments() or have.decl != want.decl


def _q(iface: str) -> str:
    return R.quote_ifname(iface)


def _safe_host_iface(iface: str, own: Ownership | None) -> bool:
    """An interface a host endpoint may be dispatched on: a plain name (the
    kernel allows names nft could not quote) that is not a workload's."""
    try:
        V.ifname(iface)
    except UnsafeValue:
        return False
    return not (own or Ownership()).workload_interface(iface)


def from_kernel_json(doc: dict[str, Any]) -> NftModel:
    """The table as `nft -j list table` reports it (empty model, `table`
    False, if there is no such table)."""
    m = NftModel(table=False)
    rules: dict[str, list[str]] = {}
    decls: dict[str, str] = {}
    for obj in doc.get("nftables", []):
        if "table" in obj:
            m.table = True
        elif "chain" in obj:
            c = obj["chain"]
            decls[c["name"]] = R.hook_decl(c) if "hook" in c else ""
            rules.setdefault(c["name"], [])
        elif "rule" in obj:
            r = obj["rule"]
            rules.setdefault(r["chain"], []).append(r.get("comment", ""))
        elif "set" in obj:
            s = obj["set"]
            by_ifname = _types(s)[:1] == ["ifname"]
            m.sets[s["name"]] = (
                R.set_spec_of_kernel(s),
                frozenset(_elem(e, by_ifname) for e in s.get("elem", [])),
            )
        elif "counter" in obj:
            m.counters[obj["counter"]["name"]] = None
        elif "map" in obj:
            mp = obj["map"]
            m.maps[mp["name"]] = {
                e[0]: e[1].get("jump", {}).get("target", "")
                for e in mp.get("elem", [])
                if isinstance(e, list) and isinstance(e[1], dict)
            }
    for name, comments in rules.items():
        m.chains[name] = ChainDef(decls.get(name, ""), tuple((c, "") for c in comments))
    return m


def _types(s: dict[str, Any]) -> list[str]:
    t = s.get("type")
    return [str(x) for x in t] if isinstance(t, list) else [str(t)]


def _elem(e: Any, by_ifname: bool = False) -> str:
    """A set element as the model writes it (an interface name first, as in
    the source sets, quoted)."""
    if isinstance(e, dict) and "concat" in e:
        parts = [str(x) for x in e["concat"]]
        if by_ifname:
            parts[0] = f'"{parts[0]}"'
        return " . ".join(parts)
    if isinstance(e, dict) and "prefix" in e:
        return f"{e['prefix']['addr']}/{e['prefix']['len']}"
    return str(e)
