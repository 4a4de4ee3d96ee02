"""The dataplane interface the calculation drives, and an in-memory driver.

Operations are batched and idempotent: setting a route that is already set,
or removing a member that is absent, is a no-op.  A real driver (netlink,
ipset, iptables/nftables) implements the same `apply`.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, NamedTuple, Protocol

from dataplane.host_settings import ConfiguredSettings


class RouteKind(StrEnum):
    """What a route does with traffic to its destination."""

    LOCAL = "local"  # to a local workload's interface (`dev`)
    BLACKHOLE = "blackhole"  # a local block's unused addresses
    VIA = "via"  # to another node's address, directly
    IPIP = "ipip"  # to another node through tunl0
    VXLAN = "vxlan"  # to another node's VTEP through the VXLAN device

    @property
    def tunnelled(self) -> bool:
        """Whether the route leaves through a tunnel device."""
        return self in (RouteKind.IPIP, RouteKind.VXLAN)


@dataclass(frozen=True, slots=True, order=True)
class Route:
    """One route: to `dst` (IPv4 or IPv6), of a `kind` (with `dev` for a
    local route, `via` for a remote one)."""

    dst: str
    kind: RouteKind
    via: str = ""
    dev: str = ""

    def __str__(self) -> str:
        if self.kind is RouteKind.LOCAL:
            return f"{self.dst} dev {self.dev} scope link"
        if self.kind is RouteKind.BLACKHOLE:
            return f"blackhole {self.dst}"
        if self.kind is RouteKind.IPIP:
            return f"{self.dst} via {self.via} dev tunl0 onlink"
        if self.kind is RouteKind.VXLAN:
            dev = "vxlan-v6.calico" if ":" in self.dst else "vxlan.calico"
            return f"{self.dst} via {self.via} dev {dev} onlink"
        return f"{self.dst} via {self.via}"


class Action(StrEnum):
    """A rule's action.  Allow and Deny end evaluation, Log continues, Pass skips
    the rest of the rule's group (its tier, or its profile)."""

    ALLOW = "Allow"
    DENY = "Deny"
    LOG = "Log"
    PASS = "Pass"


class Direction(StrEnum):
    """Traffic into (ingress) or out of (egress) an endpoint."""

    INGRESS = "ingress"
    EGRESS = "egress"


class Stage(StrEnum):
    """Where a chain sits: `normal` (workloads and host endpoints); host
    endpoints also have `forward` (applyOnForward policies), `pre-dnat`
    (preDNAT policies, ingress only) and `untracked` (doNotTrack policies)."""

    NORMAL = "normal"
    FORWARD = "forward"
    PRE_DNAT = "pre-dnat"
    UNTRACKED = "untracked"


@dataclass(frozen=True, slots=True, order=True)
class IpSetId:
    """An IP set: the addresses of one family of every endpoint a selector
    matches; or, for a named port (`port_name`), the `ip,proto:port` members
    of those endpoints whose `spec.ports` names it (with `protocol`, when the
    rule gives one)."""

    family: int  # 4 or 6
    selector: str  # canonical selector text
    port_name: str = ""
    protocol: int | None = None

    @property
    def name(self) -> str:
        """The kernel name: hashed to fit the 31-character limit."""
        kind = "n" if self.port_name else "s"
        text = f"{self.selector}|{self.port_name}|{self.protocol}"
        digest = hashlib.blake2b(text.encode(), digest_size=8).hexdigest()[:14]
        return f"cali{self.family}0{kind}:{digest}"

    def __str__(self) -> str:
        return self.name

    def to_dict(self) -> dict[str, Any]:
        """The set's definition as JSON-ready fields."""
        out: dict[str, Any] = {"family": self.family, "selector": self.selector}
        if self.port_name:
            out["port_name"] = self.port_name
            out["protocol"] = self.protocol
        return out


def _non_empty(fields: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in fields.items() if v not in (None, (), "", [])}


