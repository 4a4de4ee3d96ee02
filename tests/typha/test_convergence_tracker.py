"""The convergence tracker: counts, the furthest behind, disconnections."""

from __future__ import annotations

from typha.fanout.convergence import (
    LAGGING_SHOWN,
    ConvergenceTracker,
    NodeState,
    report_interval_ms,
)


def test_counts_and_the_furthest_behind() -> None:
    t = ConvergenceTracker()
    for i in range(15):
        t.connected(f"n{i:02}", reports=True)
        t.applied(f"n{i:02}", 100 + i, 0.0)
    r = t.report(110, 0.0)
    assert (r["agents"], r["applied"]) == (15, 5)  # n10..n14
    assert len(r["lagging"]) == LAGGING_SHOWN
    assert r["lagging"][0] == {"node": "n00", "applied_revision": 100}
    assert [x["applied_revision"] for x in r["lagging"]] == sorted(
        x["applied_revision"] for x in r["lagging"]
    )
    assert t.report(100, 0.0)["applied"] == 15
    assert t.report(115, 0.0)["applied"] == 0


def test_reports_only_move_forward() -> None:
    t = ConvergenceTracker()
    t.connected("a", reports=True)
    assert t.applied("a", 50, 0.0) is None  # no visibility time known
    t.applied("a", 40, 0.0)  # a stale report changes nothing
    assert t.at_least(50) == 1
    assert t.reports == 1


def test_latency_from_when_the_revision_was_seen() -> None:
    t = ConvergenceTracker()
    t.visible(10, 1.0)
    t.visible(20, 2.0)
    t.connected("a", reports=True)
    waited = t.applied("a", 15, 2.5)  # 15 first visible with 20 at 2.0
    assert waited == 0.5


def test_a_disconnected_agent_is_reported_as_such_until_forgotten() -> None:
    t = ConvergenceTracker(forget_after=60.0)
    t.connected("a", reports=True)
    t.connected("b", reports=True)
    t.applied("a", 7, 0.0)
    t.disconnected("a", 10.0)
    r = t.report(7, 20.0)
    assert (r["agents"], r["applied"]) == (1, 0)
    assert r["disconnected"] == [{"node": "a", "applied_revision": 7, "disconnected_s": 10.0}]
    assert r["disconnected_count"] == 1
    assert t.report(7, 71.0)["disconnected_count"] == 0


def test_a_node_that_comes_back_is_connected_again() -> None:
    t = ConvergenceTracker()
    t.connected("a", reports=True)
    t.connected("a", reports=True)  # a new connection before the old one closed
    t.disconnected("a", 1.0)
    assert t.report(0, 1.0)["agents"] == 1  # still connected once
    t.disconnected("a", 2.0)
    t.connected("a", reports=True)
    r = t.report(0, 3.0)
    assert (r["agents"], r["disconnected_count"]) == (1, 0)


def test_agents_that_cannot_report_count_but_never_as_applied() -> None:
    t = ConvergenceTracker()
    t.connected("old", reports=False)
    t.connected("new", reports=True)
    t.applied("new", 5, 0.0)
    r = t.report(5, 0.0)
    assert (r["agents"], r["applied"]) == (2, 1)
    assert r["not_reporting"] == ["old"]


def test_the_report_interval_spreads_a_replicas_budget_over_its_agents() -> None:
    assert report_interval_ms(1, 4000) == 250  # never below a quarter second
    assert report_interval_ms(1000, 4000) == 250
    assert report_interval_ms(2000, 4000) == 500
    assert report_interval_ms(10_000, 4000) == 2500
    assert report_interval_ms(10_001, 4000) == 2501  # rounded up: never over budget
    assert report_interval_ms(10_000, 0) == 250  # no budget


def test_nodes_tells_where_each_named_node_stands_here() -> None:
    t = ConvergenceTracker(forget_after=60.0)
    t.connected("up", reports=True)
    t.applied("up", 12, 1.0)
    t.connected("old", reports=False)
    t.connected("moved", reports=True)
    t.applied("moved", 9, 1.0)
    t.disconnected("moved", 5.0)
    got = t.nodes(["up", "old", "moved", "never"], 7.0)
    assert got == {
        "up": {"state": NodeState.CONNECTED, "applied_revision": 12},
        "old": {"state": NodeState.NOT_REPORTING},
        "moved": {"state": NodeState.DISCONNECTED, "applied_revision": 9, "disconnected_s": 2.0},
        "never": {"state": NodeState.UNKNOWN},
    }
    assert t.nodes(["moved"], 66.0) == {"moved": {"state": NodeState.UNKNOWN}}  # forgotten


def test_every_disconnected_node_is_listed_on_request() -> None:
    t = ConvergenceTracker()
    for i in range(LAGGING_SHOWN + 5):
        t.connected(f"n{i}", reports=True)
        t.disconnected(f"n{i}", 1.0)
    assert len(t.report(1, 2.0)["disconnected"]) == LAGGING_SHOWN
    every = t.report(1, 2.0, disconnected_limit=None)
    assert len(every["disconnected"]) == every["disconnected_count"] == LAGGING_SHOWN + 5


def test_only_recent_revisions_are_remembered_for_the_latency() -> None:
    t = ConvergenceTracker(remembered_revisions=10)
    for r in range(1, 101):
        t.visible(r, float(r))
    t.connected("a", reports=True)
    assert t.applied("a", 95, 100.0) == 5.0  # remembered: seen at 95
    t.connected("b", reports=True)
    assert t.applied("b", 3, 100.0) is None  # seen before anything remembered: unknown
    assert t.at_least(3) == 2  # the report itself counts all the same


def test_lagging_lists_the_furthest_behind_first_by_name_within_a_revision() -> None:
    t = ConvergenceTracker()
    for i in range(30):
        t.connected(f"n{i:02}", reports=True)
    for i in range(30):
        t.applied(f"n{i:02}", 5 if i % 3 == 0 else 9, 0.0)  # ten at 5, twenty at 9
    t.applied("n29", 12, 0.0)
    r = t.report(12, 0.0)
    assert r["applied"] == 1
    lagging = [(x["node"], x["applied_revision"]) for x in r["lagging"]]
    assert lagging == [(f"n{i:02}", 5) for i in range(0, 30, 3)]  # all ten at 5, none at 9
    t.applied("n00", 12, 0.0)
    lagging = [(x["node"], x["applied_revision"]) for x in t.report(12, 0.0)["lagging"]]
    assert lagging == [*[(f"n{i:02}", 5) for i in range(3, 30, 3)], ("n01", 9)]
    assert t.at_least(9) == 30 - 9  # nine still at 5
    t.disconnected("n01", 1.0)
    assert ("n01", 9) not in [
        (x["node"], x["applied_revision"]) for x in t.report(12, 1.0)["lagging"]
    ]
    assert t.at_least(0) == 29
