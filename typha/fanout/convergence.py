"""Which agents' dataplanes have applied which revision: the answer to "is
this change in force everywhere yet?" for the agents connected here.

Agents apply revisions in order, so an agent that reports revision R has
every change up to R in force.  The tracker keeps, per node, the highest
revision reported, and those revisions in a sorted list: a report is a binary
search and an insertion, and "how many have applied R" is one binary search.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

LAGGING_SHOWN = 10
MIN_REPORT_INTERVAL_MS = 250


def report_interval_ms(agents: int, reports_per_second: float) -> int:
    """How often to ask each of `agents` to report, at most, so that together
    they send about `reports_per_second` (0: no budget, the minimum).  Never
    below 250 ms: a quarter second is as fresh as an operator's question needs."""
    if reports_per_second <= 0:
        return MIN_REPORT_INTERVAL_MS
    return max(MIN_REPORT_INTERVAL_MS, math.ceil(1000 * agents / reports_per_second))


class NodeState(StrEnum):
    """Where a node's agent stands with this replica (`/convergence/nodes`)."""

    CONNECTED = "connected"  # connected here, reporting
    NOT_REPORTING = "not_reporting"  # connected here, an agent that cannot report
    DISCONNECTED = "disconnected"  # was connected here within `forget_after`
    UNKNOWN = "unknown"  # not connected here, or forgotten


@dataclass(slots=True)
class _Gone:
    applied: int
    since: float


