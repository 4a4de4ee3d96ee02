"""The asyncio fan-out server: a thin adapter over the sans-I/O core.

Every connection remembers the batch sequence number it has reached; when the
cache grows, one pass over the connections writes each one the frames it has
not had yet (already encoded, shared by all) in a single write.  There are no
per-client update queues: what a connection owes is `cache.batches_after(seq)`.

A new client gets the snapshot encoding shared by everyone who connects while
it is current, written chunk by chunk as the socket drains (flow control), so
a reconnect storm costs one encoding and bounded memory per connection.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import cast

from snapshot import HistoryUnavailable, SnapshotCache
from snapshot.digest import format_digest, parse_digest
from typha.errors import ConnectionTimeout, ProtocolError
from typha.protocol import (
    CAP_RESUME,
    CAP_ZSTD,
    ClientHello,
    Codec,
    DatastoreStatus,
    DatastoreStatusMsg,
    Limits,
    Progress,
    ServerConnection,
    State,
)
from typha.ratelimit import RateLimitedLog
from typha.tls import PeerPolicy

log = logging.getLogger(__name__)


@dataclass(slots=True)
class ServerStats:
    accepted: int = 0
    rejected_limit: int = 0
    snapshots_sent: int = 0
    snapshot_bytes_sent: int = 0
    resumes: int = 0
    resume_refused: int = 0
    batches_sent: int = 0
    bytes_sent: int = 0
    fanouts: int = 0
    tls_handshake_failures: int = 0
    internal_errors: int = 0
    closed: Counter[str] = field(default_factory=Counter)
    protocol_errors: Counter[str] = field(default_factory=Counter)


@dataclass(frozen=True, slots=True)
class ServerLimits:
    max_connections: int = 20_000
    max_buffer_bytes: int = 8 * 1024 * 1024
    max_lag: float = 30.0
    write_high_water: int = 256 * 1024
    resume_wait: float = 5.0


class AgentProtocol(asyncio.Protocol):
    """One agent connection."""

    def __init__(self, server: AgentServer) -> None:
        self.server = server
        self.core: ServerConnection | None = None
        self.transport: asyncio.Transport | None = None
        self.seq = -1  # batch sequence number reached; -1 until streaming
        self.peer = "?"
        self.paused_since: float | None = None
        self.wait_until = 0.0  # while waiting for our cache to reach the client's revision
        self._snapshot: list[bytes] | None = None
        self._snapshot_pos = 0

    # -- asyncio callbacks ---------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are not asyncio.Transport subclasses; same interface.
        # On a TLS port this runs once the handshake is done.
        self.transport = cast(asyncio.Transport, transport)
        server = self.server
        server.handshake_done(self)
        peer = transport.get_extra_info("peername")
        self.peer = f"{peer[0]}:{peer[1]}" if isinstance(peer, tuple) else str(peer)
        self.core = ServerConnection(
            server_id=server.server_id, now=server.now(), limits=server.proto_limits
        )
        self._established()

    def _established(self) -> None:
        """A transport we can speak the protocol on (plain, or after TLS)."""
        server = self.server
        transport = self.transport
        assert transport is not None
        transport.set_write_buffer_limits(high=server.limits.write_high_water)
        ssl_object = transport.get_extra_info("ssl_object")
        if ssl_object is not None:
            refusal = server.peer_policy.check(ssl_object.getpeercert())
            if refusal is not None:
                server.stats.protocol_errors["tls_forbidden"] += 1
                server.rl.log(logging.WARNING, "tls", "refusing %s: %s", self.peer, refusal)
                self.close("forbidden")
                return
        server.register(self)

    def data_received(self, data: bytes) -> None:
        core = self.core
        if core is None:
            return
        try:
            msgs = core.receive_data(data, self.server.now())
        except ProtocolError as exc:
            self.server.protocol_error(self, exc)
            self.flush()
            return
        try:
            for msg in msgs:
                if isinstance(msg, ClientHello):
                    self.server.hello(self)
        except Exception:
            self.server.internal_error(self, "hello")
            return
        self.flush()

    def connection_lost(self, exc: Exception | None) -> None:
        reason = "peer_closed"
        if self.core is not None and self.core.close_reason:
            reason = self.core.close_reason.split(":")[0]
        self._snapshot = None
        self.server.unregister(self, reason)

    def pause_writing(self) -> None:
        # Stop reading too: a peer that sends but never reads would otherwise
        # have us queue replies (PONGs) without bound.
        self.paused_since = self.server.now()
        if self.transport is not None and not self.transport.is_closing():
            self.transport.pause_reading()

    def resume_writing(self) -> None:
        self.paused_since = None
        if self.transport is not None and not self.transport.is_closing():
            self.transport.resume_reading()
        if self._snapshot is not None:
            self._pump_snapshot()
        else:
            self.catch_up({})

    # -- driven by the server -----------------------------------------------

    def start_stream(self) -> bool:
        """Answer the hello: resume if our history covers the client's
        revision, else the shared snapshot.  Returns False to be asked again
        later (the client is ahead of us: wait a little for our cache)."""
        core = self.core
        if core is None or core.state is not State.HANDSHAKE or core.hello is None:
            return True
        server = self.server
        cache = server.cache
        hello = core.hello
        if CAP_RESUME in core.caps and hello.revision > 0:
            try:
                digest: int | None = parse_digest(hello.digest) if hello.digest else None
            except ValueError:
                digest = None
            if digest == cache.current.digest and 0 < hello.revision <= cache.revision:
                # Same state as ours, whatever lies between the revisions
                # (this replica may have no history reaching back that far):
                # a progress message brings the client's revision forward.
                self._accept("resume")
                server.stats.resumes += 1
                self.seq = cache.seq
                if hello.revision < cache.revision:
                    core.send_frames(
                        (
                            core.codec.encode(
                                Progress(
                                    hello.revision,
                                    cache.revision,
                                    format_digest(cache.current.digest),
                                )
                            ),
                        )
                    )
                self.flush()
                return True
            seq = cache.resume_seq(hello.revision, digest)
            if seq is None and hello.revision > cache.revision:
                if self.wait_until == 0.0:
                    self.wait_until = server.now() + server.limits.resume_wait
                if server.now() < self.wait_until:
                    return False
            if seq is not None:
                self._accept("resume")
                server.stats.resumes += 1
                self.seq = seq
                self.catch_up({})
                self.flush()  # the hello, if there was nothing to catch up
                return True
            server.stats.resume_refused += 1
        self._accept("snapshot")
        snap, frames = cache.snapshot_frames(compressed=CAP_ZSTD in core.caps)
        self.seq = snap.seq
        self._snapshot = frames
        self._snapshot_pos = 0
        server.stats.snapshots_sent += 1
        self._pump_snapshot()
        return True

    def _accept(self, sync: str) -> None:
        core = self.core
        assert core is not None
        core.accept(sync=sync)
        if core.wants_datastore_status:
            core.send_frames((self.server.status_frame,))

    def send_status(self, frame: bytes) -> None:
        """Queue a datastore-status frame if this client takes them."""
        core = self.core
        if core is not None and core.state is State.OPEN and core.wants_datastore_status:
            core.send_frames((frame,))
            self.flush()

    def _pump_snapshot(self) -> None:
        """Write snapshot frames until the socket pushes back or all are sent."""
        frames = self._snapshot
        core = self.core
        if frames is None or core is None or core.state is not State.OPEN:
            return
        stats = self.server.stats
        while self.paused_since is None and self._snapshot_pos < len(frames):
            frame = frames[self._snapshot_pos]
            self._snapshot_pos += 1
            stats.snapshot_bytes_sent += len(frame)
            core.send_frames((frame,))
            self.flush()
        if self._snapshot_pos >= len(frames):
            self._snapshot = None
            self.catch_up({})

    def catch_up(self, merged: dict[int, bytes], target: int = -1) -> None:
        """Write every batch after `seq` in one write.  `merged` memoises, for
        one fan-out pass, the joined frames per starting seq, so clients at
        the same position share one buffer instead of each joining a copy.
        This runs once per client per batch: keep it lean."""
        seq = self.seq
        if seq < 0 or self._snapshot is not None:
            return  # not streaming yet, or the rest follows the snapshot
        server = self.server
        cache = server.cache
        if target < 0:
            target = cache.seq
        if seq == target:
            return
        core = self.core
        transport = self.transport
        if core is None or transport is None or core.state is not State.OPEN:
            return
        data = merged.get(seq)
        if data is None:
            try:
                batches = cache.batches_after(seq)
            except HistoryUnavailable:
                self.abort("too_far_behind")
                return
            data = batches[0].frame if len(batches) == 1 else b"".join(b.frame for b in batches)
            merged[seq] = data
        self.seq = target
        stats = server.stats
        stats.batches_sent += target - seq
        if transport.is_closing():
            return
        out = core.send_frame_now(data)
        stats.bytes_sent += len(out)
        transport.write(out)
        if transport.get_write_buffer_size() > server.limits.max_buffer_bytes:
            self.abort("slow_client")

    def tick(self, now: float) -> None:
        core = self.core
        if core is None:
            return
        if self.paused_since is not None and now - self.paused_since > self.server.limits.max_lag:
            self.abort("slow_client")
            return
        try:
            core.tick(now)
        except ConnectionTimeout as exc:
            self.server.rl.log(logging.INFO, exc.code, "closing %s: %s", self.peer, exc.code)
        self.flush()

    def close(self, reason: str) -> None:
        """Say GOODBYE and close once it is written."""
        if self.core is not None:
            self.core.close(reason)
        self.flush()

    def abort(self, reason: str) -> None:
        """Drop the connection now, discarding what is buffered: the peer is
        not reading, so waiting to flush would hold its memory indefinitely."""
        log_level = logging.WARNING if reason == "slow_client" else logging.INFO
        self.server.rl.log(log_level, f"abort:{reason}", "dropping %s: %s", self.peer, reason)
        if self.core is not None:
            self.core.close(reason)
            self.core.data_to_send()
        self._snapshot = None
        if self.transport is not None:
            self.transport.abort()

    def flush(self) -> None:
        core = self.core
        transport = self.transport
        if core is None or transport is None or transport.is_closing():
            return
        data = core.data_to_send()
        if data:
            server = self.server
            server.stats.bytes_sent += sum(len(d) for d in data)
            transport.write(data[0] if len(data) == 1 else b"".join(data))
            # Replies to the peer (PONGs, GOODBYEs) count against the same
            # buffer limit as the stream.
            if transport.get_write_buffer_size() > server.limits.max_buffer_bytes:
                self.abort("slow_client")
                return
        if core.state is State.CLOSED:
            transport.close()


class AgentServer:
    """Owns the listening socket and every AgentProtocol."""

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
        self._server: asyncio.AbstractServer | None = None
        self._loop = asyncio.get_running_loop()
        self.draining = False
        self.stats = ServerStats()
        self.rl = RateLimitedLog(log)
        # TLS connections accepted but not through their handshake yet, with
        # when: they count against the connection limit.  The listener's
        # handshake timeout ends each one; entries past it are dropped here.
        self.tls_pending: dict[AgentProtocol, float] = {}
        self.datastore_status = DatastoreStatus.WAITING
        self.status_frame = Codec(max_frame=proto_limits.max_frame).encode(
            DatastoreStatusMsg(self.datastore_status)
        )

    def now(self) -> float:
        return self._loop.time()

    async def start(self, host: str, port: int) -> int:
        """Listen; returns the bound port (useful when `port` is 0).  The
        caller must run `run_ticker()` (supervised) alongside."""
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
        now = self.now()
        return max((now - c.paused_since for c in self.connections if c.paused_since), default=0.0)

    async def drain(self, spread: float) -> None:
        """Stop accepting, then close every connection with GOODBYE(shutdown),
        spread evenly over `spread` seconds so agents move to other replicas
        gradually instead of all at once."""
        self.draining = True
        if self._server is not None:
            self._server.close()
        conns = list(self.connections)
        interval = spread / len(conns) if conns else 0.0
        log.info("draining %d connections over %.1fs", len(conns), spread)
        for conn in conns:
            conn.close("shutdown")
            if interval:
                await asyncio.sleep(interval)
        # Give the GOODBYEs a moment to reach peers that are reading.
        for _ in range(50):
            if not self.connections:
                break
            await asyncio.sleep(0.02)
        for conn in list(self.connections):
            conn.abort("shutdown")

    def shed(self, n: int, reason: str) -> int:
        """Close `n` streaming connections with GOODBYE(reason); returns how many."""
        victims = [c for c in self.connections if c.seq >= 0][:n]
        for conn in victims:
            conn.close(reason)
        return len(victims)

    async def close(self) -> None:
        await self.drain(0.0)
        if self._server is not None:
            await self._server.wait_closed()

    # -- connection bookkeeping ----------------------------------------------

    def register(self, conn: AgentProtocol) -> bool:
        """Count the connection, or refuse it (and say False)."""
        if self.draining:
            conn.close("shutdown")
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
            conn.close("connection_limit")
            return False
        self.connections.add(conn)
        self.stats.accepted += 1
        return True

    def unregister(self, conn: AgentProtocol, reason: str) -> None:
        if conn in self.connections:
            self.connections.discard(conn)
            self._waiting.discard(conn)
            self.stats.closed[reason] += 1

    def hello(self, conn: AgentProtocol) -> None:
        if not (self._ready() and conn.start_stream()):
            self._waiting.add(conn)  # asked again after the next batch or tick

    def protocol_error(self, conn: AgentProtocol, exc: ProtocolError) -> None:
        self.stats.protocol_errors[exc.code] += 1
        self.rl.log(
            logging.WARNING, f"proto:{exc.code}", "protocol error from %s: %s", conn.peer, exc
        )

    # -- fan-out -------------------------------------------------------------

    def notify(self) -> None:
        """The cache changed.  Batches arriving in the same loop iteration are
        coalesced into one pass (and so one write per client)."""
        if not self._fanout_scheduled:
            self._fanout_scheduled = True
            self._loop.call_soon(self._fanout)

    def _fanout(self) -> None:
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

    def _retry_waiting(self) -> None:
        if self._waiting and self._ready():
            waiting, self._waiting = self._waiting, set()
            for conn in waiting:
                if not conn.start_stream():
                    self._waiting.add(conn)

    def internal_error(self, conn: AgentProtocol, where: str) -> None:
        self.stats.internal_errors += 1
        log.exception("internal error in %s for %s; dropping that connection", where, conn.peer)
        conn.abort("internal_error")

    async def run_ticker(self) -> None:
        """Pings, timeouts, history trimming, waiting resumes: once per
        `tick_interval`.  Runs until cancelled."""
        while True:
            await asyncio.sleep(self._tick_interval)
            now = self.now()
            self.cache.trim(now)
            self._expire_handshakes(now)
            for conn in list(self.connections):
                try:
                    conn.tick(now)
                except Exception:
                    self.internal_error(conn, "tick")
            self._retry_waiting()
