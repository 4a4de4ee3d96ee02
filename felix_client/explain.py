"""`explain`: the path one packet takes through this node's policy.

Given a source and a destination (an address, or a workload endpoint by
`<namespace>/<pod>` or `<namespace>/<endpoint name>`), it finds the local
workloads involved and runs the packet through their chains: the sender's
egress chain if it is on this node, the receiver's ingress chain if it is.
Each hop lists, in order, every tier's policies and profiles the packet
was tested against, the rule that decided and the verdict, and what each
staged policy would have decided.  The chains are either those the agent
computed (`dataplane.rule_eval`) or those the kernel holds
(`dataplane.linux.nft_eval`); both give the same answer when the kernel
holds what the agent computed.  Host endpoints are not explained.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from calico_model.protocols import PROTOCOL_NAMES
from dataplane.batch import (
    END_OF_PROFILES,
    END_OF_TIER,
    PROFILE_TIER,
    ChainKey,
    Direction,
    EndpointInfo,
    EndpointKind,
    IpSetId,
    Rule,
    Stage,
)
from dataplane.errors import DataplaneError
from dataplane.linux import nft_render as R
from dataplane.linux.driver import LinuxDataplane
from dataplane.linux.nft_eval import Table, dispatch_target, trace_endpoint_chain
from dataplane.memory import MemoryDataplane
from dataplane.policy_counters import CounterKey
from dataplane.rule_eval import trace_chain
from dataplane.trace import (
    ChainTrace,
    Packet,
    Step,
    TraceError,
    Verdict,
    packet,
    protocol_number,
)
from felix_client.calc.model import Endpoint

# Calico's workload endpoint names: node, orchestrator, pod, interface, each
# with its own dashes doubled, joined by single dashes.
_WEP_PART = re.compile(r"(?:[^-]|--)+")


def pod_of(endpoint_name: str) -> str | None:
    """The pod a Kubernetes workload endpoint name (`node-k8s-pod-eth0`)
    belongs to, or None."""
    parts = [str(p).replace("--", "-") for p in _WEP_PART.findall(endpoint_name)]
    return parts[2] if len(parts) == 4 and parts[1] == "k8s" else None


def resolve(name: str, endpoints: Mapping[str, Endpoint]) -> list[str]:
    """The keys of the workload endpoints `name` names: a key, or
    `<namespace>/<endpoint name>`, or `<namespace>/<pod>`."""
    if name in endpoints:
        return [name]
    ns, _, rest = name.partition("/")
    out = []
    for key, ep in endpoints.items():
        if ep.host or ep.namespace != ns:
            continue
        last = key.rsplit("/", 1)[-1]
        if rest in (last, pod_of(last)):
            out.append(key)
    return sorted(out)


def address_of(
    name: str, endpoints: Mapping[str, Endpoint], family: int | None = None
) -> tuple[str, str | None]:
    """(address, endpoint key or None) for a source or destination given as
    an address or a name; a name's address of `family` (else its first).
    Raises TraceError if it names no endpoint or several."""
    try:
        return str(ipaddress.ip_address(name)), None
    except ValueError:
        pass
    keys = resolve(name, endpoints)
    if not keys:
        raise TraceError(f"{name!r:.80} is not an address or a workload endpoint")
    if len(keys) > 1:
        raise TraceError(f"{name!r:.80} names {len(keys)} endpoints: {', '.join(keys[:5])}")
    nets = [n for n in endpoints[keys[0]].nets if family is None or n.version == family]
    if not nets:
        raise TraceError(f"{keys[0]} has no IPv{family or ''} address")
    return nets[0].address, keys[0]


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


def _local(endpoints: Mapping[str, EndpointInfo], address: str) -> tuple[str, EndpointInfo] | None:
    for key, info in sorted(endpoints.items()):
        if info.kind is EndpointKind.WORKLOAD and any(
            a.split("/")[0] == address for a in info.addresses
        ):
            return key, info
    return None


def hops_of(
    pk: Packet, endpoints: Mapping[str, EndpointInfo]
) -> list[tuple[Direction, str, EndpointInfo]]:
    """The local workload chains the packet goes through, in order."""
    out = []
    src = _local(endpoints, pk.src)
    if src is not None:
        out.append((Direction.EGRESS, *src))
    dst = _local(endpoints, pk.dst)
    if dst is not None:
        out.append((Direction.INGRESS, *dst))
    return out


def explain_computed(
    node: str,
    pk: Packet,
    endpoints: Mapping[str, EndpointInfo],
    chains: Mapping[ChainKey, tuple[Rule, ...]],
    ipsets: Mapping[IpSetId, Iterable[str]],
) -> Explanation:
    """The packet through the chains the agent computed."""
    hops = []
    for direction, key, info in hops_of(pk, endpoints):
        rules = chains.get(ChainKey(key, direction, pk.family, Stage.NORMAL), ())
        hops.append(Hop(direction, key, info.interface, trace_chain(rules, direction, pk, ipsets)))
    return Explanation(node, pk, "computed", tuple(hops))


def explain_kernel(
    node: str,
    pk: Packet,
    endpoints: Mapping[str, EndpointInfo],
    table: Table,
    names: Mapping[str, CounterKey],
) -> Explanation:
    """The packet through the chains the kernel holds, found as the kernel
    finds them: through the dispatch maps, by interface.  Raises TraceError."""
    hops = []
    for direction, key, info in hops_of(pk, endpoints):
        chain = dispatch_target(table, R.dispatch_map(direction, pk.family), info.interface)
        if chain is None:
            # No chain for a workload interface: the base chain drops.
            trace = ChainTrace((), Verdict.DENY, None)
        else:
            trace = trace_endpoint_chain(table, chain, pk, names)
        hops.append(Hop(direction, key, info.interface, trace))
    return Explanation(node, pk, "kernel", tuple(hops))


@dataclass(frozen=True, slots=True)
class Query:
    """What to explain, as given (names or addresses, protocol by name or
    number); `kernel`: from the kernel's ruleset, not the computed tables."""

    src: str
    dst: str
    protocol: str = "tcp"
    port: int | None = None
    icmp_type: int | None = None
    icmp_code: int | None = None
    kernel: bool = False

    @staticmethod
    def of(params: Mapping[str, str]) -> Query:
        """From query parameters (`from`, `to`, `protocol`, `port`,
        `icmp_type`, `icmp_code`, `kernel`).  Raises TraceError."""

        def number(name: str) -> int | None:
            text = params.get(name)
            if text is None or text == "":
                return None
            if not (text.isascii() and text.isdigit()):
                raise TraceError(f"{name} must be a number, not {text!r:.20}")
            return int(text)

        if not params.get("from") or not params.get("to"):
            raise TraceError("both `from` and `to` are needed")
        return Query(
            params["from"],
            params["to"],
            params.get("protocol") or "tcp",
            number("port"),
            number("icmp_type"),
            number("icmp_code"),
            params.get("kernel", "") in ("1", "true", "yes"),
        )

    def params(self) -> dict[str, str]:
        """The query as parameters (`of`'s inverse)."""
        out = {"from": self.src, "to": self.dst, "protocol": self.protocol}
        for name, value in (
            ("port", self.port),
            ("icmp_type", self.icmp_type),
            ("icmp_code", self.icmp_code),
        ):
            if value is not None:
                out[name] = str(value)
        if self.kernel:
            out["kernel"] = "1"
        return out


