"""Policy verdict counters as metric series, with their number bounded.

The dataplane counts per policy rule, direction and action (`CounterKey`);
every counter would be a series of `felix_policy_packets_total` and
`felix_policy_bytes_total` (or their `felix_staged_policy_*` twins for a
staged policy).  A node where thousands of policy rules apply would give
thousands of series per node: `limit` bounds them.

* A counter gets a series of its own when it first appears, while fewer
  than `limit` have one, and keeps it until its rules leave the node
  (first come, first kept: series do not flap as policies come and go).
* Past the limit, a counter is folded into one series per direction,
  action and staged-ness, labelled OVERFLOW; `folded` says how many are.
  Folded series only grow: each read adds what every folded counter
  counted since the last read (a counter created again counts from zero).
* `limit` 0 exports no per-policy series: everything is folded.
* The folded series of Allow and Deny exist from the start, at zero.

The kernel is read at most once per `min_interval` seconds, however many
scrapers ask: a scrape in between is answered from the last read, and so
is one whose read fails (counted in `read_failures`).  The agent refreshes
in a worker thread before a scrape (`refresh`) and formats what it read
(`current`) on its event loop.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from dataplane.batch import Action, Direction
from dataplane.errors import DataplaneError
from dataplane.policy_counters import CounterKey, Reading

OVERFLOW = "__OVERFLOW__"
DEFAULT_COUNTER_SERIES = 1000
LABELS = ("tier", "policy", "rule", "direction", "action")


@dataclass(frozen=True, slots=True)
class Series:
    """One exported series: its labels (LABELS), whether it counts a staged
    policy's would-be verdicts, and its totals."""

    labels: tuple[str, str, str, str, str]
    staged: bool
    packets: int
    bytes: int


_FoldKey = tuple[Direction, Action, bool]


class VerdictSeries:
    """Turns counter readings into at most `limit` (+ the folded) series.
    Call `series` from one thread."""

    def __init__(
        self,
        read: Callable[[], dict[CounterKey, Reading]],
        limit: int,
        min_interval: float = 2.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if limit < 0:
            raise ValueError("the series limit must be 0 or more")
        self._read = read
        self.limit = limit
        self._min_interval = min_interval
        self._clock = clock
        self._own: set[CounterKey] = set()
        self._folded_last: dict[CounterKey, Reading] = {}
        # Present from the start, at zero, so that a query for them finds
        # series before anything is folded.
        self._folded_totals: dict[_FoldKey, list[int]] = {
            (d, a, staged): [0, 0]
            for d in Direction
            for a in (Action.ALLOW, Action.DENY)
            for staged in (False, True)
        }
        self._last: list[Series] = self.update({})
        self._read_at: float | None = None
        self.reads = 0
        self.read_failures = 0

    @property
    def folded(self) -> int:
        """How many counters are folded into the OVERFLOW series now."""
        return len(self._folded_last)

    def due(self) -> bool:
        """Whether `refresh` would read the kernel now."""
        return self._read_at is None or self._clock() - self._read_at >= self._min_interval

    def refresh(self) -> None:
        """Read the counters if the last read is older than `min_interval`.
        It may run in another thread than `current`'s caller, one call at
        a time: it replaces the series in one assignment."""
        if not self.due():
            return
        self._read_at = self._clock()
        self.reads += 1
        try:
            readings = self._read()
        except DataplaneError:
            # The table is not there yet, or the kernel refused the dump:
            # the series stay as they were (they would not be truthful
            # empty), and the failure is counted.
            self.read_failures += 1
            return
        self._last = self.update(readings)

    def current(self) -> list[Series]:
        """The series as the last refresh left them."""
        return self._last

    def series(self) -> list[Series]:
        """The series now (from the last read if it is recent)."""
        self.refresh()
        return self._last

    def update(self, readings: dict[CounterKey, Reading]) -> list[Series]:
        """Account one reading of every counter; returns the series."""
        self._own &= readings.keys()
        for key in [k for k in self._folded_last if k not in readings]:
            del self._folded_last[key]
        # New counters take free places in a stable order; known ones keep
        # theirs (sorting every counter on every scrape would cost more
        # than reading them).
        for key in sorted(k for k in readings if k not in self._own and k not in self._folded_last):
            if len(self._own) < self.limit:
                self._own.add(key)
            else:
                self._folded_last[key] = Reading(0, 0)
        out: list[Series] = []
        for key, reading in readings.items():
            if key in self._own:
                out.append(Series(key.labels(), key.ref.staged, reading.packets, reading.bytes))
                continue
            last = self._folded_last[key]
            # A counter created again (its rules left and came back) starts at 0.
            dp = (
                reading.packets - last.packets
                if reading.packets >= last.packets
                else reading.packets
            )
            db = reading.bytes - last.bytes if reading.bytes >= last.bytes else reading.bytes
            fk = (key.direction, key.action, key.ref.staged)
            total = self._folded_totals.setdefault(fk, [0, 0])
            total[0] += dp
            total[1] += db
            self._folded_last[key] = reading
        for (direction, action, staged), (packets, nbytes) in sorted(self._folded_totals.items()):
            labels = (OVERFLOW, OVERFLOW, "", str(direction), str(action))
            out.append(Series(labels, staged, packets, nbytes))
        return out
