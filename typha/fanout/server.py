"""The asyncio fan-out server: a thin adapter over `syncproto.stream`.

Every connection's stream remembers the batch sequence number it has reached;
when the cache grows, one pass over the connections writes each one the frames
it has not had yet (already encoded, shared by all) in a single write.  There
are no per-client update queues: what a connection owes is
`cache.batches_after(seq)`.

Timers: each stream says when it next needs attention (`next_deadline`); the
server keeps those in one heap and sleeps until the earliest, so an idle
connection costs nothing between its pings.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import ssl
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import cast

from runtime.histogram import Histogram
from runtime.ratelimit import RateLimitedLog
from runtime.tls import PeerPolicy, certificate_identities, node_in_identities
from snapshot import HistoryUnavailable, SnapshotCache
from syncproto import (
    CAP_APPLIED,
    CAP_REPLICA,
    AppliedInterval,
    CloseReason,
    Codec,
    DatastoreStatus,
    DatastoreStatusMsg,
    Limits,
)
from syncproto.errors import ConnectionTimeout, ProtocolError
from syncproto.stream import ServerStream, StreamPolicy, StreamStats
from typha.fanout.connlog import ConnectionLog
from typha.fanout.convergence import (
    MIN_REPORT_INTERVAL_MS,
    ConvergenceTracker,
    report_interval_ms,
)

log = logging.getLogger(__name__)


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


class AgentProtocol(asyncio.Protocol):
    """One agent connection: moves bytes between its transport and its
    `ServerStream`, and nothing else."""

    __slots__ = (
        "connected_at",
        "counted",
        "deadline",
        "identities",
        "peer",
        "server",
        "stream",
        "transport",
    )

    def __init__(self, server: AgentServer) -> None:
        self.server = server
        self.stream: ServerStream | None = None
        self.transport: asyncio.Transport | None = None
        self.peer = "?"
        self.deadline: float | None = None  # the earliest entry of ours in the timer heap
        self.connected_at = server.now()
        # The client certificate's CNs and URI SANs (None: no TLS), which
        # the node name in the hello must be among for its reports to count.
        self.identities: frozenset[str] | None = None
        # Decided once, at the hello: whether its APPLIED reports count.
        self.counted = False

    # -- asyncio callbacks ---------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses; same interface.
        # On a TLS port this runs once the handshake is done.
        """The transport is ready (after TLS, if any): start the stream."""
        self.transport = cast(asyncio.Transport, transport)
        server = self.server
        server.handshake_done(self)
        peer = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        self.stream = server.new_stream()
        self.transport.set_write_buffer_limits(high=server.limits.write_high_water)
        ssl_object = transport.get_extra_info("ssl_object")
        if ssl_object is not None:
            cert = ssl_object.getpeercert()
            self.identities = certificate_identities(cert)
            refusal = server.peer_policy.check(cert)
            if refusal is not None:
                server.stats.protocol_errors["tls_forbidden"] += 1
                server.rl.log(logging.WARNING, "tls", "refusing %s: %s", self.peer, refusal)
                self.close(CloseReason.FORBIDDEN)
                return
        if server.register(self):
            server.schedule(self)

    def data_received(self, data: bytes) -> None:
        """Bytes from the agent: feed the stream, answer the hello."""
        stream = self.stream
        if stream is None:
            return
        server = self.server
        core = stream.core
        pongs = core.rtt_samples
        try:
            hello = stream.receive_data(data, server.now())
        except ProtocolError as exc:
            server.protocol_error(self, exc)
            self.flush()
            return
        if core.rtt_samples != pongs and core.last_rtt is not None:
            server.stats.ping_rtt.observe(core.last_rtt)
        applied = stream.take_applied()
        if applied is not None and stream.streaming:
            server.applied(self, applied)
        if hello:
            try:
                server.hello(self)
            except Exception:
                server.internal_error(self, "hello")
                return
            self.flush()
        else:
            # Replies only (PONGs): what the history holds for this client
            # waits for the next fan-out pass, where clients at the same
            # position share one buffer.  Writing it here, on every report
            # or pong, would cost a join and a write per client.
            self.flush_replies()
        server.schedule(self)

    def connection_lost(self, exc: Exception | None) -> None:
        """The transport is gone: count why."""
        reason = CloseReason.PEER_CLOSED
        if self.stream is not None and self.stream.core.close_reason is not None:
            reason = self.stream.core.close_reason
        self.server.unregister(self, reason)

    def pause_writing(self) -> None:
        # Stop reading too: a peer that sends but never reads would otherwise
        # have us queue replies (PONGs) without bound.
        """The transport's buffer is full: pause the stream and reading."""
        if self.stream is not None:
            self.stream.pause_writing(self.server.now())
            self.server.schedule(self)
        if self.transport is not None and not self.transport.is_closing():
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        """The transport drained: resume reading and writing."""
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()
        if self.stream is not None:
            self.stream.resume_writing()
            self.flush()

    # -- driven by the server -----------------------------------------------

    def flush(self) -> None:
        """Write everything the stream has for us now; act on its verdicts."""
        stream = self.stream
        transport = self.transport
        if stream is None or transport is None:
            return
        if stream.verdict is not None:
            self.abort(stream.verdict)
            return
        if transport.is_closing():
            return
        stats = self.server.stats
        snapshot = stream.sending_snapshot
        while (out := stream.next_output()) is not None:
            stats.bytes_sent += len(out)
            stats.writes += 1
            transport.write(out)
            # Replies (PONGs, GOODBYEs) count against the same limit.
            if stream.over_buffer(transport.get_write_buffer_size()):
                break
        if snapshot and not stream.sending_snapshot and stream.snapshot_started is not None:
            stats.snapshot_send.observe(self.server.now() - stream.snapshot_started)
            stream.snapshot_started = None
        if stream.verdict is not None:
            self.abort(stream.verdict)
        elif stream.closed:
            transport.close()

    def flush_replies(self) -> None:
        """Write the stream's replies and control frames only; act on its
        verdicts."""
        stream = self.stream
        transport = self.transport
        if stream is None or transport is None:
            return
        if stream.verdict is None and not transport.is_closing():
            out = stream.next_reply()
            if out is not None:
                stats = self.server.stats
                stats.bytes_sent += len(out)
                stats.writes += 1
                transport.write(out)
                stream.over_buffer(transport.get_write_buffer_size())
        if stream.verdict is not None:
            self.abort(stream.verdict)
        elif stream.closed and not transport.is_closing():
            transport.close()

    def catch_up(self, merged: dict[int, bytes], target: int) -> None:
        """The fan-out fast path: one write of what this client lacks."""
        stream = self.stream
        transport = self.transport
        if stream is None or transport is None:
            return
        out = stream.catch_up(merged, target)
        if out is None:
            if stream.verdict is not None:
                self.abort(stream.verdict)
            return
        if transport.is_closing():
            return
        stats = self.server.stats
        stats.bytes_sent += len(out)
        stats.writes += 1
        transport.write(out)
        if stream.over_buffer(transport.get_write_buffer_size()):
            self.abort(CloseReason.SLOW_CLIENT)

    def handle_timer(self, now: float) -> None:
        """The stream's deadline came: run it, then write what it queued."""
        stream = self.stream
        if stream is None:
            return
        try:
            stream.handle_timer(now)
        except ConnectionTimeout as exc:
            self.server.rl.log(logging.INFO, exc.code, "closing %s: %s", self.peer, exc.code)
        if stream.awaiting_start and stream.verdict is None:
            self.server.hello(self)
        self.flush()

    def send_status(self, frame: bytes) -> None:
        """Queue a datastore-status frame if this client takes them."""
        if self.stream is not None and self.stream.send_status(frame):
            self.flush()

    def close(self, reason: CloseReason) -> None:
        """Say GOODBYE and close once it is written."""
        if self.stream is not None:
            self.stream.close(reason)
        self.flush()

    def abort(self, reason: CloseReason) -> None:
        """Drop the connection now, discarding what is buffered: the peer is
        not reading, so waiting to flush would hold its memory indefinitely."""
        log_level = logging.WARNING if reason is CloseReason.SLOW_CLIENT else logging.INFO
        self.server.rl.log(log_level, f"abort:{reason}", "dropping %s: %s", self.peer, reason)
        if self.stream is not None:
            self.stream.abort(reason)
        if self.transport is not None:
            self.transport.abort()

    @property
    def node(self) -> str:
        """The node its hello named ("?" before the hello)."""
        stream = self.stream
        hello = stream.core.hello if stream is not None else None
        return hello.node if hello is not None else "?"

    @property
    def paused_since(self) -> float | None:
        """Since when the transport has pushed back, or None."""
        return self.stream.paused_since if self.stream is not None else None

    @property
    def streaming(self) -> bool:
        """The agent is being streamed to (its hello was answered)."""
        return self.stream is not None and self.stream.streaming


