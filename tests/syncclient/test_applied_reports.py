"""The agent's APPLIED reporting schedule, driven with explicit times."""

from __future__ import annotations

import itertools

import pytest

from syncclient.applied_reports import (
    DEFAULT_INTERVAL,
    MAX_INTERVAL,
    MIN_INTERVAL,
    AppliedReports,
    server_interval,
)

Frames = list[tuple[float, int]]


def run(reports: AppliedReports, applied_at: Frames, end: float) -> Frames:
    """Drive `reports` as the client does: each applied revision schedules a
    send at `now + due()` unless one is scheduled; a send carries
    `pending()`.  Returns the frames (time, revision)."""
    frames: Frames = []
    timer: float | None = None
    events = sorted(applied_at)
    now = 0.0
    while events or timer is not None:
        if timer is not None and (not events or timer <= events[0][0]):
            now, timer = timer, None
            revision = reports.pending()
            if revision is not None:
                reports.sent(revision, now)
                frames.append((now, revision))
        else:
            now, revision = events.pop(0)
            if not reports.applied(revision):
                continue
        if timer is None:
            delay = reports.due(now)
            if delay is not None:
                timer = now + delay
        if now > end:
            break
    return frames


def test_the_first_report_after_a_quiet_spell_goes_at_once() -> None:
    r = AppliedReports(0.25)
    assert r.due(10.0) is None  # nothing applied yet
    assert r.applied(7)
    assert r.due(10.0) == 0.0
    r.sent(7, 10.0)
    assert r.pending() is None
    assert r.due(10.1) is None
    assert r.applied(8)
    assert r.due(10.1) == pytest.approx(0.15)  # within the interval: waits
    assert r.due(11.0) == 0.0  # after a quiet spell: at once


def test_steady_churn_is_coalesced_to_one_frame_per_interval_with_the_newest_revision() -> None:
    r = AppliedReports(0.25)
    # A batch applied every 10 ms for one second: revisions 1..100.
    applied = [(i * 0.01, i + 1) for i in range(100)]
    frames = run(r, applied, end=2.0)
    times = [t for t, _ in frames]
    assert times[0] == 0.0  # the first at once
    assert all(b - a >= 0.25 - 1e-9 for a, b in itertools.pairwise(times))
    assert len(frames) <= 1 + 1.0 / 0.25 + 1
    assert frames[-1][1] == 100  # the last applied revision is always reported
    revisions = [rev for _, rev in frames]
    assert revisions == sorted(set(revisions))  # increasing, no repeats


def test_a_lower_or_equal_revision_is_not_news() -> None:
    r = AppliedReports()
    assert r.applied(5)
    assert not r.applied(5)
    assert not r.applied(4)
    assert r.revision == 5


def test_a_new_connection_is_told_the_current_revision_at_once() -> None:
    r = AppliedReports(1.0)
    r.applied(9)
    r.sent(9, 100.0)
    assert r.pending() is None
    r.connected()
    assert r.pending() == 9
    assert r.due(100.1) == 0.0  # the old connection's interval does not apply


def test_a_report_crossing_a_new_applied_revision_leaves_the_newer_pending() -> None:
    r = AppliedReports(0.25)
    r.applied(3)
    r.applied(4)  # applied after the frame for 3 was decided on
    r.sent(3, 0.0)
    assert r.pending() == 4
    assert r.due(0.1) == pytest.approx(0.15)


@pytest.mark.parametrize(
    ("ms", "expected"),
    [
        (0, DEFAULT_INTERVAL),
        (1500, 1.5),
        (1, MIN_INTERVAL),
        (10**9, MAX_INTERVAL),
    ],
)
def test_the_servers_interval_is_used_within_bounds(ms: int, expected: float) -> None:
    assert server_interval(ms) == expected