def packet_of(q: Query, endpoints: Mapping[str, Endpoint]) -> Packet:
    """The packet a query describes, names resolved.  Raises TraceError."""
    src, _ = address_of(q.src, endpoints)
    dst, _ = address_of(q.dst, endpoints, ipaddress.ip_address(src).version)
    return packet(
        src,
        dst,
        protocol_number(q.protocol),
        port=q.port,
        icmp_type=q.icmp_type,
        icmp_code=q.icmp_code,
    )


def explain(
    q: Query, node: str, endpoints: Mapping[str, Endpoint], dp: MemoryDataplane
) -> Explanation:
    """Answer a query on this node: `endpoints` are every endpoint the agent
    knows (for names), `dp` its dataplane.  Raises TraceError (a query that
    cannot be answered, a kernel table that cannot be read or evaluated)."""
    pk = packet_of(q, endpoints)
    if not q.kernel:
        return explain_computed(node, pk, dp.endpoints, dp.chains, dp.ipsets)
    if not isinstance(dp, LinuxDataplane):
        raise TraceError("the kernel's ruleset is only there with the linux dataplane")
    try:
        table, names = dp.kernel_table()
    except DataplaneError as exc:
        raise TraceError(f"the kernel's table cannot be read: {exc}") from None
    return explain_kernel(node, pk, dp.endpoints, table, names)
