"""A reference evaluator of the chain model for tests: what a dataplane that
renders the chains exactly would decide for one packet.  First matching Allow
or Deny decides; Log continues; Pass skips the rest of its group; running out
gives no verdict (None)."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from calico_model.protocols import PROTOCOL_NAMES
from dataplane import Action, IpSetId, Match, Rule


@dataclass(frozen=True)
class Packet:
    """One packet: addresses, IANA protocol, ports or ICMP type/code."""

    src: str
    dst: str
    protocol: int = 6
    sport: int = 40000
    dport: int = 80
    icmp_type: int | None = None
    icmp_code: int | None = None


def _in(ip: str, members: set[str]) -> bool:
    addr = ipaddress.ip_address(ip)
    return any("," not in m and addr in ipaddress.ip_network(m, strict=False) for m in members)


def _port_in(port: int, specs: tuple[str, ...]) -> bool:
    for s in specs:
        lo, _, hi = s.partition(":")
        if int(lo) <= port <= int(hi or lo):
            return True
    return False


def _named(ip: str, proto: int, port: int, sid: IpSetId, sets: dict[IpSetId, set[str]]) -> bool:
    name = PROTOCOL_NAMES.get(proto, str(proto))
    return f"{ip},{name}:{port}" in sets.get(sid, set())


def side_matches(m: Match, ip: str, port: int, proto: int, sets: dict[IpSetId, set[str]]) -> bool:
    """Whether one side of a rule matches an address and port."""
    addr = ipaddress.ip_address(ip)
    if m.nets and not any(addr in ipaddress.ip_network(n) for n in m.nets):
        return False
    if any(addr in ipaddress.ip_network(n) for n in m.not_nets):
        return False
    if m.ipset is not None and not _in(ip, sets.get(m.ipset, set())):
        return False
    if m.not_ipset is not None and _in(ip, sets.get(m.not_ipset, set())):
        return False
    if m.ports or m.named_ports:
        numeric = _port_in(port, m.ports)
        named = any(_named(ip, proto, port, s, sets) for s in m.named_ports)
        if not (numeric or named):
            return False
    excluded = _port_in(port, m.not_ports)
    return not excluded and not any(_named(ip, proto, port, s, sets) for s in m.not_named_ports)


def rule_matches(r: Rule, p: Packet, sets: dict[IpSetId, set[str]]) -> bool:
    """Whether a rule matches a packet."""
    if r.protocol is not None and p.protocol != r.protocol:
        return False
    if r.not_protocol is not None and p.protocol == r.not_protocol:
        return False
    if r.icmp_type is not None and (
        p.icmp_type != r.icmp_type or (r.icmp_code is not None and p.icmp_code != r.icmp_code)
    ):
        return False
    not_icmp = r.not_icmp_type is not None and p.icmp_type == r.not_icmp_type
    if not_icmp and (r.not_icmp_code is None or p.icmp_code == r.not_icmp_code):
        return False
    return side_matches(r.src, p.src, p.sport, p.protocol, sets) and side_matches(
        r.dst, p.dst, p.dport, p.protocol, sets
    )


def verdict(chain: tuple[Rule, ...], p: Packet, sets: dict[IpSetId, set[str]]) -> Action | None:
    """The chain's decision for the packet (None: no verdict)."""
    i = 0
    while i < len(chain):
        r = chain[i]
        if not rule_matches(r, p, sets):
            i += 1
            continue
        if r.action is Action.LOG:
            i += 1
        elif r.action is Action.PASS:
            i += 1
            while i < len(chain) and chain[i].group == r.group:
                i += 1
        else:
            return r.action
    return None
