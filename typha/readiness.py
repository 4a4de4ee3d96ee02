"""The replica's readiness, one vocabulary for /readyz, /status and logs."""

from __future__ import annotations

from enum import StrEnum


class Readiness(StrEnum):
    """Where a replica stands.  Only SERVING answers /readyz with 200; agents
    are streamed to in every state but STARTING (a STALE replica still holds
    a complete state, and says so with DATASTORE_STATUS)."""

    STARTING = "starting"  # no complete state yet: first list or backfill replay running
    SERVING = "serving"  # a complete state, following the datastore
    STALE = "stale"  # a complete state, but not following the datastore right now
    DEGRADED = "degraded"  # a supervised task is down (and being restarted)
    DRAINING = "draining"  # shutting down: agents are being moved away
