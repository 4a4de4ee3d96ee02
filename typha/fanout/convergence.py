"""Which agents' dataplanes have applied which revision: the answer to "is
this change in force everywhere yet?" for the agents connected here.

Agents apply revisions in order, so an agent that reports revision R has
every change up to R in force.  The tracker keeps, per node, the highest
revision reported, in a list sorted by revision: a report is a binary search
and an insertion, and "how many have applied R" is one binary search.
"""

from __future__ import annotations

import bisect
from collections import deque
from dataclasses import dataclass
from typing import Any

LAGGING_SHOWN = 10


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
        self._sorted: list[tuple[int, str]] = []  # (applied, node) of the same
        self._silent: dict[str, int] = {}  # connected nodes that cannot report: connections
        self._conns: dict[str, int] = {}  # node -> open connections here
        self._gone: dict[str, _Gone] = {}  # disconnected, until forget_after
        self._seen_revs: deque[int] = deque(maxlen=remembered_revisions)
        self._seen_at: deque[float] = deque(maxlen=remembered_revisions)
        self.reports = 0

    # -- events -----------------------------------------------------------------

    def visible(self, revision: int, now: float) -> None:
        """The replica reached `revision` at `now` (monotonic seconds)."""
        if not self._seen_revs or revision > self._seen_revs[-1]:
            self._seen_revs.append(revision)
            self._seen_at.append(now)

    def connected(self, node: str, *, reports: bool) -> None:
        """A stream for `node` started; `reports` is whether it sends APPLIED."""
        self._conns[node] = self._conns.get(node, 0) + 1
        self._gone.pop(node, None)
        if not reports:
            self._silent[node] = self._silent.get(node, 0) + 1
        elif node not in self._applied:
            self._applied[node] = 0
            bisect.insort(self._sorted, (0, node))

    def applied(self, node: str, revision: int, now: float) -> float | None:
        """`node` reports `revision` applied.  Returns the seconds since this
        replica saw that revision, if it remembers when (for the histogram)."""
        old = self._applied.get(node)
        if old is None or revision <= old:
            return None
        i = bisect.bisect_left(self._sorted, (old, node))
        del self._sorted[i]
        bisect.insort(self._sorted, (revision, node))
        self._applied[node] = revision
        self.reports += 1
        j = bisect.bisect_left(self._seen_revs, revision)
        if j < len(self._seen_revs):
            return max(0.0, now - self._seen_at[j])
        return None

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
            del self._sorted[bisect.bisect_left(self._sorted, (last, node))]
        self._gone[node] = _Gone(last or 0, now)

    # -- queries ----------------------------------------------------------------

    def at_least(self, revision: int) -> int:
        """Connected, reporting agents that have applied `revision`."""
        return len(self._sorted) - bisect.bisect_left(self._sorted, (revision, ""))

    def report(self, revision: int, now: float) -> dict[str, Any]:
        """The /convergence answer for `revision`."""
        for node in [n for n, g in self._gone.items() if now - g.since > self.forget_after]:
            del self._gone[node]
        behind = self._sorted[: bisect.bisect_left(self._sorted, (revision, ""))]
        return {
            "revision": revision,
            "agents": len(self._sorted) + len(self._silent),
            "applied": self.at_least(revision),
            "lagging": [
                {"node": node, "applied_revision": rev} for rev, node in behind[:LAGGING_SHOWN]
            ],
            "not_reporting": sorted(self._silent)[:LAGGING_SHOWN],
            "not_reporting_count": len(self._silent),
            "disconnected": [
                {
                    "node": node,
                    "applied_revision": g.applied,
                    "disconnected_s": round(now - g.since, 1),
                }
                for node, g in sorted(self._gone.items(), key=lambda kv: kv[1].applied)
            ][:LAGGING_SHOWN],
            "disconnected_count": len(self._gone),
        }
