"""Wiring of one server process: cache + syncer + agent server + HTTP port."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from typing import Any

from aiohttp import web
from prometheus_client import (
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
)

from runtime.errors import ConfigError as RuntimeConfigError
from runtime.hostport import HostPort
from runtime.sockets import listening_socket
from runtime.tls import FileWatch, PeerPolicy, ReloadingContext, client_context, server_context
from snapshot import SnapshotCache
from syncproto import DatastoreStatus, Limits
from syncproto.encoding import FrameEncoder
from syncproto.stream import StreamPolicy
from typha.config import ServeConfig
from typha.datastore.etcd_client import EtcdConnection
from typha.datastore.source_check import SourceCheck
from typha.datastore.syncer import Syncer, SyncOptions
from typha.errors import ConfigError
from typha.fanout.convergence import LAGGING_SHOWN, ConvergenceTracker
from typha.fanout.limits import ServerLimits
from typha.fanout.rebalance import Rebalancer
from typha.fanout.server import AgentServer
from typha.gc_pauses import GcPauses
from typha.http import build_http_app
from typha.metrics import TyphaCollector
from typha.readiness import Readiness
from typha.source import SourceFactory, StateSource
from typha.summary import log_summaries
from typha.supervisor import Supervisor
from typha.upstream import UpstreamSource

log = logging.getLogger(__name__)


class TyphaApp:
    """Create inside a running event loop, then `await start()`; `await stop()`
    releases every socket and task."""

    def __init__(
        self,
        config: ServeConfig,
        *,
        version: str = "0+unknown",
        source: SourceFactory | None = None,
    ) -> None:
        self.config = config
        self.encoder = encoder = FrameEncoder(
            max_frame=config.max_frame_bytes, chunk_bytes=config.snapshot_chunk_bytes
        )
        self.cache = SnapshotCache(
            encode_batch=encoder.batch,
            encode_snapshot=encoder.snapshot,
            encode_merged=encoder.merged,
            max_history_batches=config.history_max_batches,
            max_history_bytes=config.history_max_bytes,
            max_history_age=config.history_max_age,
        )
        self.server: AgentServer | None = None
        # Read again when its files change (see check_tls): every new etcd
        # connection takes the options as they are then.
        self.etcd_options = config.etcd_options()
        self._etcd_files = FileWatch(
            config.etcd_ca_file, config.etcd_cert_file, config.etcd_key_file
        )
        self.agent_tls: ReloadingContext | None = None
        self.tls_reloads: Counter[str] = Counter()
        self.tls_reload_failures: Counter[str] = Counter()
        self.syncer: StateSource
        if source is not None:
            self.syncer = source(self.cache, self._on_change, self._on_status)
        elif config.upstream_typha:  # a leaf of a tiered fan-out
            upstream_ssl = None
            if config.upstream_tls_ca_file:
                upstream_ssl = client_context(
                    config.upstream_tls_ca_file,
                    config.upstream_tls_cert_file,
                    config.upstream_tls_key_file,
                )
            self.syncer = UpstreamSource(
                config.upstream_typha,
                self.cache,
                self._on_change,
                self._on_status,
                server_id=config.server_id,
                ssl_context=upstream_ssl,
                server_name=config.upstream_tls_server_name or None,
                prefix=config.prefix,
            )
        else:
            self.syncer = Syncer(
                lambda: EtcdConnection(self.etcd_options),
                config.prefix,
                self.cache,
                self._on_change,
                on_status=self._on_status,
                options=SyncOptions(
                    page_size=config.list_page_size,
                    batch_window=config.batch_window,
                    backfill_revisions=config.history_backfill_revisions,
                    watch_timeout=config.etcd_watch_timeout,
                ),
            )
        self.supervisor = Supervisor()
        self.source_check = SourceCheck(
            lambda: EtcdConnection(self.etcd_options),
            config.prefix,
            self.cache,
            self.syncer,
            config.source_check_interval,
        )
        self.rebalancer: Rebalancer | None = None
        self.gc_pauses = GcPauses()
        self.registry = CollectorRegistry(auto_describe=True)
        self.registry.register(TyphaCollector(self, version))
        for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
            self.registry.register(collector)
        self._runner: web.AppRunner | None = None
        self.agent_port = 0
        self.http_port = 0

    def _on_change(self) -> None:
        if self.server is not None:
            self.server.notify()

    def _on_status(self, status: DatastoreStatus) -> None:
        if self.server is not None:
            self.server.set_datastore_status(status)

    def readiness(self) -> Readiness:
        """Where the replica stands; only SERVING is ready."""
        if self.server is not None and self.server.fanout.draining:
            return Readiness.DRAINING
        if not self.supervisor.healthy:
            return Readiness.DEGRADED
        if not self.syncer.has_state:
            return Readiness.STARTING
        if not self.syncer.following:
            return Readiness.STALE
        return Readiness.SERVING

    def ready(self) -> bool:
        """/readyz: serving a complete state that follows the datastore."""
        return self.readiness() is Readiness.SERVING

    def convergence(self, revision: int | None, all_disconnected: bool = False) -> dict[str, Any]:
        """The server's `/convergence` object for `revision` (None: the
        latest change's, so that etcd revisions which changed nothing here do
        not count agents as behind): how many connected agents have applied
        it.  Lists every disconnected node if `all_disconnected`, else the ten
        furthest behind."""
        rev = self.cache.changed_revision if revision is None else revision
        limit = None if all_disconnected else LAGGING_SHOWN
        server = self.server
        if server is None:
            return ConvergenceTracker().report(rev, 0.0, limit)
        return server.convergence.report(rev, server.now(), limit)

    def convergence_nodes(self, names: list[str]) -> dict[str, Any]:
        """`POST /convergence/nodes`: where each named node stands here."""
        server = self.server
        if server is None:
            return {"nodes": ConvergenceTracker().nodes(names, 0.0)}
        return {"nodes": server.convergence.nodes(names, server.now())}

    def status(self) -> dict[str, Any]:
        """The server's `/status` object."""
        server = self.server
        return {
            "in_sync": self.syncer.following,
            "readiness": self.readiness().value,
            "revision": self.cache.revision,
            "keys": len(self.cache.current),
            "digest": self.cache.digest_hex,
            "connections": len(server.connections) if server else 0,
            "tls_handshakes_pending": len(server.fanout.tls_pending) if server else 0,
            # Seconds the most pushed-back agent's socket has refused writes.
            "max_client_lag_s": round(server.max_lag(), 3) if server else 0.0,
            "server_id": self.config.server_id,
            "etcd_errors": self.syncer.stats.errors,
            "invalid_values": sum(self.syncer.stats.invalid.values()),
            "datastore_status": self.syncer.status.value,
            "tasks_down": sorted(self.supervisor.down),
        }

    async def start(self) -> None:
        """Start the side port, the listener and the supervised tasks; returns once listening
        (the caller must `stop()` later)."""
        cfg = self.config
        ssl_context = None
        if cfg.tls_cert_file:
            ssl_context = server_context(cfg.tls_cert_file, cfg.tls_key_file, cfg.tls_ca_file)
            self.agent_tls = ReloadingContext(
                ssl_context, cfg.tls_cert_file, cfg.tls_key_file, cfg.tls_ca_file
            )
        self.server = AgentServer(
            self.cache,
            server_id=cfg.server_id,
            ready=lambda: self.syncer.has_state,
            ssl_context=ssl_context,
            proto_limits=Limits(
                max_frame=cfg.max_frame_bytes,
                handshake_timeout=cfg.handshake_timeout,
                idle_timeout=cfg.idle_timeout,
                ping_interval=cfg.ping_interval,
                pong_timeout=cfg.pong_timeout,
                max_inbound_frame=cfg.max_inbound_frame_bytes,
                accept_compressed=False,
                inbound_msgs_per_sec=cfg.max_client_msgs_per_sec,
                inbound_burst=cfg.max_client_msg_burst,
                partial_frame_timeout=cfg.handshake_timeout,
            ),
            limits=ServerLimits(
                max_connections=cfg.max_connections,
                applied_reports_per_second=cfg.applied_reports_per_second,
                stream=StreamPolicy(
                    max_buffer_bytes=cfg.max_client_buffer_bytes, max_lag=cfg.max_client_lag
                ),
            ),
            peer_policy=PeerPolicy(cfg.tls_allowed_cns, cfg.tls_allowed_uri_sans),
            pacing=cfg.fanout_pacing,
            writes_per_second=cfg.fanout_writes_per_second,
        )
        self._runner = web.AppRunner(build_http_app(self), access_log=None)
        await self._runner.setup()
        try:
            sock = listening_socket(cfg.http_listen.host, cfg.http_listen.port)
        except OSError as exc:
            raise listen_error("--http-listen", cfg.http_listen, exc) from None
        self.http_port = int(sock.getsockname()[1])
        await web.SockSite(self._runner, sock).start()
        try:
            self.agent_port = await self.server.start(cfg.listen.host, cfg.listen.port)
        except OSError as exc:
            raise listen_error("--listen", cfg.listen, exc) from None
        self.server.set_datastore_status(self.syncer.status)
        self.gc_pauses.install()
        sup = self.supervisor
        sup.start("syncer", self.syncer.run)
        sup.start("fanout-timers", self.server.run_timers)
        sup.start("fanout-housekeeping", self.server.run_housekeeping)
        if cfg.rebalance_interval > 0:
            self.rebalancer = Rebalancer(
                lambda: EtcdConnection(self.etcd_options),
                self.server,
                server_id=cfg.server_id,
                registry_prefix=cfg.registry_prefix,
                interval=cfg.rebalance_interval,
                tolerance=cfg.rebalance_tolerance,
            )
            sup.start("rebalancer", self.rebalancer.run)
        if cfg.source_check_interval > 0:
            sup.start("source-check", self.source_check.run)
        if cfg.tls_reload_interval > 0 and (cfg.tls_cert_file or cfg.etcd_ca_file):
            sup.start("tls-reload", self._watch_tls)
        if cfg.log_summary_interval > 0:
            interval = cfg.log_summary_interval
            sup.start("log-summary", lambda: log_summaries(self, interval))
        upstream = f"upstream typha {cfg.upstream_typha}" if cfg.upstream_typha else ""
        log.info(
            "typha %s: agents on %s:%d, http on %s:%d, %s prefix %s",
            cfg.server_id,
            cfg.listen.host,
            self.agent_port,
            cfg.http_listen.host,
            self.http_port,
            upstream or "etcd " + ",".join(cfg.etcd_endpoints),
            cfg.prefix,
        )

    async def _watch_tls(self) -> None:
        while True:
            await asyncio.sleep(self.config.tls_reload_interval)
            self.check_tls()

    def check_tls(self) -> None:
        """Take in TLS files that changed: the agent port's certificate at
        once (for new handshakes), etcd's for its next connection.  Files
        that do not load are logged and counted; the old ones stay."""
        cfg = self.config
        if self.agent_tls is not None:
            try:
                if self.agent_tls.check():
                    self.tls_reloads["agents"] += 1
                    log.info("agent port: new TLS certificate loaded from %s", cfg.tls_cert_file)
            except RuntimeConfigError as exc:
                self.tls_reload_failures["agents"] += 1
                log.warning("agent port: %s", exc)
        if self._etcd_files.changed():
            try:
                self.etcd_options = cfg.etcd_options()
            except ConfigError as exc:
                self.tls_reload_failures["etcd"] += 1
                log.warning("etcd: new TLS files unreadable, keeping the old ones: %s", exc)
                return
            self._etcd_files.accept()
            self.tls_reloads["etcd"] += 1
            log.info("etcd: new TLS files read; the next etcd connection uses them")

    async def drain(self) -> None:
        """SIGTERM: unready at once, stop accepting, then close the agents'
        connections spread over the shutdown timeout."""
        if self.server is not None:
            await self.server.drain(self.config.shutdown_timeout)

    async def stop(self) -> None:
        """Drain the agents, stop every task and close the ports."""
        self.gc_pauses.uninstall()
        await self.supervisor.stop()
        if self.server is not None:
            await self.server.close()
        if self._runner is not None:
            await self._runner.cleanup()


def listen_error(flag: str, where: HostPort, exc: OSError) -> ConfigError:
    """The one-line error for an address this process cannot listen on."""
    return ConfigError(f"cannot listen on {where} ({flag}): {exc.strerror or exc}")
