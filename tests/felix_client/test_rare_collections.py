"""The youngest garbage generation is collected rarely while a long change
list is calculated, and the collector's thresholds are restored after."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from typing import Any

import pytest

from commands.demo.cluster import seed_cluster
from felix_client.calc import Calculator
from felix_client.calc.calculator import BULK_CHANGES
from felix_client.calc.rare_collections import RARE_THRESHOLD, rare_collections


class Probe(list[tuple[str, Any]]):
    """A change list that records the collector's thresholds while the
    calculation reads it."""

    def __init__(self, items: list[tuple[str, Any]]) -> None:
        super().__init__(items)
        self.seen: list[tuple[int, int, int]] = []

    def __iter__(self) -> Iterator[tuple[str, Any]]:
        self.seen.append(gc.get_threshold())
        yield from super().__iter__()


def test_a_long_change_list_is_calculated_with_rare_young_collections() -> None:
    before = gc.get_threshold()
    items = list(seed_cluster(40, 30))
    assert len(items) >= BULK_CHANGES
    long, short = Probe(items), Probe(items[: BULK_CHANGES - 1])
    Calculator("node-1").apply(long)
    Calculator("node-1").apply(short)
    # Rare young collections, each going on to the older generations.
    assert (long.seen, short.seen) == ([(RARE_THRESHOLD, 1, 1)], [before])
    assert gc.get_threshold() == before
    assert gc.isenabled()  # the collector is never turned off


def test_nested_uses_restore_the_thresholds_found_by_the_first() -> None:
    before = gc.get_threshold()
    with rare_collections():
        with rare_collections():
            assert gc.get_threshold()[0] == RARE_THRESHOLD
        assert gc.get_threshold()[0] == RARE_THRESHOLD  # the outer one is still on
    assert gc.get_threshold() == before


def test_a_failing_calculation_still_restores_the_thresholds() -> None:
    class Boom(Probe):
        def __iter__(self) -> Iterator[tuple[str, Any]]:
            raise RuntimeError("boom")

    before = gc.get_threshold()
    with pytest.raises(RuntimeError):
        Calculator("node-1").apply(Boom([("k", None)] * BULK_CHANGES))
    assert gc.get_threshold() == before
