from __future__ import annotations

import pytest

from typha.fanout.rebalance import to_shed


@pytest.mark.parametrize(
    ("mine", "total", "replicas", "expected"),
    [
        (60, 60, 3, 10),  # 40 over a fair share of 20: a quarter of it this round
        (22, 60, 3, 0),  # within 10% of 20
        (23, 60, 3, 1),
        (60, 60, 1, 0),  # alone: nowhere to send anyone
        (0, 0, 3, 0),
        (5, 6, 3, 1),
    ],
)
def test_shed_only_the_excess_and_gently(
    mine: int, total: int, replicas: int, expected: int
) -> None:
    assert to_shed(mine, total, replicas, 0.1) == expected
