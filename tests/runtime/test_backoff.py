"""One backoff for every retry: bounds that double to a maximum, jitter below them."""

from __future__ import annotations

import random

import pytest

from runtime.backoff import Backoff, Jitter


@pytest.mark.parametrize("jitter", list(Jitter))
def test_delays_stay_within_the_doubling_bound_and_its_jitter_floor(jitter: Jitter) -> None:
    b = Backoff(0.1, 1.0, jitter=jitter, rng=random.Random(3))
    bounds, delays = [], []
    for _ in range(8):
        bounds.append(b.upper)
        delays.append(b.delay())
    assert bounds == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0, 1.0, 1.0]
    for bound, d in zip(bounds, delays, strict=True):
        assert bound * jitter.value <= d <= bound
    b.reset()
    assert b.upper == 0.1


def test_half_jitter_never_retries_early_and_full_jitter_spreads_a_fleet() -> None:
    half = [Backoff(1.0, 1.0, jitter=Jitter.HALF, rng=random.Random(i)).delay() for i in range(200)]
    full = [Backoff(1.0, 1.0, rng=random.Random(i)).delay() for i in range(200)]
    assert min(half) >= 0.5
    assert min(full) < 0.1  # some agents come back almost at once, others late
    assert max(full) > 0.9
