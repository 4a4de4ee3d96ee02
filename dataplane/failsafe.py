"""Failsafe ports: traffic that host endpoint policy can never block.

A host endpoint's policy could cut the node off from its own control plane
(ssh, the datastore, typha, the API server).  As in Calico, packets to these
ports (inbound) or from the host to these ports (outbound) bypass every
host endpoint chain: untracked, pre-DNAT and normal.  Forwarded traffic has
no failsafes.  The defaults are Calico's.
"""

from __future__ import annotations

from dataclasses import dataclass

from dataplane.errors import BadFailsafePorts

PROTOCOLS = ("tcp", "udp", "sctp")


@dataclass(frozen=True, slots=True, order=True)
class ProtoPort:
    """One failsafe: a protocol and a destination port."""

    protocol: str
    port: int

    def __str__(self) -> str:
        return f"{self.protocol}:{self.port}"


def parse_ports(text: str) -> tuple[ProtoPort, ...]:
    """`proto:port[,proto:port...]` (tcp, udp or sctp), or `none` for no
    failsafes.  Raises BadFailsafePorts naming the bad item."""
    if text.strip().lower() == "none":
        return ()
    out = []
    for item in (i.strip() for i in text.split(",")):
        if not item:
            continue
        proto, sep, port = item.lower().partition(":")
        if not sep or proto not in PROTOCOLS or not port.isdigit() or not 0 < int(port) < 65536:
            raise BadFailsafePorts(
                f"failsafe port {item!r}: expected proto:port with proto one of "
                f"{', '.join(PROTOCOLS)} and port 1-65535, or 'none'"
            )
        out.append(ProtoPort(proto, int(port)))
    return tuple(sorted(set(out)))


DEFAULT_INBOUND = parse_ports(
    "tcp:22,udp:68,tcp:179,tcp:2379,tcp:2380,tcp:5473,tcp:6443,tcp:6666,tcp:6667"
)
DEFAULT_OUTBOUND = parse_ports(
    "udp:53,udp:67,tcp:179,tcp:2379,tcp:2380,tcp:5473,tcp:6443,tcp:6666,tcp:6667"
)


@dataclass(frozen=True, slots=True)
class Failsafes:
    """The inbound and outbound failsafe ports of one node."""

    inbound: tuple[ProtoPort, ...] = DEFAULT_INBOUND
    outbound: tuple[ProtoPort, ...] = DEFAULT_OUTBOUND
