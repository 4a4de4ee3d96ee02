"""The fan-out listener's limits and counters."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from runtime.histogram import Histogram
from syncproto import CloseReason
from syncproto.stream import StreamPolicy, StreamStats


@dataclass(frozen=True, slots=True)
class ServerLimits:
    """Limits of the listener; `stream` holds those each client's stream
    enforces."""

    max_connections: int = 20_000
    write_high_water: int = 256 * 1024
    stream: StreamPolicy = StreamPolicy()
    applied_reports_per_second: float = 2000.0  # 0: agents report at their default


@dataclass(slots=True)
class ServerStats(StreamStats):
    """The server's counters (the streams' shared ones included)."""

    accepted: int = 0
    rejected_limit: int = 0
    bytes_sent: int = 0
    fanouts: int = 0
    tls_handshake_failures: int = 0
    internal_errors: int = 0
    timer_runs: int = 0
    paced_passes: int = 0  # passes held back because the previous one was long
    writes: int = 0  # transport writes to agents (what fan-out CPU follows)
    applied_interval_changes: int = 0  # APPLIED_INTERVAL broadcasts
    applied_unverified: int = 0  # TLS agents whose certificate does not name their node
    closed: Counter[CloseReason] = field(default_factory=Counter)
    protocol_errors: Counter[str] = field(default_factory=Counter)
    # Datastore event received -> its batch written to every streaming agent.
    fanout_latency: Histogram = field(default_factory=Histogram)
    # Hello answered with a snapshot -> its last frame handed to the transport.
    snapshot_send: Histogram = field(default_factory=Histogram)
    ping_rtt: Histogram = field(default_factory=Histogram)
    # Revision first seen here -> an agent's report that its dataplane applied it.
    applied_latency: Histogram = field(default_factory=Histogram)
