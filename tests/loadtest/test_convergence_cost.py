"""The convergence-cost benchmark feeds every report through the real stream
and tracker (it asserts the tracker took each one) and reports a cost."""

from __future__ import annotations

from loadtest.convergence_cost import measure


def test_every_report_reaches_the_tracker_and_is_costed() -> None:
    r = measure(agents=10, reports=95)
    assert r["reports"] == 95
    assert r["cpu_us_per_report"] > 0
    assert r["frame_bytes"] == 17  # 16-byte header, an empty msgpack map
    assert r["max_bytes_per_agent_per_s"] == 4 * 17
