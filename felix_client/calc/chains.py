"""Graph node: renders the rule chains of local endpoints.

For each dirty endpoint it assembles every chain (per direction, IP family
and, for host endpoints, stage) from the policies that select it
(chain_build), compares them with what it rendered before, and emits only
real changes, telling the IP set node which sets a chain started or stopped
using.
"""

from __future__ import annotations

from collections.abc import Set as AbstractSet

from dataplane.batch import ChainKey, DataplaneBatch, EndpointInfo, IpSetId, Rule
from felix_client.calc.chain_build import endpoint_chains, ipsets_of
from felix_client.calc.ipset_members import IpSetMembership
from felix_client.calc.model import Endpoint, endpoint_info
from felix_client.calc.policy_defs import PolicyDef, ProfileDef, TierDef

_NO_SETS: frozenset[IpSetId] = frozenset()


class ChainRenderer:
    """Renders chains on demand; `flush_into` moves the changes to a batch."""

    def __init__(self, ipsets: IpSetMembership) -> None:
        self.chains: dict[ChainKey, tuple[Rule, ...]] = {}
        # The IP sets each chain references, kept so that replacing a chain
        # scans only the new rules.
        self._chain_sets: dict[ChainKey, AbstractSet[IpSetId]] = {}
        self._by_endpoint: dict[str, set[ChainKey]] = {}
        self.endpoints: dict[str, EndpointInfo] = {}
        self._ipsets = ipsets
        self._out = DataplaneBatch()

    def render(
        self,
        key: str,
        ep: Endpoint | None,
        policies: list[PolicyDef],
        tiers: dict[str, TierDef],
        profiles: dict[str, ProfileDef],
    ) -> None:
        """Render every chain of `key` from the policies that select it; `ep`
        None (deleted, or not local) removes them."""
        new = endpoint_chains(key, ep, policies, tiers, profiles) if ep is not None else {}
        info = endpoint_info(ep) if ep is not None else None
        if info is not None and self.endpoints.get(key) != info:
            self.endpoints[key] = info
            self._out.endpoints_set[key] = info
            self._out.endpoints_del.discard(key)
        elif info is None and self.endpoints.pop(key, None) is not None:
            self._out.endpoints_del.add(key)
            self._out.endpoints_set.pop(key, None)
        old_keys = self._by_endpoint.pop(key, set())
        for ck in old_keys - new.keys():
            self._update(ck, None)
        for ck, rules in new.items():
            self._update(ck, rules)
        if new:
            self._by_endpoint[key] = set(new)

    def _update(self, ck: ChainKey, new: tuple[Rule, ...] | None) -> None:
        old = self.chains.get(ck)
        if old == new:
            return
        old_sets = self._chain_sets.get(ck, _NO_SETS)
        new_sets = ipsets_of(new) if new else _NO_SETS
        for sid in new_sets - old_sets:
            self._ipsets.ref(sid, +1)
        out = self._out
        if new is None:
            del self.chains[ck]
            out.chains_del.add(ck)
            out.chains_set.pop(ck, None)
        else:
            self.chains[ck] = new
            out.chains_set[ck] = new
            out.chains_del.discard(ck)
        if new_sets:
            self._chain_sets[ck] = new_sets
        else:
            self._chain_sets.pop(ck, None)
        for sid in old_sets - new_sets:
            self._ipsets.ref(sid, -1)

    def flush_into(self, batch: DataplaneBatch) -> None:
        """Move the pending chain changes into `batch`."""
        out, self._out = self._out, DataplaneBatch()
        batch.chains_set.update(out.chains_set)
        batch.chains_del |= out.chains_del
        for key, info in out.endpoints_set.items():
            batch.endpoints_set[key] = info
            batch.endpoints_del.discard(key)
        for key in out.endpoints_del:
            batch.endpoints_del.add(key)
            batch.endpoints_set.pop(key, None)
