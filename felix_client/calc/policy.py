"""ACLs for one node's endpoints, maintained incrementally.

Two selector indexes do the work: one over *local* endpoints answers "which
policies select this endpoint", one over *all* endpoints answers "which
endpoints are in this IP set".  An endpoint update touches only the
selectors reading the labels it changed; a policy update touches only the
local endpoints it selects (before or after); chains are recompiled only for
endpoints marked dirty, and IP sets exist only while some chain uses them.
"""

from __future__ import annotations

import logging
from collections import Counter, defaultdict

from felix_client.calc.dataplane import ChainKey, DataplaneBatch, Rule
from felix_client.calc.model import Endpoint
from felix_client.calc.rules import PolicyDef, ProfileDef, chain, effective_labels, ipsets_of
from felix_client.calc.selector_index import Event, SelectorIndex
from typha.selector import parse as parse_selector

log = logging.getLogger(__name__)

DIRECTIONS = ("ingress", "egress")


class PolicyCalc:
    def __init__(self, node: str) -> None:
        self.node = node
        self.eps: dict[str, Endpoint] = {}
        self.labels: dict[str, dict[str, str]] = {}
        self.local: set[str] = set()
        self.profiles: dict[str, ProfileDef] = {}
        self.eps_by_profile: defaultdict[str, set[str]] = defaultdict(set)
        self.policies: dict[str, PolicyDef] = {}
        self.policy_index = SelectorIndex()  # over local endpoints
        self.ipset_index = SelectorIndex()  # over all endpoints; only active sets
        self.chains: dict[ChainKey, tuple[Rule, ...]] = {}
        self._set_refs: Counter[str] = Counter()  # IP set -> chains using it
        self._members: defaultdict[str, Counter[str]] = defaultdict(Counter)  # set -> ip -> eps
        self._dirty: set[str] = set()
        self._out = DataplaneBatch()

    # -- inputs ------------------------------------------------------------------

    def set_endpoint(self, key: str, ep: Endpoint | None) -> None:
        was_local = key in self.local
        old = self.eps.pop(key, None)
        if old is not None:
            for p in old.profiles:
                self.eps_by_profile[p].discard(key)
        if ep is not None:
            self.eps[key] = ep
            for p in ep.profiles:
                self.eps_by_profile[p].add(key)
        self._relabel(key, old)
        if was_local or key in self.local:
            self._dirty.add(key)

    def set_profile(self, name: str, prof: ProfileDef | None) -> None:
        if prof is None:
            self.profiles.pop(name, None)
        else:
            self.profiles[name] = prof
        for key in list(self.eps_by_profile.get(name, ())):
            self._relabel(key, self.eps[key])
            if key in self.local:
                self._dirty.add(key)

    def set_policy(self, key: str, pol: PolicyDef | None) -> None:
        self._dirty |= self.policy_index.members(key)
        if pol is None:
            self.policies.pop(key, None)
            self._policy_events(self.policy_index.remove_selector(key))
        else:
            self.policies[key] = pol
            self._policy_events(self.policy_index.add_selector(key, pol.selector))
        self._dirty |= self.policy_index.members(key)

    # -- output --------------------------------------------------------------------

    def flush(self, batch: DataplaneBatch) -> None:
        """Recompile dirty chains and move everything pending into `batch`."""
        dirty, self._dirty = self._dirty, set()
        for key in sorted(dirty):
            for direction in DIRECTIONS:
                self._update_chain((key, direction))
        out, self._out = self._out, DataplaneBatch()
        batch.chains_set.update(out.chains_set)
        batch.chains_del |= out.chains_del
        batch.ipsets_create |= out.ipsets_create
        batch.ipsets_delete |= out.ipsets_delete
        for name, ips in out.ipset_add.items():
            batch.ipset_add.setdefault(name, set()).update(ips)
        for name, ips in out.ipset_remove.items():
            batch.ipset_remove.setdefault(name, set()).update(ips)

    # -- internals -----------------------------------------------------------------

    def _relabel(self, key: str, old: Endpoint | None) -> None:
        """Re-index an endpoint after its labels, IPs or profiles changed."""
        ep = self.eps.get(key)
        labels = effective_labels(ep, self.profiles) if ep is not None else None
        if labels is None:
            self.labels.pop(key, None)
        else:
            self.labels[key] = labels
        old_ips = {str(n) for n in old.nets} if old is not None else set()
        new_ips = {str(n) for n in ep.nets} if ep is not None else set()
        before = self.ipset_index.selectors_matching(key)
        events = self.ipset_index.update_item(key, labels)
        for sid, _, added in events:
            for ip in new_ips if added else old_ips:
                self._member(sid, ip, +1 if added else -1)
        if old_ips != new_ips:
            for sid in before & self.ipset_index.selectors_matching(key):
                for ip in old_ips:
                    self._member(sid, ip, -1)
                for ip in new_ips:
                    self._member(sid, ip, +1)
        is_local = ep is not None and ep.node == self.node
        if is_local:
            self.local.add(key)
            self._policy_events(self.policy_index.update_item(key, labels))
        elif key in self.local:
            self.local.discard(key)
            self._policy_events(self.policy_index.update_item(key, None))

    def _policy_events(self, events: list[Event]) -> None:
        for _, key, _ in events:
            self._dirty.add(key)

    def _member(self, sid: str, ip: str, delta: int) -> None:
        counts = self._members[sid]
        before = counts[ip]
        counts[ip] = before + delta
        if before == 0 and delta > 0:
            self._out.ipset_add.setdefault(sid, set()).add(ip)
            self._out.ipset_remove.get(sid, set()).discard(ip)
        elif before + delta <= 0:
            del counts[ip]
            if before > 0:
                self._out.ipset_remove.setdefault(sid, set()).add(ip)
                self._out.ipset_add.get(sid, set()).discard(ip)

    def _update_chain(self, ck: ChainKey) -> None:
        key, direction = ck
        ep = self.eps.get(key)
        new: tuple[Rule, ...] | None = None
        if ep is not None and key in self.local:
            pols = [self.policies[p] for p in self.policy_index.selectors_matching(key)]
            new = chain(direction, pols, ep, self.profiles)
        old = self.chains.get(ck)
        if old == new:
            return
        new_sets, old_sets = ipsets_of(new or ()), ipsets_of(old or ())
        for sid in new_sets - old_sets:
            self._ref_ipset(sid, +1)
        if new is None:
            del self.chains[ck]
            self._out.chains_del.add(ck)
            self._out.chains_set.pop(ck, None)
        else:
            self.chains[ck] = new
            self._out.chains_set[ck] = new
            self._out.chains_del.discard(ck)
        for sid in old_sets - new_sets:
            self._ref_ipset(sid, -1)

    def _ref_ipset(self, sid: str, delta: int) -> None:
        before = self._set_refs[sid]
        self._set_refs[sid] = before + delta
        if before == 0 and delta > 0:
            # If a delete is pending in this batch it stays: delete-then-create
            # replaces the set, dropping members the dataplane still holds.
            self._out.ipsets_create.add(sid)
            for _, key, _ in self.ipset_index.add_selector(sid, parse_selector(sid)):
                ep = self.eps[key]
                for net in ep.nets:
                    self._member(sid, str(net), +1)
        elif before + delta <= 0:
            del self._set_refs[sid]
            self.ipset_index.remove_selector(sid)
            self._members.pop(sid, None)
            self._out.ipsets_delete.add(sid)
            self._out.ipsets_create.discard(sid)
            self._out.ipset_add.pop(sid, None)
            self._out.ipset_remove.pop(sid, None)
