"""What an endpoint chain the agent computed does to one packet.

The chain's meaning is the one the renderer gives it (nft_render): rules in
order; a group (a tier's rules, a profile's) is left early by a Pass; the
first Allow or Deny that matches decides; Log continues; a staged policy's
rules are tried where they sit, the first that matches is what that policy
would decide, and nothing changes for the packet.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping

from dataplane.batch import Action, Direction, IpSetId, Match, Rule
from dataplane.policy_counters import rule_counter
from dataplane.trace import BY_NAME, ChainTrace, Packet, Step, TraceError, Verdict

_IpNet = ipaddress.IPv4Network | ipaddress.IPv6Network


class _Sets:
    """The IP sets, parsed once per trace."""

    def __init__(self, sets: Mapping[IpSetId, Iterable[str]]) -> None:
        self._raw = sets
        self._nets: dict[IpSetId, list[_IpNet]] = {}
        self._named: dict[IpSetId, set[tuple[str, int, int]]] = {}

    def holds(self, sid: IpSetId, ip: str) -> bool:
        if sid not in self._nets:
            self._nets[sid] = [_net(m) for m in self._raw.get(sid, ())]
        addr = ipaddress.ip_address(ip)
        return any(addr in n for n in self._nets[sid])

    def holds_port(self, sid: IpSetId, ip: str, protocol: int, port: int | None) -> bool:
        if port is None:
            return False
        if sid not in self._named:
            self._named[sid] = {_named_member(m) for m in self._raw.get(sid, ())}
        return (str(ipaddress.ip_address(ip)), protocol, port) in self._named[sid]


def _net(text: str) -> _IpNet:
    try:
        return ipaddress.ip_network(text, strict=False)
    except ValueError as exc:
        raise TraceError(f"IP set member {text!r:.60}: {exc}") from None


def _named_member(text: str) -> tuple[str, int, int]:
    """`ip,proto:port` (proto a name or a number)."""
    addr, _, rest = text.partition(",")
    proto, _, port = rest.partition(":")
    try:
        number = BY_NAME[proto] if proto in BY_NAME else int(proto)
        return str(ipaddress.ip_address(addr)), number, int(port)
    except ValueError:
        raise TraceError(f"named port member {text!r:.60} is not ip,proto:port") from None


def _in_ranges(port: int | None, ranges: tuple[str, ...]) -> bool:
    if port is None:
        return False
    for r in ranges:
        lo, _, hi = r.partition(":")
        if int(lo) <= port <= int(hi or lo):
            return True
    return False


def _in_nets(ip: str, nets: tuple[str, ...]) -> bool:
    addr = ipaddress.ip_address(ip)
    return any(addr in _net(n) for n in nets)


def _side(m: Match, ip: str, port: int | None, pk: Packet, sets: _Sets) -> bool:
    if m.nets and not _in_nets(ip, m.nets):
        return False
    if m.not_nets and _in_nets(ip, m.not_nets):
        return False
    if m.ipset is not None and not sets.holds(m.ipset, ip):
        return False
    if m.not_ipset is not None and sets.holds(m.not_ipset, ip):
        return False
    if (m.ports or m.named_ports) and not (
        _in_ranges(port, m.ports)
        or any(sets.holds_port(s, ip, pk.protocol, port) for s in m.named_ports)
    ):
        return False
    if m.not_ports and _in_ranges(port, m.not_ports):
        return False
    return not any(sets.holds_port(s, ip, pk.protocol, port) for s in m.not_named_ports)


def _icmp_matches(r: Rule, pk: Packet) -> bool:
    if r.icmp_type is not None:
        if not pk.is_icmp or pk.icmp_type != r.icmp_type:
            return False
        if r.icmp_code is not None and pk.icmp_code != r.icmp_code:
            return False
    if r.not_icmp_type is not None and pk.is_icmp:
        # Not ICMP at all also matches: "not that ICMP message".
        if r.not_icmp_code is None:
            return pk.icmp_type != r.not_icmp_type
        return (pk.icmp_type, pk.icmp_code) != (r.not_icmp_type, r.not_icmp_code)
    return True


def matches(r: Rule, pk: Packet, sets: _Sets) -> bool:
    """Whether rule `r` matches the packet."""
    if r.protocol is not None and pk.protocol != r.protocol:
        return False
    if r.not_protocol is not None and pk.protocol == r.not_protocol:
        return False
    if not _icmp_matches(r, pk):
        return False
    return _side(r.src, pk.src, pk.sport, pk, sets) and _side(r.dst, pk.dst, pk.dport, pk, sets)


def trace_chain(
    rules: tuple[Rule, ...],
    direction: Direction,
    pk: Packet,
    ipsets: Mapping[IpSetId, Iterable[str]],
) -> ChainTrace:
    """The packet through one computed endpoint chain (of the packet's
    family).  Raises TraceError if an IP set holds what is not an address."""
    sets = _Sets(ipsets)
    steps: list[Step] = []
    staged_done: set[str] = set()
    skipping: str | None = None  # the group a Pass is leaving
    for r in rules:
        if skipping is not None and r.group == skipping:
            continue
        skipping = None
        key = rule_counter(r, direction)
        if r.staged:
            policy = r.ref.policy if r.ref is not None else ""
            if policy in staged_done:
                continue
            hit = matches(r, pk, sets)
            steps.append(Step(key, hit))
            if hit:
                staged_done.add(policy)
            continue
        hit = matches(r, pk, sets)
        steps.append(Step(key, hit))
        if not hit or r.action is Action.LOG:
            continue
        if r.action is Action.PASS:
            if r.group:
                skipping = r.group
            continue
        verdict = Verdict.ALLOW if r.action is Action.ALLOW else Verdict.DENY
        return ChainTrace(tuple(steps), verdict, key)
    return ChainTrace(tuple(steps), Verdict.DENY, None)
