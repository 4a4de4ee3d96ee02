"""Rendering the chain model as nftables statements (pure; no kernel).

Everything lives in one table of our own, `inet <TABLE>`; nothing else is
ever touched.  The layout:

* a named set per IP set (`s4_<hash>` / `s6_<hash>`: addresses;
  `n4_<hash>` / `n6_<hash>`: `addr . inet_proto . inet_service` for named
  ports);
* a regular chain per endpoint chain (`e_<hash>`), and one per tier or profile
  group inside it (`e_<hash>_<i>`), so that `Pass` is a `return` from the
  group's chain;
* every rule is commented with a hash of its text and position
  (`nft_model`), which is how a table read back is compared;
* base chains on the forward and input hooks that accept established flows,
  drop invalid ones, then dispatch by interface through verdict maps
  (`from_wl4`, `to_wl4`, ... : `ifname : jump <chain>`) per IP family: a
  packet from a workload goes through that workload's egress chain, a packet
  to one through its ingress chain, both when it goes from one to another.

An Allow sets the accept bit of the packet mark and returns; the endpoint
chain returns as soon as the bit is set, so the base chain goes on to the
next endpoint's chain; a Deny drops.  Every rule has a counter: a policy's
or profile's rule counts into its policy rule's named counter
(`policy_counters`), shared by every chain that holds the rule.  A staged
policy's rules sit in a chain of their own, jumped to where the policy
would be once promoted: each counts and returns, deciding nothing.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterable
from typing import Any

from calico_model.protocols import PROTOCOL_NAMES
from dataplane import kernel_values as V
from dataplane.batch import (
    Action,
    ChainKey,
    Direction,
    EndpointKind,
    IpSetId,
    Match,
    Rule,
    Stage,
)
from dataplane.endpoint_to_host import EndpointToHostAction
from dataplane.failsafe import Failsafes, ProtoPort
from dataplane.log_prefix import DEFAULT_LOG_PREFIX, expand
from dataplane.ownership import Ownership
from dataplane.policy_counters import counter_name, rule_counter

TABLE = "felix_typha"
ACCEPT_MARK = 0x10000


def _h(text: str) -> str:
    return hashlib.blake2b(text.encode(), digest_size=6).hexdigest()


def set_name(sid: IpSetId) -> str:
    """The nft name of an IP set."""
    kind = "n" if sid.port_name else "s"
    return f"{kind}{sid.family}_{_h(f'{sid.selector}|{sid.port_name}|{sid.protocol}')}"


def set_spec(sid: IpSetId) -> str:
    """The type of an IP set, as it appears inside `add set ... { }`."""
    addr = "ipv4_addr" if sid.family == 4 else "ipv6_addr"
    if sid.port_name:
        return f"type {addr} . inet_proto . inet_service;"
    return f"type {addr};"


def set_spec_of_kernel(s: dict[str, Any]) -> str:
    """The same text for a set as `nft -j` reports it."""
    t = s.get("type")
    parts = t if isinstance(t, list) else [t]
    flags = s.get("flags")
    flags = flags if isinstance(flags, list) else [flags] if flags else []
    tail = f" flags {', '.join(str(f) for f in flags)};" if flags else ""
    return f"type {' . '.join(str(p) for p in parts)};{tail}"


_PROTOCOL_TOKENS = frozenset(PROTOCOL_NAMES.values())


def protocol(number: int) -> str:
    """A protocol number as nft writes it (`tcp`, or the number)."""
    return PROTOCOL_NAMES.get(number) or V.byte(number, "protocol")


def element(sid: IpSetId, member: str) -> str:
    """One member as an nft set element: an address, or `addr . proto . port`
    (canonical, as nft prints them back).  Raises UnsafeValue."""
    if not sid.port_name:
        return V.address(member.partition("/")[0])
    addr, _, rest = member.partition(",")
    proto, _, port = rest.partition(":")
    if proto not in _PROTOCOL_TOKENS:
        proto = V.byte(int(proto) if proto.isascii() and proto.isdigit() else proto, "protocol")
    return f"{V.address(addr)} . {proto} . {V.port_range(port)}"


@functools.lru_cache(maxsize=1 << 16)
def chain_name(ck: ChainKey) -> str:
    """The nft name of an endpoint chain (cached: dispatch recomputation
    names every chain of the node on each endpoint change)."""
    return "e_" + _h(f"{ck.endpoint}|{ck.direction}|{ck.family}|{ck.stage}")


def _set_ref(sid: IpSetId) -> str:
    return "@" + set_name(sid)


def _ports(ports: Iterable[str]) -> str:
    items = [V.port_range(p) for p in ports]
    return items[0] if len(items) == 1 else "{ " + ", ".join(items) + " }"


def _nets(nets: Iterable[str]) -> str:
    items = [V.network(n) for n in nets]
    return items[0] if len(items) == 1 else "{ " + ", ".join(items) + " }"


def _side(m: Match, which: str, family: int) -> list[str]:
    """Match expressions for one side, except ports given both by number and
    by name: those are alternatives (`_positive_port_variants`)."""
    ip = "ip" if family == 4 else "ip6"
    addr = f"{ip} {which}addr"
    out: list[str] = []
    if m.nets:
        out.append(f"{addr} {_nets(m.nets)}")
    if m.not_nets:
        out.append(f"{addr} != {_nets(m.not_nets)}")
    if m.ipset is not None:
        out.append(f"{addr} {_set_ref(m.ipset)}")
    if m.not_ipset is not None:
        out.append(f"{addr} != {_set_ref(m.not_ipset)}")
    port = f"th {which}port"
    if m.ports and not m.named_ports:
        out.append(f"{port} {_ports(m.ports)}")
    if m.not_ports:
        out.append(f"{port} != {_ports(m.not_ports)}")
    for sid in m.not_named_ports:
        out.append(f"{addr} . meta l4proto . {port} != {_set_ref(sid)}")
    return out


def _positive_port_variants(m: Match, which: str, family: int) -> list[str]:
    """Ports by number or by name are alternatives: one variant each."""
    ip = "ip" if family == 4 else "ip6"
    port = f"th {which}port"
    variants = []
    if m.ports and m.named_ports:
        variants.append(f"{port} {_ports(m.ports)}")
    for sid in m.named_ports:
        variants.append(f"{ip} {which}addr . meta l4proto . {port} {_set_ref(sid)}")
    return variants


def rule_statements(
    rule: Rule, family: int, log_prefix: str, counter: str = "counter"
) -> list[str]:
    """The nft rule bodies for one rule (more than one when its ports are
    alternatives that one nft rule cannot express), counting with `counter`
    (a statement).  A staged rule only counts, then returns from its
    policy's chain.  Raises UnsafeValue if a field is not exactly what its
    type allows."""
    head: list[str] = []
    if rule.protocol is not None:
        head.append(f"meta l4proto {protocol(rule.protocol)}")
    if rule.not_protocol is not None:
        head.append(f"meta l4proto != {protocol(rule.not_protocol)}")
    icmp = "icmp" if family == 4 else "icmpv6"
    if rule.icmp_type is not None:
        head.append(f"{icmp} type {V.byte(rule.icmp_type, 'ICMP type')}")
        if rule.icmp_code is not None:
            head.append(f"{icmp} code {V.byte(rule.icmp_code, 'ICMP code')}")
    not_icmp: list[str] = [""]
    if rule.not_icmp_type is not None:
        not_type = V.byte(rule.not_icmp_type, "ICMP type")
        if rule.not_icmp_code is None:
            expr = f"{icmp} type != {not_type}"
        else:
            # not (type T and code C): as one expression over both bytes
            not_code = V.byte(rule.not_icmp_code, "ICMP code")
            expr = f"{icmp} type . {icmp} code != {{ {not_type} . {not_code} }}"
        # nft's ICMP fields only match ICMP packets; without a protocol,
        # "not that ICMP type" also holds for every other protocol.
        not_icmp = [expr] if rule.protocol is not None else [f"meta l4proto != {icmp}", expr]
    src = _side(rule.src, "s", family)
    dst = _side(rule.dst, "d", family)
    verdict = "return" if rule.staged else _verdict(rule.action, log_prefix)
    src_v = _positive_port_variants(rule.src, "s", family) or [""]
    dst_v = _positive_port_variants(rule.dst, "d", family) or [""]
    # Log continues: its counter comes first so the rule reads as it acts.
    tail = [verdict, counter] if rule.action is Action.LOG else [counter, verdict]
    common = [*head, *src, *dst]
    groups = [[a for a in g if a] for g in (not_icmp, src_v, dst_v)]
    if sum(len(g) > 1 for g in groups) > 1:
        return _match_block(common, groups, tail)
    out = []
    for nv in not_icmp:
        for sv in src_v:
            for dv in dst_v:
                parts = [*head, *([nv] if nv else []), *src, *([sv] if sv else [])]
                parts += [*dst, *([dv] if dv else [])]
                out.append(" ".join([*parts, *tail]))
    return out


# Bits of the packet mark a match block uses (one per group of alternatives);
# the accept bit is ACCEPT_MARK, below them.
ALT_MARKS = (0x20000, 0x40000, 0x80000)
ALT_MASK = sum(ALT_MARKS)


def _match_block(common: list[str], groups: list[list[str]], tail: list[str]) -> list[str]:
    """A rule whose sides each offer alternatives (several named ports on
    both sides, say), as Felix's match blocks: one nft rule per alternative,
    each setting a mark bit once the groups before it matched, then the
    verdict once the last group did.  Linear in the rule's size, where the
    product of the alternatives would be quadratic."""
    out = [f"meta mark set mark and {~ALT_MASK & 0xFFFFFFFF:#x}"]
    need = ""
    for i, alternatives in enumerate(g for g in groups if g):
        bit = ALT_MARKS[i]
        for alt in alternatives:
            parts = [need, *(common if i == 0 else []), alt, f"meta mark set mark or {bit:#x}"]
            out.append(" ".join(p for p in parts if p))
        need = f"meta mark and {bit:#x} != 0"
    clear = f"meta mark set mark and {~ALT_MASK & 0xFFFFFFFF:#x}"
    out.append(" ".join([need, clear, *tail]))
    return out


def _verdict(action: Action, log_prefix: str) -> str:
    if action is Action.ALLOW:
        return f"meta mark set mark or {ACCEPT_MARK:#x} return"
    if action is Action.DENY:
        return "drop"
    if action is Action.PASS:
        return "return"
    return f'log prefix "{V.log_text(log_prefix)}: " level info'


def _groups(rules: tuple[Rule, ...]) -> list[tuple[str, list[Rule]]]:
    """Consecutive rules of one tier or profile form a group; a rule of no
    group stands alone."""
    groups: list[tuple[str, list[Rule]]] = []
    for r in rules:
        if r.group and groups and groups[-1][0] == r.group:
            groups[-1][1].append(r)
        else:
            groups.append((r.group, [r]))
    return groups


def _runs(rules: list[Rule]) -> list[list[Rule]]:
    """A group's rules cut where staged and enforced rules, or two staged
    policies, meet: each staged policy's rules are one run."""
    runs: list[list[Rule]] = []
    for r in rules:
        last = runs[-1][-1] if runs else None
        if (
            last is not None
            and last.staged == r.staged
            and (
                not r.staged
                or (last.ref is not None and r.ref is not None and last.ref.policy == r.ref.policy)
            )
        ):
            runs[-1].append(r)
        else:
            runs.append([r])
    return runs


