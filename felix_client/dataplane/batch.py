"""The dataplane interface the calculation drives, and an in-memory driver.

Operations are batched and idempotent: setting a route that is already set,
or removing a member that is absent, is a no-op.  A real driver (netlink,
ipset, iptables/nftables) implements the same `apply`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(frozen=True, slots=True, order=True)
class Route:
    """One route: to `dst`, of `kind` local (dev), blackhole, via (next hop), ipip or vxlan."""

    dst: str
    kind: str  # local, blackhole, via, ipip, vxlan
    via: str = ""
    dev: str = ""

    def __str__(self) -> str:
        if self.kind == "local":
            return f"{self.dst} dev {self.dev} scope link"
        if self.kind == "blackhole":
            return f"blackhole {self.dst}"
        if self.kind == "ipip":
            return f"{self.dst} via {self.via} dev tunl0 onlink"
        if self.kind == "vxlan":
            return f"{self.dst} via {self.via} dev vxlan.calico onlink"
        return f"{self.dst} via {self.via}"


@dataclass(frozen=True, slots=True)
class Match:
    """One side (source or destination) of a rule."""

    nets: tuple[str, ...] = ()
    not_nets: tuple[str, ...] = ()
    ports: tuple[str, ...] = ()
    not_ports: tuple[str, ...] = ()
    ipset: str = ""  # IP set id (selector text), "" for none
    not_ipset: str = ""

    def __str__(self) -> str:
        parts = []
        if self.nets:
            parts.append("net " + ",".join(self.nets))
        if self.not_nets:
            parts.append("!net " + ",".join(self.not_nets))
        if self.ipset:
            parts.append(f"set {ipset_name(self.ipset)}")
        if self.not_ipset:
            parts.append(f"!set {ipset_name(self.not_ipset)}")
        if self.ports:
            parts.append("port " + ",".join(self.ports))
        if self.not_ports:
            parts.append("!port " + ",".join(self.not_ports))
        return " ".join(parts)


@dataclass(frozen=True, slots=True)
class Rule:
    """One ACL rule: action, protocol, and what the source and destination must match; `origin`
    names the policy or profile it came from."""

    action: str  # Allow, Deny, Log, Pass
    protocol: str = ""
    src: Match = Match()
    dst: Match = Match()
    origin: str = ""  # the policy or profile it came from

    def __str__(self) -> str:
        parts = [self.action.lower()]
        if self.protocol:
            parts.append(f"proto {self.protocol}")
        if s := str(self.src):
            parts.append(f"from {s}")
        if d := str(self.dst):
            parts.append(f"to {d}")
        if self.origin:
            parts.append(f"# {self.origin}")
        return " ".join(parts)


def ipset_name(selector_text: str) -> str:
    """The kernel name of the IP set for a selector text (hashed to fit the 31-character limit)."""
    return "cali40s:" + hashlib.blake2b(selector_text.encode(), digest_size=8).hexdigest()[:14]


ChainKey = tuple[str, str]  # (endpoint key, "ingress" | "egress")


@dataclass(slots=True)
class DataplaneBatch:
    """What the dataplane must change after one batch of updates.  Drivers apply it in the order
    the Dataplane protocol gives."""

    routes_set: dict[str, Route] = field(default_factory=dict)
    routes_del: set[str] = field(default_factory=set)
    ipsets_create: set[str] = field(default_factory=set)
    ipsets_delete: set[str] = field(default_factory=set)
    ipset_add: dict[str, set[str]] = field(default_factory=dict)
    ipset_remove: dict[str, set[str]] = field(default_factory=dict)
    chains_set: dict[ChainKey, tuple[Rule, ...]] = field(default_factory=dict)
    chains_del: set[ChainKey] = field(default_factory=set)

    def empty(self) -> bool:
        """True if there is nothing to do."""
        return not any(
            (
                self.routes_set,
                self.routes_del,
                self.ipsets_create,
                self.ipsets_delete,
                self.ipset_add,
                self.ipset_remove,
                self.chains_set,
                self.chains_del,
            )
        )

    def ops(self) -> int:
        """How many operations the batch holds (for metrics)."""
        return (
            len(self.routes_set)
            + len(self.routes_del)
            + len(self.ipsets_create)
            + len(self.ipsets_delete)
            + sum(len(v) for v in self.ipset_add.values())
            + sum(len(v) for v in self.ipset_remove.values())
            + len(self.chains_set)
            + len(self.chains_del)
        )


class Dataplane(Protocol):
    """What every dataplane driver offers the calculation."""

    def apply(self, batch: DataplaneBatch) -> None:
        """Apply one batch; must be idempotent.  Order: route deletes, route
        sets; IP set deletes, creates, member adds, member removes; chain
        deletes, chain sets."""
