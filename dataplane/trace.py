"""One packet's path through an endpoint chain, as data.

Two evaluators produce it: `rule_eval` over the chains the agent computed,
`linux.nft_eval` over the ruleset the kernel holds.  Both report every policy
rule the packet was tested against (`Step`), whether it matched, and which
rule decided; a staged policy's rules are steps too, and never decide.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from enum import StrEnum

from calico_model.protocols import PROTOCOL_NAMES
from dataplane.errors import DataplaneError
from dataplane.policy_counters import CounterKey

ICMP = {4: 1, 6: 58}
# Protocol names as nftables and named-port members spell them, to numbers.
BY_NAME = {name: number for number, name in PROTOCOL_NAMES.items()}
PORTED = frozenset(BY_NAME[n] for n in ("tcp", "udp", "sctp", "udplite"))


class TraceError(DataplaneError):
    """The packet or the ruleset cannot be evaluated exactly (a malformed
    packet description, an expression the evaluator does not know): no
    verdict is guessed."""


class Verdict(StrEnum):
    """What a chain does to the packet."""

    ALLOW = "allow"
    DENY = "deny"


@dataclass(frozen=True, slots=True)
class Packet:
    """The first packet of a flow: addresses, IANA protocol, ports (TCP,
    UDP, SCTP, UDP-Lite) or ICMP type and code."""

    src: str
    dst: str
    protocol: int
    sport: int | None = None
    dport: int | None = None
    icmp_type: int | None = None
    icmp_code: int | None = None

    @property
    def family(self) -> int:
        """4 or 6."""
        return ipaddress.ip_address(self.src).version

    @property
    def is_icmp(self) -> bool:
        """Whether it is ICMP of its family (ICMPv6 for IPv6)."""
        return self.protocol == ICMP[self.family]

    def to_dict(self) -> dict[str, object]:
        """JSON-ready fields; absent ones left out."""
        fields = {
            "src": self.src,
            "dst": self.dst,
            "protocol": self.protocol,
            "sport": self.sport,
            "dport": self.dport,
            "icmp_type": self.icmp_type,
            "icmp_code": self.icmp_code,
        }
        return {k: v for k, v in fields.items() if v is not None}


def protocol_number(text: str) -> int:
    """`tcp`, `UDP`, `icmp`, `icmpv6`, `sctp`, `udplite` or a number 0-255.
    Raises TraceError."""
    t = text.strip().lower()
    if t in BY_NAME:
        return BY_NAME[t]
    if t.isascii() and t.isdigit() and int(t) <= 255:
        return int(t)
    raise TraceError(f"{text!r:.40} is not a protocol (a name such as tcp, or 0-255)")


def packet(
    src: str,
    dst: str,
    protocol: int,
    *,
    port: int | None = None,
    sport: int | None = None,
    icmp_type: int | None = None,
    icmp_code: int | None = None,
) -> Packet:
    """A checked packet.  `port` is the destination port; a ported protocol
    without one gets none (rules naming ports do not match it), ICMP without
    a type is an echo request.  Raises TraceError."""
    try:
        a, b = ipaddress.ip_address(src), ipaddress.ip_address(dst)
    except ValueError as exc:
        raise TraceError(str(exc)) from None
    if a.version != b.version:
        raise TraceError("the source and destination are of different IP families")
    for name, value, hi in (
        ("port", port, 65535),
        ("source port", sport, 65535),
        ("ICMP type", icmp_type, 255),
        ("ICMP code", icmp_code, 255),
    ):
        if value is not None and not 0 <= value <= hi:
            raise TraceError(f"the {name} must be 0-{hi}")
    icmp = protocol == ICMP[a.version]
    if (port is not None or sport is not None) and protocol not in PORTED:
        raise TraceError("ports need a protocol that has them (tcp, udp, sctp, udplite)")
    if (icmp_type is not None or icmp_code is not None) and not icmp:
        raise TraceError(f"an ICMP type needs protocol {'icmp' if a.version == 4 else 'icmpv6'}")
    if icmp and icmp_type is None:
        icmp_type, icmp_code = (8 if a.version == 4 else 128), 0
    if protocol in PORTED and sport is None and port is not None:
        sport = 40000  # an ephemeral port: rules on source ports are rare
    return Packet(str(a), str(b), protocol, sport, port, icmp_type, icmp_code)


@dataclass(frozen=True, slots=True)
class Step:
    """One rule the packet was tested against: the policy rule it belongs to
    (None: a rule of no policy), and whether it matched."""

    key: CounterKey | None
    matched: bool


@dataclass(frozen=True, slots=True)
class ChainTrace:
    """A packet through one endpoint chain: the rules tested, in order, the
    verdict and the rule that gave it (None: no rule decided; the chain
    ran out, which the base chain turns into a drop)."""

    steps: tuple[Step, ...]
    verdict: Verdict
    decided: CounterKey | None
