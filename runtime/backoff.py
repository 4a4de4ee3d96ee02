"""Exponential backoff with jitter, for everything that retries.

Each delay is drawn below an upper bound that then doubles, up to a
maximum; `reset()` starts again from the initial bound.  The jitter decides
how far below: FULL draws from [0, upper] (the client fleet, so agents that
lost their server do not come back in lockstep), HALF from [upper/2, upper]
(the server's datastore retries, which must not hammer etcd early).
"""

from __future__ import annotations

import random
from enum import Enum


class Jitter(Enum):
    """How far below the upper bound a delay may fall."""

    FULL = 0.0  # uniform in [0, upper]
    HALF = 0.5  # uniform in [upper / 2, upper]


class Backoff:
    """Delays for successive retries.  `upper` is the next delay's bound
    (readable as a metric)."""

    def __init__(
        self,
        initial: float,
        maximum: float,
        *,
        jitter: Jitter = Jitter.FULL,
        rng: random.Random | None = None,
    ) -> None:
        self.initial = initial
        self.maximum = maximum
        self.jitter = jitter
        self.upper = initial
        self._rng = rng or random.Random()

    def delay(self) -> float:
        """The next delay, then double the upper bound (to the maximum)."""
        d = self._rng.uniform(self.upper * self.jitter.value, self.upper)
        self.upper = min(self.upper * 2, self.maximum)
        return d

    def reset(self) -> None:
        """Start again from the initial delay (after a success)."""
        self.upper = self.initial
