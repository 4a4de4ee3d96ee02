"""Graph node: the members of every IP set some chain uses.

An IP set is a rule's (scoped) selector and an IP family; its members are the
addresses of that family of every endpoint, on any node, whose labels it
matches.  A named-port set's members are `ip,proto:port` for the matching
endpoints whose `spec.ports` names the port.  Sets exist only while a chain
references them (reference counted), and a member stays in a set while any
matching endpoint gives it.  Changes accumulate in a pending batch.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Mapping

from calico_model.protocols import PROTOCOL_NAMES
from calico_model.selector import parse as parse_selector
from dataplane.batch import DataplaneBatch, IpSetId
from felix_client.calc.model import Endpoint
from felix_client.calc.selector_index import SelectorIndex


def members_of(sid: IpSetId, ep: Endpoint | None) -> set[str]:
    """What endpoint `ep` contributes to set `sid` if the selector matches it."""
    if ep is None:
        return set()
    addrs = ep.addresses(sid.family)
    if not sid.port_name:
        return set(addrs)
    out: set[str] = set()
    for p in ep.ports:
        if p.name == sid.port_name and sid.protocol in (None, p.protocol):
            proto = PROTOCOL_NAMES.get(p.protocol, str(p.protocol))
            out.update(f"{a.split('/')[0]},{proto}:{p.port}" for a in addrs)
    return out


class IpSetMembership:
    """Feed endpoint label/IP changes and set references; `flush_into` moves
    the pending work into a batch."""

    def __init__(self, eps: Mapping[str, Endpoint]) -> None:
        self._eps = eps  # every endpoint, shared with EndpointLabels
        self._index = SelectorIndex()  # over all endpoints; active sets only
        self._refs: Counter[IpSetId] = Counter()  # set -> chains using it
        # set -> member -> how many endpoints give it
        self._members: defaultdict[IpSetId, Counter[str]] = defaultdict(Counter)
        self._out = DataplaneBatch()

    def set_endpoint(
        self, key: str, labels: dict[str, str] | None, old: Endpoint | None, new: Endpoint | None
    ) -> None:
        """An endpoint's labels, addresses or ports changed (from `old` to `new`)."""
        before = self._index.selectors_matching(key)
        events = self._index.update_item(key, labels)
        same = (
            old is not None and new is not None and (old.nets, old.ports) == (new.nets, new.ports)
        )
        if same:
            touched = {sid for sid, _, _ in events}
        else:
            touched = set(before) | self._index.selectors_matching(key)
        after = self._index.selectors_matching(key)
        for sid in touched:
            assert isinstance(sid, IpSetId)
            was = members_of(sid, old) if sid in before else set()
            now = members_of(sid, new) if sid in after else set()
            for m in was - now:
                self._member(sid, m, -1)
            for m in now - was:
                self._member(sid, m, +1)

    def ref(self, sid: IpSetId, delta: int) -> None:
        """A chain started (+1) or stopped (-1) using the set `sid`."""
        before = self._refs[sid]
        self._refs[sid] = before + delta
        if before == 0 and delta > 0:
            # If a delete is pending in this batch it stays: delete-then-create
            # replaces the set, dropping members the dataplane still holds.
            out = self._out
            out.ipsets_create.add(sid)
            matched = self._index.add_selector(sid, parse_selector(sid.selector))
            # Filled in bulk (a set is new here, so it holds nothing yet):
            # one count per endpoint giving a member, as _member keeps them.
            counts: Counter[str] = Counter()
            eps = self._eps
            for _, key, _ in matched:
                counts.update(members_of(sid, eps[key]))
            self._members[sid] = counts
            if counts:
                out.ipset_add.setdefault(sid, set()).update(counts)
                if (removed := out.ipset_remove.get(sid)) is not None:
                    removed -= counts.keys()
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

    def _member(self, sid: IpSetId, ip: str, delta: int) -> None:
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