class AgentServer:
    """Owns the listening socket, every AgentProtocol and the timer heap.
    `start()` it, run `run_timers()` and `run_housekeeping()` (supervised)
    alongside, call `notify()` whenever the cache grows, `close()` at the end."""

    def __init__(
        self,
        cache: SnapshotCache,
        *,
        server_id: str,
        ready: Callable[[], bool],
        proto_limits: Limits = Limits(),
        limits: ServerLimits = ServerLimits(),
        peer_policy: PeerPolicy = PeerPolicy(),
        tick_interval: float = 1.0,
        ssl_context: ssl.SSLContext | None = None,
        pacing: float = 1.0,
    ) -> None:
        self.cache = cache
        self.ssl_context = ssl_context
        self.server_id = server_id
        self.proto_limits = proto_limits
        self.limits = limits
        self.peer_policy = peer_policy
        self._ready = ready
        self._tick_interval = tick_interval
        self.connections: set[AgentProtocol] = set()
        self._waiting: set[AgentProtocol] = set()
        self._fanout_scheduled = False
        # Load-adaptive batching: the next pass starts no sooner than the
        # last one took, after it ended.  An idle server passes at once; a
        # busy one (1,000 agents: ~12 ms a pass) lets what arrives during
        # and after a pass gather into the next, so each agent gets one
        # write per pass whatever the update rate, and fan-out never takes
        # more than about half the loop.
        self._next_pass_at = 0.0
        self.pacing = pacing
        self._fanned_seq = cache.seq  # batches up to here are in fanout_latency
        self._server: asyncio.AbstractServer | None = None
        self._loop = asyncio.get_running_loop()
        self.draining = False
        self.stats = ServerStats()
        self.convergence = ConvergenceTracker()
        self.rl = RateLimitedLog(log)
        self.connlog = ConnectionLog(log, self.now)
        # (deadline, tie-breaker, connection); an entry is stale when the
        # connection's own `deadline` no longer equals it.
        self._timers: list[tuple[float, int, AgentProtocol]] = []
        self._timer_ids = itertools.count()
        self._timer_wakeup = asyncio.Event()
        # TLS connections accepted but not through their handshake yet, with
        # when: they count against the connection limit.  The listener's
        # handshake timeout ends each one; entries past it are dropped here.
        self.tls_pending: dict[AgentProtocol, float] = {}
        self.datastore_status = DatastoreStatus.WAITING
        self._codec = Codec(max_frame=proto_limits.max_frame)
        self.status_frame = self._codec.encode(DatastoreStatusMsg(self.datastore_status))
        # The APPLIED interval agents were last told (hello or broadcast).
        self._report_interval_ms = MIN_REPORT_INTERVAL_MS

    def now(self) -> float:
        """The event loop's clock: the `now` every stream is driven with."""
        return self._loop.time()

    def new_stream(self) -> ServerStream:
        """A stream for a connection made now."""
        return ServerStream(
            self.cache,
            server_id=self.server_id,
            now=self.now(),
            limits=self.proto_limits,
            policy=self.limits.stream,
            stats=self.stats,
        )

    async def start(self, host: str, port: int) -> int:
        """Listen; returns the bound port (useful when `port` is 0)."""
        tls = self.ssl_context
        self._server = await self._loop.create_server(
            self._new_protocol,
            host,
            port,
            ssl=tls,
            ssl_handshake_timeout=self.proto_limits.handshake_timeout if tls else None,
            backlog=4096,
            reuse_address=True,
        )
        sockets = self._server.sockets
        return int(sockets[0].getsockname()[1])

    def _new_protocol(self) -> AgentProtocol:
        proto = AgentProtocol(self)
        if self.ssl_context is not None:
            self.tls_pending[proto] = self.now()
        return proto

    def handshake_done(self, conn: AgentProtocol) -> None:
        """The connection got through TLS (or had none): no longer pending."""
        self.tls_pending.pop(conn, None)

    def _expire_handshakes(self, now: float) -> None:
        # The listener aborted these at the handshake timeout (or they failed
        # earlier); asyncio does not tell the protocol, so age them out.
        limit = self.proto_limits.handshake_timeout + 1.0
        expired = [c for c, t in self.tls_pending.items() if now - t > limit]
        for conn in expired:
            del self.tls_pending[conn]
        self.stats.tls_handshake_failures += len(expired)

    def set_datastore_status(self, status: DatastoreStatus) -> None:
        """Tell every streaming client that advertised the capability."""
        if status is self.datastore_status:
            return
        self.datastore_status = status
        self.status_frame = Codec(max_frame=self.proto_limits.max_frame).encode(
            DatastoreStatusMsg(status)
        )
        for conn in tuple(self.connections):
            conn.send_status(self.status_frame)

    def max_lag(self) -> float:
        """Seconds the longest-blocked client's transport has pushed back."""
        now = self.now()
        return max(
            (now - since for c in self.connections if (since := c.paused_since) is not None),
            default=0.0,
        )

    async def drain(self, spread: float) -> None:
        """Stop accepting, then close every connection with GOODBYE(shutdown),
        spread evenly over `spread` seconds so agents move to other replicas
        gradually instead of all at once.  The first goes at once and no
        wait follows the last: the drain ends as soon as every agent has
        gone, never later than `spread` plus a second for the GOODBYEs."""
        self.draining = True
        if self._server is not None:
            self._server.close()
        conns = list(self.connections)
        interval = spread / len(conns) if conns else 0.0
        started = self.now()
        log.info("draining %d connections over at most %.1fs", len(conns), spread)
        for i, conn in enumerate(conns):
            if not any(c in self.connections for c in conns[i:]):
                break  # the rest left by themselves
            if i and interval:
                await asyncio.sleep(interval)
            if conn in self.connections:
                conn.close(CloseReason.SHUTDOWN)
        # Give the GOODBYEs a moment to reach peers that are reading.
        for _ in range(50):
            if not self.connections:
                break
            await asyncio.sleep(0.02)
        left = len(self.connections)
        for conn in list(self.connections):
            conn.abort(CloseReason.SHUTDOWN)
        log.info(
            "drained %d connections in %.2fs (%d cut off)", len(conns), self.now() - started, left
        )

    def shed(self, n: int, reason: CloseReason) -> int:
        """Close `n` streaming connections with GOODBYE(reason); returns how many."""
        victims = [c for c in self.connections if c.streaming][:n]
        for conn in victims:
            conn.close(reason)
        return len(victims)

    async def close(self) -> None:
        """Close every connection and the listener."""
        await self.drain(0.0)
        if self._server is not None:
            await self._server.wait_closed()

    # -- connection bookkeeping ----------------------------------------------

    def register(self, conn: AgentProtocol) -> bool:
        """Count the connection, or refuse it (and say False)."""
        if self.draining:
            conn.close(CloseReason.SHUTDOWN)
            return False
        if len(self.connections) + len(self.tls_pending) >= self.limits.max_connections:
            self.stats.rejected_limit += 1
            self.rl.log(
                logging.WARNING,
                "limit",
                "connection limit %d reached; refusing %s",
                self.limits.max_connections,
                conn.peer,
            )
            conn.close(CloseReason.CONNECTION_LIMIT)
            return False
        self.connections.add(conn)
        self.stats.accepted += 1
        self._retune_reports()
        return True

    @property
    def report_interval_ms(self) -> int:
        """The APPLIED interval agents were last told, in milliseconds."""
        return self._report_interval_ms

    def _retune_reports(self) -> None:
        """Keep the agents' APPLIED reports within the budget as the agent
        count changes: once the interval the count calls for is half again
        longer or shorter than the one announced, tell every reporting agent
        (one frame, encoded once).  Agents then send at most 1.5 times the
        budget, and the announcements are O(log agents) waves, not one per
        connection."""
        budget = self.limits.applied_reports_per_second
        if budget <= 0:
            return
        want = report_interval_ms(len(self.connections), budget)
        have = self._report_interval_ms
        if 2 * want < 3 * have and 2 * have < 3 * want:
            return
        self._report_interval_ms = want
        self.stats.applied_interval_changes += 1
        frame = self._codec.encode(AppliedInterval(want))
        for conn in self.connections:
            stream = conn.stream
            if stream is not None and stream.streaming and stream.core.send_applied_interval(frame):
                conn.flush_replies()

    def unregister(self, conn: AgentProtocol, reason: CloseReason) -> None:
        """The transport is gone."""
        if conn in self.connections:
            self.connections.discard(conn)
            self._retune_reports()
            self._waiting.discard(conn)
            self.stats.closed[reason] += 1
            stream = conn.stream
            if stream is not None and stream.streaming and self._is_agent(conn):
                self.convergence.disconnected(conn.node, self.now())
            sent = stream.core.bytes_sent if stream is not None else 0
            self.connlog.info(
                "agent %s from %s closed: %s after %.1fs, %d bytes sent",
                conn.node,
                conn.peer,
                reason,
                self.now() - conn.connected_at,
                sent,
            )
        conn.deadline = None

    def hello(self, conn: AgentProtocol) -> None:
        """Answer a connection's hello now, or remember to ask again."""
        stream = conn.stream
        if stream is None:
            return
        was_waiting = stream.awaiting_start
        stream.applied_interval_ms = self._report_interval_ms
        if stream.start(self.now(), ready=self._ready(), status_frame=self.status_frame):
            self._waiting.discard(conn)
            if was_waiting and stream.streaming:
                self._log_start(conn, stream)
                if self._is_agent(conn):
                    conn.counted = CAP_APPLIED in stream.core.caps and self._bound(conn)
                    self.convergence.connected(conn.node, reports=conn.counted)
            conn.flush()
        else:
            self._waiting.add(conn)  # asked again after the next batch or deadline
        self.schedule(conn)

    def _log_start(self, conn: AgentProtocol, stream: ServerStream) -> None:
        hello = stream.core.hello
        offered = hello.revision if hello is not None else 0
        if stream.snapshot_started is not None:
            how = f"snapshot at revision {self.cache.revision}"
            if offered:
                how += f" (it offered revision {offered})"
        else:
            how = f"resumed from revision {offered}"
        self.connlog.info("agent %s from %s connected: %s", conn.node, conn.peer, how)

    def protocol_error(self, conn: AgentProtocol, exc: ProtocolError) -> None:
        """Count and log (rate limited) what the peer did; its GOODBYE is queued."""
        self.stats.protocol_errors[exc.code.value] += 1
        self.rl.log(
            logging.WARNING, f"proto:{exc.code}", "protocol error from %s: %s", conn.peer, exc
        )

    def internal_error(self, conn: AgentProtocol, where: str) -> None:
        """A bug of ours: it costs that connection, never the server."""
        self.stats.internal_errors += 1
        log.exception("internal error in %s for %s; dropping that connection", where, conn.peer)
        conn.abort(CloseReason.INTERNAL_ERROR)

    # -- fan-out -------------------------------------------------------------

    @staticmethod
    def _is_agent(conn: AgentProtocol) -> bool:
        """A node agent, not a leaf replica syncing from us (no dataplane)."""
        return conn.stream is not None and CAP_REPLICA not in conn.stream.core.caps

    def _bound(self, conn: AgentProtocol) -> bool:
        """Whether `conn` may speak for its node: without TLS anyone may
        (nothing says otherwise); with TLS only a certificate naming the
        node (CN, or the last path segment of a URI SAN).  Counted and
        logged when it may not."""
        if conn.identities is None or node_in_identities(conn.node, conn.identities):
            return True
        self.stats.applied_unverified += 1
        self.rl.log(
            logging.WARNING,
            "unbound",
            "agent %s from %s: its certificate does not name that node; its APPLIED reports"
            " are not counted",
            conn.node,
            conn.peer,
        )
        return False

    def applied(self, conn: AgentProtocol, revision: int) -> None:
        """`conn`'s agent reports its dataplane applied `revision`."""
        if not conn.counted:
            return
        waited = self.convergence.applied(conn.node, revision, self.now())
        if waited is not None:
            self.stats.applied_latency.observe(waited)

    def notify(self) -> None:
        """The cache changed.  Batches arriving before the next pass are
        coalesced into it (and so into one write per client); the next pass
        waits `pacing` times the last pass's duration after it ended."""
        self.convergence.visible(self.cache.revision, self.now())
        if not self._fanout_scheduled:
            self._fanout_scheduled = True
            delay = self._next_pass_at - self._loop.time()
            if delay > 0:
                self.stats.paced_passes += 1
                self._loop.call_later(delay, self._fanout)
            else:
                self._loop.call_soon(self._fanout)

    def _fanout(self) -> None:
        # perf_counter, not loop.time(): uvloop's clock is cached per loop
        # iteration and would not see the pass's own duration.
        started = time.perf_counter()
        try:
            self._fanout_pass()
        finally:
            took = time.perf_counter() - started
            # loop.time() is this iteration's start, about when the pass began.
            if self.pacing > 0:
                self._next_pass_at = self._loop.time() + took * (1.0 + self.pacing)

    def _fanout_pass(self) -> None:
        self._fanout_scheduled = False
        self.stats.fanouts += 1
        self._retry_waiting()
        merged: dict[int, bytes] = {}
        target = self.cache.seq
        for conn in tuple(self.connections):
            try:
                conn.catch_up(merged, target)
            except Exception:
                # A bug must cost one connection, not the pass for everyone.
                self.internal_error(conn, "fan-out")
        self._observe_fanout(target)

    def _observe_fanout(self, target: int) -> None:
        """One latency sample per batch this pass delivered (not per agent),
        from when its first datastore event was received."""
        start, self._fanned_seq = self._fanned_seq, target
        if target <= start:
            return
        try:
            batches = self.cache.batches_after(start)
        except HistoryUnavailable:
            return  # trimmed or reloaded meanwhile: nothing to attribute
        now = self.now()
        for batch in batches:
            if batch.seq <= target and batch.updates and batch.created:
                self.stats.fanout_latency.observe(max(now - batch.created, 0.0))

    def _retry_waiting(self) -> None:
        if self._waiting and self._ready():
            for conn in tuple(self._waiting):
                self.hello(conn)

    # -- time ------------------------------------------------------------------

    def schedule(self, conn: AgentProtocol) -> None:
        """Make sure the timer heap wakes `conn` by its stream's deadline."""
        stream = conn.stream
        if stream is None or conn not in self.connections:
            return
        deadline = stream.next_deadline()
        if deadline is None or (conn.deadline is not None and conn.deadline <= deadline):
            return  # an entry at or before the deadline is already queued
        conn.deadline = deadline
        heapq.heappush(self._timers, (deadline, next(self._timer_ids), conn))
        if self._timers[0][2] is conn:
            self._timer_wakeup.set()

    async def run_timers(self) -> None:
        """Run each connection's timer when its deadline comes.  Runs until
        cancelled."""
        while True:
            self._timer_wakeup.clear()
            self.run_due_timers(self.now())
            timers = self._timers
            delay = timers[0][0] - self.now() if timers else self._tick_interval
            try:
                async with asyncio.timeout(max(delay, 0.001)):
                    await self._timer_wakeup.wait()
            except TimeoutError:
                pass

    def run_due_timers(self, now: float) -> None:
        """Handle every connection whose deadline is at or before `now`, each
        once: one whose next deadline is still due waits for the next pass,
        after the event loop has had its turn (a timer that never acts must
        cost a wake-up a millisecond, not the whole server)."""
        timers = self._timers
        due: list[AgentProtocol] = []
        while timers and timers[0][0] <= now:
            deadline, _, conn = heapq.heappop(timers)
            if conn.deadline != deadline:
                continue  # superseded by an earlier entry
            conn.deadline = None
            due.append(conn)
        for conn in due:
            if conn not in self.connections:
                continue
            self.stats.timer_runs += 1
            try:
                conn.handle_timer(now)
            except Exception:
                self.internal_error(conn, "timer")
                continue
            self.schedule(conn)

    async def run_housekeeping(self) -> None:
        """History trimming, TLS handshake expiry, waiting resumes: once per
        `tick_interval`.  Runs until cancelled."""
        while True:
            await asyncio.sleep(self._tick_interval)
            now = self.now()
            self.cache.trim(now)
            self._expire_handshakes(now)
            self._retry_waiting()
