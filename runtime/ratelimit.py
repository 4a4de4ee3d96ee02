"""Rate-limited logging: a peer or a datastore that sends garbage in a loop
must not be able to flood the log."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable


class RateLimitedLog:
    """Logs at most one message per `key` every `interval` seconds and says
    how many were suppressed in between."""

    def __init__(
        self,
        logger: logging.Logger,
        interval: float = 10.0,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        # A sans-I/O core passes the clock it is driven with (the latest
        # `now` it was given) so that it reads none of its own.
        self._clock = clock
        self._logger = logger
        self._interval = interval
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def log(self, level: int, key: str, msg: str, *args: object) -> None:
        """Log `msg` unless a message with the same `key` was logged within the interval."""
        now = self._clock()
        last = self._last.get(key)
        if last is not None and now - last < self._interval:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return
        if len(self._last) > 10_000:  # keys come from peers: bound the table
            self._last.clear()
            self._suppressed.clear()
        self._last[key] = now
        n = self._suppressed.pop(key, 0)
        if n:
            msg += f" ({n} similar messages suppressed)"
        self._logger.log(level, msg, *args)