def counter_statement(rule: Rule, direction: Direction) -> str:
    """How a rule counts: into its policy rule's named counter, or its own."""
    key = rule_counter(rule, direction)
    return f'counter name "{counter_name(key)}"' if key is not None else "counter"


def chain_bodies(
    ck: ChainKey, rules: tuple[Rule, ...], log_prefix: str = DEFAULT_LOG_PREFIX
) -> list[tuple[str, list[str]]]:
    """The endpoint chain and its group chains: (name, rule bodies) each.
    A group is a chain of its own so that Pass is a `return` from it; a
    staged policy's rules are a chain of their own inside their group's, so
    that its first match ends its counting and nothing else; a Log rule's
    prefix is `log_prefix` expanded for it.  Raises UnsafeValue if a rule
    cannot be rendered exactly."""
    name = chain_name(ck)
    main: list[str] = []
    out: list[tuple[str, list[str]]] = []

    def statements(rs: list[Rule]) -> list[str]:
        return [
            s
            for r in rs
            for s in rule_statements(
                r,
                ck.family,
                expand(log_prefix, r.origin, r.group),
                counter_statement(r, ck.direction),
            )
        ]

    for i, (group, grules) in enumerate(_groups(rules)):
        stmts: list[str] = []
        for j, run in enumerate(_runs(grules)):
            if not run[0].staged:
                stmts += statements(run)
                continue
            staged = f"{name}_{i}_{j}"
            out.append((staged, statements(run)))
            stmts.append(f"jump {staged}")
        if not group:
            main += stmts
            continue
        sub = f"{name}_{i}"
        out.append((sub, stmts))
        main += [f"jump {sub}", f"meta mark and {ACCEPT_MARK:#x} != 0 return"]
    return [(name, main), *out]


