"""The policy half of the calculation graph, wired from four small nodes:

  EndpointLabels   endpoints + profiles  -> effective labels
  ActivePolicies   policies + local labels -> which local endpoints are dirty
  IpSetMembership  all endpoints' labels/IPs + set references -> set members
  ChainRenderer    dirty endpoints -> chains (and set references)

Chains are rendered only for dirty endpoints, when the batch is flushed, so
a batch that touches one endpoint many times renders it once.
"""

from __future__ import annotations

from dataplane.batch import ChainKey, DataplaneBatch, Rule
from felix_client.calc.active_policies import ActivePolicies
from felix_client.calc.chains import ChainRenderer
from felix_client.calc.endpoint_labels import EndpointLabels
from felix_client.calc.ipset_members import IpSetMembership
from felix_client.calc.model import Endpoint
from felix_client.calc.policy_defs import PolicyDef, ProfileDef, TierDef


class PolicyCalc:
    """ACLs for one node's endpoints, maintained incrementally."""

    def __init__(self, node: str) -> None:
        self.node = node
        self.endpoints = EndpointLabels()
        self.active = ActivePolicies(node)
        self.ipsets = IpSetMembership(self.endpoints.eps)
        self.renderer = ChainRenderer(self.ipsets)
        self.tiers: dict[str, TierDef] = {}

    @property
    def chains(self) -> dict[ChainKey, tuple[Rule, ...]]:
        """The chains as rendered so far."""
        return self.renderer.chains

    def set_endpoint(self, key: str, ep: Endpoint | None) -> None:
        """A workload or host endpoint changed (None: deleted)."""
        old = self.endpoints.set_endpoint(key, ep)
        self._propagate(key, old)

    def set_profile(self, name: str, prof: ProfileDef | None) -> None:
        """A profile changed (None: deleted)."""
        for key in self.endpoints.set_profile(name, prof):
            ep = self.endpoints.eps[key]
            self._propagate(key, ep)
            self.active.touch(key)

    def set_policy(self, key: str, pol: PolicyDef | None) -> None:
        """A (global) network policy changed (None: deleted or disabled)."""
        self.active.set_policy(key, pol)

    def set_tier(self, name: str, tier: TierDef | None) -> None:
        """A tier changed (None: deleted).  Tiers are few and change rarely:
        every local endpoint is rendered again."""
        if tier is None:
            self.tiers.pop(name, None)
        else:
            self.tiers[name] = tier
        self.active.dirty |= self.active.local

    def flush(self, batch: DataplaneBatch) -> None:
        """Render the dirty chains and move everything pending into `batch`."""
        dirty, self.active.dirty = self.active.dirty, set()
        eps, active = self.endpoints.eps, self.active
        profiles = self.endpoints.profiles
        for key in sorted(dirty):
            ep = eps.get(key) if key in active.local else None
            pols = active.policies_for(key) if ep is not None else []
            self.renderer.render(key, ep, pols, self.tiers, profiles)
        self.renderer.flush_into(batch)
        self.ipsets.flush_into(batch)

    def _propagate(self, key: str, old: Endpoint | None) -> None:
        ep = self.endpoints.eps.get(key)
        labels = self.endpoints.labels.get(key)
        self.ipsets.set_endpoint(key, labels, old, ep)
        self.active.set_endpoint(key, ep.node if ep is not None else None, labels)
