"""Prometheus metrics, read from the live objects at scrape time.

A custom collector keeps the hot paths free of metric calls: they bump plain
integer fields, and a scrape turns those into metric families.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, Protocol

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from calico_model.errors import Reason
from runtime.histogram import Histogram
from runtime.metric_families import build_info, histogram_family
from snapshot import SnapshotCache
from syncproto import CloseReason, DatastoreStatus
from syncproto.encoding import FrameEncoder
from typha.datastore.source_check import SourceCheck
from typha.fanout.limits import ServerStats
from typha.fanout.server import AgentServer
from typha.gc_pauses import GcPauses
from typha.source import StateSource
from typha.supervisor import Supervisor


class Source(Protocol):
    """What the collector reads (TyphaApp provides it)."""

    cache: SnapshotCache
    syncer: StateSource
    server: AgentServer | None
    encoder: FrameEncoder
    source_check: SourceCheck
    supervisor: Supervisor
    tls_reloads: Counter[str]
    tls_reload_failures: Counter[str]
    gc_pauses: GcPauses

    def ready(self) -> bool:
        """What /readyz answers."""
        ...


Getter = Callable[[Source], float]

GAUGES: list[tuple[str, str, Getter]] = [
    ("typha_in_sync", "1 while the watch on etcd is established", lambda a: a.syncer.following),
    ("typha_revision", "etcd revision the cache reflects", lambda a: a.cache.revision),
    ("typha_keys", "keys in the synced state", lambda a: len(a.cache.current)),
    (
        "typha_etcd_retry_backoff_seconds",
        "upper bound of the next etcd retry delay (grows while failures repeat)",
        lambda a: a.syncer.backoff.upper,
    ),
    (
        "typha_tasks_down",
        "supervised tasks currently down (waiting to be restarted)",
        lambda a: len(a.supervisor.down),
    ),
    (
        "typha_history_batches",
        "delta batches held in history",
        lambda a: a.cache.seq - a.cache.oldest_seq,
    ),
]

COUNTERS: list[tuple[str, str, Getter]] = [
    (
        "typha_batch_frame_bytes",
        "bytes of delta/progress frames encoded (once each)",
        lambda a: a.encoder.stats.batch_bytes,
    ),
    (
        "typha_snapshot_raw_bytes",
        "snapshot chunk bytes before compression, per encoding",
        lambda a: a.encoder.stats.snapshot_raw_bytes,
    ),
    (
        "typha_snapshot_encoded_bytes",
        "snapshot frame bytes as sent, per encoding",
        lambda a: a.encoder.stats.snapshot_wire_bytes,
    ),
    ("typha_batches", "delta batches produced", lambda a: a.cache.stats.batches),
    (
        "typha_updates_applied",
        "updates that changed the state",
        lambda a: a.cache.stats.updates_applied,
    ),
    (
        "typha_updates_suppressed",
        "updates that changed nothing",
        lambda a: a.cache.stats.updates_suppressed,
    ),
    (
        "typha_snapshots_encoded",
        "snapshot encodings produced",
        lambda a: a.cache.stats.snapshots_encoded,
    ),
    (
        "typha_snapshots_reused",
        "snapshot encodings shared with another client",
        lambda a: a.cache.stats.snapshots_reused,
    ),
    (
        "typha_catch_ups_encoded",
        "merged catch-up frames encoded (a client several batches behind: a resume, a slow agent)",
        lambda a: a.cache.stats.catch_ups_encoded,
    ),
    (
        "typha_catch_ups_reused",
        "merged catch-up frames shared with another client at the same position",
        lambda a: a.cache.stats.catch_ups_reused,
    ),
    (
        "typha_catch_up_bytes",
        "bytes of the merged catch-up frames encoded (compressed where the client takes zstd)",
        lambda a: a.cache.stats.catch_up_bytes,
    ),
    ("typha_etcd_lists", "full lists of the served prefix", lambda a: a.syncer.stats.lists),
    ("typha_etcd_list_pages", "pages read while listing", lambda a: a.syncer.stats.pages),
    ("typha_etcd_watches", "watch streams opened", lambda a: a.syncer.stats.watches),
    (
        "typha_etcd_errors",
        "etcd errors (each followed by a retry)",
        lambda a: a.syncer.stats.errors,
    ),
    (
        "typha_source_checks",
        "cache-vs-etcd digest checks completed",
        lambda a: a.source_check.stats.checks,
    ),
    (
        "typha_source_check_mismatches",
        "cache-vs-etcd checks that found a divergence",
        lambda a: a.source_check.stats.mismatches,
    ),
    (
        "typha_source_checks_skipped",
        "cache-vs-etcd checks that could not run",
        lambda a: a.source_check.stats.skipped,
    ),
    (
        "typha_etcd_resync_updates",
        "updates produced by re-listing etcd",
        lambda a: a.syncer.stats.resync_updates,
    ),
    (
        "typha_etcd_progress_notifies",
        "etcd progress notifications applied",
        lambda a: a.syncer.stats.progress_notifies,
    ),
    (
        "typha_etcd_progress_requests",
        "progress requests sent on a quiet etcd watch",
        lambda a: a.syncer.stats.progress_requests,
    ),
    (
        "typha_etcd_watch_stalls",
        "watches abandoned because etcd stayed silent past --etcd-watch-timeout",
        lambda a: a.syncer.stats.watch_stalls,
    ),
    (
        "typha_etcd_compactions",
        "watches that hit a compacted revision",
        lambda a: a.syncer.stats.compactions,
    ),
]

SERVER_GAUGES: list[tuple[str, str, Getter]] = [
    (
        "typha_connections",
        "open agent connections",
        lambda a: len(a.server.connections) if a.server else 0,
    ),
    (
        "typha_streaming_connections",
        "agent connections past their hello (snapshot or deltas flowing)",
        lambda a: a.server.fanout.streaming_count() if a.server else 0,
    ),
    (
        "typha_max_client_lag_seconds",
        "longest time an agent has not been taking our writes",
        lambda a: a.server.max_lag() if a.server else 0.0,
    ),
    (
        "typha_tls_handshakes_pending",
        "TLS connections accepted and not through their handshake (count against the limit)",
        lambda a: len(a.server.fanout.tls_pending) if a.server else 0,
    ),
    (
        "typha_draining",
        "1 while shutting down",
        lambda a: bool(a.server and a.server.fanout.draining),
    ),
    (
        "typha_agents_applied_head",
        "connected agents whose dataplane reports this replica's latest change applied",
        lambda a: a.server.convergence.at_least(a.cache.changed_revision) if a.server else 0,
    ),
    (
        "typha_applied_report_interval_seconds",
        "how often, at most, this replica's agents are asked to send APPLIED reports",
        lambda a: a.server.report_interval_ms / 1000 if a.server else 0.0,
    ),
]

SERVER_COUNTERS: list[tuple[str, str, Getter]] = [
    (
        "typha_applied_reports",
        "agents' reports of a higher applied revision",
        lambda a: a.server.convergence.reports if a.server else 0,
    ),
    (
        "typha_applied_interval_changes",
        "APPLIED_INTERVAL broadcasts (the agent count moved the reporting interval)",
        lambda a: _st(a).applied_interval_changes,
    ),
    (
        "typha_applied_unverified",
        "TLS agents whose certificate does not name their node: their APPLIED reports"
        " are not counted",
        lambda a: _st(a).applied_unverified,
    ),
    ("typha_connections_accepted", "agent connections accepted", lambda a: _st(a).accepted),
    (
        "typha_connections_refused",
        "connections refused at the limit",
        lambda a: _st(a).rejected_limit,
    ),
    ("typha_snapshots_sent", "full snapshots sent to agents", lambda a: _st(a).snapshots_sent),
    ("typha_snapshot_bytes_sent", "bytes of snapshots sent", lambda a: _st(a).snapshot_bytes_sent),
    (
        "typha_batches_sent",
        "delta batches sent (summed over agents)",
        lambda a: _st(a).batches_sent,
    ),
    ("typha_bytes_sent", "bytes written to agents", lambda a: _st(a).bytes_sent),
    ("typha_writes", "socket writes to agents (one per agent per pass)", lambda a: _st(a).writes),
    ("typha_resumes", "agents resumed from their revision (no snapshot)", lambda a: _st(a).resumes),
    (
        "typha_resumes_refused",
        "agents that asked to resume but needed a snapshot",
        lambda a: _st(a).resume_refused,
    ),
    ("typha_fanouts", "fan-out passes over the connections", lambda a: _st(a).fanouts),
    (
        "typha_fanouts_paced",
        "fan-out passes held back because the previous one was long (--fanout-pacing)",
        lambda a: _st(a).paced_passes,
    ),
    (
        "typha_tls_handshake_failures",
        "agent connections whose TLS handshake failed or timed out",
        lambda a: _st(a).tls_handshake_failures,
    ),
    (
        "typha_internal_errors",
        "connections dropped by an internal error (a bug: see the ERROR log)",
        lambda a: _st(a).internal_errors,
    ),
]


def _st(app: Source) -> ServerStats:
    return app.server.stats if app.server is not None else ServerStats()


# Every label value a labelled counter can take is exported from the start
# (at 0), so rate() and absent() work before the first event.
TASKS = (
    "syncer",
    "fanout-timers",
    "fanout-housekeeping",
    "rebalancer",
    "source-check",
    "log-summary",
    "tls-reload",
)
PROTOCOL_ERROR_CODES = (
    CloseReason.PROTOCOL_ERROR,
    CloseReason.FRAME_TOO_LARGE,
    CloseReason.MALFORMED,
    CloseReason.HANDSHAKE,
    CloseReason.RATE_LIMITED,
    "tls_forbidden",
)
HISTOGRAMS: list[tuple[str, str, Callable[[ServerStats], Histogram]]] = [
    (
        "typha_fanout_latency_seconds",
        "datastore event received to its batch written to every streaming agent",
        lambda st: st.fanout_latency,
    ),
    (
        "typha_snapshot_send_seconds",
        "hello answered with a snapshot to its last frame handed to the socket",
        lambda st: st.snapshot_send,
    ),
    (
        "typha_ping_rtt_seconds",
        "round trip of the server's pings to its agents",
        lambda st: st.ping_rtt,
    ),
    (
        "typha_applied_latency_seconds",
        "revision first seen by this replica to an agent reporting its dataplane applied it",
        lambda st: st.applied_latency,
    ),
]


def _labeled(
    name: str, help_: str, label: str, counts: Mapping[Any, int], every: Iterable[object] = ()
) -> Metric:
    fam = CounterMetricFamily(name, help_, labels=[label])
    values = {str(v): 0 for v in every}
    values.update((str(k), n) for k, n in counts.items())
    for value, n in sorted(values.items()):
        fam.add_metric([value], n)
    return fam


class TyphaCollector(Collector):
    """Prometheus collector reading the server's counters at scrape time."""

    def __init__(self, app: Source, version: str = "0+unknown") -> None:
        self._app = app
        self._version = version

    def collect(self) -> Iterator[Metric]:
        """Every metric, read now."""
        app = self._app
        yield build_info("typha", self._version)
        yield GaugeMetricFamily("typha_ready", "1 while /readyz answers 200", value=app.ready())
        for name, help_, get in GAUGES:
            yield GaugeMetricFamily(name, help_, value=float(get(app)))
        for name, help_, get in COUNTERS:
            yield CounterMetricFamily(name, help_, value=float(get(app)))
        yield _labeled(
            "typha_invalid_values",
            "datastore values rejected, by reason",
            "reason",
            app.syncer.stats.invalid,
            Reason,
        )
        yield _labeled(
            "typha_task_failures",
            "supervised tasks that died and were restarted, by task",
            "task",
            app.supervisor.failures,
            TASKS,
        )
        yield _labeled(
            "typha_tls_reloads",
            "TLS files taken in after they changed, by what they secure",
            "what",
            app.tls_reloads,
            ("agents", "etcd"),
        )
        yield _labeled(
            "typha_tls_reload_failures",
            "changed TLS files that could not be loaded (the old ones stay in use)",
            "what",
            app.tls_reload_failures,
            ("agents", "etcd"),
        )
        snap_bytes = GaugeMetricFamily(
            "typha_snapshot_bytes",
            "bytes of the latest snapshot encoding, by encoding",
            labels=["encoding"],
        )
        sizes = app.cache.stats.snapshot_bytes
        snap_bytes.add_metric(["zstd"], float(sizes.get(True, 0)))
        snap_bytes.add_metric(["plain"], float(sizes.get(False, 0)))
        yield snap_bytes
        status = GaugeMetricFamily(
            "typha_datastore_status",
            "1 for the replica's current standing with the datastore",
            labels=["status"],
        )
        for value in DatastoreStatus:
            status.add_metric([value.value], float(app.syncer.status is value))
        yield status
        st = app.server.stats if app.server is not None else ServerStats()
        for name, help_, get_hist in HISTOGRAMS:
            yield histogram_family(name, help_, get_hist(st))
        gc_pause = HistogramMetricFamily(
            "typha_gc_pause_seconds",
            "how long each garbage collection stopped the process, by generation (2: full)",
            labels=["generation"],
        )
        for generation, hist in enumerate(app.gc_pauses.by_generation):
            gc_pause.add_metric([str(generation)], hist.cumulative(), sum_value=hist.sum)
        yield gc_pause
        if app.server is None:
            return
        for name, help_, get in SERVER_GAUGES:
            yield GaugeMetricFamily(name, help_, value=float(get(app)))
        for name, help_, get in SERVER_COUNTERS:
            yield CounterMetricFamily(name, help_, value=float(get(app)))
        yield _labeled(
            "typha_connections_closed",
            "agent connections closed, by reason",
            "reason",
            st.closed,
            CloseReason,
        )
        yield _labeled(
            "typha_protocol_errors",
            "protocol errors from agents, by code",
            "code",
            st.protocol_errors,
            PROTOCOL_ERROR_CODES,
        )
