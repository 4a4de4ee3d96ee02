from __future__ import annotations

import pytest

from runtime.histogram import Histogram


def test_buckets_are_cumulative_with_inclusive_upper_bounds() -> None:
    h = Histogram((0.1, 1.0))
    for v in (0.05, 0.1, 0.5, 1.0, 7.0):
        h.observe(v)
    assert h.cumulative() == [("0.1", 2.0), ("1.0", 4.0), ("+Inf", 5.0)]
    assert h.count == 5
    assert h.sum == pytest.approx(8.65)


@pytest.mark.parametrize("bounds", [(), (1.0, 0.5), (1.0, 1.0)])
def test_bounds_must_ascend(bounds: tuple[float, ...]) -> None:
    with pytest.raises(ValueError, match="distinct and ascending"):
        Histogram(bounds)
