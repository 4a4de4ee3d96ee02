"""The client's counters."""

from __future__ import annotations

from dataclasses import dataclass, field

from runtime.histogram import Histogram
from syncclient.session import SessionStats


@dataclass(slots=True)
class ClientStats(SessionStats):
    """Counters of one client over its lifetime (its sessions count into the
    inherited fields)."""

    connects: int = 0
    connect_failures: int = 0
    digest_mismatches: int = 0
    protocol_errors: int = 0
    internal_errors: int = 0
    stale_upstream_moves: int = 0
    stale_stays: int = 0  # stale replica kept: no other was in sync
    bytes_received: int = 0
    applied_reports: int = 0  # APPLIED frames sent
    ping_rtt: Histogram = field(default_factory=Histogram)
