"""The calculation graph's dispatcher sends each change to its kind's nodes."""

from __future__ import annotations

from typing import Any

from calico_model.keys import KeyLayout, Kind, ResourceKey
from felix_client.calc.dispatcher import Dispatcher

V3 = "resources/v3/projectcalico.org/"


def test_changes_reach_the_nodes_of_their_kind_in_order() -> None:
    seen: list[tuple[str, str, Any]] = []
    d = Dispatcher(KeyLayout("/p/"))
    d.register(Kind.NODE, lambda k, rk, v: seen.append(("first", rk.name, v)))
    d.register(Kind.NODE, lambda k, rk, v: seen.append(("second", rk.name, v)))
    d.register(Kind.PROFILE, lambda k, rk, v: seen.append(("profile", rk.name, v)))
    assert d.dispatch(f"/p/{V3}nodes/n1", {"a": 1})
    assert d.dispatch(f"/p/{V3}profiles/kns.x", None)
    assert seen == [
        ("first", "n1", {"a": 1}),
        ("second", "n1", {"a": 1}),
        ("profile", "kns.x", None),
    ]


def test_unhandled_and_foreign_keys_reach_no_node() -> None:
    calls: list[ResourceKey] = []
    d = Dispatcher(KeyLayout("/p/"))
    d.register(Kind.NODE, lambda k, rk, v: calls.append(rk))
    assert not d.dispatch(f"/calico/{V3}nodes/n1", {})  # another prefix
    assert not d.dispatch(f"/p/{V3}ippools/x", {})  # nobody registered
    assert calls == []


def test_a_value_that_is_not_an_object_is_a_delete() -> None:
    got: list[Any] = []
    d = Dispatcher(KeyLayout())
    d.register(Kind.NODE, lambda k, rk, v: got.append(v))
    d.dispatch(f"/calico/{V3}nodes/n1", [1, 2])
    assert got == [None]
