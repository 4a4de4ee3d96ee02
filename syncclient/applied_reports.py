"""When to send APPLIED reports: the highest revision the dataplane applied,
coalesced to at most one frame per interval per connection.  Sans-I/O: the
caller passes `now` and owns the timer and the socket.

The first report after a quiet spell goes at once, so that an idle cluster
answers "is it in force?" as soon as the last node applies; under steady
churn a report waits for the interval and carries the newest revision.
"""

from __future__ import annotations

DEFAULT_INTERVAL = 0.25  # seconds, when the server names none
MIN_INTERVAL = 0.05  # a server's interval is held within these bounds
MAX_INTERVAL = 60.0


def server_interval(applied_interval_ms: int, default: float = DEFAULT_INTERVAL) -> float:
    """The reporting interval to use with a server that asked for
    `applied_interval_ms` in its hello (0: it named none, use `default`)."""
    if applied_interval_ms <= 0:
        return default
    return min(MAX_INTERVAL, max(MIN_INTERVAL, applied_interval_ms / 1000))


class AppliedReports:
    """The reporting state of one agent.

    Call `applied()` after each applied batch, `connected()` when a new
    connection opens (it has been told nothing), `due()` to learn when to
    send, and `sent()` once a frame carrying `pending()` is queued."""

    __slots__ = ("_applied", "_sent", "_sent_at", "interval")

    def __init__(self, interval: float = DEFAULT_INTERVAL) -> None:
        self.interval = interval
        self._applied = 0  # highest revision the dataplane applied
        self._sent = 0  # highest revision this connection was told
        self._sent_at: float | None = None  # when; None: never on this connection

    @property
    def revision(self) -> int:
        """The highest revision reported applied so far."""
        return self._applied

    def applied(self, revision: int) -> bool:
        """The dataplane applied everything up to `revision`; True if that is
        news (a lower or equal revision changes nothing)."""
        if revision <= self._applied:
            return False
        self._applied = revision
        return True

    def connected(self) -> None:
        """A new connection: repeat the current revision to it at once."""
        self._sent = 0
        self._sent_at = None

    def pending(self) -> int | None:
        """The revision to send next, or None if the connection knows it."""
        return self._applied if self._applied > self._sent else None

    def due(self, now: float) -> float | None:
        """Seconds from `now` until the next report may go (0: at once), or
        None if there is nothing to send."""
        if self.pending() is None:
            return None
        if self._sent_at is None:
            return 0.0
        return max(0.0, self._sent_at + self.interval - now)

    def sent(self, revision: int, now: float) -> None:
        """A frame reporting `revision` was queued at `now`."""
        self._sent = max(self._sent, revision)
        self._sent_at = now
