"""The selector index (pure): events as items and selectors come and go,
and evaluation once per distinct label map, not per item."""

from __future__ import annotations

from calico_model.label_maps import LabelMap, intern
from calico_model.selector import Labels, Selector
from calico_model.selector import parse as parse_selector
from felix_client.calc.selector_index import SelectorIndex


class Counting(Selector):
    """A selector that counts its evaluations."""

    def __init__(self, text: str) -> None:
        self.inner = parse_selector(text)
        self.calls = 0

    def matches(self, labels: Labels) -> bool:
        self.calls += 1
        return self.inner.matches(labels)

    def labels_used(self) -> frozenset[str]:
        return self.inner.labels_used()


def test_items_and_selectors_give_the_same_events_in_either_order() -> None:
    a, b = SelectorIndex(), SelectorIndex()
    sel = parse_selector("app == 'db'")
    a.add_selector("s", sel)
    got = a.update_item("p1", {"app": "db"}) + a.update_item("p2", {"app": "web"})
    b.update_item("p1", {"app": "db"})
    b.update_item("p2", {"app": "web"})
    assert got == b.add_selector("s", sel) == [("s", "p1", True)]
    assert a.update_item("p2", {"app": "db"}) == [("s", "p2", True)]
    assert a.members("s") == {"p1", "p2"}
    assert a.update_item("p1", None) == [("s", "p1", False)]
    assert a.selectors_matching("p2") == {"s"}
    assert a.selectors_matching("p1") == frozenset()
    assert sorted(a.remove_selector("s")) == [("s", "p2", False)]
    assert a.selectors_matching("p2") == frozenset()


def test_a_selector_is_evaluated_once_per_distinct_label_map() -> None:
    index = SelectorIndex()
    for i in range(1000):
        index.update_item(f"pod{i}", {"app": "db" if i % 2 else "web", "ns": "prod"})
    sel = Counting("app == 'db'")
    events = index.add_selector("s", sel)
    assert len(events) == 500
    # Two label maps for a thousand items, and once against no labels (to
    # know whether the selector matches items lacking its keys).
    assert sel.calls == 3
    index.update_item("pod-new", {"ns": "prod", "app": "db"})  # an existing map: no evaluation
    assert sel.calls == 3
    assert "pod-new" in index.members("s")
    index.update_item("pod-odd", {"app": "db", "tier": "x"})  # a new map: evaluated once
    assert sel.calls == 4


def test_equal_label_maps_are_one_shared_object_held_weakly() -> None:
    first = intern({"app": "db", "ns": "prod"})
    second = intern({"ns": "prod", "app": "db"})
    assert first is second
    assert isinstance(first, LabelMap)
    assert first == {"app": "db", "ns": "prod"}
    assert intern({"app": "web"}) is not first


def test_registering_an_equal_selector_again_evaluates_nothing() -> None:
    # A policy whose rules changed but whose selector did not.
    index = SelectorIndex()
    for i in range(10):
        index.update_item(f"pod{i}", {"app": "db" if i % 2 else "web"})
    sel = Counting("app == 'db'")
    assert len(index.add_selector("s", sel)) == 5
    calls = sel.calls
    assert index.add_selector("s", sel) == []
    assert sel.calls == calls
    assert index.members("s") == {f"pod{i}" for i in range(1, 10, 2)}
    # A different selector under the same id is evaluated and reported.
    assert index.add_selector("s", parse_selector("app == 'web'")) != []
    assert index.members("s") == {f"pod{i}" for i in range(0, 10, 2)}
