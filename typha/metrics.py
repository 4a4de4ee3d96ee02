"""Prometheus metrics, read from the live objects at scrape time.

A custom collector keeps the hot paths free of metric calls: they bump plain
integer fields, and a scrape turns those into metric families.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from typha.app import TyphaApp


class TyphaCollector(Collector):
    def __init__(self, app: TyphaApp) -> None:
        self._app = app

    def collect(self) -> Iterator[Metric]:
        app = self._app
        cache, syncer, server = app.cache, app.syncer, app.server
        g = GaugeMetricFamily
        c = CounterMetricFamily
        yield g(
            "typha_in_sync", "1 while the cache is in sync with etcd", value=int(syncer.in_sync)
        )
        yield g("typha_revision", "etcd revision the cache reflects", value=cache.revision)
        yield g("typha_keys", "keys in the synced state", value=len(cache.current))
        yield g(
            "typha_history_batches",
            "delta batches held in history",
            value=cache.seq - cache.oldest_seq,
        )
        yield c("typha_batches", "delta batches produced", value=cache.stats.batches)
        yield c(
            "typha_updates_applied",
            "updates that changed the state",
            value=cache.stats.updates_applied,
        )
        yield c(
            "typha_updates_suppressed",
            "updates that changed nothing",
            value=cache.stats.updates_suppressed,
        )
        yield c(
            "typha_snapshots_encoded",
            "snapshot encodings produced",
            value=cache.stats.snapshots_encoded,
        )
        yield c(
            "typha_snapshots_reused",
            "snapshot encodings shared with another client",
            value=cache.stats.snapshots_reused,
        )
        yield c("typha_etcd_lists", "full lists of the served prefix", value=syncer.stats.lists)
        yield c("typha_etcd_list_pages", "pages read while listing", value=syncer.stats.pages)
        yield c("typha_etcd_watches", "watch streams opened", value=syncer.stats.watches)
        yield c(
            "typha_etcd_errors", "etcd errors (each followed by a retry)", value=syncer.stats.errors
        )
        yield c(
            "typha_etcd_compactions",
            "watches that hit a compacted revision",
            value=syncer.stats.compactions,
        )
        inv = c("typha_invalid_values", "datastore values rejected, by reason", labels=["reason"])
        for reason, n in sorted(syncer.stats.invalid.items()):
            inv.add_metric([reason], n)
        yield inv
        if server is None:
            return
        st = server.stats
        yield g("typha_connections", "open agent connections", value=len(server.connections))
        yield c("typha_connections_accepted", "agent connections accepted", value=st.accepted)
        yield c(
            "typha_connections_refused", "connections refused at the limit", value=st.rejected_limit
        )
        closed = c(
            "typha_connections_closed", "agent connections closed, by reason", labels=["reason"]
        )
        for reason, n in sorted(st.closed.items()):
            closed.add_metric([reason], n)
        yield closed
        perr = c("typha_protocol_errors", "protocol errors from agents, by code", labels=["code"])
        for code, n in sorted(st.protocol_errors.items()):
            perr.add_metric([code], n)
        yield perr
        yield c("typha_snapshots_sent", "full snapshots sent to agents", value=st.snapshots_sent)
        yield c(
            "typha_snapshot_bytes_sent", "bytes of snapshots sent", value=st.snapshot_bytes_sent
        )
        yield c(
            "typha_batches_sent", "delta batches sent (summed over agents)", value=st.batches_sent
        )
        yield c("typha_bytes_sent", "bytes written to agents", value=st.bytes_sent)
