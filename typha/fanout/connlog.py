"""Per-connection log lines at INFO, bounded: a reconnect storm of 10,000
agents must not write 20,000 lines a second."""

from __future__ import annotations

import logging
from collections.abc import Callable


class ConnectionLog:
    """Logs at most `rate` lines per second (bursts of `burst`); the lines
    it drops are counted, said with the next line that gets through, and
    reported by the periodic summary (`suppressed`)."""

    def __init__(
        self,
        logger: logging.Logger,
        clock: Callable[[], float],
        *,
        rate: float = 20.0,
        burst: int = 200,
    ) -> None:
        self._logger = logger
        self._clock = clock
        self._rate = rate
        self._burst = float(burst)
        self._tokens = float(burst)
        self._at = clock()
        self._dropped = 0  # since the last line that got through
        self.suppressed = 0  # over the lifetime

    def info(self, msg: str, *args: object) -> None:
        """Log `msg % args` at INFO if the budget allows."""
        if not self._logger.isEnabledFor(logging.INFO):
            return
        now = self._clock()
        self._tokens = min(self._burst, self._tokens + (now - self._at) * self._rate)
        self._at = now
        if self._tokens < 1.0:
            self._dropped += 1
            self.suppressed += 1
            return
        self._tokens -= 1.0
        if self._dropped:
            msg += f" ({self._dropped} connection lines suppressed before this one)"
            self._dropped = 0
        self._logger.info(msg, *args)
