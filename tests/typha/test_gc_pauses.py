"""The collector's pauses are timed per generation."""

from __future__ import annotations

import gc

from typha.gc_pauses import GcPauses


def test_collections_are_timed_in_their_generation_until_uninstalled() -> None:
    pauses = GcPauses()
    was_enabled = gc.isenabled()
    gc.disable()  # only the explicit collections below
    try:
        pauses.install()
        pauses.install()  # idempotent: one hook, one sample per collection
        gc.collect(2)
        gc.collect(0)
        pauses.uninstall()
        gc.collect(2)  # uninstalled: not timed
    finally:
        pauses.uninstall()
        if was_enabled:
            gc.enable()
    full, middle, young = pauses.by_generation[2], pauses.by_generation[1], pauses.by_generation[0]
    assert (full.count, middle.count, young.count) == (1, 0, 1)
    assert full.sum > 0
