"""Graph node: the members of every IP set some chain uses.

An IP set is a rule's (scoped) selector; its members are the IPs of every
endpoint, on any node, whose labels it matches.  Sets exist only while a
chain references them (reference counted), and an IP stays in a set while
any matching endpoint holds it.  Changes accumulate in a pending batch.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping

from calico_model.selector import parse as parse_selector
from felix_client.calc.model import Endpoint
from felix_client.calc.selector_index import SelectorIndex
from felix_client.dataplane.batch import DataplaneBatch


class IpSetMembership:
    """Feed endpoint label/IP changes and set references; `flush_into` moves
    the pending work into a batch."""

    def __init__(self, eps: Mapping[str, Endpoint]) -> None:
        self._eps = eps  # every endpoint, shared with EndpointLabels
        self._index = SelectorIndex()  # over all endpoints; active sets only
        self._refs: Counter[str] = Counter()  # set -> chains using it
        self._members: defaultdict[str, Counter[str]] = defaultdict(Counter)  # set -> ip -> eps
        self._out = DataplaneBatch()

    def set_endpoint(
        self, key: str, labels: dict[str, str] | None, old: Endpoint | None, new: Endpoint | None
    ) -> None:
        """An endpoint's labels or IPs changed (from `old` to `new`)."""
        old_ips = {str(n) for n in old.nets} if old is not None else set()
        new_ips = {str(n) for n in new.nets} if new is not None else set()
        before = self._index.selectors_matching(key)
        for sid, _, added in self._index.update_item(key, labels):
            for ip in new_ips if added else old_ips:
                self._member(sid, ip, +1 if added else -1)
        if old_ips != new_ips:
            for sid in before & self._index.selectors_matching(key):
                for ip in old_ips:
                    self._member(sid, ip, -1)
                for ip in new_ips:
                    self._member(sid, ip, +1)

    def ref(self, sid: str, delta: int) -> None:
        """A chain started (+1) or stopped (-1) using the set `sid`."""
        before = self._refs[sid]
        self._refs[sid] = before + delta
        if before == 0 and delta > 0:
            # If a delete is pending in this batch it stays: delete-then-create
            # replaces the set, dropping members the dataplane still holds.
            self._out.ipsets_create.add(sid)
            for _, key, _ in self._index.add_selector(sid, parse_selector(sid)):
                for net in self._eps[key].nets:
                    self._member(sid, str(net), +1)
        elif before + delta <= 0:
            del self._refs[sid]
            self._index.remove_selector(sid)
            self._members.pop(sid, None)
            out = self._out
            out.ipsets_delete.add(sid)
            out.ipsets_create.discard(sid)
            out.ipset_add.pop(sid, None)
            out.ipset_remove.pop(sid, None)

    def flush_into(self, batch: DataplaneBatch) -> None:
        """Move the pending set changes into `batch`."""
        out, self._out = self._out, DataplaneBatch()
        batch.ipsets_create |= out.ipsets_create
        batch.ipsets_delete |= out.ipsets_delete
        for name, ips in out.ipset_add.items():
            batch.ipset_add.setdefault(name, set()).update(ips)
        for name, ips in out.ipset_remove.items():
            batch.ipset_remove.setdefault(name, set()).update(ips)

    def _member(self, sid: str, ip: str, delta: int) -> None:
        counts = self._members[sid]
        before = counts[ip]
        counts[ip] = before + delta
        out = self._out
        if before == 0 and delta > 0:
            out.ipset_add.setdefault(sid, set()).add(ip)
            out.ipset_remove.get(sid, set()).discard(ip)
        elif before + delta <= 0:
            del counts[ip]
            if before > 0:
                out.ipset_remove.setdefault(sid, set()).add(ip)
                out.ipset_add.get(sid, set()).discard(ip)
