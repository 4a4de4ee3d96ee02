"""The agent's Prometheus metrics, read from the live objects at scrape time
(the apply path only bumps plain fields, as on the server)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from typing import Protocol

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from dataplane import MemoryDataplane
from felix_client.calc import Calculator
from felix_client.calc.rules import Unenforceable
from felix_client.verdict_series import LABELS, VerdictSeries
from runtime.histogram import Histogram
from runtime.metric_families import build_info, histogram_family
from syncclient.client import SyncClient


class Agent(Protocol):
    """What the collector reads (felix_client.agent.Agent provides it)."""

    client: SyncClient
    dataplane: MemoryDataplane
    calc: Calculator
    updates_applied: int
    apply_failures: int
    applied_revision: int
    apply_time: Histogram
    verdicts: VerdictSeries

    def ready(self) -> bool:
        """What /readyz answers."""
        ...


Getter = Callable[[Agent], float]

GAUGES: list[tuple[str, str, Getter]] = [
    ("felix_ready", "1 while /readyz answers 200", lambda a: a.ready()),
    (
        "felix_in_sync",
        "1 while the replica holds a complete, verified state from a live server",
        lambda a: a.client.in_sync,
    ),
    ("felix_connected", "1 while connected to a typha replica", lambda a: a.client.connected),
    (
        "felix_upstream_in_sync",
        "1 while the serving replica says it follows the datastore",
        lambda a: a.client.upstream_in_sync,
    ),
    ("felix_revision", "datastore revision the replica is at", lambda a: a.client.revision),
    (
        "felix_applied_revision",
        "datastore revision the dataplane has applied everything up to",
        lambda a: a.applied_revision,
    ),
    ("felix_keys", "keys in the replica", lambda a: a.client.key_count),
    ("felix_routes", "routes in the dataplane", lambda a: len(a.dataplane.routes)),
    ("felix_acl_rules", "rules in the dataplane's chains", lambda a: a.dataplane.acl_rules),
    ("felix_ip_sets", "IP sets in the dataplane", lambda a: len(a.dataplane.ipsets)),
    (
        "felix_ip_set_members",
        "members over all IP sets",
        lambda a: sum(len(m) for m in a.dataplane.ipsets.values()),
    ),
    (
        "felix_dataplane_refused",
        "objects the agent would not program: not its own (an interface without the"
        " workload prefix, one another endpoint owns, a default route), not exactly"
        " their type, or a route the kernel holds for someone else; /status lists them",
        lambda a: len(a.dataplane.refused),
    ),
    (
        "felix_reconnect_backoff_seconds",
        "upper bound of the next reconnect delay",
        lambda a: a.client.reconnect_backoff,
    ),
]

COUNTERS: list[tuple[str, str, Getter]] = [
    ("felix_connects", "connections a replica answered", lambda a: a.client.stats.connects),
    (
        "felix_connect_failures",
        "connection attempts that failed",
        lambda a: a.client.stats.connect_failures,
    ),
    ("felix_snapshots", "full snapshots received", lambda a: a.client.stats.snapshots),
    ("felix_resumes", "sessions resumed from our revision", lambda a: a.client.stats.resumes),
    ("felix_deltas", "delta messages applied", lambda a: a.client.stats.deltas),
    (
        "felix_digest_mismatches",
        "digest checks that failed (each followed by a full resync)",
        lambda a: a.client.stats.digest_mismatches,
    ),
    (
        "felix_protocol_errors",
        "protocol errors from the server",
        lambda a: a.client.stats.protocol_errors,
    ),
    (
        "felix_internal_errors",
        "sessions ended by a bug of ours (see the ERROR log)",
        lambda a: a.client.stats.internal_errors,
    ),
    (
        "felix_stale_upstream_moves",
        "replicas left because they had lost the datastore",
        lambda a: a.client.stats.stale_upstream_moves,
    ),
    (
        "felix_stale_upstream_stays",
        "times the replica had lost the datastore and no other was in sync: the agent stayed",
        lambda a: a.client.stats.stale_stays,
    ),
    ("felix_bytes_received", "bytes read from typha", lambda a: a.client.stats.bytes_received),
    ("felix_updates_applied", "key changes passed to the calculation", lambda a: a.updates_applied),
    ("felix_dataplane_ops", "dataplane operations applied", lambda a: a.dataplane.ops),
    (
        "felix_dataplane_failures",
        "dataplane batches that failed to apply (each repaired by a resync)",
        lambda a: a.apply_failures,
    ),
]

CALC_ERRORS = tuple(f"rule_{r}" for r in Unenforceable)


def verdict_refresher(verdicts: VerdictSeries) -> Callable[[], Awaitable[None]]:
    """What to await before a scrape: the verdict counters read in a worker
    thread if due (tens of ms with thousands of them, which would hold the
    event loop), one read at a time; a scrape meanwhile gets the last."""
    reading = False

    async def refresh() -> None:
        nonlocal reading
        if reading or not verdicts.due():
            return
        reading = True
        try:
            await asyncio.get_running_loop().run_in_executor(None, verdicts.refresh)
        finally:
            reading = False

    return refresh


def verdict_families(verdicts: VerdictSeries) -> Iterator[Metric]:
    """What each policy rule matched on this node (`verdict_series`), as
    its last refresh left them."""
    fams = {
        (staged, unit): CounterMetricFamily(
            f"felix_{'staged_' if staged else ''}policy_{unit}",
            (
                f"{unit} a staged policy's rule matched (the verdict it would give: "
                "it decides nothing)"
                if staged
                else f"{unit} a policy's or profile's rule (or a default) decided"
            )
            + "; past --policy-counter-series, folded into policy __OVERFLOW__",
            labels=list(LABELS),
        )
        for staged in (False, True)
        for unit in ("packets", "bytes")
    }
    for s in verdicts.current():
        fams[(s.staged, "packets")].add_metric(list(s.labels), s.packets)
        fams[(s.staged, "bytes")].add_metric(list(s.labels), s.bytes)
    yield from fams.values()
    yield CounterMetricFamily(
        "felix_verdict_read_failures",
        "scrapes that could not read the verdict counters (answered with the last read)",
        value=verdicts.read_failures,
    )
    yield GaugeMetricFamily(
        "felix_policy_counters_folded",
        "verdict counters beyond --policy-counter-series, counted in the __OVERFLOW__ series",
        value=verdicts.folded,
    )


class AgentCollector(Collector):
    """Prometheus collector over one Agent."""

    def __init__(self, agent: Agent, version: str) -> None:
        self._agent = agent
        self._version = version

    def collect(self) -> Iterator[Metric]:
        """Every metric, read now."""
        agent = self._agent
        yield build_info("felix", self._version)
        for name, help_, get in GAUGES:
            yield GaugeMetricFamily(name, help_, value=float(get(agent)))
        for name, help_, get in COUNTERS:
            yield CounterMetricFamily(name, help_, value=float(get(agent)))
        errors = CounterMetricFamily(
            "felix_calc_errors",
            "policy fields the agent cannot enforce (the rule matches nothing), by reason",
            labels=["reason"],
        )
        counts = {r: 0 for r in CALC_ERRORS} | dict(agent.calc.errors)
        for reason, n in sorted(counts.items()):
            errors.add_metric([reason], n)
        yield errors
        yield from verdict_families(agent.verdicts)
        yield histogram_family(
            "felix_apply_seconds",
            "one received batch through the calculation and into the dataplane",
            agent.apply_time,
        )
        yield histogram_family(
            "felix_ping_rtt_seconds",
            "round trip of the agent's pings to its typha",
            agent.client.stats.ping_rtt,
        )
