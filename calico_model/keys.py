"""The datastore key layout, parsed into typed keys relative to a prefix.

Calico keeps its v3 resources under `<prefix>resources/v3/projectcalico.org/
<plural>/[<namespace>/]<name>` and its IPAM blocks under
`<prefix>ipam/v2/assignment/ipv4/block/<a.b.c.d-len>` (IPv6 blocks under
`.../ipv6/block/<addr-len>`).  The prefix is the
operator's (`--prefix`, default `/calico/`); everything below it is Calico's.
Server and agent must parse with the same prefix: an agent with the wrong one
recognises no key and programs nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

DEFAULT_PREFIX = "/calico/"
V3_PATH = "resources/v3/projectcalico.org/"
BLOCK_PATH = "ipam/v2/assignment/ipv4/block/"
BLOCK_PATH_V6 = "ipam/v2/assignment/ipv6/block/"


class Kind(Enum):
    """The resource kinds the system understands; values are Calico's `kind`."""

    NODE = "Node"
    IP_POOL = "IPPool"
    IPAM_BLOCK = "IPAMBlock"
    WORKLOAD_ENDPOINT = "WorkloadEndpoint"
    HOST_ENDPOINT = "HostEndpoint"
    NETWORK_POLICY = "NetworkPolicy"
    GLOBAL_NETWORK_POLICY = "GlobalNetworkPolicy"
    # Previewed, never enforced: validated and served; the agent counts what
    # they would decide and never lets them decide a verdict.
    STAGED_NETWORK_POLICY = "StagedNetworkPolicy"
    STAGED_GLOBAL_NETWORK_POLICY = "StagedGlobalNetworkPolicy"
    STAGED_KUBERNETES_NETWORK_POLICY = "StagedKubernetesNetworkPolicy"
    PROFILE = "Profile"
    FELIX_CONFIGURATION = "FelixConfiguration"
    TIER = "Tier"


# plural in the key -> kind, and whether the key carries a namespace
V3_PLURALS: dict[str, tuple[Kind, bool]] = {
    "nodes": (Kind.NODE, False),
    "ippools": (Kind.IP_POOL, False),
    "workloadendpoints": (Kind.WORKLOAD_ENDPOINT, True),
    "hostendpoints": (Kind.HOST_ENDPOINT, False),
    "networkpolicies": (Kind.NETWORK_POLICY, True),
    "globalnetworkpolicies": (Kind.GLOBAL_NETWORK_POLICY, False),
    "stagednetworkpolicies": (Kind.STAGED_NETWORK_POLICY, True),
    "stagedglobalnetworkpolicies": (Kind.STAGED_GLOBAL_NETWORK_POLICY, False),
    "stagedkubernetesnetworkpolicies": (Kind.STAGED_KUBERNETES_NETWORK_POLICY, True),
    "profiles": (Kind.PROFILE, False),
    "felixconfigurations": (Kind.FELIX_CONFIGURATION, False),
    "tiers": (Kind.TIER, False),
}
_PLURAL_OF = {kind: plural for plural, (kind, _) in V3_PLURALS.items()}


@dataclass(frozen=True, slots=True)
class ResourceKey:
    """One resource's identity.  `namespace` is "" for cluster-wide kinds; an
    IPAM block's `name` is its key segment (`10.244.3.0-26`)."""

    kind: Kind
    name: str
    namespace: str = ""


class KeyLayout:
    """Parses and builds keys under one prefix.  The prefix must start and end
    with "/" (ValueError otherwise)."""

    __slots__ = ("_blocks", "_blocks6", "_v3", "prefix")

    def __init__(self, prefix: str = DEFAULT_PREFIX) -> None:
        if not (prefix.startswith("/") and prefix.endswith("/")):
            raise ValueError(f"key prefix must start and end with '/': {prefix!r}")
        self.prefix = prefix
        self._v3 = prefix + V3_PATH
        self._blocks = prefix + BLOCK_PATH
        self._blocks6 = prefix + BLOCK_PATH_V6

    def parse(self, key: str) -> ResourceKey | None:
        """The typed key, or None for a key outside the layout (unknown kinds,
        other prefixes, malformed paths): such keys are served but ignored."""
        if key.startswith(self._v3):
            plural, _, rest = key[len(self._v3) :].partition("/")
            known = V3_PLURALS.get(plural)
            if known is None or not rest:
                return None
            kind, namespaced = known
            if namespaced:
                ns, _, name = rest.partition("/")
                if not ns or not name or "/" in name:
                    return None
                return ResourceKey(kind, name, ns)
            if "/" in rest:
                return None
            return ResourceKey(kind, rest)
        for path in (self._blocks, self._blocks6):
            if key.startswith(path):
                name = key[len(path) :]
                if not name or "/" in name or (":" in name) != (path is self._blocks6):
                    return None
                return ResourceKey(Kind.IPAM_BLOCK, name)
        return None

    def key(self, rk: ResourceKey) -> str:
        """The datastore key of `rk` (the inverse of `parse`)."""
        if rk.kind is Kind.IPAM_BLOCK:
            return (self._blocks6 if ":" in rk.name else self._blocks) + rk.name
        plural = _PLURAL_OF[rk.kind]
        if rk.namespace:
            return f"{self._v3}{plural}/{rk.namespace}/{rk.name}"
        return f"{self._v3}{plural}/{rk.name}"