# Which side of the packet names the endpoint: a workload's egress is what
# comes in from its interface; a host endpoint's ingress is.
_IIF = {
    (EndpointKind.WORKLOAD, Direction.EGRESS),
    (EndpointKind.HOST, Direction.INGRESS),
}
_HOST_STAGE_PREFIX = {
    Stage.NORMAL: "",
    Stage.FORWARD: "fwd_",
    Stage.PRE_DNAT: "pre_",
    Stage.UNTRACKED: "raw_",
}
# The host endpoint maps: (stage, direction) pairs that exist.
HOST_MAPS = (
    (Stage.NORMAL, Direction.INGRESS),
    (Stage.NORMAL, Direction.EGRESS),
    (Stage.FORWARD, Direction.INGRESS),
    (Stage.FORWARD, Direction.EGRESS),
    (Stage.PRE_DNAT, Direction.INGRESS),
    (Stage.UNTRACKED, Direction.INGRESS),
    (Stage.UNTRACKED, Direction.EGRESS),
)


def incoming(kind: EndpointKind, direction: Direction) -> bool:
    """Whether the endpoint is the packet's input interface (else its output)."""
    return (kind, direction) in _IIF


@functools.lru_cache(maxsize=64)
def dispatch_map(
    direction: Direction,
    family: int,
    kind: EndpointKind = EndpointKind.WORKLOAD,
    stage: Stage = Stage.NORMAL,
) -> str:
    """The verdict map (interface name to endpoint chain) for one kind of
    endpoint, stage, direction and family."""
    side = "from" if incoming(kind, direction) else "to"
    if kind is EndpointKind.WORKLOAD:
        return f"{side}_wl{family}"
    return f"{_HOST_STAGE_PREFIX[stage]}{side}_hep{family}"


