"""Which labelled items each selector matches, kept up to date incrementally.

Selectors are evaluated per distinct label map, not per item: items with
equal labels (the pods of one deployment, typically thousands sharing a few
maps) form one group, and a group's matches are a function of its labels
alone.  An item joining an existing group costs no evaluation at all; a new
label map is evaluated against the selectors that read its label keys plus
those that match the empty label set (a selector whose keys are disjoint
from the labels matches them exactly when it matches no labels); a new
selector is evaluated once per group.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Hashable, Iterable, Mapping

from calico_model.label_maps import LabelMap
from calico_model.selector import Selector

SelectorId = Hashable
ItemKey = str
Labels = Mapping[str, str]
# (selector id, item key, now a member?)
Event = tuple[SelectorId, ItemKey, bool]
GroupKey = tuple[tuple[str, str], ...]


class _Group:
    """The items sharing one label map, and the selectors matching it."""

    __slots__ = ("items", "key", "labels", "matches")

    def __init__(self, key: GroupKey, matches: set[SelectorId]) -> None:
        self.key = key
        self.labels = dict(key)
        self.items: set[ItemKey] = set()
        self.matches = matches


class SelectorIndex:
    """Which items each selector matches, kept incrementally.  Add selectors and items in any
    order; each call returns the (selector, item, added) events it caused."""

    def __init__(self) -> None:
        self._selectors: dict[SelectorId, Selector] = {}
        self._by_label: defaultdict[str, set[SelectorId]] = defaultdict(set)
        self._match_empty: set[SelectorId] = set()
        self._groups: dict[GroupKey, _Group] = {}
        # Each item's group, by the group's own key object: the key built to
        # look an item up is dropped, so a label map is held once.
        self._group_of: dict[ItemKey, GroupKey] = {}
        self._members: dict[SelectorId, set[ItemKey]] = {}

    def members(self, sid: SelectorId) -> frozenset[ItemKey]:
        """The items `sid` matches now."""
        return frozenset(self._members.get(sid, ()))

    def selectors_matching(self, key: ItemKey) -> frozenset[SelectorId]:
        """The selectors matching item `key` now."""
        gk = self._group_of.get(key)
        return frozenset(self._groups[gk].matches) if gk is not None else frozenset()

    # -- selectors -----------------------------------------------------------

    def add_selector(self, sid: SelectorId, sel: Selector) -> list[Event]:
        """Register (or replace) a selector; O(distinct label maps), nothing
        when it is equal to the one registered (a policy's rules changed)."""
        if self._selectors.get(sid) == sel:
            return []
        events = self.remove_selector(sid) if sid in self._selectors else []
        self._selectors[sid] = sel
        for key in sel.labels_used():
            self._by_label[key].add(sid)
        if sel.matches({}):
            self._match_empty.add(sid)
        members: set[ItemKey] = set()
        for group in self._groups.values():
            if sel.matches(group.labels):
                group.matches.add(sid)
                members |= group.items
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
        for group in self._groups.values():
            group.matches.discard(sid)
        members = self._members.pop(sid, set())
        return [(sid, item, False) for item in members]

    # -- items ---------------------------------------------------------------

    def update_item(self, key: ItemKey, labels: Labels | None) -> list[Event]:
        """Add, change (labels) or remove (None) an item."""
        old_gk = self._group_of.get(key)
        new_gk = None if labels is None else _key(labels)
        if old_gk == new_gk:
            return []
        before: set[SelectorId] = set()
        if old_gk is not None:
            old = self._groups[old_gk]
            before = old.matches
            old.items.discard(key)
            if not old.items:
                del self._groups[old_gk]
            del self._group_of[key]
        after: set[SelectorId] = set()
        if new_gk is not None:
            group = self._groups.get(new_gk)
            if group is None:
                group = self._groups[new_gk] = self._new_group(new_gk)
            group.items.add(key)
            self._group_of[key] = group.key
            after = group.matches
        events: list[Event] = []
        for sid in before - after:
            self._members[sid].discard(key)
            events.append((sid, key, False))
        for sid in after - before:
            self._members[sid].add(key)
            events.append((sid, key, True))
        return events

    def _new_group(self, key: GroupKey) -> _Group:
        group = _Group(key, set())
        candidates = self._candidates(group.labels.keys()) | self._match_empty
        group.matches = {sid for sid in candidates if self._selectors[sid].matches(group.labels)}
        return group

    def _candidates(self, keys: Iterable[str]) -> set[SelectorId]:
        out: set[SelectorId] = set()
        for k in keys:
            ids = self._by_label.get(k)
            if ids:
                out |= ids
        return out


def _key(labels: Labels) -> GroupKey:
    """The group key of `labels`: a shared map carries it already."""
    return labels.key if isinstance(labels, LabelMap) else tuple(sorted(labels.items()))
