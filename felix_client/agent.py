"""The node agent: a SyncClient feeding the route/ACL calculation, which
programs a dataplane driver; plus the agent's HTTP port (/status, /dump)."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import functools
import logging
import ssl
import time
from collections import deque
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from aiohttp import web
from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
)

from calico_model.keys import DEFAULT_PREFIX
from dataplane import MemoryDataplane
from dataplane.batch import DataplaneBatch
from dataplane.linux.driver import LinuxDataplane
from felix_client.calc import Calculator
from felix_client.config import AgentConfig, DataplaneKind
from felix_client.explain.route import explain_handler
from felix_client.metrics import AgentCollector, verdict_refresher
from felix_client.readiness import AgentReadiness
from felix_client.verdict_series import DEFAULT_COUNTER_SERIES, VerdictSeries
from runtime.errors import ConfigError as RuntimeConfigError
from runtime.histogram import Histogram
from runtime.sockets import listening_socket
from runtime.status_http import status_app
from runtime.tls import ReloadingContext
from syncclient.client import SyncClient
from syncclient.client_stats import ClientStats
from syncclient.errors import ConfigError
from syncclient.replica import Replica

log = logging.getLogger(__name__)


# Change lists this long (a snapshot) are calculated in a worker thread, so
# that the event loop keeps answering pings, /status and /readyz meanwhile: at
# ~100 us a key, a 20,000-key snapshot would otherwise block it for seconds.
OFFLOAD_CHANGES = 1000


@functools.cache
def _calc_executor() -> ThreadPoolExecutor:
    """The one thread every agent of this process calculates in.  The
    calculation is pure Python: threads beyond one add no throughput (one
    holds the interpreter lock at a time), and each one more takes turns
    from the event loop, whose pongs then come late (a process hosting many
    agents had its connections cut for missing pongs while six threads
    calculated snapshots)."""
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="calc")


# /status lists this many refused objects (the first by key); the count is whole.
REFUSED_SHOWN = 100


class Agent:
    """One node's agent over a started SyncClient: every change the client
    applies goes through the calculation to the dataplane driver, in order.
    Construct it before the client's first sync, or it misses the changes
    before.  Large change lists are calculated off the event loop; the
    dataplane is always written from the loop, one batch per change list,
    so it never holds half of a snapshot.  `applied_revision` says how far
    the dataplane has got."""

    def __init__(
        self,
        client: SyncClient,
        *,
        node: str,
        dataplane: MemoryDataplane | None = None,
        prefix: str = DEFAULT_PREFIX,
        version: str = "0+unknown",
        policy_counter_series: int = DEFAULT_COUNTER_SERIES,
    ) -> None:
        self.client = client
        self.node = node
        self.dataplane = dataplane if dataplane is not None else MemoryDataplane()
        self.dataplane_name = (
            DataplaneKind.LINUX
            if isinstance(self.dataplane, LinuxDataplane)
            else DataplaneKind.MEMORY
        )
        self.calc = Calculator(node, prefix=prefix)
        self.verdicts = VerdictSeries(self.dataplane.policy_counters, policy_counter_series)
        self.updates_applied = 0
        self.apply_failures = 0
        self.apply_time = Histogram()
        # Set once a complete state has reached the dataplane; cleared while
        # the latest batch failed to apply.
        self._programmed = False
        self._failing = False
        self.applied_revision = 0
        # (revision, complete) of the latest batch the dataplane did not fully
        # take: reported applied only once a resync or a later batch succeeds.
        self._held: tuple[int, bool] | None = None
        # (changes, revision, complete) waiting behind an offloaded calculation.
        self._queue: deque[tuple[Sequence[tuple[str, Any]], int, bool]] = deque()
        self._worker: asyncio.Task[None] | None = None
        # Last: registering describes the collector, which reads the fields above.
        self.registry = CollectorRegistry(auto_describe=True)
        self.registry.register(AgentCollector(self, version))
        for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
            self.registry.register(collector)
        client.add_listener(self._on_changes)

    def _on_changes(self, changes: Sequence[tuple[str, Any]], revision: int) -> None:
        self.updates_applied += len(changes)
        complete = self.client.in_sync
        if self._queue or len(changes) >= OFFLOAD_CHANGES:
            self._queue.append((changes, revision, complete))
            if self._worker is None:
                self._worker = asyncio.get_running_loop().create_task(self._drain())
            return
        started = time.perf_counter()
        try:
            self._program(self.calc.apply(changes), revision, complete, started)
        except Exception:
            self._failed()
            raise

    async def _drain(self) -> None:
        """Calculate queued change lists in order (the long ones in the
        calculation thread, the short ones queued behind them here, on the
        loop: a thread round trip costs more than their work, and through
        the thread a busy process's queues would only grow); program each
        result from the loop."""
        loop = asyncio.get_running_loop()
        try:
            while self._queue:
                item = self._queue[0]
                changes, revision, complete = item
                started = time.perf_counter()
                try:
                    if len(changes) >= OFFLOAD_CHANGES:
                        batch = await loop.run_in_executor(
                            _calc_executor(), self.calc.apply, changes
                        )
                    else:
                        await asyncio.sleep(0)  # let the loop run between them
                        if not self._queue or self._queue[0] is not item:
                            continue  # close() emptied the queue meanwhile
                        batch = self.calc.apply(changes)
                    self._program(batch, revision, complete, started)
                except Exception:
                    self._failed()
                    log.exception("%s: applying revision %d failed", self.node, revision)
                # close() may have emptied the queue while this was calculated.
                if self._queue and self._queue[0] is item:
                    self._queue.popleft()
        finally:
            self._worker = None

    def _program(
        self, batch: DataplaneBatch, revision: int, complete: bool, started: float
    ) -> None:
        """Write one calculated batch; the caller counts an exception (once).
        A batch the kernel did not take (the driver says it is no longer
        consistent) is counted here and not reported applied."""
        if not batch.empty():
            self.dataplane.apply(batch)
        self.apply_time.observe(time.perf_counter() - started)
        if not self.dataplane.consistent():
            self._held = (revision, complete or (self._held is not None and self._held[1]))
            self._failed()
            return
        self._applied(revision, complete)

    def _applied(self, revision: int, complete: bool) -> None:
        self._held = None
        self._failing = False
        self.applied_revision = revision
        self.client.report_applied(revision)
        if complete:
            self._programmed = True

    def dataplane_resynced(self) -> None:
        """Call after every dataplane resync: a batch the kernel refused
        earlier is reported applied once the kernel holds it."""
        if self._held is not None and self.dataplane.consistent():
            self._applied(*self._held)

    def _failed(self) -> None:
        self.apply_failures += 1
        self._failing = True

    async def wait_applied(self) -> None:
        """Wait until every change received so far has reached the dataplane."""
        while self._worker is not None:
            await asyncio.shield(self._worker)

    async def close(self) -> None:
        """Stop calculating what is still queued (call when the client closes)."""
        self._queue.clear()
        if self._worker is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker

    def readiness(self) -> AgentReadiness:
        """Where the agent stands (see AgentReadiness)."""
        if not self._programmed:
            return AgentReadiness.STARTING
        return AgentReadiness.FAILING if self._failing else AgentReadiness.READY

    def ready(self) -> bool:
        """/readyz: the dataplane holds a complete state (applied at least
        once) and the latest batch applied cleanly (the kernel took it, less
        the objects `refused` lists)."""
        return self.readiness() is AgentReadiness.READY

    def dump(self) -> str:
        """The node's route table, IP sets and rule chains, as text."""
        dp = self.dataplane
        lines = [f"# node {self.node} at revision {self.client.revision}", "", "# routes"]
        lines += sorted(str(r) for r in dp.routes.values())
        lines += ["", "# ip sets"]
        for sid in sorted(dp.ipsets):
            members = " ".join(sorted(dp.ipsets[sid]))
            lines.append(f"{sid.name}  ({sid.to_dict()}): {members}")
        lines += ["", "# chains"]
        for ck, rules in sorted(dp.chains.items()):
            lines.append(f"{ck}:")
            lines += [f"  {r}" for r in rules]
        return "\n".join(lines) + "\n"

    def status(self) -> dict[str, Any]:
        """The agent's `/status` object."""
        c = self.client
        refused = self.dataplane.refused
        return {
            "node": self.node,
            "connected": c.connected,
            "in_sync": c.in_sync,
            "revision": c.revision,
            "keys": c.key_count,
            "digest": c.digest,
            "upstream_in_sync": c.upstream_in_sync,
            "upstream_status": c.upstream_status,
            "routes": len(self.dataplane.routes),
            "acl_rules": self.dataplane.acl_rules,
            "ip_sets": len(self.dataplane.ipsets),
            "ip_set_members": sum(len(m) for m in self.dataplane.ipsets.values()),
            "chains": len(self.dataplane.chains),
            "dataplane_ops": self.dataplane.ops,
            "calc_errors": dict(self.calc.errors),
            "server": c.server,
            "dataplane": str(self.dataplane_name),
            "kernel": self.dataplane.kernel_status(),
            "felix_configuration": self.dataplane.configuration(),
            "updates_applied": self.updates_applied,
            "digest_mismatches": c.stats.digest_mismatches,
            "protocol_errors": c.stats.protocol_errors,
            "internal_errors": c.stats.internal_errors,
            "stale_upstream_moves": c.stats.stale_upstream_moves,
            "stale_upstream_stays": c.stats.stale_stays,
            "connects": c.stats.connects,
            "reconnect_backoff": c.reconnect_backoff,
            "snapshots": c.stats.snapshots,
            "deltas": c.stats.deltas,
            "ready": self.ready(),
            "readiness": self.readiness().value,
            "applied_revision": self.applied_revision,
            "applied_reports": c.stats.applied_reports,
            "applied_report_interval": c.applied_interval,
            "dataplane_failures": self.apply_failures,
            # What the agent would not program (not its own, or not exactly
            # its type), by key, with the reason; `refused_count` counts all.
            "refused": dict(sorted(refused.items())[:REFUSED_SHOWN]),
            "refused_count": len(refused),
        }

    def http_app(self) -> web.Application:
        """The aiohttp application for the agent's status port: the status
        routes (/status, /livez, /readyz, /metrics), /dump and /explain
        (felix_client.explain.route)."""

        async def dump(_: web.Request) -> web.Response:
            return web.Response(text=self.dump())

        app = status_app(self, verdict_refresher(self.verdicts))
        app.router.add_get("/dump", dump)
        eps = self.calc.policy.endpoints
        app.router.add_get("/explain", explain_handler(self.node, lambda: eps.eps, self.dataplane))
        return app


async def run_agent(
    config: AgentConfig,
    stop: asyncio.Event,
    *,
    ssl_context: ssl.SSLContext | None = None,
    version: str = "0+unknown",
) -> None:
    """Run one agent until `stop` is set: the sync client, the calculation
    and the status port."""
    # The calculation holds what it uses of each value: the replica keeps
    # only hashes, so the state is not held twice.
    async with SyncClient(
        config.typha,
        node=config.node,
        replica=Replica(keep_values=False),
        ssl_context=ssl_context,
        server_name=config.tls_server_name or None,
        upstream_stale_after=config.upstream_stale_after,
        max_snapshot_bytes=config.max_snapshot_bytes,
    ) as client:
        dataplane = make_dataplane(config)
        agent = Agent(
            client,
            node=config.node,
            dataplane=dataplane,
            prefix=config.prefix,
            version=version,
            policy_counter_series=config.policy_counter_series,
        )
        runner = web.AppRunner(agent.http_app(), access_log=None)
        await runner.setup()
        resync = summaries = tls = None
        if ssl_context is not None and config.tls_reload_interval > 0:
            reloading = ReloadingContext(
                ssl_context, config.tls_cert_file, config.tls_key_file, config.tls_ca_file
            )
            tls = asyncio.create_task(_reload_tls(reloading, config.tls_reload_interval))
        if isinstance(dataplane, LinuxDataplane):
            resync = asyncio.create_task(_resync_every(agent, dataplane, stop))
        if config.log_summary_interval > 0:
            summaries = asyncio.create_task(_log_summaries(agent, config.log_summary_interval))
        try:
            try:
                sock = listening_socket(config.http_host, config.http_port, backlog=128)
            except OSError as exc:
                where = f"{config.http_host}:{config.http_port}"
                raise ConfigError(
                    f"cannot listen on {where} (--http-listen): {exc.strerror or exc}"
                ) from None
            await web.SockSite(runner, sock).start()
            log.info(
                "felix-agent %s: status on %s:%d, typha %s, dataplane %s",
                config.node,
                config.http_host,
                sock.getsockname()[1],
                config.typha,
                config.dataplane,
            )
            await stop.wait()
        finally:
            await agent.close()
            for task in (resync, summaries, tls):
                if task is not None:
                    task.cancel()
            await runner.cleanup()
            if isinstance(dataplane, LinuxDataplane):
                dataplane.close()


def make_dataplane(config: AgentConfig) -> MemoryDataplane:
    """The configured driver.  Raises KernelUnavailable if `linux` cannot
    reach the kernel (no privilege, no libnftables, no such namespace)."""
    if config.dataplane is DataplaneKind.LINUX:
        return LinuxDataplane(
            netns=config.dataplane_netns or None,
            node=config.node,
            settings=config.explicit_settings(),
            delay=config.dataplane_delay,
            ownership=config.ownership,
            sysctl_root=config.sysctl_root,
        )
    return MemoryDataplane(config.dataplane_delay, config.ownership)


async def _resync_every(agent: Agent, dataplane: LinuxDataplane, stop: asyncio.Event) -> None:
    """Put back what someone changed in the kernel, at the interval in force
    (the flag, else FelixConfiguration's refresh intervals, else 90 s; 0:
    never, looked at again every second, as FelixConfiguration may change
    it).  Runs on the event loop, between batches, so it never races one."""
    while not stop.is_set():
        interval = dataplane.in_force.resync()
        try:
            async with asyncio.timeout(interval if interval > 0 else 1.0):
                await stop.wait()
        except TimeoutError:
            if interval > 0:
                dataplane.resync()
                agent.dataplane_resynced()


def summary_line(agent: Agent, before: ClientStats, seconds: float) -> str:
    """One line on where the agent stands and what the last interval did."""
    c = agent.client
    st = c.stats
    if c.connected:
        where = (
            f"{'in sync' if c.in_sync else 'syncing'} with {c.server} "
            f"(datastore {c.upstream_status}) at revision {c.revision}"
        )
    else:
        where = f"not connected (next attempt within {c.reconnect_backoff:.1f}s)"
    return (
        f"{agent.node}: {where}, {c.key_count} keys, {len(agent.dataplane.routes)} routes, "
        f"{agent.dataplane.acl_rules} rules; last {seconds:.0f}s: "
        f"{st.deltas - before.deltas} deltas, {st.snapshots - before.snapshots} snapshots, "
        f"{st.connects - before.connects} connects, "
        f"{st.connect_failures - before.connect_failures} failed attempts"
    )


async def _log_summaries(agent: Agent, interval: float) -> None:
    """A summary line every `interval` seconds, connected or not (a node
    whose agent cannot reach typha must say so in its log)."""
    loop = asyncio.get_running_loop()
    before, since = copy.copy(agent.client.stats), loop.time()
    while True:
        await asyncio.sleep(interval)
        try:
            at = loop.time()
            log.info("%s", summary_line(agent, before, at - since))
            before, since = copy.copy(agent.client.stats), at
        except Exception:
            log.exception("summary failed")


async def _reload_tls(tls: ReloadingContext, interval: float) -> None:
    """Take in a rotated certificate or CA: the next connection to typha
    presents and trusts the new files."""
    while True:
        await asyncio.sleep(interval)
        try:
            if tls.check():
                log.info("new TLS files loaded; the next connection to typha uses them")
        except RuntimeConfigError as exc:
            log.warning("%s", exc)