def host_map_names() -> list[str]:
    """The host endpoints' dispatch maps (each has an all-interfaces chain)."""
    return [dispatch_map(d, f, EndpointKind.HOST, s) for f in (4, 6) for s, d in HOST_MAPS]


def map_names() -> list[str]:
    """Every dispatch map."""
    return [dispatch_map(d, f) for f in (4, 6) for d in Direction] + host_map_names()


def any_chain(map_name: str) -> str:
    """The chain that sends what no named host endpoint claimed to the
    all-interfaces (`*`) host endpoint's chain of the same map."""
    return f"any_{map_name}"


def any_chain_rules(map_name: str, target: str, named: list[str], own: Ownership) -> list[str]:
    """The body of `any_chain(map_name)`: every interface but workloads' and
    those of named host endpoints goes to `target` (empty: no `*` endpoint)."""
    if not target:
        return []
    io = "iifname" if "from_" in map_name else "oifname"
    conds = [f"{io} != {workload_ifaces(own)}"]
    if named:
        quoted = ", ".join(quote_ifname(n) for n in named)
        conds.append(f"{io} != {{ {quoted} }}")
    return [" ".join([*conds, f"jump {target}"])]


def quote_ifname(name: str) -> str:
    """An interface name as an nft string.  Raises UnsafeValue."""
    return f'"{V.ifname(name)}"'