@dataclass(frozen=True, slots=True)
class Match:
    """One side (source or destination) of a rule.  It matches when every
    field given matches: the address is in `nets` (if any), in no `not_nets`,
    in `ipset` (if any), not in `not_ipset`; the port is in `ports` or the
    (address, port) in one of `named_ports` (if either is given), and in
    neither `not_ports` nor `not_named_ports`."""

    nets: tuple[str, ...] = ()
    not_nets: tuple[str, ...] = ()
    ports: tuple[str, ...] = ()  # "80" or "8080:8090"
    not_ports: tuple[str, ...] = ()
    named_ports: tuple[IpSetId, ...] = ()
    not_named_ports: tuple[IpSetId, ...] = ()
    ipset: IpSetId | None = None
    not_ipset: IpSetId | None = None

    def sets(self) -> tuple[IpSetId, ...]:
        """Every IP set this side references."""
        if (
            self.ipset is None
            and self.not_ipset is None
            and not self.named_ports
            and not self.not_named_ports
        ):
            return ()
        out = list(self.named_ports) + list(self.not_named_ports)
        out += [s for s in (self.ipset, self.not_ipset) if s is not None]
        return tuple(out)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields (sets by kernel name); empty fields left out."""
        return _non_empty(
            {
                "nets": list(self.nets),
                "not_nets": list(self.not_nets),
                "ports": list(self.ports),
                "not_ports": list(self.not_ports),
                "named_ports": [s.name for s in self.named_ports],
                "not_named_ports": [s.name for s in self.not_named_ports],
                "ipset": self.ipset.name if self.ipset else None,
                "not_ipset": self.not_ipset.name if self.not_ipset else None,
            }
        )

    def __str__(self) -> str:
        parts = []
        if self.nets:
            parts.append("net " + ",".join(self.nets))
        if self.not_nets:
            parts.append("!net " + ",".join(self.not_nets))
        if self.ipset:
            parts.append(f"set {self.ipset}")
        if self.not_ipset:
            parts.append(f"!set {self.not_ipset}")
        if self.ports or self.named_ports:
            parts.append("port " + ",".join([*self.ports, *map(str, self.named_ports)]))
        if self.not_ports or self.not_named_ports:
            parts.append("!port " + ",".join([*self.not_ports, *map(str, self.not_named_ports)]))
        return " ".join(parts)


# Policy labels of the rules that are no policy's own (names of Calico
# resources are lower case DNS names: these cannot collide with one).
PROFILE_TIER = "__PROFILE__"
END_OF_TIER = "__END_OF_TIER__"
END_OF_PROFILES = "__NO_PROFILE_MATCHED__"
DEFAULT_RULE = "default"


class RuleRef(NamedTuple):
    """Which rule of which policy an ACL rule is: what its verdict counter
    counts for.  `tier` (PROFILE_TIER for a profile's rules), `policy` (the
    namespaced name, the profile's name, or END_OF_TIER / END_OF_PROFILES),
    `rule` (the rule's index in the policy's list for its direction, or
    DEFAULT_RULE), and `staged`: the rule is a staged policy's, which counts
    what it would decide and decides nothing.  A tuple: the scrape hashes
    and compares thousands of them."""

    tier: str
    policy: str
    rule: str
    staged: bool = False


@dataclass(frozen=True, slots=True)
class Rule:
    """One ACL rule: everything a dataplane needs to render it exactly.
    Protocols are IANA numbers.  `group` is the tier or profile the rule
    belongs to (a Pass skips to the first rule of another group); `origin`
    names the policy or profile it came from; `ref`, when given, is the
    policy rule its counter counts for (a staged one only counts)."""

    action: Action
    protocol: int | None = None
    not_protocol: int | None = None
    icmp_type: int | None = None
    icmp_code: int | None = None
    not_icmp_type: int | None = None
    not_icmp_code: int | None = None
    src: Match = Match()
    dst: Match = Match()
    group: str = ""
    origin: str = ""
    ref: RuleRef | None = None

    @property
    def staged(self) -> bool:
        """Whether the rule only counts what a staged policy would decide."""
        return self.ref is not None and self.ref.staged

    def sets(self) -> tuple[IpSetId, ...]:
        """Every IP set the rule references."""
        return self.src.sets() + self.dst.sets()

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields; empty fields left out."""
        return _non_empty(
            {
                "action": str(self.action),
                "protocol": self.protocol,
                "not_protocol": self.not_protocol,
                "icmp_type": self.icmp_type,
                "icmp_code": self.icmp_code,
                "not_icmp_type": self.not_icmp_type,
                "not_icmp_code": self.not_icmp_code,
                "src": self.src.to_dict() or None,
                "dst": self.dst.to_dict() or None,
                "group": self.group,
                "origin": self.origin,
                "rule": self.ref.rule if self.ref is not None else None,
                "staged": self.staged or None,
            }
        )

    def __str__(self) -> str:
        parts = [self.action.lower()]
        if self.protocol is not None:
            parts.append(f"proto {self.protocol}")
        if self.not_protocol is not None:
            parts.append(f"!proto {self.not_protocol}")
        if self.icmp_type is not None:
            code = f"/{self.icmp_code}" if self.icmp_code is not None else ""
            parts.append(f"icmp {self.icmp_type}{code}")
        if self.not_icmp_type is not None:
            code = f"/{self.not_icmp_code}" if self.not_icmp_code is not None else ""
            parts.append(f"!icmp {self.not_icmp_type}{code}")
        if s := str(self.src):
            parts.append(f"from {s}")
        if d := str(self.dst):
            parts.append(f"to {d}")
        if self.origin:
            staged = "staged " if self.staged else ""
            parts.append(f"# {staged}{self.origin}")
        return " ".join(parts)


class EndpointKind(StrEnum):
    """A workload (its host-side `cali*` interface) or a host endpoint."""

    WORKLOAD = "workload"
    HOST = "host"


@dataclass(frozen=True, slots=True)
class EndpointInfo:
    """Where a local endpoint's chains attach.  A workload by its interface;
    a host endpoint by `interface` (`*`: every host interface) or, when that
    is empty, by whichever interface holds one of its `addresses`."""

    kind: EndpointKind
    interface: str
    addresses: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        return {
            "kind": str(self.kind),
            "interface": self.interface,
            "addresses": list(self.addresses),
        }


@dataclass(frozen=True, slots=True, order=True)
class PoolInfo:
    """An IP pool as the dataplane needs it: its CIDR (canonical) and
    whether traffic from it to anywhere outside every pool is masqueraded
    (`natOutgoing`)."""

    cidr: str
    nat_outgoing: bool


@dataclass(frozen=True, slots=True, order=True)
class Vtep:
    """A node's VXLAN tunnel endpoints: per family, its underlay address, its
    tunnel device's address and MAC ("" where the node has none)."""

    node: str
    underlay: str
    address: str
    mac: str
    underlay6: str = ""
    address6: str = ""
    mac6: str = ""

    def of(self, family: int) -> tuple[str, str, str] | None:
        """(underlay, address, MAC) of one family, or None."""
        t = (
            (self.underlay, self.address, self.mac)
            if family == 4
            else (self.underlay6, self.address6, self.mac6)
        )
        return t if all(t) else None


class ChainKey(NamedTuple):
    """A chain's identity: the endpoint's datastore key, the direction, the IP
    family (4 or 6) and the stage."""

    endpoint: str
    direction: Direction
    family: int
    stage: Stage = Stage.NORMAL

    def __str__(self) -> str:
        stage = "" if self.stage is Stage.NORMAL else f" {self.stage}"
        return f"{self.endpoint} {self.direction} v{self.family}{stage}"


@dataclass(slots=True)
class DataplaneBatch:
    """What the dataplane must change after one batch of updates.  Drivers apply it in the order
    the Dataplane protocol gives."""

    routes_set: dict[str, Route] = field(default_factory=dict)
    routes_del: set[str] = field(default_factory=set)
    ipsets_create: set[IpSetId] = field(default_factory=set)
    ipsets_delete: set[IpSetId] = field(default_factory=set)
    ipset_add: dict[IpSetId, set[str]] = field(default_factory=dict)
    ipset_remove: dict[IpSetId, set[str]] = field(default_factory=dict)
    chains_set: dict[ChainKey, tuple[Rule, ...]] = field(default_factory=dict)
    chains_del: set[ChainKey] = field(default_factory=set)
    endpoints_set: dict[str, EndpointInfo] = field(default_factory=dict)
    endpoints_del: set[str] = field(default_factory=set)
    vteps_set: dict[str, Vtep] = field(default_factory=dict)  # by node; the own node's too
    vteps_del: set[str] = field(default_factory=set)
    pools_set: dict[str, PoolInfo] = field(default_factory=dict)  # by key
    pools_del: set[str] = field(default_factory=set)
    # Every node's own addresses, by node name (outgoing NAT's exclusions).
    hosts_set: dict[str, tuple[str, ...]] = field(default_factory=dict)
    hosts_del: set[str] = field(default_factory=set)
    # The FelixConfiguration that applies to this node, when it changed.
    configured: ConfiguredSettings | None = None

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
                self.endpoints_set,
                self.endpoints_del,
                self.vteps_set,
                self.vteps_del,
                self.pools_set,
                self.pools_del,
                self.hosts_set,
                self.hosts_del,
                self.configured is not None,
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
            + len(self.endpoints_set)
            + len(self.endpoints_del)
            + len(self.vteps_set)
            + len(self.vteps_del)
            + len(self.pools_set)
            + len(self.pools_del)
            + len(self.hosts_set)
            + len(self.hosts_del)
            + (self.configured is not None)
        )


class Dataplane(Protocol):
    """What every dataplane driver offers the calculation."""

    def apply(self, batch: DataplaneBatch) -> None:
        """Apply one batch; must be idempotent.  Order: VXLAN tunnel
        endpoints (the own node's device, then each peer's neighbour and
        forwarding entries); route deletes, route sets; IP set deletes,
        creates, member adds, member removes; endpoint sets (where chains
        attach); chain deletes, chain sets; endpoint deletes."""
