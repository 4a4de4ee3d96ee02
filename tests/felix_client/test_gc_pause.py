"""The cyclic collector is paused while a long change list is calculated,
and left as it was found."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from typing import Any

import pytest

from commands.demo.cluster import seed_cluster
from felix_client.calc import Calculator
from felix_client.calc.calculator import BULK_CHANGES
from felix_client.calc.gc_pause import gc_paused


class Probe(list[tuple[str, Any]]):
    """A change list that records whether the collector was on while the
    calculation read it."""

    def __init__(self, items: list[tuple[str, Any]]) -> None:
        super().__init__(items)
        self.seen: list[bool] = []

    def __iter__(self) -> Iterator[tuple[str, Any]]:
        self.seen.append(gc.isenabled())
        yield from super().__iter__()


def test_a_long_change_list_is_calculated_with_the_collector_paused() -> None:
    items = list(seed_cluster(40, 30))
    assert len(items) >= BULK_CHANGES
    long, short = Probe(items), Probe(items[: BULK_CHANGES - 1])
    assert gc.isenabled()
    Calculator("node-1").apply(long)
    Calculator("node-1").apply(short)
    assert (long.seen, short.seen) == ([False], [True])
    assert gc.isenabled()


def test_pauses_nest_and_restore_what_they_found() -> None:
    assert gc.isenabled()
    with gc_paused():
        with gc_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()  # the outer pause is still on
    assert gc.isenabled()
    gc.disable()
    try:
        with gc_paused():
            pass
        assert not gc.isenabled()  # it was off before: it stays off
    finally:
        gc.enable()


def test_a_failing_calculation_still_ends_the_pause() -> None:
    class Boom(Probe):
        def __iter__(self) -> Iterator[tuple[str, Any]]:
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        Calculator("node-1").apply(Boom([("k", None)] * BULK_CHANGES))
    assert gc.isenabled()