def workload_ifaces(own: Ownership) -> str:
    """The workload interfaces as an nft match value (`"cali*"`, or a set
    of wildcards for several prefixes)."""
    items = [f'"{w}"' for w in own.wildcards()]
    return items[0] if len(items) == 1 else "{ " + ", ".join(items) + " }"


# Anti-spoofing: every local workload's (interface, address) pairs, per
# family, and the chain that admits only those from workload interfaces.
SOURCE_SETS = {4: "wl_src4", 6: "wl_src6"}
SOURCE_CHAIN = "wl_source"


def source_set_spec(family: int) -> str:
    """The type of a source set, as inside `add set ... { }`."""
    return f"type ifname . {'ipv4_addr' if family == 4 else 'ipv6_addr'};"


def source_element(iface: str, address: str) -> str:
    """One (interface, address) pair as a source set element, in the form
    `from_kernel_json` reads back.  Raises UnsafeValue."""
    return f"{quote_ifname(iface)} . {V.address(address)}"


def source_chain_rules() -> list[str]:
    """The body of SOURCE_CHAIN, reached for every packet from a workload
    interface before connection tracking.  Strict reverse-path filtering
    first (the route back to the source must leave by the interface it came
    in on, as Felix's RPF check), then the explicit check: the pair
    (interface, source) must be one of a local workload's.  IPv6 link-local
    sources pass (neighbour discovery, DHCPv6: they are never a policy's
    address), and so does duplicate address detection's unspecified source;
    anything else is dropped and counted."""
    return [
        "ip6 saddr :: icmpv6 type { nd-neighbor-solicit, mld2-listener-report } return",
        "fib saddr . iif oif missing counter drop",
        f"iifname . ip saddr @{SOURCE_SETS[4]} return",
        f"iifname . ip6 saddr @{SOURCE_SETS[6]} return",
        "ip6 saddr fe80::/10 return",
        "counter drop",
    ]


# Outgoing NAT: the pools, and those with natOutgoing, per family, as
# interval sets; the chain that masquerades from the latter to outside all.
ALL_POOLS = {4: "pools4", 6: "pools6"}
NAT_POOLS = {4: "nat_pools4", 6: "nat_pools6"}
NAT_CHAIN = "nat_postrouting"
# Every node's address, per family: destinations outgoing NAT leaves alone
# under IPPoolsAndHostIPs (Felix's all-hosts-net set).
HOST_SETS = {4: "all_hosts4", 6: "all_hosts6"}


def pool_set_spec(family: int) -> str:
    """The type of a pool set (CIDRs), as inside `add set ... { }`."""
    return f"type {'ipv4_addr' if family == 4 else 'ipv6_addr'}; flags interval;"


def nat_chain_rules(*, exclude_hosts: bool = False) -> list[str]:
    """The body of NAT_CHAIN (Felix's nat-outgoing chain): a packet from a
    natOutgoing pool to an address in no pool (and, `exclude_hosts`, no
    node's address) leaves with the node's address.  Between pools (pod to
    pod, on this node or another) nothing is translated."""
    out = []
    for family, ip in ((4, "ip"), (6, "ip6")):
        hosts = f" {ip} daddr != @{HOST_SETS[family]}" if exclude_hosts else ""
        out.append(
            f"{ip} saddr @{NAT_POOLS[family]} {ip} daddr != @{ALL_POOLS[family]}{hosts}"
            " counter masquerade"
        )
    return out


