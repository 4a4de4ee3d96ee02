"""Which labelled items each selector matches, kept up to date incrementally.

An item update costs work proportional to the selectors that read the label
keys it touched, not to the number of items or selectors: a selector whose
label keys are disjoint from an item's labels matches it exactly when it
matches the empty label set, so only those "absence-matching" selectors and
the ones indexed under the item's keys are evaluated.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Hashable, Iterable, Mapping

from calico_model.selector import Selector

SelectorId = Hashable
ItemKey = str
Labels = Mapping[str, str]
# (selector id, item key, now a member?)
Event = tuple[SelectorId, ItemKey, bool]


class SelectorIndex:
    """Which items each selector matches, kept incrementally.  Add selectors and items in any
    order; each call returns the (selector, item, added) events it caused."""

    def __init__(self) -> None:
        self._selectors: dict[SelectorId, Selector] = {}
        self._by_label: defaultdict[str, set[SelectorId]] = defaultdict(set)
        self._match_empty: set[SelectorId] = set()
        self._items: dict[ItemKey, Labels] = {}
        self._members: dict[SelectorId, set[ItemKey]] = {}
        self._matches_of: defaultdict[ItemKey, set[SelectorId]] = defaultdict(set)

    def members(self, sid: SelectorId) -> frozenset[ItemKey]:
        """The items `sid` matches now."""
        return frozenset(self._members.get(sid, ()))

    def selectors_matching(self, key: ItemKey) -> frozenset[SelectorId]:
        """The selectors matching item `key` now."""
        return frozenset(self._matches_of.get(key, ()))

    # -- selectors -----------------------------------------------------------

    def add_selector(self, sid: SelectorId, sel: Selector) -> list[Event]:
        """Register (or replace) a selector; O(items) - selectors change rarely."""
        events = self.remove_selector(sid) if sid in self._selectors else []
        self._selectors[sid] = sel
        for key in sel.labels_used():
            self._by_label[key].add(sid)
        if sel.matches({}):
            self._match_empty.add(sid)
        members: set[ItemKey] = set()
        for item, labels in self._items.items():
            if sel.matches(labels):
                members.add(item)
                self._matches_of[item].add(sid)
        self._members[sid] = members
        # Report net changes relative to before the replacement.
        removed = {k for s, k, added in events if not added}
        out: list[Event] = [(sid, k, False) for k in removed - members]
        out += [(sid, k, True) for k in members - removed]
        return out

    def remove_selector(self, sid: SelectorId) -> list[Event]:
        """Unregister a selector; events for every item it matched."""
        sel = self._selectors.pop(sid, None)
        if sel is None:
            return []
        for key in sel.labels_used():
            ids = self._by_label.get(key)
            if ids is not None:
                ids.discard(sid)
                if not ids:
                    del self._by_label[key]
        self._match_empty.discard(sid)
        members = self._members.pop(sid, set())
        for item in members:
            self._matches_of[item].discard(sid)
        return [(sid, item, False) for item in members]

    # -- items ---------------------------------------------------------------

    def update_item(self, key: ItemKey, labels: Labels | None) -> list[Event]:
        """Add, change (labels) or remove (None) an item."""
        old = self._items.get(key)
        if labels is None:
            if old is None:
                return []
            del self._items[key]
            sids = self._matches_of.pop(key, set())
            for sid in sids:
                self._members[sid].discard(key)
            return [(sid, key, False) for sid in sids]
        labels = dict(labels)
        self._items[key] = labels
        if old is None:
            candidates = self._candidates(labels.keys()) | self._match_empty
        else:
            changed = {k for k in old.keys() | labels.keys() if old.get(k) != labels.get(k)}
            candidates = self._candidates(changed)
        events: list[Event] = []
        current = self._matches_of[key]
        for sid in candidates:
            now = self._selectors[sid].matches(labels)
            if now and sid not in current:
                current.add(sid)
                self._members[sid].add(key)
                events.append((sid, key, True))
            elif not now and sid in current:
                current.discard(sid)
                self._members[sid].discard(key)
                events.append((sid, key, False))
        return events

    def _candidates(self, keys: Iterable[str]) -> set[SelectorId]:
        out: set[SelectorId] = set()
        for k in keys:
            ids = self._by_label.get(k)
            if ids:
                out |= ids
        return out