class ConvergenceTracker:
    """Applied revisions of the agents connected to this replica.

    The server must call `connected` when a stream starts, `applied` for each
    report, `disconnected` when the connection ends, and `visible` when the
    replica's revision advances (for the visible-to-applied latency)."""

    def __init__(self, *, forget_after: float = 300.0, remembered_revisions: int = 10_000) -> None:
        self.forget_after = forget_after
        self._applied: dict[str, int] = {}  # reporting, connected nodes
        # Their revisions, sorted, as plain ints (C comparisons, 8 bytes a
        # slot to move on insertion), and who is at each: counts need only
        # the former, the laggards' names the latter.
        self._sorted: list[int] = []
        self._at: dict[int, set[str]] = {}
        self._silent: dict[str, int] = {}  # connected nodes that cannot report: connections
        self._conns: dict[str, int] = {}  # node -> open connections here
        self._gone: dict[str, _Gone] = {}  # disconnected, until forget_after
        # When this replica first saw each recent revision, for the latency
        # histogram.  Lists, not deques: a report bisects them, and a deque's
        # indexing walks its blocks.  Trimmed to `remembered` in halves.
        self._remembered = remembered_revisions
        self._seen_revs: list[int] = []
        self._seen_at: list[float] = []
        self.reports = 0

    # -- events -----------------------------------------------------------------

    def visible(self, revision: int, now: float) -> None:
        """The replica reached `revision` at `now` (monotonic seconds)."""
        if not self._seen_revs or revision > self._seen_revs[-1]:
            self._seen_revs.append(revision)
            self._seen_at.append(now)
            if len(self._seen_revs) > 2 * self._remembered:
                del self._seen_revs[: -self._remembered]
                del self._seen_at[: -self._remembered]

    def connected(self, node: str, *, reports: bool) -> None:
        """A stream for `node` started; `reports` is whether it sends APPLIED."""
        self._conns[node] = self._conns.get(node, 0) + 1
        self._gone.pop(node, None)
        if not reports:
            self._silent[node] = self._silent.get(node, 0) + 1
        elif node not in self._applied:
            self._applied[node] = 0
            self._place(node, 0)

    def applied(self, node: str, revision: int, now: float) -> float | None:
        """`node` reports `revision` applied.  Returns the seconds since this
        replica saw that revision, if it remembers when (for the histogram)."""
        old = self._applied.get(node)
        if old is None or revision <= old:
            return None
        self._unplace(node, old)
        self._place(node, revision)
        self._applied[node] = revision
        self.reports += 1
        revs = self._seen_revs
        j = bisect.bisect_left(revs, revision)
        if j < len(revs) and (j > 0 or revs[0] == revision):
            return max(0.0, now - self._seen_at[j])
        return None  # seen before what is remembered, or not yet seen here

    def disconnected(self, node: str, now: float) -> None:
        """A connection of `node` ended.  Its last report is kept, marked
        disconnected, for `forget_after` seconds unless it comes back."""
        left = self._conns.get(node, 0) - 1
        if left > 0:
            self._conns[node] = left
            return
        self._conns.pop(node, None)
        self._silent.pop(node, None)
        last = self._applied.pop(node, None)
        if last is not None:
            self._unplace(node, last)
        self._gone[node] = _Gone(last or 0, now)

    def _place(self, node: str, revision: int) -> None:
        bisect.insort(self._sorted, revision)
        at = self._at.get(revision)
        if at is None:
            self._at[revision] = {node}
        else:
            at.add(node)

    def _unplace(self, node: str, revision: int) -> None:
        # Any slot holding `revision` will do: the list holds counts, not names.
        del self._sorted[bisect.bisect_left(self._sorted, revision)]
        at = self._at[revision]
        at.discard(node)
        if not at:
            del self._at[revision]

    # -- queries ----------------------------------------------------------------

    def at_least(self, revision: int) -> int:
        """Connected, reporting agents that have applied `revision`."""
        return len(self._sorted) - bisect.bisect_left(self._sorted, revision)

    def report(
        self, revision: int, now: float, disconnected_limit: int | None = LAGGING_SHOWN
    ) -> dict[str, Any]:
        """The /convergence answer for `revision`, listing at most
        `disconnected_limit` disconnected nodes (None: all of them)."""
        self._forget(now)
        return {
            "revision": revision,
            "agents": len(self._sorted) + len(self._silent),
            "applied": self.at_least(revision),
            "lagging": self._lagging(revision),
            "not_reporting": sorted(self._silent)[:LAGGING_SHOWN],
            "not_reporting_count": len(self._silent),
            "disconnected": [
                {
                    "node": node,
                    "applied_revision": g.applied,
                    "disconnected_s": round(now - g.since, 1),
                }
                for node, g in sorted(self._gone.items(), key=lambda kv: kv[1].applied)
            ][:disconnected_limit],
            "disconnected_count": len(self._gone),
        }

    def _lagging(self, revision: int) -> list[dict[str, Any]]:
        """The LAGGING_SHOWN nodes furthest behind `revision`, lowest first
        (by name within a revision)."""
        out: list[dict[str, Any]] = []
        srt = self._sorted
        behind = bisect.bisect_left(srt, revision)
        i = 0
        while i < behind and len(out) < LAGGING_SHOWN:
            rev = srt[i]
            for node in sorted(self._at[rev])[: LAGGING_SHOWN - len(out)]:
                out.append({"node": node, "applied_revision": rev})
            i = bisect.bisect_right(srt, rev)
        return out

    def nodes(self, names: Iterable[str], now: float) -> dict[str, dict[str, Any]]:
        """Where each of `names` stands here: its NodeState and, if known, its
        last applied revision.  A dictionary lookup per name."""
        self._forget(now)
        out: dict[str, dict[str, Any]] = {}
        for node in names:
            if node in self._applied:
                out[node] = {"state": NodeState.CONNECTED, "applied_revision": self._applied[node]}
            elif node in self._silent:
                out[node] = {"state": NodeState.NOT_REPORTING}
            elif (g := self._gone.get(node)) is not None:
                out[node] = {
                    "state": NodeState.DISCONNECTED,
                    "applied_revision": g.applied,
                    "disconnected_s": round(now - g.since, 1),
                }
            else:
                out[node] = {"state": NodeState.UNKNOWN}
        return out

    def _forget(self, now: float) -> None:
        for node in [n for n, g in self._gone.items() if now - g.since > self.forget_after]:
            del self._gone[node]
