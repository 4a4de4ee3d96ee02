"""An explanation as data, JSON and text: the hops a packet takes through
this node's policy and, per hop, each policy tested, the rules that
matched, the one that decided and what staged policies would decide."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from calico_model.protocols import PROTOCOL_NAMES
from dataplane.batch import END_OF_PROFILES, END_OF_TIER, PROFILE_TIER, Direction
from dataplane.policy_counters import CounterKey
from dataplane.trace import ChainTrace, Packet, Step, Verdict


@dataclass(frozen=True, slots=True)
class Hop:
    """One local endpoint chain the packet goes through."""

    direction: Direction
    endpoint: str
    interface: str
    trace: ChainTrace


@dataclass(frozen=True, slots=True)
class Explanation:
    """The packet's way through this node: its hops in order (empty if no
    workload of this node sends or receives it) and the verdict (None then)."""

    node: str
    packet: Packet
    source: str  # "computed" or "kernel"
    hops: tuple[Hop, ...]

    @property
    def verdict(self) -> Verdict | None:
        """Deny if any hop denies; None if no hop."""
        if not self.hops:
            return None
        return (
            Verdict.DENY
            if any(h.trace.verdict is Verdict.DENY for h in self.hops)
            else Verdict.ALLOW
        )

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape `felix-agent explain -o json` prints."""
        return {
            "node": self.node,
            "packet": self.packet.to_dict(),
            "tables": self.source,
            "verdict": str(self.verdict) if self.verdict is not None else None,
            "hops": [_hop_dict(h) for h in self.hops],
        }

    def text(self) -> str:
        """The explanation as lines for a person."""
        p = self.packet
        what = _packet_text(p)
        lines = [f"{p.src} -> {p.dst} {what} on node {self.node} ({self.source} tables)"]
        if not self.hops:
            lines.append("no workload of this node sends or receives it: its policy does not apply")
            return "\n".join(lines) + "\n"
        for h in self.hops:
            who = "/".join(h.endpoint.rsplit("/", 2)[-2:])  # <namespace>/<name>
            lines.append(f"{h.direction} of {who} ({h.interface}): {h.trace.verdict}")
            for entry in consulted(h.trace):
                lines.append("  " + _entry_text(entry, h.trace.decided))
            if h.trace.decided is None:
                lines.append("  no policy rule decided: the chain ended, which drops")
        lines.append(f"verdict: {self.verdict}")
        return "\n".join(lines) + "\n"


@dataclass(frozen=True, slots=True)
class Entry:
    """One policy (or tier end, or profile) the packet was tested against,
    with the rules of it that matched, in order."""

    tier: str
    policy: str
    staged: bool
    tested: int
    matched: tuple[CounterKey, ...]


def consulted(trace: ChainTrace) -> list[Entry]:
    """The trace's steps as one entry per policy, in order (steps of no
    policy left out)."""
    out: list[Entry] = []
    for s in trace.steps:
        if s.key is None:
            continue
        ref = s.key.ref
        last = out[-1] if out else None
        if last is not None and (last.tier, last.policy, last.staged) == (
            ref.tier,
            ref.policy,
            ref.staged,
        ):
            out[-1] = Entry(
                last.tier,
                last.policy,
                last.staged,
                last.tested + 1,
                last.matched + _new_match(s, last.matched),
            )
        else:
            out.append(Entry(ref.tier, ref.policy, ref.staged, 1, _new_match(s, ())))
    return out


def _new_match(s: Step, have: tuple[CounterKey, ...]) -> tuple[CounterKey, ...]:
    # One rule may be several kernel rules (ports by number and by name).
    return (s.key,) if s.matched and s.key is not None and s.key not in have else ()


def _label(k: CounterKey) -> dict[str, Any]:
    r = k.ref
    return {
        "tier": r.tier,
        "policy": r.policy,
        "rule": r.rule,
        "action": str(k.action),
        "staged": r.staged,
    }


def _hop_dict(h: Hop) -> dict[str, Any]:
    entries = consulted(h.trace)
    return {
        "direction": str(h.direction),
        "endpoint": h.endpoint,
        "interface": h.interface,
        "verdict": str(h.trace.verdict),
        "decided": _label(h.trace.decided) if h.trace.decided is not None else None,
        "consulted": [
            {
                "tier": e.tier,
                "policy": e.policy,
                "staged": e.staged,
                "rules_tested": e.tested,
                "matched": [{"rule": k.ref.rule, "action": str(k.action)} for k in e.matched],
            }
            for e in entries
        ],
        "staged": [_label(k) for e in entries if e.staged for k in e.matched],
    }


def _packet_text(p: Packet) -> str:
    name = PROTOCOL_NAMES.get(p.protocol, str(p.protocol))
    if p.icmp_type is not None:
        return f"{name} type {p.icmp_type} code {p.icmp_code}"
    return f"{name} port {p.dport}" if p.dport is not None else name


def _entry_text(e: Entry, decided: CounterKey | None) -> str:
    if e.policy == END_OF_TIER:
        who = f"end of tier {e.tier}"
    elif e.policy == END_OF_PROFILES:
        who = "end of profiles"
    elif e.tier == PROFILE_TIER:
        who = f"profile {e.policy}"
    else:
        who = f"tier {e.tier}, {'staged ' if e.staged else ''}policy {e.policy}"
    if not e.matched:
        return f"{who}: no rule matched ({e.tested} tested)"
    parts = []
    for k in e.matched:
        rule = "" if k.ref.rule == "default" else f"rule {k.ref.rule} "
        verb = "would " if e.staged else ""
        mark = "  <- decided" if k == decided else ""
        parts.append(f"{rule}{verb}{k.action}{mark}")
    return f"{who}: " + ", ".join(parts)