def hook_decl(c: dict[str, Any]) -> str:
    """A base chain's declaration, from our fields or from `nft -j`'s."""
    return f"type {c['type']} hook {c['hook']} priority {c['prio']}; policy {c['policy']};"


def _failsafe(ports: tuple[ProtoPort, ...], which: str) -> list[str]:
    if not ports:
        return []
    items = ", ".join(f"{p.protocol} . {p.port}" for p in ports)
    return [f"meta l4proto . th {which}port {{ {items} }} counter accept"]


def _host_dispatch(stage: Stage, direction: Direction, cond: str = "") -> list[str]:
    out = []
    for family in (4, 6):
        proto = "ipv4" if family == 4 else "ipv6"
        mp = dispatch_map(direction, family, EndpointKind.HOST, stage)
        io = "iifname" if incoming(EndpointKind.HOST, direction) else "oifname"
        head = f"{cond} meta nfproto {proto}".strip()
        out.append(f"{head} {io} vmap @{mp}")
        out.append(f"{head} jump {any_chain(mp)}")
    return out


def _wl_dispatch(direction: Direction, wl: str) -> list[str]:
    """Workload chains by interface; only workload-prefix interfaces ever
    reach the maps, whatever the maps hold.  A workload interface with no
    endpoint (not written yet, or never) is dropped, as Felix drops it: the
    known ones' chains always end in a verdict or return accepted."""
    out = []
    io = "iifname" if incoming(EndpointKind.WORKLOAD, direction) else "oifname"
    for family in (4, 6):
        proto = "ipv4" if family == 4 else "ipv6"
        mp = dispatch_map(direction, family)
        out.append(f"{io} {wl} meta nfproto {proto} {io} vmap @{mp}")
    out.append(f"{io} {wl} meta mark and {ACCEPT_MARK:#x} == 0 counter drop")
    return out


# IPv6 cannot work without neighbour discovery (nft never sees ARP, but it
# sees its IPv6 counterpart): host endpoint policy does not apply to it.
_ND = (
    "meta nfproto ipv6 icmpv6 type { nd-router-solicit, nd-router-advert, "
    "nd-neighbor-solicit, nd-neighbor-advert } counter accept"
)
# What a workload may always send its host, before its egress policy and the
# endpoint-to-host action (as Felix's workload-to-host chain): MLD and
# neighbour discovery, without which its IPv6 gateway cannot be found.
_WL_TO_HOST_ICMPV6 = (
    "meta nfproto ipv6 icmpv6 type { mld-listener-query, mld-listener-report, "
    "mld-listener-done, nd-router-solicit, nd-neighbor-solicit, nd-neighbor-advert, "
    "mld2-listener-report } counter accept"
)


