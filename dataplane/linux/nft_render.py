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
next endpoint's chain; a Deny drops.  Every rule has a counter.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any

from calico_model.protocols import PROTOCOL_NAMES
from dataplane.batch import (
    Action,
    ChainKey,
    Direction,
    IpSetId,
    Match,
    Rule,
    Stage,
)

TABLE = "felix_typha"
ACCEPT_MARK = 0x10000
LOG_PREFIX_MAX = 60


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
    return f"type {' . '.join(str(p) for p in parts)};"


def element(sid: IpSetId, member: str) -> str:
    """One member as an nft set element: an address, or `addr . proto . port`."""
    # Members are single addresses already in canonical text (the
    # calculation prints them with `ipaddress`, as nft prints them back).
    if not sid.port_name:
        return member.partition("/")[0]
    addr, _, rest = member.partition(",")
    proto, _, port = rest.partition(":")
    return f"{addr} . {proto} . {port}"


def chain_name(ck: ChainKey) -> str:
    """The nft name of an endpoint chain."""
    return "e_" + _h(f"{ck.endpoint}|{ck.direction}|{ck.family}|{ck.stage}")


def _set_ref(sid: IpSetId) -> str:
    return "@" + set_name(sid)


def _ports(ports: Iterable[str]) -> str:
    items = [p.replace(":", "-") for p in ports]
    return items[0] if len(items) == 1 else "{ " + ", ".join(items) + " }"


def _nets(nets: Iterable[str]) -> str:
    items = list(nets)
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


def rule_statements(rule: Rule, family: int, log_prefix: str) -> list[str]:
    """The nft rule bodies for one rule (more than one when its ports are
    alternatives that one nft rule cannot express)."""
    head: list[str] = []
    if rule.protocol is not None:
        head.append(f"meta l4proto {PROTOCOL_NAMES.get(rule.protocol, str(rule.protocol))}")
    if rule.not_protocol is not None:
        head.append(
            f"meta l4proto != {PROTOCOL_NAMES.get(rule.not_protocol, str(rule.not_protocol))}"
        )
    icmp = "icmp" if family == 4 else "icmpv6"
    if rule.icmp_type is not None:
        head.append(f"{icmp} type {rule.icmp_type}")
        if rule.icmp_code is not None:
            head.append(f"{icmp} code {rule.icmp_code}")
    if rule.not_icmp_type is not None:
        if rule.not_icmp_code is None:
            head.append(f"{icmp} type != {rule.not_icmp_type}")
        else:
            # not (type T and code C): as one expression over both bytes
            head.append(
                f"{icmp} type . {icmp} code != {{ {rule.not_icmp_type} . {rule.not_icmp_code} }}"
            )
    src = _side(rule.src, "s", family)
    dst = _side(rule.dst, "d", family)
    verdict = _verdict(rule.action, log_prefix)
    src_v = _positive_port_variants(rule.src, "s", family) or [""]
    dst_v = _positive_port_variants(rule.dst, "d", family) or [""]
    out = []
    for sv in src_v:
        for dv in dst_v:
            parts = [*head, *src, *([sv] if sv else []), *dst, *([dv] if dv else [])]
            # Log continues: its counter comes first so the rule reads as it acts.
            tail = [verdict, "counter"] if rule.action is Action.LOG else ["counter", verdict]
            out.append(" ".join([*parts, *tail]))
    return out


def _verdict(action: Action, log_prefix: str) -> str:
    if action is Action.ALLOW:
        return f"meta mark set mark or {ACCEPT_MARK:#x} return"
    if action is Action.DENY:
        return "drop"
    if action is Action.PASS:
        return "return"
    prefix = log_prefix[:LOG_PREFIX_MAX].replace('"', "'")
    return f'log prefix "{prefix} "'


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


def chain_bodies(ck: ChainKey, rules: tuple[Rule, ...]) -> list[tuple[str, list[str]]]:
    """The endpoint chain and its group chains: (name, rule bodies) each.
    A group is a chain of its own so that Pass is a `return` from it."""
    name = chain_name(ck)
    main: list[str] = []
    out: list[tuple[str, list[str]]] = []
    for i, (group, grules) in enumerate(_groups(rules)):
        stmts = [s for r in grules for s in rule_statements(r, ck.family, _prefix(ck, r))]
        if not group:
            main += stmts
            continue
        sub = f"{name}_{i}"
        out.append((sub, stmts))
        main += [f"jump {sub}", f"meta mark and {ACCEPT_MARK:#x} != 0 return"]
    return [(name, main), *out]


def _prefix(ck: ChainKey, r: Rule) -> str:
    return f"calico {ck.direction} {r.origin}"


def dispatch_map(direction: Direction, family: int) -> str:
    """The verdict map for one direction and family."""
    return f"{'to' if direction is Direction.INGRESS else 'from'}_wl{family}"


def map_names() -> list[str]:
    """Every dispatch map."""
    return [dispatch_map(d, f) for f in (4, 6) for d in Direction]


HOOKS = {"forward": 0, "input": 0}


def hook_decl(c: dict[str, Any]) -> str:
    """A base chain's declaration, from our fields or from `nft -j`'s."""
    return f"type {c['type']} hook {c['hook']} priority {c['prio']}; policy {c['policy']};"


def base_chains() -> list[tuple[str, str, list[str]]]:
    """The hooked chains: (name, declaration, rule bodies).  Established
    flows pass, invalid ones drop, then each packet goes through the egress
    chain of the workload it comes from and (forwarded) the ingress chain of
    the workload it goes to, found by interface in the dispatch maps."""
    clear = f"meta mark set mark and {~ACCEPT_MARK & 0xFFFFFFFF:#x}"
    out = []
    for hook, prio in HOOKS.items():
        decl = hook_decl({"type": "filter", "hook": hook, "prio": prio, "policy": "accept"})
        stmts = [
            "ct state established,related counter accept",
            "ct state invalid counter drop",
            clear,
        ]
        for family in (4, 6):
            proto = "ipv4" if family == 4 else "ipv6"
            stmts.append(
                f"meta nfproto {proto} iifname vmap @{dispatch_map(Direction.EGRESS, family)}"
            )
        if hook == "forward":
            stmts.append(clear)
            for family in (4, 6):
                proto = "ipv4" if family == 4 else "ipv6"
                stmts.append(
                    f"meta nfproto {proto} oifname vmap @{dispatch_map(Direction.INGRESS, family)}"
                )
        out.append((hook, decl, stmts))
    return out


def dispatched(ck: ChainKey) -> bool:
    """Whether the chain is reached through the workload dispatch maps (host
    endpoint chains are not dispatched by this layout yet)."""
    return ck.stage is Stage.NORMAL