def base_chains(
    fs: Failsafes | None = None,
    own: Ownership | None = None,
    to_host: EndpointToHostAction = EndpointToHostAction.DROP,
    *,
    nat_excludes_hosts: bool = False,
) -> list[tuple[str, str, list[str]]]:
    """The hooked chains: (name, declaration, rule bodies).

    * `raw_prerouting` / `raw_output` (priority -300, before connection
      tracking): packets from workload interfaces through SOURCE_CHAIN
      (anti-spoofing); host endpoints' untracked policy, an Allow there
      also skipping connection tracking.
    * `mangle_prerouting` (-150, before DNAT): host endpoints' pre-DNAT policy.
    * `input`, `forward`, `output` (0): established flows pass and invalid
      ones drop; what an earlier stage allowed passes; workloads' chains by
      interface, then host endpoints' (in `forward`, applyOnForward policy).

    A workload's packets to its own host go through its egress chain, then
    `to_host` decides (Felix's DefaultEndpointToHostAction; neighbour
    discovery passes before both).  Failsafe ports bypass every host
    endpoint chain and come before every rule a datastore value can reach;
    workload interfaces (`cali*`, or the configured prefixes) never reach a
    host endpoint chain, and nothing else ever reaches a workload chain.
    """
    fs = fs or Failsafes()
    own = own or Ownership()
    clear = f"meta mark set mark and {~ACCEPT_MARK & 0xFFFFFFFF:#x}"
    accepted = f"meta mark and {ACCEPT_MARK:#x} != 0"
    not_accepted = f"meta mark and {ACCEPT_MARK:#x} == 0"
    wl = workload_ifaces(own)
    tracked = ["ct state established,related counter accept", "ct state invalid counter drop"]
    chains: list[tuple[str, str, int, list[str]]] = [
        (
            "raw_prerouting",
            "prerouting",
            -300,
            [
                # A workload's packets must carry its own source (anti-spoofing).
                f"iifname {wl} jump {SOURCE_CHAIN}",
                f"iifname {wl} return",
                *_failsafe(fs.inbound, "d"),
                # Replies to the host's own failsafe connections, which
                # are not tracked yet at this point.
                *_failsafe(fs.outbound, "s"),
                clear,
                *_host_dispatch(Stage.UNTRACKED, Direction.INGRESS),
                f"{accepted} notrack counter accept",
            ],
        ),
        (
            "raw_output",
            "output",
            -300,
            [
                f"oifname {wl} return",
                *_failsafe(fs.outbound, "d"),
                *_failsafe(fs.inbound, "s"),
                clear,
                *_host_dispatch(Stage.UNTRACKED, Direction.EGRESS),
                f"{accepted} notrack counter accept",
            ],
        ),
        (
            "mangle_prerouting",
            "prerouting",
            -150,
            [
                "ct state established,related counter accept",
                f"{accepted} counter accept",
                f"iifname {wl} return",
                *_failsafe(fs.inbound, "d"),
                clear,
                *_host_dispatch(Stage.PRE_DNAT, Direction.INGRESS),
            ],
        ),
        (
            "input",
            "input",
            0,
            [
                *tracked,
                f"{accepted} counter accept",
                clear,
                *(f"iifname != {wl} {r}" for r in _failsafe(fs.inbound, "d")),
                f"iifname {wl} {_WL_TO_HOST_ICMPV6}",
                *_wl_dispatch(Direction.EGRESS, wl),
                f"iifname {wl} counter {to_host.verdict}",
                _ND,
                *_host_dispatch(Stage.NORMAL, Direction.INGRESS),
            ],
        ),
        (
            "forward",
            "forward",
            0,
            [
                *tracked,
                # Allowed by pre-DNAT or untracked policy: no forward policy
                # of the input host endpoint (workloads' chains still apply).
                *_host_dispatch(Stage.FORWARD, Direction.INGRESS, not_accepted),
                clear,
                *_wl_dispatch(Direction.EGRESS, wl),
                clear,
                *_wl_dispatch(Direction.INGRESS, wl),
                clear,
                *_host_dispatch(Stage.FORWARD, Direction.EGRESS),
            ],
        ),
        (
            "output",
            "output",
            0,
            [
                *tracked,
                f"{accepted} counter accept",
                f"oifname {wl} accept",
                clear,
                *_failsafe(fs.outbound, "d"),
                _ND,
                *_host_dispatch(Stage.NORMAL, Direction.EGRESS),
            ],
        ),
    ]
    out = []
    for name, hook, prio, stmts in chains:
        decl = hook_decl({"type": "filter", "hook": hook, "prio": prio, "policy": "accept"})
        out.append((name, decl, stmts))
    # Source NAT's priority (100), after every filter decision.
    nat = hook_decl({"type": "nat", "hook": "postrouting", "prio": 100, "policy": "accept"})
    out.append((NAT_CHAIN, nat, nat_chain_rules(exclude_hosts=nat_excludes_hosts)))
    return out


def dispatched(ck: ChainKey) -> bool:
    """Whether a workload chain is reached through the dispatch maps (a
    workload has only normal chains)."""
    return ck.stage is Stage.NORMAL
